"""The run folders under a folder, one `RunInfo` each: what `ftkit runs` lists.

    ftkit runs                      # runs/, newest first
    ftkit runs data --json          # collected dataset folders too; JSON for scripts

    infos = ftkit.run_list.list_runs("runs")   # [RunInfo(name="grpo_arithmetic", kind="rl", ...), ...]

A folder is a run when it holds `recipe.yaml` (every `ftkit sft|dpo|rm|rl` writes it first) and a
collected dataset when it holds `collect.json` (`data_tools.store`); anything else is skipped. A run
without `summary.json` has not finished: it is shown as running, at the last step its `metrics.jsonl`
logged (a run that was stopped looks the same; its date says when it last wrote).

Gathering is kept apart from printing (`runs_table`), so a report can reuse the records. It stays
fast on large runs: `trajectories.jsonl` is never opened, and of `metrics.jsonl` only the first
held-out record (from the start) and the last step and held-out record (from the end) are read, each
within READ_BUDGET bytes.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ftkit.errors import DataError

# The most bytes read from either end of metrics.jsonl when looking for a record.
READ_BUDGET = 8 << 20
_BLOCK = 64 << 10
# The summary key holding each kind's final held-out figure (a reward model's is its pairwise accuracy).
_HELDOUT_KEYS = (b'"heldout_accuracy"', b'"pairwise_accuracy"')


@dataclass
class RunInfo:
    """One row of `ftkit runs`; `to_dict()` is its JSON (numbers as numbers, the date in ISO 8601)."""

    name: str
    path: str
    kind: str  # sft | dpo | rm | rl | dataset
    status: str  # finished | running (a dataset folder is finished: collect.json is written last)
    model: str | None = None  # what trained (a fallback, if one was used); a dataset's model, if any
    method: str | None = None  # full | lora | qlora; for a dataset, how it was collected (demos, rollouts...)
    algo: str | None = None  # rl only: grpo, ppo, ...
    steps: int | None = None  # steps done (running: the last logged)
    max_steps: int | None = None  # steps asked for, when the recipe says
    heldout_accuracy_start: float | None = None  # the first held-out evaluation (RL: before training)
    heldout_accuracy_start_step: int | None = None
    heldout_accuracy_end: float | None = None  # the final evaluation (running: the latest)
    heldout_accuracy_end_step: int | None = None
    wall_time_s: float | None = None  # training time (running: from recipe.yaml's write to the last one)
    date: datetime | None = None  # when the run last wrote (a finished run: when it finished)
    rows: int | None = None  # datasets: rows over every split
    fallback_used: bool = False

    def to_dict(self) -> dict[str, Any]:
        record = dataclasses.asdict(self)
        record["date"] = self.date.isoformat(timespec="seconds") if self.date else None
        return record


def list_runs(folder: str | Path = "runs") -> list[RunInfo]:
    """Every run and dataset folder directly inside `folder`, newest first; a one-line error if none.

        ftkit runs runs --json      # these records, as JSON
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"no such folder: {folder} (runs are written to runs/<name>; give the folder that holds "
                        "them: ftkit runs FOLDER)")
    infos = [info for child in sorted(folder.iterdir()) if (info := read_run(child)) is not None]
    if not infos:
        raise DataError(f"{folder} holds no run folders (a run folder has recipe.yaml, a dataset collect.json); "
                        "train one with `ftkit sft RECIPE` or `ftkit rl --gym arithmetic`, or give another folder")
    epoch = datetime.fromtimestamp(0).astimezone()
    return sorted(infos, key=lambda i: (i.date or epoch, i.name), reverse=True)


def read_run(path: Path) -> RunInfo | None:
    """The folder's record, or None when it is neither a run nor a collected dataset (or cannot be read).

        python -c "from ftkit.run_list import read_run; from pathlib import Path; print(read_run(Path('runs/gpt2_math')))"
    """
    import yaml

    try:
        if (path / "recipe.yaml").is_file():
            return _training_run(path)
        if (path / "collect.json").is_file():
            return _dataset(path)
    except (OSError, ValueError, yaml.YAMLError):
        return None  # half-written or foreign files: not a run this command can describe
    return None


