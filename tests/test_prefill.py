"""Shared prompts (`ftkit.prefill`) in the RL forward pass, near the model's context limit.

    OMP_NUM_THREADS=1 python -m pytest tests/test_prefill.py -q
"""

from __future__ import annotations

import pytest
import torch


def test_padding_past_the_context_of_a_row_with_nothing_to_train():
    """A row with no trained token (an overlong episode that DAPO leaves out of the loss) counts all but
    its last token as its prompt, so its right padding, as wide as the group rows' answers, would sit at
    positions past a learned position table (GPT-2's): IndexError in multi-turn guess_number with algo=dapo.
    The shared pass must run and give the log-probs of one full pass per row."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from ftkit.rl import policy

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=20, n_positions=16, n_embd=16, n_layer=1, n_head=2)).eval()
    prompt = [1, 2, 3, 4, 5, 6]
    rows = [prompt + [(k + j) % 19 + 1 for j in range(8)] for k in range(8)] + [[7] * 16]
    ids, attn = torch.zeros(len(rows), 16, dtype=torch.long), torch.zeros(len(rows), 16, dtype=torch.long)
    mask = torch.zeros(len(rows), 15)
    for r, row in enumerate(rows):
        ids[r, : len(row)], attn[r, : len(row)] = torch.tensor(row), 1
        if r < 8:  # the group's answers are trained; the last row, the full context long, is not
            mask[r, len(prompt) - 1 : len(row) - 1] = 1
    assert policy._shared_prompt_logits(model, ids, attn, mask) is not None
    shared = policy.forward_tokens(model, ids, attn, loss_mask=mask)[0] * mask
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(policy, "_shared_prompt_logits", lambda *args: None)
        plain = policy.forward_tokens(model, ids, attn, loss_mask=mask)[0] * mask
    assert torch.allclose(shared, plain, atol=1e-5)
