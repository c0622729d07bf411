"""SFT through ftkit.chat.Formatter: chat examples from gyms and files, the loss mask token by token on
the real SmolLM2 tokenizer, a chat SFT run of a tiny Llama with SmolLM2's template (no TRL traceback),
chat scoring in SFT and `ftkit eval`, the bad-input errors, and the flagship's plain ids unchanged."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_recipe_dict
from rich.console import Console

from ftkit.chat import Formatter
from ftkit.cli import main
from ftkit.config import validate_recipe
from ftkit.runs import TrainingData
from ftkit.sft_data import IGNORE, data_model, training_set

SYSTEM = "Answer with the number only."


def chat_recipe(tmp_path, model_dir: str, **sections) -> dict:
    """Two layers of Llama, three steps of chat SFT on 1-digit arithmetic, four held-out problems."""
    raw = tiny_recipe_dict(
        tmp_path, model={"name": model_dir},
        gym={"id": "arithmetic", "kwargs": {"digits": 1}, "chat": True, "system_prompt": SYSTEM, "train_seed": 0},
        data={"train_size": 16},
        train={"max_steps": 3, "per_device_train_batch_size": 4, "save_steps": 100, "max_length": 128},
        eval={"n": 4, "seed": 1, "max_new_tokens": 3, "samples": 2},
    )
    for key, value in sections.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) and isinstance(raw.get(key), dict) else value
    return raw


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def _jsonl(path: Path, rows: list[dict]) -> str:
    return _write(path, "".join(json.dumps(r) + "\n" for r in rows))


# -- the mask, token by token ---------------------------------------------------------------------


def test_chat_gym_examples_train_the_answer_and_its_end_only(smol_model_dir, tmp_path):
    recipe = validate_recipe(chat_recipe(tmp_path, smol_model_dir))
    model = data_model(recipe.model)
    tok = model.tokenizer
    assert model.context == 256
    training = training_set(recipe, model)
    assert training.chat and len(training.examples) == 16
    formatter = Formatter(tok, chat=True, system_prompt=SYSTEM)
    for example in training.examples[:4]:
        ids, trained = example.input_ids, example.trained
        text = tok.decode(ids)
        # the whole conversation, tokenized at once without special tokens, gives the same ids
        assert ids == tok(text, add_special_tokens=False)["input_ids"]
        assert text.startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{example.prompt}")
        assert "SmolLM" not in text  # the recipe's system prompt replaces the template's default
        prompt = formatter.prompt_ids(example.prompt)
        start = len(prompt)
        assert ids[:start] == prompt and tok.decode(prompt).endswith("<|im_start|>assistant\n")
        assert trained == [0] * start + [1] * (len(ids) - start - 1) + [0]  # token by token
        assert [tok.decode([i]) for i in ids[-2:]] == ["<|im_end|>", "\n"]  # <|im_end|> trained, "\n" not
        assert training.labels(example) == [IGNORE] * start + ids[start:-1] + [IGNORE]


def test_the_templates_default_system_prompt_is_shown_and_never_trained(smol_model_dir, tmp_path):
    raw = chat_recipe(tmp_path, smol_model_dir)
    raw["gym"].pop("system_prompt")
    recipe = validate_recipe(raw)
    model = data_model(recipe.model)
    training, tok = training_set(recipe, model), model.tokenizer
    example = training.examples[0]
    text = tok.decode(example.input_ids)
    assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    trained = tok.decode([i for i, t in zip(example.input_ids, example.trained) if t])
    assert trained.endswith("<|im_end|>") and "SmolLM" not in trained and "user" not in trained


def test_a_messages_file_trains_every_assistant_turn_and_completion_only_loss_false_trains_all(
        smol_model_dir, tmp_path):
    chat = [{"role": "user", "content": "Guess."}, {"role": "assistant", "content": "50"},
            {"role": "user", "content": "Higher."}, {"role": "assistant", "content": "75"}]
    path = _jsonl(tmp_path / "chats.jsonl", [{"messages": chat}])
    raw = chat_recipe(tmp_path, smol_model_dir, gym=None, data={"path": path})
    recipe = validate_recipe(raw)
    model = data_model(recipe.model)
    example = training_set(recipe, model).examples[0]
    trained = model.tokenizer.decode([i for i, t in zip(example.input_ids, example.trained) if t])
    assert trained == "50<|im_end|>75<|im_end|>"
    everything = training_set(validate_recipe({**raw, "data": {**raw["data"], "completion_only_loss": False}}), model)
    assert everything.labels(everything.examples[0]) == example.input_ids


# -- the flagship's plain path ------------------------------------------------------------------------


def test_the_flagships_plain_ids_are_what_trl_made_before(tmp_path):
    """recipes/gpt2_math.yaml: the ids and labels TRL prepared from prompt/completion rows (the path before
    ftkit tokenized itself) are exactly those it prepares from ftkit's pre-tokenized rows."""
    import trl
    from datasets import Dataset

    from data_tools.gym_data import gym_examples
    from ftkit.config import ModelConfig, load_recipe
    from ftkit.models import load_model, load_tokenizer
    from ftkit.scratch import build_scratch

    recipe = load_recipe("recipes/gpt2_math.yaml", ["data.train_size=64"])
    model = data_model(recipe.model)
    assert model.used == "scratch:tiny" and model.train_overrides["learning_rate"] == 1.5e-3  # offline fallback
    ours = training_set(recipe, model)
    folder = build_scratch("tiny", tmp_path / "tiny")
    tok = load_tokenizer(str(folder), ModelConfig(name=str(folder)))  # as `ftkit sft` loads it after the data
    records = gym_examples(recipe.gym.spec(), 64, recipe.gym.train_seed)
    for record, example in zip(records, ours.examples, strict=True):
        prompt_ids = tok(record["prompt"])["input_ids"]
        # prompt tokens + completion tokens + eos, the completion and its eos trained
        assert example.input_ids == prompt_ids + tok(record["completion"], add_special_tokens=False)["input_ids"] + [
            tok.eos_token_id]
        assert example.trained == [0] * len(prompt_ids) + [1] * (len(example.input_ids) - len(prompt_ids))
    rows = [{"prompt": r["prompt"], "completion": r["completion"]} for r in records]
    lm = load_model(str(folder), ModelConfig(name=str(folder)), "full")

    def prepared(dataset, **kwargs):
        args = trl.SFTConfig(output_dir=str(tmp_path / "out"), max_length=64, use_cpu=True, report_to="none",
                             bf16=False, **kwargs)
        return trl.SFTTrainer(model=lm, args=args, train_dataset=dataset, processing_class=tok).train_dataset

    before = prepared(Dataset.from_list(rows), completion_only_loss=True)
    after = prepared(ours.dataset())
    assert before["input_ids"] == after["input_ids"] and before["labels"] == after["labels"]


