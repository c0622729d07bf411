"""Where ftkit changes how TRL computes, and why: one function, switched on by `ftkit sft`.

    python -c "from ftkit.trl_patches import score_only_trained_positions; print(score_only_trained_positions())"

TRL's SFTTrainer projects the last hidden states through the LM head in tiles and scores each position's
next token ("fused LM head", `trl.trainer.utils.add_fused_lm_head`). On a GPU with Triton it scores only
the positions that carry a label; everywhere else it scores every position and zeroes the rest, because
on compiling backends (Neuron) a varying number of positions would recompile the kernel on every batch.
A CPU compiles nothing, and in SFT most positions carry no label: a chat answer of 3 tokens after a
prompt of 30 leaves 90% of the LM head's work (576 x 49,152 multiply-adds per position for SmolLM2, and
a log-softmax over 49,152 entries) thrown away. So on a CPU ftkit asks for the compact path too. The
loss, gradients and logged metrics are the same (tested); only the wasted work goes.
"""

from __future__ import annotations


def score_only_trained_positions() -> bool:
    """Make TRL's fused LM head score only labelled positions on a CPU too; True if it was switched on now."""
    try:
        import trl.trainer.utils as trl_utils
    except ImportError:
        return False
    decide = getattr(trl_utils, "_use_triton", None)
    if decide is None or getattr(decide, "ftkit_compact", False):  # another TRL version, or already on
        return False

    def compact_on_cpu_too(device) -> bool:
        return device.type == "cpu" or decide(device)

    compact_on_cpu_too.ftkit_compact = True  # type: ignore[attr-defined]
    compact_on_cpu_too.trl_choice = decide  # type: ignore[attr-defined]  # TRL's own rule, for comparisons
    trl_utils._use_triton = compact_on_cpu_too
    return True