def _training_run(path: Path) -> RunInfo | None:
    recipe = _read_yaml(path / "recipe.yaml")
    if not isinstance(recipe, dict) or not isinstance(recipe.get("model"), dict):
        return None
    kind = "rl" if "algo" in recipe else str(recipe.get("kind", "sft"))
    info = RunInfo(name=path.name, path=str(path), kind=kind, status="running", model=recipe["model"].get("name"),
                   method=recipe.get("method"), algo=recipe.get("algo"),
                   max_steps=(recipe.get("train") or {}).get("max_steps"))
    summary_path = path / "summary.json"
    if summary_path.is_file():
        _finished(info, _json_object(summary_path), _mtime(summary_path))
    else:
        _running(info, path)
    if info.heldout_accuracy_start is None:
        _add_start(info, _first_record(path / "metrics.jsonl", _HELDOUT_KEYS))
    return info


def _add_start(info: RunInfo, first: dict[str, Any] | None) -> None:
    """The first held-out record as the start, unless it is the end itself (one evaluation so far)."""
    if first is None:
        return
    if first.get("step") != info.heldout_accuracy_end_step:
        info.heldout_accuracy_start, info.heldout_accuracy_start_step = _heldout(first), first.get("step")
    elif info.status == "running":  # only the evaluation before training so far: a start, not an end yet
        info.heldout_accuracy_start, info.heldout_accuracy_start_step = _heldout(first), first.get("step")
        info.heldout_accuracy_end = info.heldout_accuracy_end_step = None


def _finished(info: RunInfo, summary: dict[str, Any], written: datetime) -> None:
    """Fill `info` from summary.json: SFT/DPO/RM's (`ftkit.sft` write_report) or RL's (`ftkit.rl.report`)."""
    info.status, info.date = "finished", written
    info.model = summary.get("model", info.model)
    info.fallback_used = bool(summary.get("fallback_used"))
    info.steps = summary.get("steps")
    if info.kind == "rl":
        info.heldout_accuracy_end = summary.get("heldout_accuracy_end")
        info.heldout_accuracy_start = summary.get("heldout_accuracy_start")
        info.heldout_accuracy_start_step = 0 if info.heldout_accuracy_start is not None else None
        info.wall_time_s = summary.get("wall_time_s")
    else:
        info.heldout_accuracy_end = summary.get("eval_accuracy")
        info.wall_time_s = summary.get("train_runtime_s")
    if info.heldout_accuracy_end is not None:
        info.heldout_accuracy_end_step = info.steps


def _running(info: RunInfo, path: Path) -> None:
    """Fill `info` from the end of metrics.jsonl: the last step logged and the latest held-out record."""
    metrics = path / "metrics.jsonl"
    started = _mtime(path / "recipe.yaml")
    info.date = _mtime(metrics) if metrics.is_file() else started
    info.wall_time_s = max(0.0, (info.date - started).total_seconds())
    last = _last_record(metrics, (b'"step"',))
    info.steps = last.get("step") if last else None
    latest = _last_record(metrics, _HELDOUT_KEYS)
    if latest is not None:
        info.heldout_accuracy_end, info.heldout_accuracy_end_step = _heldout(latest), latest.get("step")


def _dataset(path: Path) -> RunInfo:
    """A collected dataset folder, from its manifest (`data_tools.store`; the card says the same in prose)."""
    manifest = _json_object(path / "collect.json")
    return RunInfo(name=path.name, path=str(path), kind="dataset", status="finished", model=manifest.get("model"),
                   method=manifest.get("kind"), rows=sum((manifest.get("counts") or {}).values()),
                   date=_mtime(path / "collect.json"))


def _heldout(record: dict[str, Any]) -> float | None:
    value = record.get("heldout_accuracy", record.get("pairwise_accuracy"))
    return float(value) if isinstance(value, (int, float)) else None


def _json_object(path: Path) -> dict[str, Any]:
    value = json.loads(path.read_text())
    if not isinstance(value, dict):
        raise ValueError(f"{path}: not a JSON object")
    return value


def _read_yaml(path: Path) -> Any:
    import yaml

    return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 (safe)


def _mtime(path: Path) -> datetime:
    return datetime.fromtimestamp(path.stat().st_mtime).astimezone()


