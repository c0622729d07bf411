"""The dataset card: `README.md` beside collected data, saying what is in it and exactly how it was made.

    python -c "from data_tools.card import dataset_card; print(dataset_card({'train': [{'prompt': '1+1=', 'completion': '2'}]}, {'kind': 'demos', 'command': 'ftkit collect demos --gym arithmetic --n 1'}))"

It opens with YAML front matter in the hub's format (so the folder uploads as a hub dataset as it is),
then counts, the reward histogram, length statistics, the provenance (gym and version, model, seeds,
inputs and their hashes) and the exact command that rebuilds the folder.
"""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

import yaml

TEXT_COLUMNS = ("prompt", "completion", "chosen", "rejected", "text")
HISTOGRAM_BINS = 10
BAR_WIDTH = 30


def dataset_card(splits: dict[str, list[dict[str, Any]]], manifest: dict[str, Any]) -> str:
    """Markdown for a collected folder's README.md."""
    front = {"configs": [{"config_name": "default",
                          "data_files": [{"split": s, "path": f"data/{s}-*.parquet"} for s in splits]}],
             "tags": ["ftkit", manifest.get("kind", "collected")]}
    all_rows = [row for rows in splits.values() for row in rows]
    parts = [
        "---\n" + yaml.safe_dump(front, sort_keys=False) + "---\n",
        f"# {manifest.get('name') or manifest.get('kind', 'dataset')}\n",
        f"{_describe(manifest)}\n",
        "## Rebuild\n",
        f"```\n{manifest.get('command', '(unknown)')}\n```\n",
        f"content hash (sha256 of the rows as canonical JSON): `{manifest.get('content_hash', '')}`\n",
        "## Counts\n",
        "| split | rows |\n| --- | ---: |\n" + "".join(f"| {s} | {len(r):,} |\n" for s, r in splits.items()),
    ]
    rewards = [float(r["reward"]) for r in all_rows if isinstance(r.get("reward"), (int, float))]
    if rewards:
        parts += ["## Rewards\n", reward_histogram(rewards)]
    parts += ["## Lengths (characters)\n", length_table(all_rows)]
    extras = _extra_counts(all_rows)
    if extras:
        parts += ["## Breakdown\n", extras]
    parts += ["## Provenance\n", "```yaml\n" + yaml.safe_dump(_provenance(manifest), sort_keys=False) + "```\n",
              "## Load\n",
              "```python\nfrom data_tools.store import read_dataset\nrows = read_dataset(\"<this folder>\")[\"train\"]\n"
              "# or: datasets.load_dataset(\"parquet\", data_dir=\"<this folder>/data\")\n```\n"]
    return "\n".join(parts)


def reward_histogram(rewards: list[float], bins: int = HISTOGRAM_BINS) -> str:
    """A text histogram: one row per bin with its count and a bar; exact values when there are few."""
    values = Counter(rewards)
    mean = sum(rewards) / len(rewards)
    head = f"{len(rewards):,} rewards, mean {mean:.3f}, min {min(rewards):g}, max {max(rewards):g}\n\n"
    if len(values) <= bins:
        rows = [(f"{v:g}", values[v]) for v in sorted(values)]
    else:
        low, high = min(rewards), max(rewards)
        width = (high - low) / bins
        counts = [0] * bins
        for r in rewards:
            counts[min(bins - 1, int((r - low) / width))] += 1
        rows = [(f"[{low + i * width:.3g}, {low + (i + 1) * width:.3g})", c) for i, c in enumerate(counts)]
    top = max(c for _, c in rows) or 1
    lines = [f"{label:>18} {count:>8,} {'#' * round(BAR_WIDTH * count / top)}" for label, count in rows]
    return head + "```\n" + "\n".join(lines) + "\n```\n"


def length_table(rows: list[dict[str, Any]]) -> str:
    """min / median / mean / max length of each text column (messages: all turns together)."""
    table = "| column | min | median | mean | max |\n| --- | ---: | ---: | ---: | ---: |\n"
    for column in (*TEXT_COLUMNS, "messages"):
        lengths = [_length(r[column]) for r in rows if r.get(column) is not None]
        if lengths:
            table += (f"| {column} | {min(lengths)} | {statistics.median(lengths):g} | "
                      f"{statistics.fmean(lengths):.1f} | {max(lengths)} |\n")
    return table


def _length(value: Any) -> int:
    if isinstance(value, list):  # chat messages
        return sum(len(m.get("content", "")) for m in value if isinstance(m, dict))
    return len(str(value))


def _extra_counts(rows: list[dict[str, Any]]) -> str:
    """Counts by difficulty and by solved, when the rows carry them."""
    out = ""
    for column in ("difficulty", "solved", "source"):
        counts = Counter(str(r[column]) for r in rows if r.get(column) is not None)
        if 1 < len(counts) <= 30 or (column == "solved" and counts):
            out += f"**{column}**: " + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())) + "\n\n"
    return out


def _describe(manifest: dict[str, Any]) -> str:
    kind = manifest.get("kind", "")
    what = {
        "demos": "Demonstrations: each problem with the gym oracle's correct answer.",
        "rollouts": "Rollouts: a model played each problem several times; every trajectory with its reward.",
        "filter": "Rejection sampling: the rollouts whose reward passed the threshold, as an instruction dataset.",
        "pairs": "Preference pairs: from each rollout group, a higher-reward and a lower-reward completion.",
        "import": "Imported from a file and mapped to ftkit's columns.",
        "label": "Preference pairs judged by a person in the terminal.",
        "dedup": "Duplicates removed.",
        "decontaminate": "Rows that overlap the evaluation set removed.",
        "split": "Split into train and validation.",
    }.get(kind, "A dataset collected with ftkit.")
    return f"{what} Written by `ftkit collect {kind}`." if kind else what


def _provenance(manifest: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in manifest.items() if k not in ("counts", "content_hash", "command")}
