"""Demonstrations from a gym's oracle: `records = gym_examples(GymSpec("arithmetic", {"digits": 2}), n=1000, seed=0)`.

Each record is one problem and its correct answer, ready for supervised fine-tuning
(`datasets.Dataset.from_list(records)`); it also carries where it came from, so that any item can be
regenerated and checked: `env.reset(seed=item_seed(record["seed"], record["index"]))`.
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any

import numpy as np

import gyms
from data_tools.errors import DataError
from gyms.spec import GymSpec


def item_seed(seed: int, index: int) -> int:
    """The reset seed of item `index` in a run seeded `seed`: `item_seed(0, 7)` is always the same int.

    Deriving it with `SeedSequence` rather than `seed + index` keeps runs with nearby seeds (0 and 1)
    from sharing almost all their items.
    """
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def gym_examples(
    gym: GymSpec | str,
    n: int,
    seed: int,
    exclude_prompts: Container[str] | None = None,
) -> list[dict[str, Any]]:
    """`n` oracle demonstrations from a gym: `gym_examples(GymSpec("arithmetic", {"digits": 2}), 3, seed=0)`.

    `gym` is a `GymSpec` (its id and constructor arguments are what count here) or a gym id for one
    with default settings. Item `i` is the first observation after `env.reset(seed=item_seed(seed, i))`
    with the oracle's action as its completion, so a record depends only on (gym, its arguments, seed,
    index). Returns records

        {"prompt": "12+34=", "completion": "46", "answer": "46", "source": "ftkit/Arithmetic-v0",
         "index": 0, "seed": 0, "difficulty": {"op": "+", "digits": 2}}

    Items whose prompt is in `exclude_prompts` (e.g. the held-out eval problems, so that they never
    reach training) or repeats a prompt already returned are skipped, and the next index is tried:
    every returned prompt is unique. `index` records which item each record is. For a multi-turn gym a
    record is the episode's first turn only.

    Raises `DataError` when `n < 1`, the gym has no oracle, or `20 * n + 1000` items did not yield `n`
    distinct prompts (the gym's problem space is too small for `n` with these settings).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DataError(f"n must be a positive number of examples, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DataError(f"seed must be a non-negative int, got {seed!r}")
    spec = GymSpec.of(gym)
    gym_id = spec.full_id
    env = gyms.make(gym_id, **spec.kwargs)
    try:
        if not env.unwrapped.has_oracle:
            raise DataError(f'gym "{spec.id}" has no oracle, so it cannot generate demonstrations')
        return _collect(env, gym_id, n, seed, exclude_prompts or ())
    finally:
        env.close()


def _collect(env: Any, gym_id: str, n: int, seed: int, exclude: Container[str]) -> list[dict[str, Any]]:
    """Walk item indices 0, 1, 2, ... keeping the first `n` new, non-excluded prompts."""
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    max_attempts = 20 * n + 1000
    for index in range(max_attempts):
        prompt, info = env.reset(seed=item_seed(seed, index))
        if prompt in seen or prompt in exclude:
            continue
        seen.add(prompt)
        records.append(
            {
                "prompt": prompt,
                "completion": gyms.oracle(env),
                "answer": info["answer"],
                "source": gym_id,
                "index": index,
                "seed": seed,
                "difficulty": dict(info["difficulty"]),
            }
        )
        if len(records) == n:
            return records
    raise DataError(
        f"{gym_id} gave only {len(records)} distinct problems (outside exclude_prompts) in "
        f"{max_attempts} tries, fewer than the n={n} asked for: its problem space is too small with these "
        "settings; ask for fewer examples or widen the gym's settings (e.g. more digits)"
    )
