"""GRPO (Shao et al. 2024): an episode's advantage is its reward against the others of its group.

    ftkit rl recipes/grpo_arithmetic.yaml train.scale_rewards=none    # Dr. GRPO (Liu et al. 2025)

`train.scale_rewards` follows TRL: "group" divides by the group's std, "batch" by the std of every
reward of the step (over all processes), "none" by nothing.
"""

from __future__ import annotations

import torch

from ftkit.rl import algorithms as alg
from ftkit.rl.objectives.base import Objective, ScoredBatch


class GRPO(Objective):
    name = "grpo"
    note = ("note: a GRPO loss near zero is normal (advantages are centred within each group, so the loss "
            "averages out): watch reward and held-out accuracy, not the loss")

    def advantages(self, batch: ScoredBatch) -> tuple[torch.Tensor, None]:
        scale = self.train.scale_rewards

        def centred(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
            return alg.group_advantages(rewards, group_size, scale=scale == "group")

        advantages = alg.by_group(centred, batch.rewards, batch.groups, self.group_size)
        if scale == "batch":  # TRL's: (r - group mean) / (std of the whole batch, unbiased, + 1e-4)
            rewards = batch.rewards.float()
            _, std = batch.mean_std(rewards, torch.ones_like(rewards), unbiased=True)
            advantages = advantages / (std + 1e-4)
        return advantages, None
