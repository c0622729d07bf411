"""RLOO (Ahmadian et al. 2024): each episode's baseline is the mean reward of the others of its group.

    ftkit rl recipes/rloo_arithmetic.yaml
"""

from __future__ import annotations

import torch

from ftkit.rl import algorithms as alg
from ftkit.rl.objectives.base import Objective, ScoredBatch


class RLOO(Objective):
    name = "rloo"
    note = ("note: an RLOO loss near zero is normal (each episode is compared with the others of its group): "
            "watch reward and held-out accuracy, not the loss")

    def advantages(self, batch: ScoredBatch) -> tuple[torch.Tensor, None]:
        return alg.by_group(alg.rloo_advantages, batch.rewards, batch.groups, self.group_size), None
