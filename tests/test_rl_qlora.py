"""RL with QLoRA on a CPU: sampling and evaluation must leave the 4-bit layers trainable.

bitsandbytes repacks a 4-bit layer's weights for its CPU inference kernel the first time the layer runs
in eval mode on an input without gradient (every generation), and from then on runs that kernel, which
has no backward, in training too: a layer with a bias crashed (`result += bias` on the kernel's output),
and a layer without one silently passed no gradient to the layers below it.
"""

from __future__ import annotations

import pytest
import torch

from ftkit.engine import HFEngine, SamplingParams

pytest.importorskip("bitsandbytes")


def _rl_recipe(tmp_path, **sections):
    from test_rl_trainer import rl_recipe

    return rl_recipe(tmp_path, **sections)


def test_a_qlora_run_trains_after_the_policy_has_generated(tmp_path, temporary_gym):
    from safetensors.torch import load_file
    from test_rl_trainer import FirstByteEnv, run

    temporary_gym("ftkit/FirstByteQLoRATest-v0", FirstByteEnv, "first_byte_qlora_test")
    recipe = _rl_recipe(tmp_path, method="qlora", gym={"id": "first_byte_qlora_test"},
                        lora={"r": 4, "alpha": 8, "dropout": 0.0},
                        train={"max_steps": 2, "learning_rate": 1e-2}, eval={"n": 4, "every_steps": 1})
    summary = run(recipe)  # scratch:tiny is a GPT-2: its 4-bit layers have biases
    assert summary["steps"] == 2
    adapter = load_file(str(tmp_path / "run" / "adapter" / "adapter_model.safetensors"))
    assert any(t.abs().sum() > 0 for k, t in adapter.items() if "lora_B" in k)


def test_generation_leaves_the_gradients_of_a_4bit_policy_unchanged(tmp_path, smollm2_tokenizer):
    """A bias-free Llama: before the fix, the gradient after a generation silently lost every path through
    a 4-bit layer, so the lower layers' adapters got a different (wrong) gradient."""
    from accelerate import Accelerator
    from conftest import tiny_llama

    from ftkit.rl.config import load_rl_recipe
    from ftkit.rl.learner import build_learner
    from ftkit.rl.objectives import make_objective

    tok = smollm2_tokenizer
    folder = tmp_path / "llama"
    tiny_llama(tok, hidden_size=64, intermediate_size=128).save_pretrained(folder)  # rows of whole 4-bit blocks
    tok.save_pretrained(folder)
    raw = _rl_recipe(tmp_path, method="qlora", model={"name": str(folder)},
                     lora={"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj", "o_proj"]})
    recipe = load_rl_recipe(None, base=raw)
    learner = build_learner(recipe, make_objective(recipe), Accelerator(cpu=True), str(folder))
    assert_generation_leaves_lower_layer_grads(learner.model, tok, "12+34=56, 7*8=56")


def assert_generation_leaves_lower_layer_grads(model, tok, text: str) -> None:
    """The first layer's gradients on `text` are the same before and after the model generates."""
    ids = torch.tensor([tok(text)["input_ids"]])

    def lower_layer_grads():
        model.train()
        model.zero_grad()
        model(input_ids=ids).logits.float().pow(2).mean().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None and "layers.0." in n}

    before = lower_layer_grads()
    HFEngine(model, tok).generate(["1+1="], SamplingParams(max_new_tokens=2, temperature=0))
    after = lower_layer_grads()
    assert before and before.keys() == after.keys()
    for name in before:
        torch.testing.assert_close(after[name], before[name], msg=name)


def test_sft_models_loaded_for_qlora_keep_their_gradients_after_a_generation(tmp_path, smollm2_tokenizer):
    """SFT's mid-training evaluations generate too: `load_model` itself keeps the 4-bit layers trainable,
    so SFT and RL both get it (before, only the RL learner did)."""
    from bitsandbytes.nn import Linear4bit
    from conftest import tiny_llama
    from peft import get_peft_model, prepare_model_for_kbit_training

    from ftkit.config import LoraSection, ModelConfig
    from ftkit.models import load_model, lora_config

    tok = smollm2_tokenizer
    folder = tmp_path / "llama"
    tiny_llama(tok, hidden_size=64, intermediate_size=128).save_pretrained(folder)
    tok.save_pretrained(folder)
    model = load_model(str(folder), ModelConfig(name=str(folder)), "qlora")
    assert all(not m.support_avx512bf16_for_cpu for m in model.modules() if isinstance(m, Linear4bit))
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    model = get_peft_model(model, lora_config(LoraSection(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "o_proj"])))
    assert_generation_leaves_lower_layer_grads(model, tok, "12+34=46")
