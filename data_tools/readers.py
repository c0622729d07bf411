"""Read a user's dataset file into records that remember where each one came from.

    >>> from data_tools.readers import load_records
    >>> records = load_records("data/train.jsonl")  # doctest: +SKIP
    >>> records[0]  # doctest: +SKIP
    Record(data={'prompt': '2+2=', 'completion': '4'}, where='data/train.jsonl:1')

Every record carries a `where` string that a user can paste into an editor or a Python prompt, so a
later check (see `data_tools.formats`) can say exactly which line is wrong:

| input                                  | `where`                      | how to find it               |
| -------------------------------------- | ---------------------------- | ---------------------------- |
| `train.jsonl` (one JSON object a line) | `train.jsonl:17`             | line 17 in an editor         |
| `train.csv` (header row first)         | `train.csv:5`                | the line where the row starts |
| `train.json` (a list of objects)       | `train.json item 4`          | `json.load(f)[4]`            |
| `train.parquet`                        | `train.parquet row 12`       | `pq.read_table(p)[12]`       |
| folder from `Dataset.save_to_disk`     | `train_ds row 3`             | `load_from_disk(p)[3]`       |
| folder from `ftkit collect`            | `data/demos row 3`           | `read_dataset(p)["train"][3]` |

Line numbers are 1-based like an editor's; item and row numbers are 0-based like the index you would
type in Python. Anything wrong with the file itself raises `DataError` with a one-line message.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from data_tools.errors import DataError

SUPPORTED = ".jsonl, .ndjson, .json, .csv, .parquet, or a folder written by Dataset.save_to_disk or ftkit collect"


class Record(NamedTuple):
    """One example as read from disk, and where it came from (for error messages).

    >>> Record({"text": "hello"}, "notes.jsonl:1").where
    'notes.jsonl:1'
    """

    data: dict[str, Any]
    where: str


def load_records(path: str | os.PathLike) -> list[Record]:
    """Read every example of a dataset file or saved-dataset folder.

    >>> load_records("data/train.jsonl")[0].where  # doctest: +SKIP
    'data/train.jsonl:1'

    The reader is picked from the extension (see `SUPPORTED`); a folder is opened with
    `datasets.load_from_disk`. Raises `DataError` for a missing, unreadable, malformed or empty input.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"no such file: {path}")
    reader = _read_saved_dataset if path.is_dir() else _reader_for(path)
    records = list(reader(path))
    if not records:
        raise DataError(f"{path}: empty dataset (no rows)")
    return records


def _reader_for(path: Path) -> Callable[[Path], Iterator[Record]]:
    suffix = path.suffix.lower()
    if suffix not in _READERS:
        shown = f'"{path.suffix}"' if path.suffix else "(no extension)"
        raise DataError(f"{path}: unsupported file type {shown}; supported: {SUPPORTED}")
    return _READERS[suffix]


# --- JSON Lines and JSON ------------------------------------------------------------------------


def _read_jsonl(path: Path, hint: str = "") -> Iterator[Record]:
    """Yield one record per non-blank line; line numbers count blank lines too, as an editor does."""
    for lineno, value in _iter_json_lines(path, hint):
        yield Record(_require_object(value, f"{path}:{lineno}"), f"{path}:{lineno}")


def _iter_json_lines(path: Path, hint: str) -> Iterator[tuple[int, Any]]:
    # Binary mode, decoded line by line: a bad byte is then reported on its own line, and only "\n"
    # ends a line (text mode would also split on a stray "\r" and shift every later line number).
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            where = f"{path}:{lineno}"
            try:
                # utf-8-sig drops the byte-order mark some Windows editors write at the very start.
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{where}: not UTF-8 text ({e.reason} at byte {e.start} of the line){hint}"
                ) from None
            if not line.strip():
                continue
            try:
                # Without the line ending, json's column for "ends too early" errors stays on this line.
                yield lineno, json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as e:
                # json's own "line 1 column 5" would always say line 1: report the column only.
                raise DataError(f"{where}: not valid JSON ({e.msg} at column {e.colno}){hint}") from None


def _read_json(path: Path) -> Iterator[Record]:
    """A `.json` file holds a list of objects, or (as `Dataset.to_json` writes it) one object per line."""
    first = _first_non_space_char(path)
    if first == "":
        return
    if first == "{":
        yield from _read_jsonl(
            path, hint="; a .json file must hold a list of objects, or one object per line"
        )
        return
    try:
        with path.open(encoding="utf-8-sig") as f:
            value = json.load(f)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        # In a whole-file document json's line number is a real file line, so it goes up front.
        raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(value, list):
        raise DataError(f"{path}: expected a JSON list of objects, got {_type_name(value)}")
    for index, item in enumerate(value):
        where = f"{path} item {index}"
        yield Record(_require_object(item, where), where)


