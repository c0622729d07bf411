"""Dataset transforms: duplicates, contamination, splits, length and reward filters.

    ftkit collect dedup data/arith_rollouts --near 0.8 --out data/arith_dedup
    ftkit collect decontaminate data/arith_demos --against-gym arithmetic --out data/arith_clean
    ftkit collect split data/arith_demos --validation 0.1 --out data/arith_split

    >>> rows = [{"prompt": "1+1=", "completion": "2"}, {"prompt": "1+1=", "completion": "2"}]
    >>> kept, report = dedup_exact(rows)
    >>> len(kept), report["removed"]
    (1, 1)

Every function takes rows (dicts) and returns `(kept_rows, report)`; the report says how many rows
went and shows some of them, so nothing disappears silently. Near-duplicate search uses MinHash with
locality-sensitive hashing from `datasketch` (Broder 1997): estimating the Jaccard similarity of every
pair of rows' word shingles without comparing every pair.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

from data_tools.errors import DataError

REPORT_EXAMPLES = 5
_WORD = re.compile(r"\w+|[^\w\s]")


def row_text(row: dict[str, Any], fields: tuple[str, ...] | None = None) -> str:
    """The text of a row that duplicates and contamination are judged on (all text fields by default)."""
    fields = fields or tuple(f for f in ("prompt", "completion", "chosen", "rejected", "text", "messages") if f in row)
    parts = []
    for name in fields:
        value = row.get(name)
        if isinstance(value, list):
            parts += [m.get("content", "") for m in value if isinstance(m, dict)]
        elif value is not None:
            parts.append(str(value))
    return "\n".join(parts)


def _report(removed: list[dict[str, Any]], total: int, **extra: Any) -> dict[str, Any]:
    return {"total": total, "removed": len(removed), "kept": total - len(removed),
            "examples": removed[:REPORT_EXAMPLES], **extra}


def dedup_exact(rows: list[dict[str, Any]], fields: tuple[str, ...] | None = None):
    """Drop rows whose text (the given fields) repeats an earlier row's exactly; the first copy stays."""
    seen, kept, removed = set(), [], []
    for row in rows:
        key = json.dumps([row.get(f) for f in fields], default=str) if fields else row_text(row)
        (removed if key in seen else kept).append(row)
        seen.add(key)
    return kept, _report(removed, len(rows), method="exact")


def shingles(text: str, size: int = 3) -> set[str]:
    """Word (and punctuation) n-grams of a text: `shingles("a b c d", 3)` -> {"a b c", "b c d"}."""
    words = _words(text)
    if len(words) < size:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + size]) for i in range(len(words) - size + 1)}


def dedup_near(rows: list[dict[str, Any]], threshold: float = 0.8, *, fields: tuple[str, ...] | None = None,
               shingle_size: int = 3, num_perm: int = 128, seed: int = 0):
    """Drop rows whose estimated Jaccard similarity to an earlier kept row is >= threshold.

    Each row's shingles become a MinHash signature; an LSH index returns the earlier rows likely to be
    that similar, and only those are compared (by their signatures), so the cost grows with the number
    of rows, not its square.
    """
    from datasketch import MinHash, MinHashLSH

    if not 0 < threshold <= 1:
        raise DataError(f"the near-duplicate threshold must be in (0, 1], got {threshold}")
    # Candidates are checked against the signature's estimate below, so a false positive costs one
    # comparison while a false negative keeps a duplicate: weight the LSH bands against missing pairs.
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(0.1, 0.9))
    signatures: dict[str, Any] = {}
    kept, removed = [], []
    for i, row in enumerate(rows):
        signature = MinHash(num_perm=num_perm, seed=seed)
        for shingle in shingles(row_text(row, fields), shingle_size):
            signature.update(shingle.encode())
        matches = [key for key in lsh.query(signature) if signatures[key].jaccard(signature) >= threshold]
        if matches:
            removed.append({**row, "_duplicate_of": int(matches[0])})
            continue
        key = str(i)
        lsh.insert(key, signature)
        signatures[key] = signature
        kept.append(row)
    return kept, _report(removed, len(rows), method="minhash", threshold=threshold)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    """`ngrams(["a", "b", "c"], 2)` -> {("a", "b"), ("b", "c")}."""
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def decontaminate(rows: list[dict[str, Any]], eval_texts: list[str], *, n: int = 8,
                  fields: tuple[str, ...] | None = ("prompt", "messages")):
    """Drop rows that share an n-gram of words with any evaluation text (GPT-3's test, Brown et al. 2020).

    An evaluation text shorter than n words is matched whole, so a short problem such as
    "rev 123+456=" removes exactly the rows that contain it. Judged on the prompt by default: a
    training row that shows an evaluation problem is contaminated whatever its answer.
    """
    if n < 1:
        raise DataError(f"the n-gram size must be >= 1, got {n}")
    if not eval_texts:
        raise DataError("the evaluation set to decontaminate against is empty")
    eval_grams: set[tuple[str, ...]] = set()
    sizes = {n}
    for text in eval_texts:
        words = _words(text)
        if len(words) >= n:
            eval_grams |= ngrams(words, n)
        elif words:
            eval_grams.add(tuple(words))
            sizes.add(len(words))
    present = tuple(f for f in fields if any(f in r for r in rows)) if fields else ()
    kept, removed = [], []
    for row in rows:
        words = _words(row_text(row, present or None))
        contaminated = any(ngrams(words, size) & eval_grams for size in sizes)
        (removed if contaminated else kept).append(row)
    return kept, _report(removed, len(rows), method=f"{n}-gram overlap", eval_texts=len(eval_texts))


def split(rows: list[dict[str, Any]], validation: float, *, seed: int = 0):
    """Train/validation split by problem: all rows of one prompt land on the same side (no leak)."""
    if not 0 < validation < 1:
        raise DataError(f"--validation must be a fraction between 0 and 1, got {validation}")
    keys = [_problem_key(row) for row in rows]
    prompts = sorted(set(keys))
    random.Random(seed).shuffle(prompts)
    held = set(prompts[: max(1, round(validation * len(prompts)))])
    train = [r for r, key in zip(rows, keys) if key not in held]
    val = [r for r, key in zip(rows, keys) if key in held]
    if not train:
        raise DataError(f"a validation share of {validation} leaves no training rows ({len(prompts)} prompts)")
    return {"train": train, "validation": val}, {"total": len(rows), "train": len(train), "validation": len(val),
                                                   "prompts": len(prompts)}


def _problem_key(row: dict[str, Any]) -> str:
    """The prompt, or the conversation's first two messages (system and first user turn, or the first turn)."""
    prompt = row.get("prompt")
    return json.dumps(prompt if prompt is not None else (row.get("messages") or [])[:2], default=str)


def filter_rows(rows: list[dict[str, Any]], *, min_reward: float | None = None, max_reward: float | None = None,
                min_chars: int | None = None, max_chars: int | None = None):
    """Keep rows whose reward and text length (characters) fall inside the bounds given."""
    kept, removed = [], []
    for row in rows:
        reward = row.get("reward")
        length = len(row_text(row))
        ok = ((min_reward is None or (reward is not None and float(reward) >= min_reward))
              and (max_reward is None or (reward is not None and float(reward) <= max_reward))
              and (min_chars is None or length >= min_chars) and (max_chars is None or length <= max_chars))
        (kept if ok else removed).append(row)
    return kept, _report(removed, len(rows), method="filter")
