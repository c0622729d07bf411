"""The arithmetic of policy-gradient RL for language models, as small pure functions on tensors.

    python -c "import torch; from ftkit.rl.algorithms import group_advantages; print(group_advantages(torch.tensor([1., 0., 1., 1.]), 4))"

Shapes: B sequences in a batch, T completion tokens per sequence; `mask` is 1.0 on the tokens the
policy produced (the loss is taken on them) and 0.0 on padding and on tokens an environment wrote.
Rewards are per sequence (B,) for GRPO and RLOO, per token (B, T) for PPO's GAE.

- GRPO (Shao et al. 2024): sample G completions per prompt; a completion's advantage is its reward
  minus the group's mean, divided by the group's std. Dr. GRPO (Liu et al. 2025) drops the std
  division and the per-sequence length normalisation, both of which bias the gradient.
- RLOO (Ahmadian et al. 2024): the baseline of each completion is the mean reward of the *other*
  G - 1 completions of its prompt, so it does not depend on the completion's own reward.
- PPO (Schulman et al. 2017) with a value head: GAE (Schulman et al. 2016) turns per-token rewards
  and value estimates into advantages and returns; the value loss is clipped like the policy's.
- DAPO (Yu et al. 2025): GRPO with a higher upper clip (`clip_eps=(low, high)`), the token-level loss, and
  a soft penalty for answers that run into the length limit (`soft_overlong_penalty`).
- GSPO (Zheng et al. 2025): one importance ratio per sequence, the geometric mean of its tokens'
  ratios, clipped as a whole (`importance_ratio(..., level="sequence")`).
- REINFORCE++ (Hu 2025): no critic; each token's return (`discounted_returns`) is normalised over
  the whole batch of every process, so the batch's mean is the baseline.
- Turn-level advantages for multi-turn episodes (`turn_advantages`; the turn-level credit of Zeng et
  al. 2025, "Reinforcing Multi-Turn Reasoning in LLM Agents via Turn-Level Credit Assignment"): a
  turn's return is the reward of that turn and the turns after it, compared with the same turn of the
  group's other episodes, so a turn is not credited with rewards earned before it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def group_advantages(rewards: torch.Tensor, group_size: int, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """GRPO advantages: (r - mean of the group) / (std of the group + eps), or without `/ std` if not `scale`.

    `rewards` is (B,) with the G = `group_size` completions of each prompt next to each other.
    A group whose rewards are all equal gets advantage 0 everywhere: nothing to learn from it.
    """
    groups = _groups(rewards, group_size)
    centred = groups - groups.mean(dim=1, keepdim=True)
    if scale:
        std = groups.std(dim=1, keepdim=True)  # unbiased, as in TRL
        # A group with one reward (std 0) stays at 0 even with eps=0, instead of becoming 0/0.
        centred = torch.where(std > 0, centred / (std + eps), torch.zeros_like(centred))
    return centred.reshape(-1)


def turn_advantages(turn_rewards: torch.Tensor, turn_mask: torch.Tensor, group_size: int, scale: bool = True,
                    eps: float = 1e-4) -> torch.Tensor:
    """Per-turn advantages (B, K) of multi-turn episodes, the G = `group_size` of a problem side by side.

    `turn_rewards[i, k]` is what turn k of episode i earned and `turn_mask[i, k]` is 1 where episode i
    played a turn k (K: the most turns of any episode). Turn k's return is the sum of the rewards from
    turn k to the end; its advantage is that return minus the mean return at turn k of the group's
    episodes that played a turn k, divided (if `scale`) by the std of the group's episode returns, as
    GRPO's. A group whose episodes all earned the same in total gets 0 everywhere, as in GRPO.

        turn_advantages(torch.tensor([[0., 1.], [0., 0.]]), torch.ones(2, 2), 2, scale=False)  # [[.5, .5], [-.5, -.5]]
    """
    if turn_rewards.shape != turn_mask.shape or turn_rewards.dim() != 2 or len(turn_rewards) % group_size:
        raise ValueError(f"turn_rewards and turn_mask must both be (B, K) with B a multiple of group_size={group_size}, "
                         f"got {tuple(turn_rewards.shape)} and {tuple(turn_mask.shape)}")
    mask = turn_mask.float()
    returns = (turn_rewards.float() * mask).flip(1).cumsum(1).flip(1)  # reward-to-go of each turn
    returns = returns.reshape(-1, group_size, returns.shape[1])
    mask = mask.reshape(returns.shape)
    mean = (returns * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True).clamp(min=1)
    centred = (returns - mean) * mask
    totals = returns[:, :, 0]  # every episode plays a first turn: its return is the episode's
    std = totals.std(dim=1, keepdim=True).unsqueeze(2)  # unbiased, as group_advantages'
    varied = std > 0
    if scale:
        centred = centred / (std + eps)
    return torch.where(varied, centred, torch.zeros_like(centred)).reshape(turn_rewards.shape)


def rloo_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """RLOO advantages: r_i - mean(r_j for j != i in the group), which equals G/(G-1) · (r_i - mean)."""
    if group_size < 2:
        raise ValueError("RLOO needs at least 2 completions per prompt (group_size >= 2)")
    groups = _groups(rewards, group_size)
    others_mean = (groups.sum(dim=1, keepdim=True) - groups) / (group_size - 1)
    return (groups - others_mean).reshape(-1)


def identical_group_fraction(rewards: torch.Tensor, group_size: int) -> float:
    """The share of groups whose completions all got the same reward (they teach GRPO/RLOO nothing)."""
    groups = _groups(rewards, group_size)
    return (groups.max(dim=1).values == groups.min(dim=1).values).float().mean().item()


def group_rows(groups: Sequence[int], group_size: int) -> torch.Tensor:
    """Row indices of each group's members, (number of groups, G), groups in order of first appearance.

    `groups[i]` is the problem episode i played (`Episode.group`). Gathering rows by that id, rather
    than reshaping by position, keeps the advantages right in whatever order the episodes arrive.
    """
    members: dict[int, list[int]] = {}
    for row, group in enumerate(groups):
        members.setdefault(group, []).append(row)
    for group, rows in members.items():
        if len(rows) != group_size:
            raise ValueError(f"group {group} has {len(rows)} episodes; every group needs group_size={group_size}")
    return torch.tensor(list(members.values()), dtype=torch.long).reshape(-1, group_size)


def by_group(fn: Callable[[torch.Tensor, int], torch.Tensor], rewards: torch.Tensor, groups: Sequence[int],
             group_size: int) -> torch.Tensor:
    """`fn(rewards, group_size)` (which expects each group's rewards side by side) applied to episodes
    grouped by id; the result is in the episodes' own order.

        by_group(rloo_advantages, torch.tensor([1., 0., 1., 0.]), [0, 1, 1, 0], 2)  # -> [1., -1., 1., -1.]
    """
    rows = group_rows(groups, group_size).reshape(-1).to(rewards.device)
    grouped = fn(rewards[rows], group_size)
    out = torch.empty_like(grouped)
    out[rows] = grouped
    return out


def _groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    if rewards.dim() != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards must be (B,) with B a multiple of group_size={group_size}, got {tuple(rewards.shape)}")
    return rewards.float().reshape(-1, group_size)


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over the masked tokens of each sequence: (advantages, returns).

    delta_t = r_t + gamma · V_{t+1} - V_t and A_t = delta_t + gamma · lam · A_{t+1}, where "t + 1" is
    the next *policy* token (masked-out environment tokens are skipped, not treated as steps) and the
    value after the last policy token is 0. Returns are A_t + V_t, the value head's targets.
    """
    B, T = rewards.shape
    advantages = torch.zeros_like(rewards, dtype=torch.float32)
    for b in range(B):
        next_value, next_advantage = 0.0, 0.0
        for t in reversed(range(T)):
            if mask[b, t] == 0:
                continue
            delta = rewards[b, t] + gamma * next_value - values[b, t]
            next_advantage = delta + gamma * lam * next_advantage
            advantages[b, t] = next_advantage
            next_value = values[b, t]
    return advantages, (advantages + values) * mask


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """REINFORCE's return of each policy token: its reward plus gamma x the next policy token's return.

    GAE with no value and lambda 1 (environment tokens are skipped, as there); with gamma = 1, the sum
    of the rewards from that token to the end of the episode.
    """
    returns, _ = gae(rewards, torch.zeros_like(rewards, dtype=torch.float32), mask, gamma, lam=1.0)
    return returns


def soft_overlong_penalty(lengths: torch.Tensor, max_length: int, buffer_len: int,
                          factor: float = 1.0) -> torch.Tensor:
    """DAPO's soft overlong punishment (Yu et al. 2025, eq. 13), times `factor`, per completion length.

    0 up to max_length - buffer_len tokens, then falling linearly to -factor at max_length (and -factor
    beyond): an answer is told it is getting long before the limit cuts it, instead of a cut answer's
    reward being noise about its reasoning.
    """
    start = max_length - buffer_len
    over = (lengths.float() - start).clamp(min=0) / max(buffer_len, 1)
    return -factor * over.clamp(max=1.0)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of `x` over the positions where `mask` is 1."""
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_mean_std(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = False,
                    all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of `x` over the positions where `mask` is 1 (std over n, or n - 1 if `unbiased`).

    `all_reduce` sums a tensor over processes: with it, the statistics are those of every process's
    entries together, so they do not depend on how a batch is split.
    """
    sums = torch.stack([(x * mask).sum(), (x * x * mask).sum(), mask.sum()]).float()
    if all_reduce is not None:
        sums = all_reduce(sums)
    mean = sums[0] / sums[2].clamp(min=1)
    variance = (sums[1] / sums[2].clamp(min=1) - mean**2).clamp(min=0)
    if unbiased:
        variance = variance * sums[2] / (sums[2] - 1).clamp(min=1)
    return mean, variance.sqrt()


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, aggregation: str = "token") -> torch.Tensor:
    """One number from per-token values: the mean over every masked token ("token"), or the mean
    within each sequence and then over sequences ("sequence")."""
    if aggregation == "token":
        return masked_mean(per_token, mask)
    if aggregation == "sequence":
        return masked_mean(per_token, mask, dim=1).mean()
    raise ValueError(f'aggregation must be "token" or "sequence", got {aggregation!r}')


