"""A model plays a gym's problems K times each: the reward dataset of `ftkit collect rollouts`.

    ftkit collect rollouts --gym arithmetic --model runs/gpt2_math/model --n 500 --k 8 --out data/arith_rollouts

    rows = ftkit.collect.rollouts(GymSpec("arithmetic"), "runs/gpt2_math/model", RolloutOptions(n=500, k=8))

This is the part of collecting that drives a model, so it lives in ftkit; the rows it returns, their
progress file and every other dataset step (demos, filter, pairs, import) are `data_tools.collect`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_tools.collect import append_progress, read_progress, rollout_row
from data_tools.gym_data import item_seed
from gyms.spec import GymSpec

# Rollouts are played and saved this many problems at a time: a killed run loses at most one chunk.
ROLLOUT_CHUNK = 64


@dataclass(frozen=True)
class RolloutOptions:
    """How many problems to play and how to sample them: `RolloutOptions(n=500, k=8, temperature=0.8)`."""

    n: int  # problems: problem i is the gym reset with item_seed(seed, i)
    k: int  # episodes per problem
    seed: int = 0
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 16
    batch_size: int = 256  # prompts per generate() call
    engine: str = "auto"  # auto | hf | vllm


def rollouts(gym: GymSpec | str, model: str, options: RolloutOptions, *, progress_file: str | Path | None = None,
             on_chunk: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
    """The model plays each of n problems k times; one row per episode (`data_tools.collect.rollout_row`).

    `gym` is the task as a `GymSpec`: its arguments, whether the model sees chat messages
    (`chat`, `system_prompt`), and where multi-turn episodes are cut (`max_turns`).

    With `progress_file`, rows are appended there chunk by chunk (ROLLOUT_CHUNK problems); a later call
    with the same file starts after the last complete chunk. Each chunk samples with its own seed,
    derived from (seed, first problem), so a resumed run writes exactly the rows an uninterrupted one would.
    `on_chunk(done, n)` is called after each chunk.
    """
    from ftkit.engine import SamplingParams
    from ftkit.evaluate import context_length, load_for_eval
    from ftkit.rl.rollout import collect
    from ftkit.vllm_engine import make_engine, resolve_engine

    o, spec = options, GymSpec.of(gym)
    resolve_engine(o.engine)  # a one-line error before any work when vLLM cannot run here
    done = read_progress(progress_file) if progress_file else []
    start = len({r["index"] for r in done})
    if start >= o.n:
        return done[: o.n * o.k]
    policy, tokenizer = load_for_eval(model)
    sampler = make_engine(o.engine, policy, tokenizer, batch_size=o.batch_size, model_path=model, seed=o.seed)
    rows = list(done)
    for first in range(start, o.n, ROLLOUT_CHUNK):
        indices = list(range(first, min(o.n, first + ROLLOUT_CHUNK)))
        params = SamplingParams(max_new_tokens=o.max_new_tokens, temperature=o.temperature, top_p=o.top_p,
                                logprobs=False, seed=item_seed(o.seed, 1_000_000 + first))
        batch = collect(sampler, tokenizer, spec, [item_seed(o.seed, i) for i in indices], params, group_size=o.k,
                        max_context=context_length(policy))
        chunk = [rollout_row(e.trajectory, indices[e.group], sample, o.seed, model, spec.chat)
                 for sample, e in zip([s for _ in indices for s in range(o.k)], batch.episodes)]
        if progress_file:
            append_progress(progress_file, chunk)
        rows += chunk
        if on_chunk:
            on_chunk(indices[-1] + 1, o.n)
    return rows
