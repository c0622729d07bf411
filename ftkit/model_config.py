"""A model's sizes read from its config, wherever the config keeps them.

    python -c "from ftkit.model_config import hidden_size; help(hidden_size)"

Most causal LMs keep their settings at the top of the config (`config.hidden_size`; GPT-2's `n_embd`).
A multimodal model keeps its language model's in a nested `text_config` (Gemma 3, Llava, Qwen2-VL...),
which transformers returns from `config.get_text_config()`, and its top level has no hidden size at all.
(`ftkit.evaluate.context_length` reads the context length the same way.)
"""

from __future__ import annotations


def text_config(config):
    """The language model's part of `config`: `config.get_text_config()`, or `config` itself."""
    get = getattr(config, "get_text_config", None)
    return get() if callable(get) else config


def hidden_size(config) -> int:
    """The width of the language model's hidden states (what PPO's value head reads)."""
    for part in (text_config(config), config):
        for name in ("hidden_size", "n_embd", "d_model"):
            value = getattr(part, name, None)
            if isinstance(value, int):
                return value
    raise ValueError(f"{type(config).__name__} names no hidden size (hidden_size, n_embd or d_model), "
                     "in itself or in its text_config")
