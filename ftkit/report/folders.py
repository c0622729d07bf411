"""What a report shows of one folder: a run's curves, figures, warnings and environment, or a dataset's card.

    python -c "from ftkit.report.folders import read_folder; print(read_folder('runs/grpo_arithmetic')['summary'])"

Every file is optional but the one that says what the folder is: a run is being written while its report
is (`ftkit rl` and `ftkit sft` rewrite report.html at each evaluation), so a missing summary.json means
"still training", not an error.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import yaml

from ftkit.config import flatten
from ftkit.errors import FtkitError
from ftkit.report import BY_DIFFICULTY
from ftkit.report.episodes import dataset_items, eval_sample_items, trajectory_items
from ftkit.runs import read_jsonl

# A curve keeps at most this many points (evenly spaced, the last one always): a browser draws 5,000 in
# milliseconds, and a run logs far fewer per metric unless it runs for days.
MAX_POINTS = 5000
# Metric records that carry no curve.
NOT_CURVES = {"step", "epoch", "time_s", "episodes", "problems_drawn"}
WARNINGS_FILE = "warnings.jsonl"
SUMMARY_FIELDS = ("model", "requested_model", "method", "algo", "gym", "steps", "episodes", "heldout_accuracy_start",
                  "heldout_accuracy_end", "eval_accuracy", "eval_n", "reward_mean_last10", "wall_time_s",
                  "train_runtime_s", "tokens_per_s", "rollout_tokens_per_s", "train_tokens_per_s", "train_loss",
                  "fallback_used", "fallback_reason", "weights_source", "stopped_early", "processes")


def read_folder(folder: str | Path) -> dict[str, Any]:
    """A run folder (SFT, DPO, RM, RL) or a collected dataset folder as the report's data."""
    from data_tools.store import is_collected

    folder = Path(folder)
    if not folder.is_dir():
        raise FtkitError(f"no such folder: {folder}; give a run folder (runs/NAME) or a dataset folder "
                         "that `ftkit collect` wrote")
    if is_collected(folder):
        return read_dataset_folder(folder)
    if not any((folder / name).is_file() for name in ("metrics.jsonl", "recipe.yaml")):
        raise FtkitError(f"{folder} is not a run folder (no metrics.jsonl or recipe.yaml) nor a collected dataset "
                         "(no collect.json): give the folder that `ftkit sft`, `ftkit rl` or `ftkit collect` wrote")
    return read_run_folder(folder)


def read_run_folder(folder: Path) -> dict[str, Any]:
    recipe = _read_yaml(folder / "recipe.yaml")
    records = read_jsonl(folder / "metrics.jsonl")
    summary = _read_json(folder / "summary.json")
    kind = "rl" if "algo" in recipe or any("reward_mean" in r for r in records) else recipe.get("kind", "sft")
    items, shown = trajectory_items(folder / "trajectories.jsonl")
    eval_json = _read_json(folder / "eval.json")
    if not items:
        items, shown = eval_sample_items(eval_json, summary.get("steps"))
    return {
        "name": recipe.get("name") or folder.name, "path": str(folder), "kind": kind,
        "status": _status(folder, records, recipe, summary),
        "summary": {k: summary[k] for k in SUMMARY_FIELDS if summary.get(k) is not None},
        "recipe": flatten(recipe),
        "env": _read_json(folder / "env.json"),
        "warnings": _warnings(folder, summary),
        "curves": curves(records),
        "by_difficulty": by_difficulty(records, summary, eval_json),
        "items": items, "items_note": shown,
    }


def read_dataset_folder(folder: Path) -> dict[str, Any]:
    from data_tools.store import CARD, read_manifest

    manifest = read_manifest(folder)
    items, shown, figures = dataset_items(folder)
    card = folder / CARD
    provenance = {k: v for k, v in manifest.items() if k not in ("counts", "content_hash", "command", "inputs")}
    return {
        "name": manifest.get("name") or folder.name, "path": str(folder), "kind": "dataset",
        "status": {"finished": True, "updated": _mtime(folder / "collect.json")},
        "summary": {"rows": sum(manifest.get("counts", {}).values()), **figures.pop("summary")},
        "recipe": flatten(provenance),
        "env": {"command": manifest.get("command"), "inputs": manifest.get("inputs"),
                "content_hash": manifest.get("content_hash"), "counts": manifest.get("counts")},
        "warnings": [], "curves": {}, "by_difficulty": figures.pop("by_difficulty"),
        "dataset": {**figures, "card": card.read_text() if card.is_file() else ""},
        "items": items, "items_note": shown,
    }