# -- a chat SFT run, scored with chat prompts -------------------------------------------------------------


@pytest.fixture(scope="module")
def chat_run(smol_model_dir, tmp_path_factory):
    """One chat SFT run of the SmolLM2-template Llama, with the prompts held-out scoring generated from."""
    from ftkit import evaluate, sft

    tmp_path = tmp_path_factory.mktemp("chat_run")
    recipe = validate_recipe(chat_recipe(tmp_path, smol_model_dir))
    seen: list[list] = []
    real = evaluate.generate

    def recording(model, tokenizer, prompts, **kwargs):
        seen.append(list(prompts))
        return real(model, tokenizer, prompts, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sft, "generate", recording)
        summary = sft.main(recipe)
    return recipe, summary, seen


def test_a_chat_sft_run_with_a_smollm2_template_trains(chat_run, smol_model_dir):
    from safetensors.torch import load_file

    recipe, summary, _ = chat_run
    assert summary["steps"] == 3 and torch.isfinite(torch.tensor(summary["train_loss"]))
    before = load_file(str(Path(smol_model_dir) / "model.safetensors"))
    after = load_file(str(recipe.run_dir / "model" / "model.safetensors"))
    assert any(not torch.equal(before[k], after[k]) for k in after)
    assert summary["eval_n"] == 4 and 0.0 <= summary["eval_accuracy"] <= 1.0
    remembered = TrainingData.read(recipe.run_dir / "model")
    assert remembered.gym.chat and remembered.gym.system_prompt == SYSTEM


