"""A person judges pairs of completions in the terminal; the judgements become preference pairs.

    ftkit collect label data/arith_rollouts --out data/arith_human_pairs

For each prompt the terminal shows two completions, A and B, in a random order (so the judge cannot
learn which source is which). Keys, each followed by Enter:

    a / 1   A is better          b / 2   B is better          s   skip this one
    e       edit: type a better completion on the next line (it is preferred to both A and B)
    q       quit; run the same command again to continue where you stopped

Every judgement is appended to `<out>.labels.jsonl` as it is made, so a closed terminal loses nothing;
the dataset folder is written once every candidate has been judged (or `--limit` judgements are made).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from data_tools.errors import DataError

KEYS_HELP = "[a] A better  [b] B better  [s] skip  [e] edit  [q] quit"


def candidates(rows: list[dict[str, Any]], *, max_per_prompt: int = 2, seed: int = 0) -> list[dict[str, Any]]:
    """Pairs to judge: from preference rows (prompt/chosen/rejected), or from rollouts grouped by prompt."""
    rng = random.Random(seed)
    out = []
    if rows and "chosen" in rows[0]:
        pairs = [(r["prompt"], r["chosen"], r["rejected"]) for r in rows]
    else:
        by_prompt: dict[str, list[str]] = defaultdict(list)
        for r in rows:
            if r.get("prompt") is None or r.get("completion") is None:
                raise DataError("label works on single-turn rows with prompt and completion columns")
            if r["completion"] not in by_prompt[r["prompt"]]:
                by_prompt[r["prompt"]].append(r["completion"])
        pairs = []
        for prompt, completions in by_prompt.items():
            options = [(a, b) for i, a in enumerate(completions) for b in completions[i + 1 :]]
            rng.shuffle(options)
            pairs += [(prompt, a, b) for a, b in options[:max_per_prompt]]
    for prompt, first, second in pairs:
        a, b = (first, second) if rng.random() < 0.5 else (second, first)  # blind: random sides
        key = hashlib.sha256(json.dumps([prompt, sorted([str(a), str(b)])]).encode()).hexdigest()[:16]
        out.append({"id": key, "prompt": prompt, "a": a, "b": b})
    return out


def read_labels(path: Path) -> dict[str, dict[str, Any]]:
    """Judgements made so far, by candidate id (a last line cut by a kill is ignored)."""
    labels = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            labels[entry["id"]] = entry
    return labels


def label(cands: list[dict[str, Any]], labels_file: Path, *, ask: Callable[[str], str] | None = None,
          show: Callable[[str], None] = print, limit: int | None = None) -> bool:
    """Ask about every candidate not judged yet; returns True when done (all judged, or `limit` reached).

    `ask` reads one answer (default: `input`); tests pass scripted keystrokes.
    """
    ask = ask or (lambda prompt: input(prompt))
    labels = read_labels(labels_file)
    todo = [c for c in cands if c["id"] not in labels]
    show(f"{len(labels)} judged, {len(todo)} to go. {KEYS_HELP}")
    for cand in todo:
        if limit is not None and len(labels) >= limit:
            return True
        entry = _judge(cand, ask, show)
        if entry is None:  # quit
            show(f"stopped after {len(labels)} judgements; run the same command to continue")
            return False
        _append(labels_file, entry)
        labels[cand["id"]] = entry
    return True


def _judge(cand: dict[str, Any], ask: Callable[[str], str], show: Callable[[str], None]) -> dict[str, Any] | None:
    show(f"\n--- prompt ---\n{cand['prompt']}\n--- A ---\n{cand['a']}\n--- B ---\n{cand['b']}")
    while True:
        try:
            key = ask(f"{KEYS_HELP} > ").strip().lower()
        except EOFError:
            return None
        if key == "q":
            return None
        if key in ("a", "1", "b", "2", "s"):
            choice = {"1": "a", "2": "b"}.get(key, key)
            return {"id": cand["id"], "choice": choice}
        if key == "e":
            try:
                return {"id": cand["id"], "choice": "edit", "edited": ask("better completion > ")}
            except EOFError:
                return None
        show(f"unknown key {key!r}. {KEYS_HELP}")


def _append(path: Path, entry: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())


def pairs_from_labels(cands: list[dict[str, Any]], labels: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The preference pairs the judgements say: A>B, B>A, or an edit preferred to both."""
    pairs = []
    for cand in cands:
        entry = labels.get(cand["id"])
        if entry is None or entry["choice"] == "s":
            continue
        base = {"prompt": cand["prompt"], "source": "human", "id": cand["id"]}
        if entry["choice"] == "a":
            pairs.append({**base, "chosen": cand["a"], "rejected": cand["b"]})
        elif entry["choice"] == "b":
            pairs.append({**base, "chosen": cand["b"], "rejected": cand["a"]})
        else:
            pairs += [{**base, "chosen": entry["edited"], "rejected": cand[side]} for side in ("a", "b")
                      if cand[side] != entry["edited"]]
    return pairs