def _first_non_space_char(path: Path) -> str:
    """The first character that is not whitespace, or "" for a blank file (reads only what it needs)."""
    with path.open(encoding="utf-8-sig", errors="replace") as f:
        while chunk := f.read(4096):
            stripped = chunk.lstrip()
            if stripped:
                return stripped[0]
    return ""


def _require_object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DataError(
            f'{where}: expected a JSON object like {{"prompt": ..., "completion": ...}}, got {_type_name(value)}'
        )
    return value


# --- CSV ----------------------------------------------------------------------------------------


def _read_csv(path: Path) -> Iterator[Record]:
    """Yield one record per row, keyed by the header row; every value is a string, as CSV stores it."""
    # newline="" lets the csv module handle quoted fields that span lines; utf-8-sig drops Excel's BOM.
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        try:
            header = _read_csv_header(reader, path)
            if header is None:
                return
            while True:
                # A quoted field may span lines, so the row starts on the line after the previous row.
                start = reader.line_num + 1
                row = next(reader, None)
                if row is None:
                    return
                if row:  # the csv module gives [] for a blank line
                    yield Record(_csv_row_to_dict(header, row, f"{path}:{start}"), f"{path}:{start}")
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not UTF-8 text ({e.reason}); save the file as UTF-8") from None
        except csv.Error as e:
            raise DataError(f"{path}:{reader.line_num}: unreadable CSV ({e})") from None


def _read_csv_header(reader: Any, path: Path) -> list[str] | None:
    """The first non-blank row, or None when the file has no rows at all."""
    header = next(reader, None)
    while header == []:
        header = next(reader, None)
    if header is None:
        return None
    for name in header:
        if header.count(name) > 1:
            raise DataError(f'{path}:{reader.line_num}: column "{name}" appears twice in the header row')
    return header


def _csv_row_to_dict(header: list[str], row: list[str], where: str) -> dict[str, str]:
    if len(row) != len(header):
        raise DataError(
            f"{where}: row has {len(row)} field{'s' if len(row) != 1 else ''} but the header has {len(header)} "
            f"({', '.join(header)}); quote fields that contain commas"
        )
    return dict(zip(header, row))


# --- Parquet and saved `datasets` folders ---------------------------------------------------------


def _read_parquet(path: Path) -> Iterator[Record]:
    """Yield one record per row, reading a batch of rows at a time rather than the whole table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        index = 0
        for batch in parquet.iter_batches():
            for row in batch.to_pylist():
                yield Record(row, f"{path} row {index}")
                index += 1
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: not a readable Parquet file ({_one_line(str(e))})") from None


def _read_saved_dataset(path: Path) -> Iterator[Record]:
    """Read a folder written by `Dataset.save_to_disk` (a `DatasetDict` folder gives its "train" split),
    or a hub-style folder of `data/<split>-*.parquet` files such as `ftkit collect` writes (its "train")."""
    import datasets

    train_files = sorted((path / "data").glob("train-*.parquet")) if (path / "data").is_dir() else []
    if train_files:
        for file in train_files:
            for record in _read_parquet(file):
                yield Record(record.data, f"{path} {record.where.removeprefix(str(file) + ' ')}")
        return

    try:
        loaded = datasets.load_from_disk(str(path))
    except FileNotFoundError:
        raise DataError(
            f"{path}: is a folder but not a dataset saved with Dataset.save_to_disk; supported: {SUPPORTED}"
        ) from None
    except (OSError, ValueError) as e:  # a saved folder with damaged metadata or Arrow files
        raise DataError(f"{path}: saved dataset folder is unreadable ({_one_line(str(e))})") from None
    label = str(path)
    if isinstance(loaded, datasets.DatasetDict):
        if "train" not in loaded:
            splits = ", ".join(loaded) or "(none)"
            raise DataError(f'{path}: saved DatasetDict has no "train" split (splits: {splits})')
        loaded, label = loaded["train"], f"{path}[train]"
    for index, row in enumerate(loaded):
        yield Record(row, f"{label} row {index}")


# --- helpers ------------------------------------------------------------------------------------


def _type_name(value: Any) -> str:
    """A type name in the user's terms: JSON's null rather than Python's NoneType."""
    return "null" if value is None else type(value).__name__


def _one_line(text: str) -> str:
    return " ".join(text.split())


_READERS: dict[str, Callable[[Path], Iterator[Record]]] = {
    ".jsonl": _read_jsonl,
    ".ndjson": _read_jsonl,
    ".json": _read_json,
    ".csv": _read_csv,
    ".parquet": _read_parquet,
}