# -- reading only the ends of metrics.jsonl ------------------------------------------------------------


def _first_record(path: Path, keys: tuple[bytes, ...]) -> dict[str, Any] | None:
    """The first record holding one of `keys` (as JSON keys), within READ_BUDGET bytes of the start."""
    if not path.is_file():
        return None
    read = 0
    with path.open("rb") as f:
        for line in f:
            read += len(line)
            if read > READ_BUDGET:
                return None
            record = _matching(line, keys)
            if record is not None:
                return record
    return None


def _last_record(path: Path, keys: tuple[bytes, ...]) -> dict[str, Any] | None:
    """The last record holding one of `keys`, within READ_BUDGET bytes of the end."""
    if not path.is_file():
        return None
    for line in _lines_from_the_end(path):
        record = _matching(line, keys)
        if record is not None:
            return record
    return None


def _matching(line: bytes, keys: tuple[bytes, ...]) -> dict[str, Any] | None:
    # A substring test first: most lines are skipped without parsing them.
    if not any(key in line for key in keys):
        return None
    try:
        record = json.loads(line)
    except ValueError:  # a line cut by a run still writing it
        return None
    return record if isinstance(record, dict) else None


def _lines_from_the_end(path: Path) -> Iterator[bytes]:
    """The file's lines, last first, read backwards in blocks up to READ_BUDGET bytes."""
    with path.open("rb") as f:
        end = f.seek(0, 2)
        stop = max(0, end - READ_BUDGET)
        tail = b""
        while end > stop:
            start = max(stop, end - _BLOCK)
            f.seek(start)
            lines = (f.read(end - start) + tail).split(b"\n")
            end = start
            # The first piece may be the end of a line that starts further back: keep it for the next block
            # (past READ_BUDGET it is dropped, a partial line).
            tail = lines.pop(0) if end > 0 else b""
            yield from reversed([line for line in lines if line.strip()])


# -- printing ------------------------------------------------------------------------------------------


def print_runs(folder: str | Path = "runs", *, as_json: bool = False) -> None:
    """Print the runs in `folder` as a table, or as a JSON list with `as_json`.

        ftkit runs runs/bench_rl
    """
    infos = list_runs(folder)
    if as_json:
        print(json.dumps([i.to_dict() for i in infos], indent=2))
        return
    from rich.console import Console

    console, table = Console(highlight=False), runs_table(infos)
    if not console.is_terminal:  # a pipe or a file has no width to fit: keep each run on one line
        console.width = console.measure(table, options=console.options.update_width(10_000)).maximum
    console.print(table)


def runs_table(infos: list[RunInfo]):
    """A rich Table of `infos`, one row each, in their order.

        ftkit runs      # prints this table for runs/
    """
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False)
    for column, justify in (("name", "left"), ("kind", "left"), ("model", "left"), ("method", "left"),
                            ("steps", "right"), ("held-out accuracy", "right"), ("wall time", "right"),
                            ("date", "left")):
        table.add_column(column, justify=justify, overflow="fold")
    for i in infos:
        table.add_row(i.name, i.kind, (i.model or "-") + (" (fallback)" if i.fallback_used else ""),
                      " ".join(x for x in (i.method, i.algo) if x) or "-", _steps(i), _accuracy(i),
                      _duration(i.wall_time_s), i.date.strftime("%Y-%m-%d %H:%M") if i.date else "-")
    return table


def _steps(i: RunInfo) -> str:
    if i.kind == "dataset":
        return f"{i.rows:,} rows" if i.rows is not None else "-"
    done = "-" if i.steps is None else f"{i.steps:,}"
    if i.status == "running":
        return f"{done}/{i.max_steps:,} running" if i.max_steps else f"{done} running"
    return done


def _accuracy(i: RunInfo) -> str:
    end = "-" if i.heldout_accuracy_end is None else f"{i.heldout_accuracy_end:.1%}"
    if i.heldout_accuracy_start is None:
        return end
    where = "" if i.heldout_accuracy_start_step == 0 else f" (step {i.heldout_accuracy_start_step:,})"
    return f"{i.heldout_accuracy_start:.1%}{where} -> {end}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, s = divmod(round(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m" if hours else f"{m}m{s:02d}s" if m else f"{s}s"
