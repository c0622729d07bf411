"""The policy as tensors: padded episode batches, per-token log-probabilities, entropy and values.

    python -c "from ftkit.rl.policy import pad_episodes; help(pad_episodes)"

Position t of the model's output predicts token t + 1, so everything per token here is shifted by one:
for a batch of length L, log-probabilities, entropies, values, the loss mask and PPO's rewards are all
(B, L - 1), and entry t belongs to token t + 1 of `input_ids`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ftkit.rl.rollout import Episode


def pad_episodes(episodes: Sequence[Episode], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad the episodes' token sequences into tensors.

    Returns input_ids and attention_mask (B, L), and, shifted to (B, L - 1): loss_mask (1 on the tokens
    the policy sampled, but not those of an episode's `masked_actions`) and sample_logprobs (the engine's
    log-probability of each sampled token).
    """
    length = max(len(e.tokens.input_ids) for e in episodes)
    B = len(episodes)
    input_ids = torch.full((B, length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((B, length), dtype=torch.long)
    policy_mask = torch.zeros((B, length), dtype=torch.float32)
    logprobs = torch.zeros((B, length), dtype=torch.float32)
    for row, episode in enumerate(episodes):
        n = len(episode.tokens.input_ids)
        input_ids[row, :n] = torch.tensor(episode.tokens.input_ids)
        attention_mask[row, :n] = 1
        policy_mask[row, :n] = torch.tensor(episode.loss_mask(), dtype=torch.float32)
        logprobs[row, :n] = torch.tensor(episode.tokens.logprobs, dtype=torch.float32)
    return {"input_ids": input_ids, "attention_mask": attention_mask,
            "loss_mask": policy_mask[:, 1:], "sample_logprobs": logprobs[:, 1:]}


def token_rewards(episodes: Sequence[Episode], length: int) -> torch.Tensor:
    """PPO's per-token rewards (B, L - 1): each turn's reward on the last token of that turn's action."""
    rewards = torch.zeros((len(episodes), length - 1))
    for row, episode in enumerate(episodes):
        for end, reward in episode.reward_positions:
            rewards[row, end - 1] += reward
    return rewards


class ValueHead(nn.Module):
    """PPO's critic: a linear map from the policy's last hidden state to a scalar value per position.

    It shares the policy's transformer (one model in memory, as in many RLHF implementations) and
    starts at zero, so the first advantages are the returns themselves.
    """

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.float()).squeeze(-1)


def forward_tokens(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, temperature: float = 1.0,
                   value_head: nn.Module | None = None, with_entropy: bool = False,
                   loss_mask: torch.Tensor | None = None):
    """One forward pass: (logprobs, entropy or None, values or None), each (B, L - 1).

    Logits are divided by the sampling temperature, so that the log-probabilities are those of the
    distribution the tokens were sampled from. Entropy is computed without gradient (it is logged,
    not optimised). With `loss_mask` (B, L - 1), the prompt before a row's first trained token needs no
    vocabulary-sized logits (for a 49k-token vocabulary most of the memory and much of the time), and
    rows that share that prompt, as a GRPO group does, share its computation (`_shared_prompt_logits`).
    Log-probs and entropy are 0 on prompt columns: before the batch's first trained column, or with a
    shared prompt before the row's own; the loss never looks there.
    """
    if value_head is None and loss_mask is not None:
        shared = _shared_prompt_logits(model, input_ids, attention_mask, loss_mask)
        if shared is not None:
            logits, targets, place = shared
            logprobs, entropy = _token_logprobs(logits, targets, temperature, with_entropy)
            return place(logprobs), None if entropy is None else place(entropy), None
    first = _first_trained_column(loss_mask)
    out = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False,
                output_hidden_states=value_head is not None, logits_to_keep=input_ids.shape[1] - first)
    logprobs, entropy = _token_logprobs(out.logits[:, :-1], input_ids[:, first + 1 :], temperature, with_entropy)
    values = value_head(out.hidden_states[-1][:, :-1]) if value_head is not None else None
    return _pad_front(logprobs, first), None if entropy is None else _pad_front(entropy, first), values


