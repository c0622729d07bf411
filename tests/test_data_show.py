"""`ftkit data show`: a recipe's training examples as SFT builds them, trained tokens marked, no weights loaded."""

from __future__ import annotations

import io
import json

import pytest
import yaml
from conftest import tiny_recipe_dict
from rich.console import Console

from ftkit.cli import main
from ftkit.config import validate_recipe
from ftkit.data_show import ShowOptions, print_examples, show_data


def _recipe(tmp_path, raw) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def _no_weights(monkeypatch):
    """Loading any model's weights fails the test."""
    import transformers

    import ftkit.models

    def refuse(*args, **kwargs):
        raise AssertionError("ftkit data show loaded model weights")

    monkeypatch.setattr(ftkit.models, "load_model", refuse)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)


def test_a_recipes_examples_are_the_ones_sft_trains_on(tiny_recipe, tmp_path, capsys, monkeypatch):
    from ftkit.sft import SFTRun

    _no_weights(monkeypatch)
    raw = tiny_recipe()
    assert main(["data", "show", _recipe(tmp_path, raw), "--n", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "example 1 of 64 (arithmetic (gym.train_seed 0) item 0): 9 tokens, 3 trained"
    prompt, answer = lines[1].split("\u27e6")
    assert prompt.endswith("=") and answer.endswith("<|endoftext|>\u27e7")  # the answer and its end, trained
    assert lines[2].startswith("example 2 of 64") and lines[-1] == "64 examples, none cut by train.max_length"
    assert not (tmp_path / "run").exists()  # the scratch model was not built either
    run = SFTRun(validate_recipe(raw), console=Console(file=io.StringIO()))
    run._setup_data()
    shown = show_data(_recipe(tmp_path, raw), options=ShowOptions(n=0))
    assert [e.input_ids for e in shown.kept()] == run.train_dataset["input_ids"]


def test_a_cut_is_warned_about_and_counted(tiny_recipe, tmp_path, capsys):
    assert main(["data", "show", _recipe(tmp_path, tiny_recipe()), "--n", "1", "train.max_length=8"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith(": 8 tokens, 2 trained")
    assert out[2] == "warning: cut from 9 to 8 tokens by train.max_length=8"
    assert out[-1] == "64 of 64 examples are cut by train.max_length=8, see ftkit data show"


def test_a_chat_recipe_shows_the_template_and_trains_the_answer_and_its_end(smol_model_dir, tmp_path, capsys,
                                                                             monkeypatch):
    _no_weights(monkeypatch)
    raw = tiny_recipe_dict(tmp_path, model={"name": smol_model_dir},
                           gym={"id": "arithmetic", "kwargs": {"digits": 1}, "chat": True, "system_prompt": "Be brief."})
    training = show_data(_recipe(tmp_path, raw), options=ShowOptions(n=1))
    example = training.examples[0]
    text = capsys.readouterr().out.splitlines()
    assert text[1:6] == ["<|im_start|>system", "Be brief.<|im_end|>", "<|im_start|>user",
                         f"{example.prompt}<|im_end|>", "<|im_start|>assistant"]
    assert text[6].startswith("\u27e6") and text[6].endswith("<|im_end|>\u27e7")  # the newline after it: untrained
    assert text[7] == ""


def test_a_dataset_file_with_a_model(smol_model_dir, tmp_path, capsys):
    path = tmp_path / "chats.jsonl"
    chat = [{"role": "user", "content": "Guess."}, {"role": "assistant", "content": "50"},
            {"role": "user", "content": "Higher."}, {"role": "assistant", "content": "75"}]
    path.write_text(json.dumps({"messages": chat}) + "\n" + json.dumps({"messages": chat[:2]}) + "\n")
    assert main(["data", "show", str(path), "--model", smol_model_dir, "--n", "1"]) == 0
    out = capsys.readouterr().out
    assert f"example 1 of 2 ({path}:1)" in out
    assert "assistant\n\u27e650<|im_end|>\u27e7\n<|im_start|>user\nHigher." in out
    plain = tmp_path / "qa.jsonl"
    plain.write_text(json.dumps({"prompt": "2+2=", "completion": "4"}) + "\n")
    assert main(["data", "show", str(plain), "--model", "scratch:tiny"]) == 0
    assert "2+2=\u27e64<|endoftext|>\u27e7" in capsys.readouterr().out
    assert main(["data", "show", str(plain), "--model", smol_model_dir, "--system-prompt", "Be brief."]) == 0
    assert "Be brief.<|im_end|>" in capsys.readouterr().out


def test_on_a_terminal_trained_tokens_are_styled_not_bracketed(tiny_recipe):
    from ftkit.sft_data import data_model, training_set

    recipe = validate_recipe(tiny_recipe())
    model = data_model(recipe.model)
    out = io.StringIO()
    print_examples(training_set(recipe, model), model.tokenizer, 1, Console(file=out, force_terminal=True))
    assert "\u27e6" not in out.getvalue() and "\x1b[" in out.getvalue()


@pytest.mark.parametrize(("argv", "expected"), [
    (["data.jsonl"], "error: ftkit data show data.jsonl needs --model"),
    (["data.jsonl", "--model", "scratch:tiny", "train.max_length=8"], "error: key=value overrides"),
    (["RECIPE", "--model", "scratch:tiny"], "error: --model, --chat, --system-prompt and --max-length are for a dataset"),
    (["recipes/grpo_arithmetic.yaml"], "error: recipes/grpo_arithmetic.yaml is an RL recipe (it has algo:)"),
    (["missing.jsonl", "--model", "scratch:tiny"], "error: no such file: missing.jsonl"),
])
def test_bad_input_is_one_line_and_exit_2(tiny_recipe, tmp_path, capsys, argv, expected):
    argv = [_recipe(tmp_path, tiny_recipe()) if a == "RECIPE" else a for a in argv]
    assert main(["data", "show", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(expected) and "\n" not in err, err