def test_held_out_scoring_uses_the_formatters_chat_prompt_ids(chat_run):
    from transformers import AutoTokenizer

    from ftkit.evaluate import heldout_problems

    recipe, _, seen = chat_run
    tok = AutoTokenizer.from_pretrained(recipe.run_dir / "model")
    formatter = Formatter(tok, chat=True, system_prompt=SYSTEM)
    problems = heldout_problems(recipe.gym.spec(), 4, 1, exclude_prompts=training_set(
        recipe, data_model(recipe.model)).prompts)
    assert seen[-1] == [formatter.prompt_ids(p["prompt"]) for p in problems]
    assert tok.decode(seen[-1][0]).endswith("<|im_end|>\n<|im_start|>assistant\n")


def test_ftkit_eval_reads_chat_from_the_folder_and_takes_no_chat(chat_run, monkeypatch, capsys):
    from transformers import AutoTokenizer

    from ftkit import evaluate

    recipe, _, _ = chat_run
    folder = str(recipe.run_dir / "model")
    tok = AutoTokenizer.from_pretrained(folder)
    seen: list[list] = []
    monkeypatch.setattr(evaluate, "generate", lambda model, tokenizer, prompts, **kw: seen.append(prompts) or
                        ["0"] * len(prompts))
    argv = ["eval", "--gym", "arithmetic", "--model", folder, "--n", "3", "--engine", "hf"]
    assert main(argv) == 0
    problems = evaluate.heldout_problems(recipe.gym.spec(), 3, recipe.eval.seed,
                                         exclude_prompts=training_set(recipe, data_model(recipe.model)).prompts)
    chat = Formatter(tok, chat=True, system_prompt=SYSTEM)
    assert seen[-1] == [chat.prompt_ids(p["prompt"]) for p in problems]
    assert main([*argv, "--no-chat"]) == 0
    assert seen[-1] == [Formatter(tok).prompt_ids(p["prompt"]) for p in problems]
    assert main([*argv, "--system-prompt", "Be brief."]) == 0
    assert seen[-1] == [Formatter(tok, chat=True, system_prompt="Be brief.").prompt_ids(p["prompt"])
                        for p in problems]
    capsys.readouterr()
    assert main([*argv, "--no-chat", "--system-prompt", "x"]) == 2
    assert capsys.readouterr().err.startswith("error: --system-prompt needs chat")


# -- bad input: one line, exit 2, nothing written ---------------------------------------------------------

# Mistral-7B-Instruct-v0.1's template: roles must alternate user/assistant, no system role.
STRICT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% else %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}"
)


def _bad_input(tmp_path, smol_model_dir, case: str) -> tuple[dict, str]:
    """A recipe that must fail, and the text its error line must hold."""
    if case == "roles":
        from transformers import AutoTokenizer

        strict = tmp_path / "strict"
        import shutil

        shutil.copytree(smol_model_dir, strict)
        tok = AutoTokenizer.from_pretrained(strict)
        tok.chat_template = STRICT_TEMPLATE
        tok.save_pretrained(strict)
        good = [{"role": "user", "content": "1+1="}, {"role": "assistant", "content": "2"}]
        bad = [{"role": "user", "content": "1+1="}, {"role": "user", "content": "?"},
               {"role": "assistant", "content": "2"}]
        path = _jsonl(tmp_path / "chats.jsonl", [{"messages": good}, {"messages": bad}])
        raw = chat_recipe(tmp_path, str(strict), gym=None, data={"path": path}, eval={"n": 0})
        return raw, (f"error: {path}:2: the chat template rejects a conversation with roles [user, user, assistant]: "
                     "Conversation roles must alternate")
    if case == "too_long":
        path = _jsonl(tmp_path / "long.jsonl", [{"prompt": "1+1=", "completion": "2"},
                                                 {"prompt": "9" * 300 + "+1=", "completion": "1" + "0" * 300}])
        raw = tiny_recipe_dict(tmp_path, gym=None, data={"path": path}, eval={"n": 0},
                               train={"max_length": 1024})
        return raw, (f"error: {path}:2: the example is 605 tokens, longer than the model's context of 256 tokens; "
                     "train.max_length=1024 does not cut it to fit: set train.max_length=256 or less, or shorten it")
    if case == "empty":
        path = _write(tmp_path / "empty.jsonl", "\n")
        return tiny_recipe_dict(tmp_path, gym=None, data={"path": path}, eval={"n": 0}), \
            f"error: {path}: empty dataset (no rows)"
    assert case == "all_cut"
    return tiny_recipe_dict(tmp_path, train={"max_length": 4}), \
        "error: none of the 64 examples keeps a trained token after the cut to train.max_length=4"