def importance_ratio(logprobs: torch.Tensor, old_logprobs: torch.Tensor, mask: torch.Tensor,
                     level: str = "token") -> torch.Tensor:
    """pi / pi_old per token (B, T): each token's own ratio ("token"), or every token of a sequence given the
    sequence's ratio ("sequence", GSPO): exp(mean over its masked tokens of log pi - log pi_old).

    The sequence ratio's gradient reaches each of its tokens as ratio / length: the sequence moves as one.
    """
    log_ratio = logprobs - old_logprobs
    if level == "token":
        return torch.exp(log_ratio)
    if level == "sequence":
        per_sequence = masked_mean(log_ratio, mask, dim=1)
        return torch.exp(per_sequence).unsqueeze(1).expand_as(logprobs)
    raise ValueError(f'level must be "token" or "sequence", got {level!r}')


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                mask: torch.Tensor, clip_eps: float | tuple[float, float] = 0.2, aggregation: str = "token", *,
                level: str = "token", weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """PPO's clipped surrogate, -min(ratio · A, clip(ratio, 1 - eps, 1 + eps_high) · A), over masked tokens.

    `advantages` is (B,) (one per sequence, GRPO/RLOO) or (B, T) (per token, PPO). `aggregation`:
    "token" averages over every policy token of the batch (DAPO, Dr. GRPO); "sequence" averages within
    each sequence, then over sequences (the original GRPO, which favours short wrong answers).
    `clip_eps` is eps, or (eps, eps_high): DAPO's clip-higher, where with 0.28 above 0.2 a token the
    old policy thought unlikely can gain more in one update when it did well, which keeps entropy from
    collapsing. `level` is `importance_ratio`'s ("sequence": GSPO).
    `weights` (B, T), detached, multiply each token's term: the sampler correction of
    `ftkit.rl.correction.importance_weights` (TIS or MIS), as TRL applies it.
    Returns the loss and {"clip_fraction", "ratio_mean"} for logging.
    """
    low, high = clip_eps if isinstance(clip_eps, tuple) else (clip_eps, clip_eps)
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1).expand_as(logprobs)
    ratio = importance_ratio(logprobs, old_logprobs, mask, level)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1 - low, 1 + high) * advantages
    per_token = -torch.min(unclipped, clipped)
    if weights is not None:
        per_token = per_token * weights
    loss = aggregate(per_token, mask, aggregation)
    with torch.no_grad():
        was_clipped = ((ratio < 1 - low) & (advantages < 0)) | ((ratio > 1 + high) & (advantages > 0))
        stats = {"clip_fraction": masked_mean(was_clipped.float(), mask).item(),
                 "ratio_mean": masked_mean(ratio, mask).item()}
    return loss, stats


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip_eps: float = 0.2) -> torch.Tensor:
    """PPO's clipped value loss: 0.5 · max((V - R)², (clip(V, V_old ± eps) - R)²) over masked tokens."""
    clipped = old_values + torch.clamp(values - old_values, -clip_eps, clip_eps)
    return 0.5 * masked_mean(torch.max((values - returns) ** 2, (clipped - returns) ** 2), mask)


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k3") -> torch.Tensor:
    """Per-token KL(policy || reference) estimates from sampled tokens (Schulman, "Approximating KL").

    k1 = log p - log q (unbiased, can be negative); k3 = (q/p) - 1 - log(q/p) (unbiased, always >= 0,
    lower variance: GRPO's choice), with p the policy and q the reference.
    """
    log_ratio = ref_logprobs - logprobs  # log(q / p)
    if estimator == "k1":
        return -log_ratio
    if estimator == "k3":
        return torch.exp(log_ratio) - 1 - log_ratio
    raise ValueError(f'estimator must be "k1" or "k3", got {estimator!r}')
