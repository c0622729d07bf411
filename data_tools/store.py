"""Collected datasets on disk: Parquet splits, an optional JSONL copy, and a card that says where they came from.

    python -c "from data_tools.store import read_dataset; print(read_dataset('data/arith_demos')['train'][0])"

A collected dataset is a folder laid out the way the Hugging Face hub lays out a dataset repository, so
`datasets.load_dataset("parquet", data_dir="data/arith_demos/data")`, `ftkit sft ... data.path=data/arith_demos`
and a `git push` to the hub all read it as it is:

    data/arith_demos/
      data/train-00000-of-00001.parquet     one file per split (train, and validation after `split`)
      train.jsonl                           only with --jsonl: the same rows, one JSON object a line
      README.md                             the dataset card: counts, rewards, lengths, provenance, command
      collect.json                          the same provenance, machine-readable; written last

The folder is written beside its final place and renamed into it, and `collect.json` is the last file
inside it, so a folder that has a `collect.json` is complete. Running the same command again finds it,
says so and does nothing (idempotent, like nanoGPT's `prepare.py`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from data_tools.atomic import save_folder_atomic
from data_tools.errors import DataError

MANIFEST = "collect.json"
CARD = "README.md"
SPLITS = ("train", "validation")


def parquet_path(folder: Path, split: str) -> Path:
    return folder / "data" / f"{split}-00000-of-00001.parquet"


def is_collected(folder: str | Path) -> bool:
    """True for a complete collected folder (its manifest is written last)."""
    return (Path(folder) / MANIFEST).is_file()


def read_manifest(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise DataError(f"{folder} is not a collected dataset (no {MANIFEST}); `ftkit collect` writes those")
    return json.loads(path.read_text())


def content_hash(splits: dict[str, list[dict[str, Any]]]) -> str:
    """sha256 of the rows in order, as canonical JSON: equal data, equal hash, whatever wrote it."""
    digest = hashlib.sha256()
    for split in sorted(splits):
        digest.update(split.encode())
        for row in splits[split]:
            digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False, default=str).encode())
            digest.update(b"\n")
    return digest.hexdigest()


def write_dataset(folder: str | Path, splits: dict[str, list[dict[str, Any]]], provenance: dict[str, Any],
                  *, jsonl: bool = False) -> dict[str, Any]:
    """Write `splits` ({"train": rows, ...}) as a collected folder with its card; returns the manifest.

    `provenance` holds what made the data (kind, command, gym, model, seeds, inputs...); the manifest adds
    the row counts and the content hash. Raises `DataError` when every split is empty: an empty dataset
    would only fail later, in training, further from its cause.
    """
    from datasets import Dataset

    folder = Path(folder)
    splits = {name: rows for name, rows in splits.items() if rows}
    if not splits:
        raise DataError(f"nothing to write to {folder}: every row was filtered out or none was collected")
    manifest = {**provenance, "counts": {name: len(rows) for name, rows in splits.items()},
                "content_hash": content_hash(splits)}

    def write(staging: Path) -> None:
        for name, rows in splits.items():
            target = parquet_path(staging, name)
            target.parent.mkdir(parents=True, exist_ok=True)
            Dataset.from_list(rows).to_parquet(str(target))
            if jsonl:
                with open(staging / f"{name}.jsonl", "w") as f:
                    for row in rows:
                        f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        from data_tools.card import dataset_card

        (staging / CARD).write_text(dataset_card(splits, manifest))
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")

    save_folder_atomic(folder, write)
    return manifest


def read_dataset(folder: str | Path) -> dict[str, list[dict[str, Any]]]:
    """The rows of each split of a collected folder: `read_dataset(path)["train"][0]`."""
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"no such dataset folder: {folder}")
    files = sorted((folder / "data").glob("*.parquet")) if (folder / "data").is_dir() else []
    if not files:
        raise DataError(f"{folder} has no data/*.parquet files: is it a folder written by `ftkit collect`?")
    import pyarrow.parquet as pq

    splits: dict[str, list[dict[str, Any]]] = {}
    for file in files:
        split = file.name.split("-", 1)[0]
        splits.setdefault(split, []).extend(pq.read_table(file).to_pylist())
    return splits


def read_rows(path: str | Path, split: str = "train") -> list[dict[str, Any]]:
    """One split of a collected folder, or every row of any file `data_tools.readers` reads."""
    path = Path(path)
    if path.is_dir() and (path / "data").is_dir():
        splits = read_dataset(path)
        if split not in splits:
            raise DataError(f"{path} has no {split!r} split (it has {', '.join(sorted(splits))})")
        return splits[split]
    from data_tools.readers import load_records

    return [record.data for record in load_records(path)]


def input_hashes(*paths: str | Path) -> dict[str, str]:
    """{path: content hash} of the collected folders a command reads (files: a hash of their bytes)."""
    hashes = {}
    for path in map(Path, paths):
        if is_collected(path):
            hashes[str(path)] = read_manifest(path)["content_hash"]
        elif path.is_file():
            hashes[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def check_output(folder: str | Path, command: str, *, overwrite: bool, inputs: dict[str, str] | None = None) -> bool:
    """Decide what to do with an output folder before collecting: True means "already done, skip".

    Complete, made by the same command from the same inputs: skip. Anything else there is an error
    unless `overwrite`, so no data a user collected is replaced by accident.
    """
    folder = Path(folder)
    if not folder.exists():
        return False
    if overwrite:
        shutil.rmtree(folder)
        return False
    if is_collected(folder):
        manifest = read_manifest(folder)
        if manifest.get("command") == command and manifest.get("inputs", {}) == (inputs or {}):
            return True
    what = f"a dataset made by `{read_manifest(folder).get('command')}`" if is_collected(folder) else "other files"
    raise DataError(f"{folder} already holds {what}; choose another --out or pass --overwrite")
