"""The episodes a report's browser shows: an RL run's logged trajectories, or a collected dataset's rows.

    python -c "from ftkit.report.episodes import trajectory_items; print(trajectory_items(__import__('pathlib').Path('runs/grpo_arithmetic/trajectories.jsonl'))[1])"

Both become the same item: step (a dataset's problem index), group (a dataset's sample), reward, solved,
difficulty, system prompt, prompt, turns as [action, the gym's reply, reward], answer. A large file is
sampled so that the page stays quick to open, and the item count says how: whole steps, evenly spaced, for
trajectories (so each shown step keeps its best and worst episode); a uniform random sample of rows for a
dataset, whose figures are computed over every row.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter, defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Any

from ftkit.evaluate import difficulty_key

# At most this many episodes or rows go into a page: a few megabytes that a browser parses in well under
# a second, while the table renders one page of rows at a time.
MAX_ITEMS = 5000
MAX_TEXT = 2000  # characters of one action, reply or prompt; longer text is cut, and says so
_STEP = re.compile(r'^\{"step": (\d+)')  # how Report writes each line: its step first
HISTOGRAM_BINS = 10


def trajectory_items(path: Path, limit: int = MAX_ITEMS) -> tuple[list[dict[str, Any]], str | None]:
    """(items, how many of how many are shown) from trajectories.jsonl; ([], None) without one."""
    if not path.is_file():
        return [], None
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    note = f"all {len(lines):,} logged episodes"
    if len(lines) > limit:
        lines, note = _whole_steps(lines, limit)
    items = []
    for line in lines:
        try:
            items.append(episode_item(json.loads(line)))
        except json.JSONDecodeError:  # the line being written as the report is made
            continue
    return items, note


def _whole_steps(lines: list[str], limit: int) -> tuple[list[str], str]:
    """Every episode of evenly spaced steps, as many steps as fit in `limit` episodes."""
    by_step: dict[int, list[str]] = defaultdict(list)
    for line in lines:
        match = _STEP.match(line)
        step = int(match.group(1)) if match else json.loads(line).get("step", 0)
        by_step[step].append(line)
    steps = sorted(by_step)
    keep = max(1, len(steps) * limit // len(lines))
    chosen = sorted({steps[round(i * (len(steps) - 1) / max(1, keep - 1))] for i in range(keep)})
    kept = [line for step in chosen for line in by_step[step]]
    return kept, (f"{len(kept):,} of {len(lines):,} logged episodes: every episode of {len(chosen):,} of the "
                  f"{len(steps):,} steps, evenly spaced")


def episode_item(record: dict[str, Any]) -> dict[str, Any]:
    """One trajectories.jsonl record (`Trajectory.to_dict()` with its step and group) as a browser item."""
    turns = record.get("turns") or []
    replies = [t.get("observation", "") for t in turns[1:]] + [record.get("final_observation", "")]
    info, reset = record.get("info") or {}, record.get("reset_info") or {}
    return {
        "step": record.get("step"), "group": record.get("group"), "reward": record.get("total_reward"),
        "solved": record.get("solved"), "difficulty": difficulty_label(reset.get("difficulty") or info.get("difficulty")),
        "system": record.get("system_prompt"), "prompt": clip(turns[0].get("observation") if turns else ""),
        "turns": [[clip(t.get("action")), clip(reply), t.get("reward")] for t, reply in zip(turns, replies)],
        "answer": clip(info.get("answer", reset.get("answer"))),
    }


def eval_sample_items(eval_json: dict[str, Any], step: Any) -> tuple[list[dict[str, Any]], str | None]:
    """The final evaluation's kept samples (eval.json), for runs that log no trajectories (SFT, DPO)."""
    samples = eval_json.get("samples") or []
    items = [{"step": step, "group": i, "reward": s.get("reward"), "solved": s.get("solved"), "difficulty": "all",
              "system": None, "prompt": clip(s.get("prompt")), "turns": [[clip(s.get("completion")), "", s.get("reward")]],
              "answer": clip(s.get("answer"))} for i, s in enumerate(samples)]
    return items, (f"the {len(items)} samples kept from the final held-out evaluation (eval.json)" if items else None)


