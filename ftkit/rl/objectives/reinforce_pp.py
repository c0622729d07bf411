"""REINFORCE++ (Hu 2025, "REINFORCE++: A Simple and Efficient Approach for Aligning Large Language Models"):
no critic, and a baseline from the whole batch rather than from each problem's group.

    ftkit rl recipes/reinforce_plus_plus_arithmetic.yaml
    ftkit rl --gym arithmetic --algo reinforce_plus_plus_baseline

GRPO normalises each episode against the G episodes of its problem; with few of them that baseline
is noisy and a prompt's difficulty sets the scale. REINFORCE++ normalises over every policy token of
the step, on every process (the global batch): advantage = (return - batch mean) / batch std.

- `reinforce_plus_plus`: a token's return is the sum of the rewards after it (discounted by
  `train.gamma`, 1 by default), with the KL to the reference folded into each token's reward as PPO
  does (beta x (log p - log p_ref)). Needs no group: it runs with `rollout.num_generations: 1`.
- `reinforce_plus_plus_baseline` (the paper's variant for several samples per prompt): an episode's
  reward minus its group's mean, on each of its tokens, then normalised over the batch; the KL is in
  the loss, as in GRPO.

Names are veRL's (`algorithm.adv_estimator`); TRL has no REINFORCE++.
"""

from __future__ import annotations

import torch

from ftkit.rl import algorithms as alg
from ftkit.rl.objectives.base import Objective, ScoredBatch, kl_shaped_token_rewards


def _whiten(batch: ScoredBatch, per_token: torch.Tensor) -> torch.Tensor:
    """(x - mean) / std over the masked tokens of every process, 0 elsewhere."""
    mask = batch.tensors["loss_mask"]
    mean, std = batch.mean_std(per_token, mask)
    return (per_token - mean) / (std + 1e-8) * mask


class ReinforcePlusPlus(Objective):
    name = "reinforce_plus_plus"
    compares_groups = False
    kl_in_loss = False
    note = ("note: REINFORCE++'s advantages are centred over the whole batch, so its loss sits near zero: "
            "watch reward and held-out accuracy")

    @property
    def needs_old_logprobs(self) -> bool:  # type: ignore[override]
        """The KL-shaped reward needs log p before the update, but only when there is a KL."""
        return self.train.beta > 0

    def advantages(self, batch: ScoredBatch) -> tuple[torch.Tensor, None]:
        mask = batch.tensors["loss_mask"]
        returns = alg.discounted_returns(kl_shaped_token_rewards(batch, self.train.beta), mask, self.train.gamma)
        return _whiten(batch, returns), None


class ReinforcePlusPlusBaseline(Objective):
    name = "reinforce_plus_plus_baseline"
    note = ("note: REINFORCE++-baseline centres each episode on its group, then scales by the whole batch: "
            "its loss sits near zero; watch reward and held-out accuracy")

    def advantages(self, batch: ScoredBatch) -> tuple[torch.Tensor, None]:
        def centred(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
            return alg.group_advantages(rewards, group_size, scale=False)

        per_episode = alg.by_group(centred, batch.rewards.float(), batch.groups, self.group_size)
        per_token = per_episode.unsqueeze(1) * batch.tensors["loss_mask"]
        return _whiten(batch, per_token), None
