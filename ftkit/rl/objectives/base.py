"""What every RL objective provides: advantages for a scored rollout batch, and the loss of a micro-batch.

    python -c "from ftkit.rl.objectives import OBJECTIVES; print({k: v.needs_value_head for k, v in OBJECTIVES.items()})"

The update (`ftkit/rl/update.py`) does the work common to all of them: it pads the episodes, scores
them before the update where an objective needs that (`needs_old_logprobs`, `needs_value_head`,
`needs_reference`), asks the objective for advantages, and minimises the objective's loss over
minibatches. An objective is a small class on the pure functions of `ftkit/rl/algorithms.py`; a new
one is one class here, registered in `ftkit/rl/objectives/__init__.py`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

import torch

from ftkit.rl import algorithms as alg
from ftkit.rl.config import LOSS_TYPES
from ftkit.rl.policy import token_rewards

if TYPE_CHECKING:
    from ftkit.rl.config import RLTrainSection
    from ftkit.rl.rollout import Episode

class MeanStd(Protocol):
    """Mean and std of x over the masked entries of every process's batch (std over n, or n - 1 if unbiased)."""

    def __call__(self, x: torch.Tensor, mask: torch.Tensor, unbiased: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        ...


@dataclass
class ScoredBatch:
    """One process's rollout batch as tensors, with what was computed before the update (no gradient).

    `tensors` are `policy.pad_episodes`'s: input_ids, attention_mask (B, L), loss_mask (B, L - 1).
    `old_logprobs`, `old_values` and `ref_logprobs` are (B, L - 1), or None where nothing needed them.
    """

    episodes: list[Episode]
    tensors: dict[str, torch.Tensor]
    rewards: torch.Tensor  # (B,): what each episode is trained to raise
    old_logprobs: torch.Tensor | None
    old_values: torch.Tensor | None
    ref_logprobs: torch.Tensor | None
    mean_std: MeanStd  # over every process: statistics must not depend on how the batch is split

    @property
    def groups(self) -> list[int]:
        return [e.group for e in self.episodes]


@dataclass
class LossInputs:
    """One micro-batch, rows already picked: the training forward pass and what the update kept for it."""

    logprobs: torch.Tensor  # (b, L - 1), with gradient
    old_logprobs: torch.Tensor  # the policy before the update (the detached logprobs with one update per rollout)
    mask: torch.Tensor  # loss_mask
    advantages: torch.Tensor  # (b,) per episode or (b, L - 1) per token
    ref_logprobs: torch.Tensor | None = None
    values: torch.Tensor | None = None  # the value head's, with gradient
    old_values: torch.Tensor | None = None
    returns: torch.Tensor | None = None
    # The sampler correction's per-token weights (ftkit/rl/correction.py), detached; None when it is off.
    importance_weights: torch.Tensor | None = None


class Objective(ABC):
    """An RL algorithm: its advantages and loss terms, and what it needs computed for them."""

    name: ClassVar[str]
    needs_value_head: ClassVar[bool] = False
    # Score the batch before the update even when one update per rollout would make the detached
    # training forward pass the "old" policy (PPO: GAE and the KL-shaped reward need it first).
    needs_old_logprobs: ClassVar[bool] = False
    compares_groups: ClassVar[bool] = True  # advantages come from episodes of the same problem
    kl_in_loss: ClassVar[bool] = True  # beta x KL joins the loss (False: the objective uses it elsewhere)
    # Without a KL term, an episode with advantage 0 everywhere adds nothing to the loss, so the update
    # may skip it (`Update.rows_to_run`). False for objectives with other loss terms (PPO's value loss).
    zero_advantage_is_zero_loss: ClassVar[bool] = True
    note: ClassVar[str] = ""  # printed when a run starts: what its curves should look like

    def __init__(self, train: RLTrainSection, group_size: int):
        self.train = train
        self.group_size = group_size
        self.aggregation = LOSS_TYPES[train.loss_type]

    @property
    def needs_reference(self) -> bool:
        """The reference model is loaded (or LoRA's adapters disabled) only when the KL has a weight."""
        return self.train.beta > 0

    @abstractmethod
    def advantages(self, batch: ScoredBatch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(advantages, returns): advantages per episode (B,) or per token (B, L - 1); returns are the
        value head's targets (None without one)."""

    def loss(self, x: LossInputs) -> tuple[torch.Tensor, dict[str, float]]:
        """The clipped policy loss, plus beta x KL to the reference when there is one; and its stats."""
        t = self.train
        clip = (t.epsilon, t.epsilon if t.epsilon_high is None else t.epsilon_high)
        loss, clip_stats = alg.policy_loss(x.logprobs, x.old_logprobs, x.advantages, x.mask, clip, self.aggregation,
                                           level=t.importance_sampling_level, weights=x.importance_weights)
        stats = {"policy_loss": loss.item(), **clip_stats}
        if x.ref_logprobs is not None:
            kl = alg.aggregate(alg.kl_penalty(x.logprobs, x.ref_logprobs, t.kl_estimator), x.mask, self.aggregation)
            stats["kl"] = kl.item()
            if self.kl_in_loss:
                loss = loss + t.beta * kl
        return loss, stats


def turn_structure(batch: ScoredBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each episode's turns: (turn_rewards (B, K), turn_mask (B, K), token_turn (B, L - 1)).

    K is the most turns of any episode; `turn_rewards[i, k]` is what turn k earned (shaping included, as
    `Episode.reward_positions` holds it) and `token_turn[i, t]` the turn a loss-mask position belongs to:
    an action's tokens run from after the previous action's last token to its own last token.
    """
    episodes, columns = batch.episodes, batch.tensors["loss_mask"].shape[1]
    K = max(len(e.reward_positions) for e in episodes)
    turn_rewards, turn_mask = torch.zeros(len(episodes), K), torch.zeros(len(episodes), K)
    token_turn = torch.zeros(len(episodes), columns, dtype=torch.long)
    positions = torch.arange(columns)
    for row, episode in enumerate(episodes):
        n = len(episode.reward_positions)
        turn_rewards[row, :n] = torch.tensor([reward for _, reward in episode.reward_positions])
        turn_mask[row, :n] = 1
        # loss-mask column end - 1 predicts the action's last token (input_ids[end])
        last = torch.tensor([end - 1 for end, _ in episode.reward_positions])
        token_turn[row] = torch.searchsorted(last, positions).clamp(max=n - 1)
    device = batch.tensors["loss_mask"].device
    return turn_rewards.to(device), turn_mask.to(device), token_turn.to(device)


def kl_shaped_token_rewards(batch: ScoredBatch, beta: float) -> torch.Tensor:
    """Per-token rewards (B, L - 1), each turn's on its action's last token, minus beta x (log p - log p_ref)
    on every policy token when there is a reference (InstructGPT's KL-shaped reward: PPO, REINFORCE++)."""
    mask = batch.tensors["loss_mask"]
    rewards = token_rewards(batch.episodes, batch.tensors["input_ids"].shape[1]).to(mask.device)
    if batch.ref_logprobs is not None:
        rewards = rewards - beta * (batch.old_logprobs - batch.ref_logprobs) * mask
    return rewards
