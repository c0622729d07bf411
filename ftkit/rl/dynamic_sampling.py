"""DAPO's dynamic sampling (Yu et al. 2025): train only on groups whose episodes got different rewards.

    ftkit rl recipes/dapo_arithmetic.yaml rollout.max_num_gen_batches=8

A group whose rewards are all equal (every episode right, or every one wrong) has advantage 0 under a
group baseline: it adds no gradient, only dilutes the step. With `rollout.dynamic_filtering`, such
groups are dropped and more problems are played until the step has `prompts_per_step` informative
groups. Each further draw is as large as the shortfall needs at the share of informative groups seen
so far (a whole batch again would mostly be thrown away when few groups are missing), and the
problems continue the step's own seed stream (`Task.more_seeds`), so a resumed run draws exactly the
same. A step plays at most `max_num_gen_batches` x `prompts_per_step` problems (veRL's cap, counted
in problems rather than in batches of one fixed size).

If the cap is reached first, the batch is topped up with groups of equal rewards already played
(in the order they were played), so that a step always trains on the same number of episodes: every
process must take the same number of optimizer steps (DDP), and the token average and the learning
rate mean the same from step to step. Those groups add no policy gradient (their advantages are 0),
and the update skips their forward pass when nothing else (a KL term) reaches them.
`metrics.jsonl` logs `num_gen_batches` (generation calls), `problems_drawn` and `padded_groups`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ftkit.rl.rollout import Episode, RolloutBatch


def split_groups(episodes: list[Episode]) -> tuple[list[list[Episode]], list[list[Episode]]]:
    """(informative, uninformative): the episodes' groups, in order of first appearance, split by whether
    their rewards differ."""
    groups: dict[int, list[Episode]] = {}
    for episode in episodes:
        groups.setdefault(episode.group, []).append(episode)
    informative, uninformative = [], []
    for members in groups.values():
        rewards = [e.reward for e in members]
        (informative if max(rewards) > min(rewards) else uninformative).append(members)
    return informative, uninformative


def fill_with_informative_groups(play: Callable[[int, int], RolloutBatch], wanted: int,
                                 max_batches: int) -> RolloutBatch:
    """Play problems until `wanted` groups with differing rewards are found, or `max_batches` x `wanted`
    problems were played; the groups trained on, topped up with uninformative ones if short.

    `play(drawn, count)` plays `count` new problems, `drawn` having been played before (the first call
    is `play(0, wanted)`: the step's own batch). Group ids are offset by `drawn` so that no two problems
    share one.
    """
    kept: list[list[Episode]] = []
    spare: list[list[Episode]] = []
    batches: list[RolloutBatch] = []
    drawn, limit = 0, wanted * max_batches
    while len(kept) < wanted and drawn < limit:
        count = wanted if not batches else _next_draw(wanted - len(kept), len(kept), drawn, limit)
        batch = play(drawn, count)
        _renumber(batch.episodes, offset=drawn)
        batches.append(batch)
        drawn += count
        informative, uninformative = split_groups(batch.episodes)
        kept += informative
        spare += uninformative
    padded = max(0, wanted - len(kept))
    trained, dropped = kept[:wanted] + spare[:padded], kept[wanted:] + spare[padded:]
    return RolloutBatch(
        episodes=[e for group in trained for e in group],
        generated_tokens=sum(b.generated_tokens for b in batches),
        seconds=sum(b.seconds for b in batches),
        context_cuts=sum(b.context_cuts for b in batches),
        model_scores=[score for b in batches for score in b.model_scores],
        dropped=[e for group in dropped for e in group],
        gen_batches=len(batches),
        padded_groups=padded,
        generate_seconds=sum(b.generate_seconds for b in batches),
    )


def _next_draw(missing: int, found: int, drawn: int, limit: int) -> int:
    """How many problems to play next: enough to find `missing` more at the rate seen so far (`found`
    of `drawn`), or all that the cap allows when none was found yet."""
    if found == 0:
        return limit - drawn
    return min(limit - drawn, math.ceil(missing * drawn / found))


def _renumber(episodes: list[Episode], offset: int) -> None:
    for episode in episodes:
        episode.group += offset