def curves(records: list[dict[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """{metric: {"x": steps, "y": values}} for every numeric metric, plus tokens_per_s for SFT logs."""
    out: dict[str, dict[str, list[float]]] = {}
    for record in records:
        step = record.get("step")
        if not isinstance(step, (int, float)):
            continue
        for key, value in record.items():
            if key in NOT_CURVES or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                series = out.setdefault(key, {"x": [], "y": []})
                series["x"].append(step)
                series["y"].append(value)
    speed = _sft_tokens_per_s(records)
    if speed["x"] and "tokens_per_s" not in out:
        out["tokens_per_s"] = speed
    return {key: _thin(series) for key, series in out.items()}


def _sft_tokens_per_s(records: list[dict[str, Any]]) -> dict[str, list[float]]:
    """TRL logs the tokens seen so far (num_tokens) and ftkit the seconds (time_s): their slope between logs."""
    logged = [r for r in records if isinstance(r.get("num_tokens"), (int, float)) and isinstance(r.get("time_s"),
                                                                                               (int, float))]
    series: dict[str, list[float]] = {"x": [], "y": []}
    for before, after in zip(logged, logged[1:]):
        seconds, tokens = after["time_s"] - before["time_s"], after["num_tokens"] - before["num_tokens"]
        if seconds > 0 and tokens > 0:  # a resumed run restarts its clock: skip the seam
            series["x"].append(after["step"])
            series["y"].append(tokens / seconds)
    return series


def _thin(series: dict[str, list[float]]) -> dict[str, list[float]]:
    n = len(series["x"])
    if n <= MAX_POINTS:
        return series
    keep = sorted({round(i * (n - 1) / (MAX_POINTS - 1)) for i in range(MAX_POINTS)})
    return {"x": [series["x"][i] for i in keep], "y": [series["y"][i] for i in keep]}


def by_difficulty(records: list[dict[str, Any]], summary: dict[str, Any], eval_json: dict[str, Any]) -> dict[str, Any]:
    """Held-out accuracy per difficulty group at the first and the last evaluation that logged it:
    {"points": [{"step", "accuracy": {group: accuracy}}, ...], "n": {group: problems in the final one}}.

    Runs written before evaluations logged their groups have only the final evaluation (eval.json)."""
    logged = [r for r in records if any(k.startswith(BY_DIFFICULTY) for k in r)]
    points = [{"step": r.get("step"),
               "accuracy": {k[len(BY_DIFFICULTY):]: v for k, v in r.items() if k.startswith(BY_DIFFICULTY)}}
              for r in (logged[:1] + logged[-1:] if len(logged) > 1 else logged)]
    final = eval_json.get("by_difficulty") or summary.get("eval_by_difficulty") or {}
    if final and not points:
        points = [{"step": summary.get("steps"), "accuracy": {k: g["accuracy"] for k, g in final.items()}}]
    return {"points": points, "n": {k: g.get("n") for k, g in final.items()}}


def _status(folder: Path, records: list[dict[str, Any]], recipe: dict[str, Any],
            summary: dict[str, Any]) -> dict[str, Any]:
    """How far the run has got: its last logged step and whether summary.json (written last) is newer."""
    steps = [r["step"] for r in records if isinstance(r.get("step"), (int, float))]
    metrics_time = _mtime(folder / "metrics.jsonl")
    finished = bool(summary) and _mtime(folder / "summary.json") + 1 >= metrics_time
    max_steps = (recipe.get("train") or {}).get("max_steps")
    return {"finished": finished, "step": max(steps, default=0),
            "max_steps": max_steps if isinstance(max_steps, int) and max_steps > 0 else None,
            "updated": metrics_time}


def _warnings(folder: Path, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """What the run warned about (warnings.jsonl, as the console showed it), and a fallback or early stop."""
    out = read_jsonl(folder / WARNINGS_FILE)
    if not out and summary.get("warnings"):  # runs from before warnings.jsonl: only their keys are known
        out = [{"step": None, "key": key, "message": f"the run warned about {key} (see its console log)"}
               for key in summary["warnings"]]
    if summary.get("fallback_used"):
        out.insert(0, {"step": None, "key": "fallback", "message": f"FALLBACK: {summary.get('fallback_reason')}; "
                                                                   f"trained {summary.get('model')} instead"})
    stopped = summary.get("stopped_early")
    if stopped:
        out.append({"step": stopped.get("step"), "key": "stop_when",
                    "message": f"eval.stop_when held: training stopped early ({stopped.get('accuracy')})"})
    return out


def recipe_diff(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The recipe keys whose values differ between the runs: [{"key", "values": [one per run]}]."""
    keys = sorted({k for run in runs for k in run["recipe"]} - {"name", "output_dir"})
    rows = []
    for key in keys:
        values = [run["recipe"].get(key) for run in runs]
        if len({json.dumps(v, sort_keys=True, default=str) for v in values}) > 1:
            rows.append({"key": key, "values": values})
    return rows


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return time.time()
