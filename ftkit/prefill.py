"""Shared prompts computed once: each distinct prefix of a batch runs through the model one time, and its
key/value cache is copied to every row that starts with it.

    python -c "from ftkit.prefill import prefill; help(prefill)"

GRPO and RLOO play every problem `num_generations` times, so a rollout batch of P problems x G samples
holds only P distinct prompts. Running the model on each distinct prompt once and indexing its cache
out to the G rows gives every row the keys and values it would have had alone, for 1/G of the prompt's
compute. The engine's sampling loop (`ftkit/decode.py`) does it before the first token; the RL forward
pass (`ftkit.rl.policy.forward_tokens`) does it with gradients: indexing is differentiable, so each
copy's gradient flows back into the one prompt computation, summed, exactly as it would into G
separate ones.

Prefixes are left-padded to end at the same column, and position ids skip the padding (0 on it, as
Hugging Face `generate` sets them), so each row's tokens sit at positions 0, 1, 2, ... as they would alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def _cache_keyword() -> str:
    """transformers renamed the `past_key_values` argument to `cache` during 5.x (the old name warns)."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    return "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


CACHE_KEYWORD = _cache_keyword()


class CachedRows:
    """Rows of a batch whose tokens so far are in a key/value cache; `forward` feeds each row its next tokens.

        rows = prefill(model, [[5, 6, 7], [5, 6, 7], [9]], pad_id=0, device="cpu")
        out = rows.forward(model, torch.tensor([[8], [3], [4]]))   # one more token each: logits (3, 1, V)
    """

    def __init__(self, cache: Any, attention_mask: torch.Tensor, next_position: torch.Tensor,
                 last_logits: torch.Tensor, distinct: int):
        self.cache = cache
        self.attention_mask = attention_mask  # (B, P): 1 on each row's tokens so far, 0 on its left padding
        self.next_position = next_position  # (B,): the position id of each row's next token
        self.last_logits = last_logits  # (B, V): the logits after each row's last prefix token
        self.distinct = distinct  # how many distinct prefixes were computed

    def forward(self, model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs):
        """The model on each row's next tokens (B, S), right-padded where `attention_mask` (B, S) is 0.

        The cache grows by them. Positions continue each row's own count; those of right padding are
        never attended to by a real token, so their values do not matter.
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        self.attention_mask = torch.cat([self.attention_mask, attention_mask.to(self.attention_mask.dtype)], dim=1)
        positions = self.next_position[:, None] + torch.arange(input_ids.shape[1], device=input_ids.device)
        # A row whose tokens end near the context limit, beside longer ones, would have its padding placed
        # past the last position a learned position table (GPT-2's) holds: 0 is always in it.
        positions = positions.masked_fill(attention_mask == 0, 0)
        self.next_position = self.next_position + attention_mask.sum(dim=1)
        return model(input_ids=input_ids, attention_mask=self.attention_mask, position_ids=positions,
                     use_cache=True, **{CACHE_KEYWORD: self.cache}, **kwargs)

    def keep(self, rows: torch.Tensor) -> None:
        """Only `rows` (indices into the current rows) go on: finished rows leave the forward pass."""
        self.cache.batch_select_indices(rows)
        self.attention_mask = self.attention_mask[rows]
        self.next_position = self.next_position[rows]
        self.last_logits = self.last_logits[rows]


def prefill(model, prefixes: Sequence[Sequence[int]], pad_id: int, device) -> CachedRows:
    """Run each distinct prefix once (every prefix at least one token) and give each row its cache.

    With gradients enabled, the cache keeps them: what a later `CachedRows.forward` computes from it
    back-propagates into the prefix computation.
    """
    index: dict[tuple[int, ...], int] = {}
    rows = [index.setdefault(tuple(prefix), len(index)) for prefix in prefixes]
    distinct = list(index)
    if min(len(prefix) for prefix in distinct) < 1:
        raise ValueError("prefill needs prefixes of at least one token")
    ids, mask = left_pad(distinct, pad_id)
    ids, mask = ids.to(device), mask.to(device)
    out = model(input_ids=ids, attention_mask=mask, position_ids=left_padded_positions(mask), use_cache=True,
                logits_to_keep=1)
    cache = getattr(out, CACHE_KEYWORD)
    select = torch.tensor(rows, device=device)
    if rows != list(range(len(distinct))):  # a row per distinct prefix, in order: nothing to copy
        cache.batch_select_indices(select)
    return CachedRows(cache, mask[select], mask.sum(dim=1)[select], out.logits[:, -1][select], len(distinct))


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention_mask), each (N, longest): the sequences end at the last column."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        if sequence:
            ids[row, width - len(sequence):] = torch.tensor(list(sequence), dtype=torch.long)
            mask[row, width - len(sequence):] = 1
    return ids, mask


def left_padded_positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count only real tokens (0 on the padding), as `generate` makes them."""
    return (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
