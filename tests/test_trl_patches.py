"""ftkit.trl_patches: TRL's fused LM head scores only the labelled positions on a CPU, with the same loss."""

from __future__ import annotations

import torch


def _fused_loss_and_rows(model, ids, labels):
    """The fused head's loss, its gradient on the first layer, and how many rows went through the LM head."""
    import trl.trainer.utils as trl_utils

    seen = []
    apply = trl_utils._ChunkedLogProbFunction.apply

    def spy(hidden, *args):
        seen.append(hidden.shape[0])
        return apply(hidden, *args)

    trl_utils._ChunkedLogProbFunction.apply = spy
    try:
        model.zero_grad()
        out = model(input_ids=ids, labels=labels, fused_lm_head=True)
        out.loss.backward()
    finally:
        trl_utils._ChunkedLogProbFunction.apply = apply
    grad = next(p.grad.clone() for n, p in model.named_parameters() if "h.0.attn" in n and p.grad is not None)
    return out.loss.detach(), out.entropy.detach(), grad, seen[0]


def test_compact_scoring_gives_the_same_loss_from_fewer_rows(tmp_path):
    import trl.trainer.utils as trl_utils
    from transformers import AutoModelForCausalLM

    from ftkit.scratch import build_scratch
    from ftkit.trl_patches import score_only_trained_positions

    model = AutoModelForCausalLM.from_pretrained(build_scratch("tiny", tmp_path / "tiny"))
    trl_utils.add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    ids = torch.randint(0, 250, (4, 12))
    labels = ids.clone()
    labels[:, :9] = -100  # the answer: the last 3 tokens of each row
    original = trl_utils._use_triton  # ftkit's, where an SFT run in this process switched it on already
    try:
        trl_utils._use_triton = getattr(original, "trl_choice", original)  # TRL's own: every position on a CPU
        full_loss, full_entropy, full_grad, full_rows = _fused_loss_and_rows(model, ids, labels)
        assert score_only_trained_positions() is True
        assert score_only_trained_positions() is False  # switched on once
        loss, entropy, grad, rows = _fused_loss_and_rows(model, ids, labels)
    finally:
        trl_utils._use_triton = original
    assert (full_rows, rows) == (4 * 11, 4 * 3)
    torch.testing.assert_close(loss, full_loss)
    torch.testing.assert_close(entropy, full_entropy)
    torch.testing.assert_close(grad, full_grad)
