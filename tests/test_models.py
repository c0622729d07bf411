"""Model specs: scratch presets, local folders, hub ids and the offline fallback."""

from __future__ import annotations

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from ftkit.config import ModelConfig
from ftkit.errors import ModelError
from ftkit.models import count_parameters, resolve_model
from ftkit.scratch import PRESETS, build_scratch, build_tokenizer


def test_tokenizer_gives_every_digit_its_own_token():
    tok = build_tokenizer()
    ids = tok("rev 123+456=")["input_ids"]
    assert len(ids) == len("rev 123+456=")
    assert [tok.decode([i]) for i in tok("9081726354")["input_ids"]] == list("9081726354")
    assert tok.decode(tok("héllo ✓ 東京")["input_ids"]) == "héllo ✓ 東京"  # any text, no unknown token
    assert tok.eos_token != tok.pad_token


def test_scratch_model_is_a_standard_hf_folder(tmp_path):
    out = build_scratch("tiny", tmp_path / "tiny")
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    trainable, total = count_parameters(model)
    assert 0.7e6 < total < 1.2e6 and trainable == total  # "about 1M parameters"
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "2+2="}], tokenize=False,
                                         add_generation_prompt=True)
    assert chat.endswith("Assistant: ")


def test_gpt2_124m_shape_preset():
    shape = PRESETS["gpt2-124m"]
    n = 12 * shape.n_layer * shape.n_embd**2 + (shape.vocab_size + shape.n_positions) * shape.n_embd
    assert 123e6 < n < 126e6


def test_resolve_scratch_local_and_errors(tmp_path):
    resolved = resolve_model("scratch:tiny", tmp_path / "run")
    assert resolved.used == "scratch:tiny" and not resolved.is_fallback
    assert (tmp_path / "run" / "base_model" / "config.json").is_file()
    local = resolve_model(str(tmp_path / "run" / "base_model"), tmp_path / "other")
    assert local.path == str((tmp_path / "run" / "base_model").resolve())
    with pytest.raises(ModelError, match=r'unknown scratch preset "scratch:tiyn" \(did you mean "tiny"\?\)'):
        resolve_model("scratch:tiyn", tmp_path)
    with pytest.raises(ModelError, match="no such model folder"):
        resolve_model("./missing-model", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="not a model folder"):
        resolve_model(str(tmp_path / "empty"), tmp_path)


def test_unreachable_hub_model_falls_back_and_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = ModelConfig(name="gpt2", fallback={"name": "scratch:tiny", "train": {"learning_rate": 1e-3}})
    resolved = resolve_model(cfg, tmp_path)
    assert resolved.is_fallback and resolved.used == "scratch:tiny" and resolved.spec == "gpt2"
    assert "gpt2" in resolved.fallback_reason
    assert resolved.train_overrides == {"learning_rate": 1e-3}
    with pytest.raises(ModelError, match='"gpt2" is not in the local cache'):
        resolve_model(ModelConfig(name="gpt2"), tmp_path)



def test_missing_two_part_folder_is_named_as_a_folder_too(tmp_path, monkeypatch):
    # `runs/missing` could be a hub id (org/name): offline, the error must also say no such folder exists.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError, match="no folder runs/missing here"):
        resolve_model("runs/missing", tmp_path)

def test_fused_gelu_swap_keeps_outputs_and_the_saved_config(tmp_path):
    import torch

    from ftkit.models import use_fused_gelu

    out = build_scratch("tiny", tmp_path / "tiny")
    model = AutoModelForCausalLM.from_pretrained(out)
    ids = torch.randint(0, 256, (2, 12))
    before = model(ids).logits
    assert use_fused_gelu(model) == 4  # one per block
    torch.testing.assert_close(model(ids).logits, before, atol=1e-5, rtol=1e-5)
    assert model.config.activation_function == "gelu_new"  # saved models stay standard GPT-2