@pytest.mark.parametrize("case", ["roles", "too_long", "empty", "all_cut"])
def test_bad_data_is_one_line_exit_2_and_no_run_folder(smol_model_dir, tmp_path, capsys, case):
    raw, expected = _bad_input(tmp_path, smol_model_dir, case)
    recipe = _write(tmp_path / "recipe.yaml", yaml.safe_dump(raw))
    assert main(["sft", recipe]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(expected), err
    assert not Path(raw["output_dir"]).exists()  # nothing half-written


def test_python_m_ftkit_reports_a_rejected_conversation_in_one_line(smol_model_dir, tmp_path):
    raw, expected = _bad_input(tmp_path, smol_model_dir, "roles")
    recipe = _write(tmp_path / "recipe.yaml", yaml.safe_dump(raw))
    done = subprocess.run([sys.executable, "-m", "ftkit", "sft", recipe], capture_output=True, text=True,
                          timeout=300, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 2
    assert done.stderr.strip().startswith(expected) and "\n" not in done.stderr.strip()
    assert not Path(raw["output_dir"]).exists()


def test_examples_longer_than_max_length_are_cut_and_counted_not_an_error(tiny_recipe):
    from ftkit.sft import SFTRun

    out = io.StringIO()
    run = SFTRun(validate_recipe(tiny_recipe(train={"max_length": 8})),
                 console=Console(file=out, highlight=False, soft_wrap=True))
    run._setup_data()
    # "12+34=" is 6 tokens, "46" and the end of text 3: every example is cut to 8, keeping one answer token
    assert out.getvalue().strip() == "64 of 64 examples are cut by train.max_length=8, see ftkit data show"
    assert set(map(len, run.train_dataset["input_ids"])) == {8}
    assert not run.run_dir.exists()


def test_held_out_problems_are_shown_as_the_model_was_trained(tiny_recipe):
    from ftkit.sft import _eval_task
    from gyms.spec import GymSpec

    chat_gym = {"id": "arithmetic", "kwargs": {"digits": 2}, "chat": True, "system_prompt": SYSTEM}
    # eval.gym without chat settings of its own: the recipe gym's
    recipe = validate_recipe(tiny_recipe(gym=chat_gym, eval={"gym": {"id": "arithmetic", "kwargs": {"digits": 3}}}))
    assert _eval_task(recipe) == GymSpec("arithmetic", {"digits": 3}, chat=True, system_prompt=SYSTEM)
    # ...unless it says otherwise
    plain = validate_recipe(tiny_recipe(gym=chat_gym, eval={"gym": {"id": "arithmetic", "chat": False}}))
    assert _eval_task(plain) == GymSpec("arithmetic")
    # trained on conversations from a file: scored through the chat template too
    on_file = validate_recipe(tiny_recipe(gym=None, data={"path": "chats.jsonl"}, eval={"gym": {"id": "arithmetic"}}))
    assert _eval_task(on_file, chat_data=True) == GymSpec("arithmetic", chat=True)
    assert _eval_task(on_file) == GymSpec("arithmetic")
