"""The gym side of an RL run: which problems each step trains on, and the reward model if there is one.

    python -c "from ftkit.rl.task import Task; help(Task.training_seeds)"

Training problems come from a fixed seed stream that skips the held-out problems, so no training
prompt is ever one that evaluation scores, and a resumed run draws exactly the problems it would have.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ftkit.evaluate import heldout_problems

if TYPE_CHECKING:
    from ftkit.rl.config import RLRecipe

ITEMS_PER_STEP = 1_000_000  # step s draws items s * 10**6, s * 10**6 + 1, ... of the training seed


class Task:
    """A recipe's gym (`task.gym`, a `GymSpec`), its held-out prompts and reward scorer. Building it checks
    the gym id and arguments."""

    def __init__(self, recipe: RLRecipe):
        ev = recipe.eval
        self.recipe = recipe
        self.gym = recipe.gym.spec()  # the task as the runner, rollouts and evaluation take it
        self.multi_turn = self.gym.is_multi_turn
        self.heldout_prompts: set[str] = set()
        if ev.n and not self.multi_turn:  # multi-turn problems differ by seed, not by their first text
            self.heldout_prompts = {p["prompt"] for p in heldout_problems(self.gym, ev.n, ev.seed)}
        self.sampler_env = self.gym.make()  # resets only, to read a problem's prompt
        self.reward_scorer = None
        if recipe.reward_model is not None:
            from ftkit.preference import RewardScorer

            self.reward_scorer = RewardScorer.load(recipe.reward_model.path)

    def training_seeds(self, step: int, options: dict[str, Any] | None = None, world: int = 1,
                       rank: int = 0) -> list[int]:
        """Process `rank`'s problems (gym seeds) for `step`, of `world` processes sharing the step's.

        Step s walks item indices s * 10**6, s * 10**6 + 1, ... of `gym.train_seed`, skipping held-out
        prompts; `options` are the reset options the problems are played with (a curriculum's level).
        """
        wanted = self.recipe.rollout.prompts_per_step
        seeds = list(itertools.islice(self._seed_stream(step, options), wanted))
        per_process = wanted // world
        return seeds[rank * per_process : (rank + 1) * per_process]

    def more_seeds(self, step: int, options: dict[str, Any] | None, world: int, rank: int, taken: int,
                   count: int) -> list[int]:
        """Process `rank`'s next `count` problems for `step` beyond its share of the step's batch, after the
        `taken` extra ones it drew already (dynamic filtering's further draws).

        They continue the step's walk past its `prompts_per_step` problems, the processes taking turns
        (rank r gets the r-th of every `world`), so each process draws what it needs without asking
        the others, no two draw the same problem, and a resumed run draws exactly the same ones.
        """
        start = self.recipe.rollout.prompts_per_step + rank + world * taken
        return list(itertools.islice(self._seed_stream(step, options), start, start + world * count, world))

    def _seed_stream(self, step: int, options: dict[str, Any] | None) -> Iterator[int]:
        from data_tools.gym_data import item_seed

        index = step * ITEMS_PER_STEP
        while True:
            seed = item_seed(self.recipe.gym.train_seed, index)
            index += 1
            if self.heldout_prompts:
                prompt, _ = self.sampler_env.reset(seed=seed, options=options)
                if prompt in self.heldout_prompts:
                    continue
            yield seed