def dataset_items(folder: Path, limit: int = MAX_ITEMS) -> tuple[list[dict[str, Any]], str, dict[str, Any]]:
    """(items, how many of how many are shown, figures over every row) for a collected dataset folder."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for file in sorted((folder / "data").glob("*.parquet")):  # one file per split: train-00000-of-00001.parquet
        part = pq.read_table(file)
        tables.append(part.append_column("split", pa.array([file.name.split("-", 1)[0]] * part.num_rows)))
    table = pa.concat_tables(tables, promote_options="default") if tables else pa.table({})
    total = table.num_rows
    figures = dataset_figures(table)
    if total > limit:
        indices = sorted(random.Random(0).sample(range(total), limit))
        table, note = table.take(indices), f"{limit:,} of {total:,} rows: a uniform random sample (seed 0)"
    else:
        note = f"all {total:,} rows"
    return [row_item(row) for row in table.to_pylist()], note, figures


def dataset_figures(table) -> dict[str, Any]:
    """Over every row: the reward histogram, the solved rate, and the solved rate of each difficulty."""
    columns = set(table.column_names)
    rewards = [r for r in table.column("reward").to_pylist() if isinstance(r, (int, float))] \
        if "reward" in columns else []
    solved = table.column("solved").to_pylist() if "solved" in columns else []
    labels = [difficulty_label(d) for d in table.column("difficulty").to_pylist()] if "difficulty" in columns else []
    groups: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for label, ok in zip(labels, solved or [None] * len(labels)):
        groups[label][0] += 1
        groups[label][1] += bool(ok)
    summary: dict[str, Any] = {}
    if rewards:
        summary["reward_mean"] = sum(rewards) / len(rewards)
    if solved:
        summary["solved_rate"] = sum(map(bool, solved)) / len(solved)
    points = [{"step": None, "label": "solved" if solved else "rows",
               "accuracy": {k: (c / n if solved else None) for k, (n, c) in sorted(groups.items())}}] if groups else []
    return {"summary": summary, "rewards": histogram(rewards),
            "by_difficulty": {"points": points, "n": {k: n for k, (n, _) in groups.items()}}}


def histogram(values: list[float], bins: int = HISTOGRAM_BINS) -> list[dict[str, Any]]:
    """[{"label", "count"}]: one bar per value when there are few, else `bins` equal-width bins."""
    if not values:
        return []
    counts = Counter(values)
    if len(counts) <= bins:
        return [{"label": f"{v:g}", "count": counts[v]} for v in sorted(counts)]
    low, high = min(values), max(values)
    width = (high - low) / bins
    binned = [0] * bins
    for v in values:
        binned[min(bins - 1, int((v - low) / width))] += 1
    return [{"label": f"{low + i * width:.3g}..{low + (i + 1) * width:.3g}", "count": c} for i, c in enumerate(binned)]


def row_item(row: dict[str, Any]) -> dict[str, Any]:
    """A dataset row (prompt/completion, chat messages, or a preference pair) as a browser item."""
    messages = row.get("messages") or []
    system = next((m.get("content") for m in messages if m.get("role") == "system"), None)
    talk = [m for m in messages if m.get("role") != "system"]
    prompt = row.get("prompt") or (talk[0].get("content") if talk and talk[0].get("role") == "user" else "")
    if talk:
        actions = [i for i, m in enumerate(talk) if m.get("role") == "assistant"]
        turns = [[clip(talk[i].get("content")), clip(talk[i + 1].get("content") if i + 1 < len(talk) else ""), None]
                 for i in actions]
    else:
        turns = [[clip(row["completion"]), "", row.get("reward")]] if row.get("completion") is not None else []
    extra = {k: clip(row[k]) for k in ("chosen", "rejected", "chosen_reward", "rejected_reward", "text", "split",
                                       "source", "model") if row.get(k) is not None}
    return {"step": row.get("index"), "group": row.get("sample"), "reward": row.get("reward"),
            "solved": row.get("solved"), "difficulty": difficulty_label(row.get("difficulty")), "system": system,
            "prompt": clip(prompt), "turns": turns, "answer": clip(row.get("answer")), "extra": extra}


def difficulty_label(difficulty: Any) -> str:
    """'digits=3 op=-' from a difficulty dict, or from the JSON text a dataset row keeps it as."""
    if isinstance(difficulty, str):
        return _label_of_text(difficulty)
    return difficulty_key(difficulty) if isinstance(difficulty, dict) else "all"


@lru_cache(maxsize=4096)  # a dataset repeats a handful of difficulties over its many rows
def _label_of_text(text: str) -> str:
    try:
        difficulty = json.loads(text)
    except json.JSONDecodeError:
        return text
    return difficulty_key(difficulty) if isinstance(difficulty, dict) else text


def clip(text: Any) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + f" [... {len(text) - MAX_TEXT:,} more characters]"
