"""A model's sizes read from its config, also where they live in a nested `text_config` (Gemma 3).

(The context length, `ftkit.evaluate.context_length`, is checked on every family in test_families.py.)
"""

from __future__ import annotations

import types

import pytest

from ftkit.model_config import hidden_size


def tiny_gemma3_config(**text):
    """Gemma 3's multimodal config: the language model's settings are in `text_config`, not at the top."""
    from transformers import Gemma3Config

    text_config = dict(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=256,
                       **text)
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=28,
                  patch_size=14)
    return Gemma3Config(text_config=text_config, vision_config=vision, mm_tokens_per_image=4)


def test_the_hidden_size_comes_from_the_text_config_when_it_is_nested():
    from transformers import GPT2Config

    config = tiny_gemma3_config()
    assert not hasattr(config, "hidden_size") and hidden_size(config) == 32
    assert hidden_size(GPT2Config(n_embd=48)) == 48
    with pytest.raises(ValueError, match="no hidden size"):
        hidden_size(types.SimpleNamespace())


def test_ppo_value_head_fits_a_nested_configs_hidden_size(tmp_path):
    import torch
    from accelerate import Accelerator
    from test_rl_trainer import rl_recipe
    from transformers import AutoModelForCausalLM

    from ftkit.rl.config import load_rl_recipe
    from ftkit.rl.learner import build_learner
    from ftkit.rl.objectives import make_objective
    from ftkit.rl.policy import forward_tokens

    folder = tmp_path / "gemma3"
    AutoModelForCausalLM.from_config(tiny_gemma3_config()).save_pretrained(folder)
    recipe = load_rl_recipe(None, base=rl_recipe(tmp_path, algo="ppo", model={"name": str(folder)}))
    learner = build_learner(recipe, make_objective(recipe), Accelerator(cpu=True), str(folder))
    ids = torch.tensor([[1, 2, 3, 4]])
    _, _, values = forward_tokens(learner.model, ids, torch.ones_like(ids), value_head=learner.value_head)
    assert values.shape == (1, 3)