def _token_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float, with_entropy: bool):
    """log p(target) for each position of `logits` (B, T, V), and the entropy there if asked (no gradient)."""
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    # log p(token) = logit(token) - logsumexp(logits): no (B, T, V) log-softmax tensor is kept.
    log_norm = torch.logsumexp(logits, dim=-1)
    logprobs = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - log_norm
    entropy = None
    if with_entropy:
        with torch.no_grad():
            entropy = log_norm - (torch.softmax(logits, dim=-1) * logits).sum(-1)
    return logprobs, entropy


def _shared_prompt_logits(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, loss_mask: torch.Tensor):
    """The logits from each row's last prompt token on, with each distinct prompt computed once; None when
    the rows share too little for that to pay (a quarter of the tokens).

    A row's prompt is everything before the token that predicts its first trained one. The distinct
    prompts run once (`ftkit.prefill`, with gradients) and their caches are copied to their rows; then
    every row runs the rest of its tokens. Returns (logits (B, S - 1, V), targets (B, S - 1), place),
    where `place` puts a (B, S - 1) result back in the batch's (B, L - 1) columns, 0 elsewhere.
    """
    from ftkit.prefill import prefill

    bare = _unwrapped(model)
    if bare is None:
        return None
    lengths = attention_mask.sum(dim=1)
    trains = loss_mask.bool().any(dim=1)
    starts = torch.where(trains, loss_mask.float().argmax(dim=1), lengths - 1)
    prompts = [tuple(row[:start]) for row, start in zip(input_ids.tolist(), starts.tolist())]
    if min(starts.tolist()) < 1 or (int(starts.sum()) - sum(map(len, set(prompts)))) * 4 < int(lengths.sum()):
        return None
    rows = prefill(bare, prompts, pad_id=0, device=input_ids.device)
    rest = lengths - starts
    columns = starts[:, None] + torch.arange(int(rest.max()), device=input_ids.device)
    inside = columns < lengths[:, None]
    ids = input_ids.gather(1, columns.clamp(max=input_ids.shape[1] - 1)).masked_fill(~inside, 0)
    logits = rows.forward(model, ids, inside.long()).logits[:, :-1]
    predicts = inside[:, 1:]  # position j predicts token j + 1 of the rest, which must be a real token
    width = input_ids.shape[1] - 1

    def place(x: torch.Tensor) -> torch.Tensor:
        out = x.new_zeros((x.shape[0], width + x.shape[1])).scatter(1, columns[:, :-1], x.masked_fill(~predicts, 0))
        return out[:, :width]

    return logits, ids[:, 1:], place


def _unwrapped(model):
    """The model the prompts run through: a Hugging Face or peft model, bare. Under DistributedDataParallel
    its inner module, so that one wrapped forward per backward keeps DDP's gradient hooks simple (the
    gradients still flow back through the cache); None for any other wrapper (DeepSpeed's engine), whose
    hooks may expect one forward per backward: such models take the plain pass."""
    from peft import PeftModel
    from transformers import PreTrainedModel

    bare = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
    return bare if isinstance(bare, (PreTrainedModel, PeftModel)) else None


def _first_trained_column(loss_mask: torch.Tensor | None) -> int:
    if loss_mask is None or not bool(loss_mask.any()):
        return 0
    return int(loss_mask.any(dim=0).nonzero()[0])


def _pad_front(x: torch.Tensor, columns: int) -> torch.Tensor:
    return torch.nn.functional.pad(x, (columns, 0)) if columns else x


def disable_dropout(model: nn.Module) -> int:
    """Set every dropout to p=0; returns how many there were.

    PPO's ratio compares the policy's probabilities at sampling time with those at update time; random
    dropout masks would make the two differ even before any update (TRL does the same).
    """
    count = 0
    for module in model.modules():
        if isinstance(module, nn.Dropout) and module.p > 0:
            module.p = 0.0
            count += 1
    return count
