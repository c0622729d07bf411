"""GRPO (Shao et al. 2024): an episode's advantage is its reward against the others of its group.

    ftkit rl recipes/grpo_arithmetic.yaml train.scale_rewards=none    # Dr. GRPO (Liu et al. 2025)

`train.scale_rewards` follows TRL: "group" divides by the group's std, "batch" by the std of every
reward of the step (over all processes), "none" by nothing.

    ftkit rl recipes/grpo_guess_number.yaml train.advantage_level=turn   # per-turn credit (multi-turn gyms)

`train.advantage_level: turn` gives each turn of a multi-turn episode an advantage of its own
(`algorithms.turn_advantages`): the rewards from that turn on, against the same turn of the group's
other episodes; with one turn per episode it is GRPO's advantage exactly.
"""

from __future__ import annotations

import torch

from ftkit.rl import algorithms as alg
from ftkit.rl.objectives.base import Objective, ScoredBatch, turn_structure


class GRPO(Objective):
    name = "grpo"
    note = ("note: a GRPO loss near zero is normal (advantages are centred within each group, so the loss "
            "averages out): watch reward and held-out accuracy, not the loss")

    def advantages(self, batch: ScoredBatch) -> tuple[torch.Tensor, None]:
        scale = self.train.scale_rewards
        if self.train.advantage_level == "turn":
            advantages = self._turn_advantages(batch, scale == "group")
        else:
            def centred(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
                return alg.group_advantages(rewards, group_size, scale=scale == "group")

            advantages = alg.by_group(centred, batch.rewards, batch.groups, self.group_size)
        if scale == "batch":  # TRL's: (r - group mean) / (std of the whole batch, unbiased, + 1e-4)
            rewards = batch.rewards.float()
            _, std = batch.mean_std(rewards, torch.ones_like(rewards), unbiased=True)
            advantages = advantages / (std + 1e-4)
        return advantages, None

    def _turn_advantages(self, batch: ScoredBatch, scale: bool) -> torch.Tensor:
        """(B, L - 1): each policy token gets its turn's advantage (`algorithms.turn_advantages`)."""
        turn_rewards, turn_mask, token_turn = turn_structure(batch)
        rows = alg.group_rows(batch.groups, self.group_size).reshape(-1).to(turn_rewards.device)
        per_turn = torch.empty_like(turn_rewards)
        per_turn[rows] = alg.turn_advantages(turn_rewards[rows], turn_mask[rows], self.group_size, scale=scale)
        return per_turn.gather(1, token_turn) * batch.tensors["loss_mask"]
