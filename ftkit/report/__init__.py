"""`ftkit report`: one self-contained HTML page per run, or for several runs overlaid.

    ftkit report runs/grpo_arithmetic                        # writes runs/grpo_arithmetic/report.html
    ftkit report runs/a runs/b --out compare.html            # two runs overlaid, their recipes diffed

    write_report(["runs/grpo_arithmetic"])                    # the same from Python; returns the page's path

The page holds interactive curves, held-out accuracy by difficulty, a browser of the logged episodes (or
a dataset's rows), the run's warnings, its recipe, environment and exact command; it needs no network.
`ftkit sft` and `ftkit rl` rewrite RUN/report.html at each evaluation and at the end (`refresh`), so a
page kept open in a browser shows the newest state when reloaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ftkit.errors import FtkitError
from ftkit.runs import write_text_atomic

REPORT_FILE = "report.html"
# An evaluation's record in metrics.jsonl holds each difficulty group's accuracy under this prefix, so the page
# can show accuracy by difficulty from the first evaluation to the last (and trackers plot each group).
BY_DIFFICULTY = "heldout_accuracy/"


def difficulty_fields(by_difficulty: dict[str, dict[str, Any]]) -> dict[str, float]:
    """{"heldout_accuracy/digits=2 op=+": 0.75, ...} from `EvalResult.by_difficulty`, for a metrics record."""
    return {f"{BY_DIFFICULTY}{group}": g["accuracy"] for group, g in by_difficulty.items()}


def write_report(folders: Sequence[str | Path], out: str | Path | None = None) -> Path:
    """Write the report of `folders` (run or collected dataset folders) to `out`; returns its path.

    `out` defaults to FOLDER/report.html for one folder and ./report.html for several.
    """
    from ftkit.report.folders import read_folder
    from ftkit.report.page import render

    if not folders:
        raise FtkitError("give at least one run folder: ftkit report runs/NAME")
    runs = [read_folder(folder) for folder in folders]
    path = Path(out) if out else default_output(folders)
    if path.is_dir():
        path = path / REPORT_FILE
    if not path.parent.is_dir():
        raise FtkitError(f"cannot write {path}: its folder {path.parent} does not exist; create it or pick "
                         "another --out")
    write_text_atomic(path, render(runs))
    return path


def default_output(folders: Sequence[str | Path]) -> Path:
    return Path(folders[0]) / REPORT_FILE if len(folders) == 1 else Path(REPORT_FILE)


def refresh(run_dir: str | Path, console=None) -> Path | None:
    """Rewrite RUN/report.html during training; returns its path, or None when it could not be written.

    A failure is printed, not raised: the page is a view of files the run has already written, and a
    bug in drawing it must not end hours of training.
    """
    try:
        return write_report([run_dir])
    except Exception as exc:  # noqa: BLE001 - see the docstring
        message = f"warning: could not write {Path(run_dir) / REPORT_FILE}: {type(exc).__name__}: {exc}"
        if console is not None:
            console.print(message, markup=False, highlight=False)
        else:
            print(message)
        return None
