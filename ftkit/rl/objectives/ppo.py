"""PPO (Schulman et al. 2017) with a value head: per-token advantages from GAE, and a clipped value loss.

    ftkit rl recipes/ppo_arithmetic.yaml

The KL to the reference is folded into the per-token reward (InstructGPT's form: reward minus
beta x (log p - log p_ref)) rather than added to the loss; advantages are whitened over the masked
tokens of every process.
"""

from __future__ import annotations

import torch

from ftkit.rl import algorithms as alg
from ftkit.rl.objectives.base import LossInputs, Objective, ScoredBatch, kl_shaped_token_rewards


class PPO(Objective):
    name = "ppo"
    needs_value_head = True
    needs_old_logprobs = True
    compares_groups = False
    kl_in_loss = False
    zero_advantage_is_zero_loss = False  # the value loss trains on every episode
    note = "note: PPO's value head starts knowing nothing; its loss falls first, then the reward should rise"

    def advantages(self, batch: ScoredBatch) -> tuple[torch.Tensor, torch.Tensor]:
        t, mask = self.train, batch.tensors["loss_mask"]
        rewards = kl_shaped_token_rewards(batch, t.beta)
        advantages, returns = alg.gae(rewards, batch.old_values.float(), mask, t.gamma, t.lam)
        mean, std = batch.mean_std(advantages, mask)
        return (advantages - mean) / (std + 1e-8) * mask, returns

    def loss(self, x: LossInputs) -> tuple[torch.Tensor, dict[str, float]]:
        loss, stats = super().loss(x)
        v_loss = alg.value_loss(x.values, x.old_values, x.returns, x.mask, self.train.value_clip)
        stats["value_loss"] = v_loss.item()
        return loss + self.train.value_coef * v_loss, stats
