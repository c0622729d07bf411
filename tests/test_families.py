"""Every path on the architectures people fine-tune: tiny random Llama, Qwen2, Mistral, Gemma 2, Phi-3 and
Gemma 3 (a nested, multimodal config) models built here from transformers' config classes, each with the
real SmolLM2 tokenizer dressed as the family's (tests/families.py).

What they catch that GPT-2 cannot: a turn that ends with a token other than the tokenizer's eos (Llama's
<|eot_id|>, Qwen's <|im_end|>, Gemma's <end_of_turn>, Phi-3's <|end|>), pad = eos (Qwen, Phi-3), a BOS
added by the tokenizer and written again by the template (Llama, Gemma, Mistral), templates that refuse a
system message (Mistral, Gemma 2), fused projections (Phi-3's qkv_proj), q/k/v biases (Qwen2), untied
heads (Mistral, Phi-3), and a config whose causal-LM settings live in `text_config` (Gemma 3).

The matrix (each path on two families or more; each family trains with SFT, is evaluated and trains with RL):

| path                                        | llama | qwen2 | mistral | gemma2 | phi3 | gemma3 |
| ------------------------------------------- | ----- | ----- | ------- | ------ | ---- | ------ |
| load: pad, context, tied, GELU, stops, LoRA | x     | x     | x       | x      | x    | x      |
| one BOS at every stage, left padding        | x     | x     | x       | x      | x    | x      |
| stop at the turn's end: engine, `ftkit eval`|       |       |         |        |      |        |
|   (plain, --chat), `ftkit collect rollouts` | x     | x     | x       | x      | x    | x      |
| SFT full (plain) + `ftkit eval`             | x     | x     | x       | x      | x    | x      |
| SFT chat (messages, multi-turn)             | x     | x     | x       | x      | x    |        |
| SFT chat on the gym + `ftkit eval` (chat)   | x     | x     | x       |        |      | x      |
| SFT LoRA + merge + `ftkit export`           | x     |       |         |        | x    | x      |
| SFT QLoRA 4-bit                             |       | x     | x       |        |      |        |
| SFT QLoRA 8-bit                             | x     |       |         | x      |      |        |
| DPO (plain full / chat LoRA)                |       | x     |         | x      | x    |        |
| RM (plain / chat pairs)                     | x     | x     |         |        |      | x      |
| RL GRPO plain, full                         | x     | x     | x       | x      | x    | x      |
| RL GRPO chat multi-turn, LoRA + `ftkit eval`| x     | x     |         | x      |      |        |
| RL chat episodes grow by the template       | x     | x     |         | x      |      | x      |
| RL stops at the turn's end (chat)           | x     | x     |         |        | x    |        |
| RL PPO (value head)                         |       | x     |         |        | x    | x      |
| RL QLoRA 4-bit                              | x     | x     |         |        |      |        |

    OMP_NUM_THREADS=1 python -m pytest tests/test_families.py -q
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from families import CONTEXT, FAMILIES

from ftkit.cli import main

ALL = list(FAMILIES)
CHAT_SYSTEM = {name for name, f in FAMILIES.items() if f.system_role}


# ---------------------------------------------------------------------------------------------------
# helpers


def _write(folder: Path, raw: dict, name: str = "recipe.yaml") -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def _merge(recipe: dict, sections: dict) -> dict:
    for key, value in sections.items():
        recipe[key] = {**recipe[key], **value} if isinstance(value, dict) and isinstance(recipe.get(key), dict) \
            else value
    return recipe


def sft_recipe(out: Path, model: str, **sections) -> dict:
    recipe = {"name": "fam", "output_dir": str(out), "model": {"name": model},
              "gym": {"id": "arithmetic", "kwargs": {"digits": 1}}, "data": {"train_size": 16},
              "train": {"max_steps": 2, "per_device_train_batch_size": 4, "learning_rate": 1e-3, "logging_steps": 1,
                        "save_steps": 10, "max_length": 64},
              "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
              "eval": {"n": 4, "seed": 1, "max_new_tokens": 4, "samples": 2, "batch_size": 4}}
    return _merge(recipe, sections)


def rl_recipe(out: Path, model: str, **sections) -> dict:
    recipe = {"name": "fam_rl", "output_dir": str(out), "algo": "grpo", "model": {"name": model},
              "gym": {"id": "arithmetic", "kwargs": {"digits": 1}},
              "rollout": {"prompts_per_step": 2, "num_generations": 4, "max_completion_length": 4, "engine": "hf"},
              "train": {"max_steps": 2, "learning_rate": 1e-3, "per_device_train_batch_size": 8, "save_steps": 10},
              "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
              "eval": {"n": 4, "max_new_tokens": 4, "samples": 2, "every_steps": 100, "batch_size": 4}}
    return _merge(recipe, sections)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def summary_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def assert_finite_losses(run_dir: Path, key: str = "loss") -> list[float]:
    losses = [r[key] for r in read_jsonl(run_dir / "metrics.jsonl") if key in r]
    assert losses, f"no {key} in {run_dir / 'metrics.jsonl'}"
    assert all(math.isfinite(x) for x in losses), losses
    return losses


def tokenizer_of(folder: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


def ids_of(tok, tokens) -> list[int]:
    return [tok.convert_tokens_to_ids(t) for t in tokens]


def loaded(folder: str, method: str = "full"):
    from ftkit.config import ModelConfig
    from ftkit.models import load_model, load_tokenizer

    cfg = ModelConfig(name=folder)
    return load_model(folder, cfg, method), load_tokenizer(folder, cfg)


def assert_ties_kept(folder: Path, family) -> None:
    """A saved model's head is tied to its embeddings exactly where the family ties them."""
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder)
    shared = model.get_input_embeddings().weight.data_ptr() == model.get_output_embeddings().weight.data_ptr()
    assert shared == family.tied, f"{folder}: tied={shared}, the family's {family.tied}"
    assert model.config.get_text_config().tie_word_embeddings == family.tied
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        names = list(f.keys())  # a safetensors file is not iterable
    heads = [k for k in names if k.endswith("lm_head.weight")]
    assert bool(heads) != family.tied, heads


def chat_bos_count(family) -> int:
    """How many BOS a chat prompt holds: the one the template writes, where it writes one."""
    return int(family.bos is not None and "bos_token" in family.template_text())


def plain_bos_count(family) -> int:
    return int(family.adds_bos)


def chat_prompt(name: str, text: str) -> list[dict]:
    head = [{"role": "system", "content": "Answer with a number."}] if name in CHAT_SYSTEM else []
    return [*head, {"role": "user", "content": text}]


def stop_ids(tok, family) -> set[int]:
    return set(ids_of(tok, family.stops)) | {tok.convert_tokens_to_ids(family.end_of_turn), tok.eos_token_id}


# ---------------------------------------------------------------------------------------------------
# loading: what ftkit reads from the family's config and tokenizer (no training; all families)


@pytest.mark.parametrize("name", ALL)
def test_loading_keeps_pad_context_ties_activations_and_stop_tokens(family_models, name):
    from transformers import AutoModelForCausalLM

    from ftkit.chat import stop_token_ids
    from ftkit.evaluate import context_length

    family, folder = FAMILIES[name], family_models[name]
    model, tok = loaded(folder)
    # pad: the family's own where it has one, else eos (never None: batches need one)
    assert tok.pad_token == (family.pad or family.eos)
    # context length from the config (Gemma 3 keeps it in text_config)
    assert context_length(model) == CONTEXT
    # tied embeddings stay tied (one tensor), untied heads stay apart
    shared = model.get_input_embeddings().weight.data_ptr() == model.get_output_embeddings().weight.data_ptr()
    assert shared == family.tied
    # the fused-GELU swap applies to GPT-2's gelu_new only: these models load module for module as saved
    plain = AutoModelForCausalLM.from_pretrained(folder)
    assert [type(m).__name__ for m in model.modules()] == [type(m).__name__ for m in plain.modules()]
    ids = torch.tensor([tok("12+34=")["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(ids).logits, plain.eval()(ids).logits)
    # every token that ends an answer: generation_config's list, the tokenizer's eos, the template's turn end
    assert set(stop_token_ids(tok, model)) >= stop_ids(tok, family)


@pytest.mark.parametrize("name", ALL)
def test_lora_targets_of_each_family_are_found(family_models, name):
    from peft import get_peft_model

    from ftkit.config import LoraSection
    from ftkit.models import lora_config

    family = FAMILIES[name]
    for targets in (list(family.lora_targets), "all-linear"):
        model, _ = loaded(family_models[name])
        peft_model = get_peft_model(model, lora_config(LoraSection(r=4, alpha=8, target_modules=targets)))
        adapted = {n.rsplit(".", 1)[-1] for n, m in peft_model.named_modules() if hasattr(m, "lora_A")}
        wanted = set(family.lora_targets)
        assert wanted <= adapted if targets == "all-linear" else adapted == wanted, (targets, adapted)
        assert "lm_head" not in adapted


# ---------------------------------------------------------------------------------------------------
# token ids at each stage: one BOS, left padding, the end of an answer (no training; all families)


@pytest.mark.parametrize("name", ALL)
def test_one_bos_at_every_stage(family_models, name):
    """A prompt is the same ids whether SFT's formatter, the generation engine or an RL rollout makes it."""
    from ftkit.chat import Formatter
    from ftkit.engine import HFEngine, SamplingParams
    from ftkit.rl.rollout import collect
    from gyms.spec import GymSpec

    family = FAMILIES[name]
    model, tok = loaded(family_models[name])
    engine = HFEngine(model, tok)
    bos = tok.bos_token_id
    for chat, expected in ((False, plain_bos_count(family)), (True, chat_bos_count(family))):
        prompt = chat_prompt(name, "3+4=") if chat else "3+4="
        formatted = Formatter(tok, chat=chat).prompt_ids(prompt)
        assert engine.encode(prompt) == formatted, f"chat={chat}: the engine and the formatter disagree"
        assert formatted.count(bos) == expected if bos is not None else True, (chat, tok.decode(formatted))
        if expected:
            assert formatted[0] == bos
        # an RL episode starts with the same ids
        spec = GymSpec("arithmetic", {"digits": 1}, chat=chat,
                       system_prompt="Answer with a number." if chat and name in CHAT_SYSTEM else None)
        episode = collect(engine, tok, spec, [7], SamplingParams(max_new_tokens=2, seed=0)).episodes[0]
        observation = episode.trajectory.turns[0].observation
        first = Formatter(tok, chat=chat, system_prompt=spec.system_prompt).prompt_ids(observation)
        ids = episode.tokens.input_ids
        assert ids[: len(first)] == first, f"chat={chat}: the RL episode does not start with the prompt's ids"
        if bos is not None:
            assert ids.count(bos) == expected, (chat, tok.decode(ids))


@pytest.mark.parametrize("name", ALL)
def test_batched_generation_pads_on_the_left(family_models, name):
    """Prompts of different lengths in one batch give what each gives alone (the tokenizer pads right)."""
    from ftkit.engine import HFEngine, SamplingParams

    model, tok = loaded(family_models[name])
    assert tok.padding_side == "right"
    engine = HFEngine(model, tok, batch_size=8)
    prompts = ["1+1=", "what is 12 + 34 times 56, then minus 7?", chat_prompt(name, "9+9="),
               chat_prompt(name, "a much longer question about 1234 + 5678 and more")]
    params = SamplingParams(max_new_tokens=5, temperature=0, logprobs=False)
    together = engine.generate(prompts, params)
    alone = [engine.generate([p], params)[0] for p in prompts]
    assert [c.token_ids for c in together] == [c.token_ids for c in alone]
    assert tok.padding_side == "right"  # put back


@pytest.mark.parametrize("name", ALL)
def test_the_lean_loop_samples_what_generate_samples(family_models, name):
    """ftkit's sampling loop (`ftkit/decode.py`) against `model.generate`, from the same random state: the
    same tokens and log-probs, greedy and sampled, with repeated and left-padded chat and plain prompts."""
    from ftkit.engine import HFEngine, SamplingParams

    model, tok = loaded(family_models[name])
    lean, generate = HFEngine(model, tok, loop="lean"), HFEngine(model, tok, loop="generate")
    prompts = [chat_prompt(name, "9+9="), "1+1=", chat_prompt(name, "a longer question: 1234 + 5678?")] * 3
    for params in (SamplingParams(max_new_tokens=6, temperature=0),
                   SamplingParams(max_new_tokens=6, seed=1, temperature=0.8, top_p=0.9)):
        ours, theirs = lean.generate(prompts, params), generate.generate(prompts, params)
        assert [c.token_ids for c in ours] == [c.token_ids for c in theirs]
        for a, b in zip(ours, theirs):
            assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)


@pytest.mark.parametrize("name", ALL)
def test_rl_forward_shares_a_groups_prompt_with_the_same_gradient(family_models, name):
    """The RL forward pass computes a prompt once for the episodes that share it (`forward_tokens`):
    the log-probs and the gradient are those of one full pass per episode."""
    from ftkit.rl import policy

    model, tok = loaded(family_models[name])
    model.train()
    ids, attn, mask = grouped_batch(tok)
    plain, shared = [], []
    for results, share in ((plain, False), (shared, True)):
        model.zero_grad()
        with pytest.MonkeyPatch.context() as mp:
            if not share:
                mp.setattr(policy, "_shared_prompt_logits", lambda *args: None)
            logprobs, _, _ = policy.forward_tokens(model, ids, attn, 0.7, loss_mask=mask)
        (logprobs * mask).sum().backward()
        results += [logprobs * mask] + [p.grad.clone() for p in model.parameters() if p.grad is not None]
    assert policy._shared_prompt_logits(model, ids, attn, mask) is not None
    for a, b in zip(shared, plain, strict=True):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


def grouped_batch(tok):
    """Three prompts of different lengths, four right-padded episodes each, as a GRPO batch looks."""
    rows, starts = [], []
    for g, prompt in enumerate(["1+1=", "a longer prompt: 12+34=", "7*8="]):
        ids = tok(prompt)["input_ids"]
        for k in range(4):
            rows.append(ids + tok(" " + str(10 ** ((g + k) % 4)))["input_ids"])
            starts.append(len(ids) - 1)
    width = max(map(len, rows))
    ids, attn = torch.zeros(len(rows), width, dtype=torch.long), torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width - 1)
    for r, (row, start) in enumerate(zip(rows, starts)):
        ids[r, : len(row)], attn[r, : len(row)] = torch.tensor(row), 1
        mask[r, start : len(row) - 1] = 1
    return ids, attn, mask


@pytest.mark.parametrize("name", ALL)
def test_generation_stops_at_the_turn_end(family_stop_models, name):
    """The rigged model answers with the family's turn-end token, then writes "X": an engine that stops
    only at tokenizer.eos_token_id returns "XXX"."""
    from ftkit.engine import HFEngine, SamplingParams

    family = FAMILIES[name]
    model, tok = loaded(family_stop_models[name])
    end = tok.convert_tokens_to_ids(family.end_of_turn)
    engine = HFEngine(model, tok)
    prompts = ["3+4=", "a longer plain prompt: 12+34=", chat_prompt(name, "3+4=")]
    for temperature in (0.0, 1.0):
        params = SamplingParams(max_new_tokens=6, temperature=temperature, seed=0, logprobs=temperature > 0)
        for completion in engine.generate(prompts, params):
            assert (completion.text, completion.token_ids, completion.finish_reason) == ("", [end], "eos"), \
                (completion.prompt, completion.text, tok.convert_ids_to_tokens(completion.token_ids))


@pytest.mark.parametrize("name", ALL)
def test_eval_and_collect_answers_end_at_the_turn_end(family_stop_models, tmp_path, monkeypatch, name):
    """`ftkit eval` and `ftkit collect rollouts` (plain and --chat) end each answer at the family's turn end."""
    monkeypatch.chdir(tmp_path)
    model = family_stop_models[name]
    assert main(["eval", "--gym", "arithmetic", "--model", model, "digits=1", "--n", "4", "--max-new-tokens", "4",
                 "--engine", "hf", "--output", "eval.json"]) == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["n"] == 4 and [s["completion"] for s in result["samples"]] == [""] * len(result["samples"])
    system = ["--system-prompt", "Answer with a number."] if name in CHAT_SYSTEM else []
    assert main(["eval", "--gym", "arithmetic", "--model", model, "digits=1", "--n", "4", "--max-new-tokens", "4",
                 "--engine", "hf", "--chat", *system, "--output", "chat_eval.json"]) == 0
    result = json.loads((tmp_path / "chat_eval.json").read_text())
    assert result["n"] == 4 and [s["completion"] for s in result["samples"]] == [""] * len(result["samples"])
    for chat in (False, True):
        out = f"rollouts_{chat}"
        assert main(["collect", "rollouts", "--gym", "arithmetic", "digits=1", "--model", model, "--n", "2", "--k", "2",
                     "--max-new-tokens", "4", "--engine", "hf", "--out", out, *(["--chat"] if chat else [])]) == 0
        from data_tools.store import read_dataset

        rows = read_dataset(out)["train"]
        assert len(rows) == 4
        answers = [r["completion"] for r in rows] if not chat else \
            [m["content"] for r in rows for m in r["messages"] if m["role"] == "assistant"]
        assert answers == [""] * 4, answers


# ---------------------------------------------------------------------------------------------------
# SFT


def _sft_run(raw: dict):
    from ftkit.config import validate_recipe
    from ftkit.sft import SFTRun

    run = SFTRun(validate_recipe(raw))
    return run, run.run()


def _trained_rows(run, n: int = 2) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) of the first n training examples as TRL's collator batches them (padded)."""
    dataset = run.trainer.train_dataset
    batch = run.trainer.data_collator([dataset[i] for i in range(n)])
    return [(batch["input_ids"][i].tolist(), batch["labels"][i].tolist()) for i in range(n)]


@pytest.mark.parametrize("name", ALL)
def test_sft_full_then_ftkit_eval(family_models, tmp_path, name):
    """Full SFT on the gym's plain text: one BOS, the answer's end trained (even where pad = eos), the
    model saved with the family's stop list; then `ftkit eval` on the saved folder."""
    family = FAMILIES[name]
    run_dir = tmp_path / "sft"
    run, summary = _sft_run(sft_recipe(run_dir, family_models[name]))
    assert summary["steps"] == 2 and math.isfinite(summary["train_loss"])
    assert summary["eval_n"] == 4
    assert_finite_losses(run_dir)
    tok = tokenizer_of(str(run_dir / "model"))
    stops = stop_ids(tok, family)
    for ids, labels in _trained_rows(run):
        trained = [i for i, label in enumerate(labels) if label != -100]
        assert trained, "nothing is trained"
        assert ids[trained[-1]] in stops, f"the answer's end is not trained: {tok.decode(ids)!r}"
        if tok.bos_token_id is not None:
            assert ids.count(tok.bos_token_id) == plain_bos_count(family), tok.decode(ids)
    # the saved model keeps the family's stop list and the tokenizer its pad and template
    saved = json.loads((run_dir / "model" / "generation_config.json").read_text())
    eos = saved["eos_token_id"]
    assert set(eos if isinstance(eos, list) else [eos]) == set(ids_of(tok, family.stops))
    assert tok.chat_template == family.template_text() and tok.pad_token == (family.pad or family.eos)
    assert_ties_kept(run_dir / "model", family)
    assert main(["eval", "--gym", "arithmetic", "--model", str(run_dir / "model"), "--n", "4",
                 "--max-new-tokens", "4", "--engine", "hf", "--output", str(tmp_path / "eval.json")]) == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["n"] == 4 and result["by_difficulty"]


@pytest.mark.parametrize("name", ["llama", "qwen2", "mistral", "gemma3"])
def test_sft_on_the_gym_in_chat_then_ftkit_eval_in_chat(family_models, tmp_path, name):
    """`gym: {chat: true}` in SFT: the gym's problems as user messages (after a system prompt where the
    template takes one), the answer and its turn end trained; the model remembers chat for `ftkit eval`."""
    family = FAMILIES[name]
    gym = {"id": "arithmetic", "kwargs": {"digits": 1}, "chat": True}
    if name in CHAT_SYSTEM:
        gym["system_prompt"] = "Answer with a number."
    run_dir = tmp_path / "sft"
    run, summary = _sft_run(sft_recipe(run_dir, family_models[name], gym=gym))
    assert summary["steps"] == 2 and math.isfinite(summary["train_loss"]) and summary["eval_n"] == 4
    tok = tokenizer_of(str(run_dir / "model"))
    for ids, labels in _trained_rows(run):
        trained = tok.decode([t for t, label in zip(ids, labels) if label != -100])
        assert trained.endswith(family.end_of_turn) and trained[: -len(family.end_of_turn)].isdigit(), trained
        if tok.bos_token_id is not None:
            assert ids.count(tok.bos_token_id) == chat_bos_count(family), tok.decode(ids)
        if "system_prompt" in gym:
            assert "Answer with a number." in tok.decode(ids)
    trained_with = json.loads((run_dir / "model" / "ftkit_training_data.json").read_text())
    assert trained_with["gym"]["chat"] is True, trained_with
    assert main(["eval", "--gym", "arithmetic", "--model", str(run_dir / "model"), "--n", "4",
                 "--max-new-tokens", "4", "--engine", "hf", "--output", str(tmp_path / "eval.json")]) == 0
    assert json.loads((tmp_path / "eval.json").read_text())["n"] == 4


def _chat_rows(n: int = 16) -> list[dict]:
    rows = []
    for i in range(n):
        a, b = i % 10, (3 * i) % 10
        messages = [{"role": "user", "content": f"{a}+{b}="}, {"role": "assistant", "content": str(a + b)}]
        if i % 2:  # every other conversation has a second turn
            messages += [{"role": "user", "content": "and times 2?"}, {"role": "assistant", "content": str(2 * (a + b))}]
        rows.append({"messages": messages})
    return rows


def _strip_leading(text: str, tokens) -> str:
    """`text` without the whitespace and `tokens` it starts with."""
    while True:
        start = text
        text = text.lstrip()
        for token in tokens:
            text = text.removeprefix(token)
        if text == start:
            return text


@pytest.mark.parametrize("name", ["llama", "qwen2", "mistral", "gemma2", "phi3"])
def test_sft_chat_trains_each_answer_and_its_turn_end(family_models, tmp_path, name):
    """SFT on conversations with the family's template (none of them has {% generation %} markers): each
    assistant answer and the token that closes its turn are trained, nothing of the prompts."""
    family = FAMILIES[name]
    data = tmp_path / "chat.jsonl"
    rows = _chat_rows()
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run_dir = tmp_path / "sft"
    run, summary = _sft_run(sft_recipe(run_dir, family_models[name], gym=None, data={"path": str(data)},
                                       eval={"n": 0}))
    assert summary["steps"] == 2 and math.isfinite(summary["train_loss"])
    tok = tokenizer_of(str(run_dir / "model"))
    end = family.end_of_turn
    for (ids, labels), row in zip(_trained_rows(run), rows):
        trained = tok.decode([t for t, label in zip(ids, labels) if label != -100])
        answers = [m["content"] for m in row["messages"] if m["role"] == "assistant"]
        expected = "".join(a + end for a in answers)
        # after each turn end, only whitespace and stop tokens may be trained (Phi-3's template closes a
        # conversation with its eos)
        pieces = trained
        for answer in answers:
            assert pieces.startswith(answer + end), (trained, expected)
            pieces = _strip_leading(pieces[len(answer + end):], family.stops)
        assert pieces == "", (trained, expected)
        if tok.bos_token_id is not None:
            assert ids.count(tok.bos_token_id) == chat_bos_count(family), tok.decode(ids)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["llama", "phi3", "gemma3"])
def test_sft_lora_merge_export_and_eval_the_adapter(family_models, tmp_path, name):
    """LoRA on the family's own target modules, merged at the end and by `ftkit export`; `ftkit eval`
    scores the adapter folder; the merged folder is a plain model of the same class and ties."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    family = FAMILIES[name]
    run_dir = tmp_path / "lora"
    recipe = sft_recipe(run_dir, family_models[name], method="lora", merge_adapter=True,
                        lora={"target_modules": list(family.lora_targets)}, train={"learning_rate": 1e-2})
    assert main(["sft", _write(tmp_path, recipe)]) == 0
    summary = summary_of(run_dir)
    assert math.isfinite(summary["train_loss"]) and summary["parameters"]["trainable"] < summary["parameters"]["total"]
    adapter = run_dir / "adapter"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert set(config["target_modules"]) == set(family.lora_targets)
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    assert any(t.abs().sum() > 0 for k, t in weights.items() if "lora_B" in k), "LoRA B never moved"
    assert main(["export", str(adapter), str(tmp_path / "exported")]) == 0
    base = AutoModelForCausalLM.from_pretrained(family_models[name])
    merged = AutoModelForCausalLM.from_pretrained(run_dir / "merged")
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "exported")
    assert type(merged) is type(base) is type(exported)
    assert merged.config.get_text_config().tie_word_embeddings == family.tied
    for key, value in merged.state_dict().items():
        torch.testing.assert_close(exported.state_dict()[key], value)
    assert any(not torch.allclose(merged.state_dict()[k], v) for k, v in base.state_dict().items())
    assert json.loads((tmp_path / "exported" / "generation_config.json").read_text())["eos_token_id"] == \
        json.loads((Path(family_models[name]) / "generation_config.json").read_text())["eos_token_id"]
    assert main(["eval", "--gym", "arithmetic", "--model", str(adapter), "--n", "4", "--max-new-tokens", "4",
                 "--engine", "hf", "--output", str(tmp_path / "eval.json")]) == 0
    assert json.loads((tmp_path / "eval.json").read_text())["n"] == 4


@pytest.mark.slow
@pytest.mark.parametrize(("name", "bits"), [("qwen2", 4), ("mistral", 4), ("llama", 8), ("gemma2", 8)])
def test_sft_qlora(family_models, tmp_path, name, bits):
    run_dir = tmp_path / "qlora"
    recipe = sft_recipe(run_dir, family_models[name], method="qlora", quantization={"bits": bits},
                        train={"learning_rate": 1e-2})
    assert main(["sft", _write(tmp_path, recipe)]) == 0
    summary = summary_of(run_dir)
    assert summary["steps"] == 2 and math.isfinite(summary["train_loss"]) and summary["eval_n"] == 4
    assert summary["parameters"]["trainable"] < 0.5 * summary["parameters"]["total"]
    assert (run_dir / "adapter" / "adapter_config.json").is_file()


# ---------------------------------------------------------------------------------------------------
# DPO and reward models

PLAIN_PAIRS = [{"prompt": f"{a}+{b}=", "chosen": str(a + b), "rejected": "no idea"} for a in range(5) for b in range(4)]


def _chat_pairs() -> list[dict]:
    return [{"prompt": [{"role": "user", "content": p["prompt"]}],
             "chosen": [{"role": "assistant", "content": p["chosen"]}],
             "rejected": [{"role": "assistant", "content": p["rejected"]}]} for p in PLAIN_PAIRS]


def _pairs_folder(tmp_path: Path, chat: bool) -> str:
    from data_tools.store import write_dataset

    rows = _chat_pairs() if chat else PLAIN_PAIRS
    folder = tmp_path / ("chat_pairs" if chat else "pairs")
    write_dataset(folder, {"train": rows[:16], "validation": rows[16:]}, {"kind": "pairs", "command": "test"})
    return str(folder)


def _pairs_recipe(tmp_path: Path, kind: str, model: str, data: str, **sections) -> dict:
    recipe = sft_recipe(tmp_path / kind, model, kind=kind, data={"path": data},
                        train={"max_steps": 3, "max_length": 64, "learning_rate": 1e-3}, **sections)
    recipe["name"] = f"fam_{kind}"
    if kind == "rm":
        recipe.pop("gym")
    return recipe


@pytest.mark.slow
@pytest.mark.parametrize(("name", "chat", "method"), [("qwen2", False, "full"), ("phi3", False, "full"),
                                                      ("gemma2", True, "lora")])
def test_dpo(family_models, tmp_path, name, chat, method):
    run_dir = tmp_path / "dpo"
    recipe = _pairs_recipe(tmp_path, "dpo", family_models[name], _pairs_folder(tmp_path, chat), method=method)
    assert main(["dpo", _write(tmp_path, recipe)]) == 0
    summary = summary_of(run_dir)
    assert summary["steps"] == 3 and summary["eval_n"] == 4
    losses = assert_finite_losses(run_dir)
    assert losses[0] == pytest.approx(math.log(2), abs=1e-3)  # policy == reference at the start
    assert (run_dir / ("model" if method == "full" else "adapter")).is_dir()


@pytest.mark.slow
@pytest.mark.parametrize(("name", "chat"), [("llama", False), ("qwen2", True), ("gemma3", False)])
def test_reward_model(family_models, tmp_path, name, chat):
    from ftkit.preference import RewardScorer

    run_dir = tmp_path / "rm"
    recipe = _pairs_recipe(tmp_path, "rm", family_models[name], _pairs_folder(tmp_path, chat))
    assert main(["rm", _write(tmp_path, recipe)]) == 0
    summary = summary_of(run_dir)
    assert summary["steps"] == 3 and math.isfinite(summary["train_loss"])
    result = json.loads((run_dir / "eval.json").read_text())
    assert result["n"] == 4 and 0.0 <= result["accuracy"] <= 1.0
    scores = RewardScorer.load(str(run_dir / "model")).score(["1+2=", "3+3="], ["3", "no idea"])
    assert len(scores) == 2 and all(math.isfinite(s) for s in scores)


# ---------------------------------------------------------------------------------------------------
# RL


def _rl(tmp_path: Path, recipe: dict) -> tuple[Path, dict]:
    assert main(["rl", _write(tmp_path, recipe)]) == 0
    run_dir = Path(recipe["output_dir"])
    return run_dir, summary_of(run_dir)


def _step_records(run_dir: Path) -> list[dict]:
    return [r for r in read_jsonl(run_dir / "metrics.jsonl") if "reward_mean" in r]


@pytest.mark.parametrize("name", ALL)
def test_rl_grpo_plain_full(family_models, tmp_path, name):
    family = FAMILIES[name]
    run_dir, summary = _rl(tmp_path, rl_recipe(tmp_path / "rl", family_models[name]))
    assert summary["steps"] == 2
    records = _step_records(run_dir)
    assert len(records) == 2 and all(math.isfinite(r["loss"]) for r in records)
    assert all(1 <= r["response_length"] <= 4 for r in records)
    saved = json.loads((run_dir / "model" / "generation_config.json").read_text())["eos_token_id"]
    tok = tokenizer_of(str(run_dir / "model"))
    assert set(saved if isinstance(saved, list) else [saved]) == set(ids_of(tok, family.stops))
    assert_ties_kept(run_dir / "model", family)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["llama", "qwen2", "gemma2"])
def test_rl_grpo_chat_multi_turn_lora(family_models, tmp_path, name):
    """guess_number in the family's chat template (with a system prompt where the template takes one):
    the conversation grows turn by turn as one token sequence."""
    gym = {"id": "guess_number", "kwargs": {"max_number": 8}, "chat": True, "max_turns": 3}
    if name in CHAT_SYSTEM:
        gym["system_prompt"] = "Guess the number."
    recipe = rl_recipe(tmp_path / "rl", family_models[name], method="lora", gym=gym,
                       rollout={"max_completion_length": 6, "temperature": 1.5}, eval={"n": 2, "max_new_tokens": 6})
    run_dir, summary = _rl(tmp_path, recipe)
    assert summary["steps"] == 2
    records = _step_records(run_dir)
    assert all(math.isfinite(r["loss"]) and 1 <= r["turns_mean"] <= 3 for r in records)
    assert (run_dir / "adapter" / "adapter_config.json").is_file()
    # `ftkit eval` on the adapter plays the gym as the run did (chat, system prompt, turn limit)
    assert main(["eval", "--gym", "guess_number", "--model", str(run_dir / "adapter"), "--n", "2",
                 "--max-new-tokens", "6", "--engine", "hf", "--output", str(tmp_path / "eval.json")]) == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["n"] == 2 and 1 <= result["mean_turns"] <= 3


@pytest.mark.parametrize("name", ["llama", "qwen2", "gemma2", "gemma3"])
def test_chat_episodes_grow_by_the_template(family_models, name):
    """Multi-turn chat episodes of a random model (answers with spaces, newlines, anything): every turn's
    prompt holds the observations in the template's frame, one BOS, and the actions as sampled."""
    from ftkit.chat import Formatter
    from ftkit.engine import HFEngine, SamplingParams
    from ftkit.rl.rollout import collect
    from gyms.spec import GymSpec

    model, tok = loaded(family_models[name])
    system = "Guess the number." if name in CHAT_SYSTEM else None
    spec = GymSpec("guess_number", {"max_number": 8}, chat=True, system_prompt=system, max_turns=3)
    params = SamplingParams(max_new_tokens=5, temperature=1.5, seed=0)
    batch = collect(HFEngine(model, tok), tok, spec, [1, 2, 3], params, group_size=2)
    first = Formatter(tok, chat=True, system_prompt=system)
    for episode in batch.episodes:
        ids, mask = episode.tokens.input_ids, episode.tokens.policy_mask
        turns = episode.trajectory.turns
        opening = first.prompt_ids(turns[0].observation)
        assert ids[: len(opening)] == opening
        assert sum(1 for a, b in zip(mask, mask[1:]) if a == 0 and b == 1) == len(turns)  # one action per turn
        if tok.bos_token_id is not None:
            assert ids.count(tok.bos_token_id) == chat_bos_count(FAMILIES[name]), tok.decode(ids)
        text = tok.decode(ids)
        for turn in turns:
            assert turn.observation in text


@pytest.mark.slow
@pytest.mark.parametrize("name", ["llama", "qwen2", "phi3"])
def test_rl_episodes_end_at_the_turn_end(family_stop_models, tmp_path, name):
    """Rigged to answer with its turn-end token (then "X"): every RL action is that one token."""
    recipe = rl_recipe(tmp_path / "rl", family_stop_models[name], gym={"chat": True},
                       train={"learning_rate": 1e-6}, eval={"n": 2})
    run_dir, _ = _rl(tmp_path, recipe)
    assert [r["response_length"] for r in _step_records(run_dir)] == [1.0, 1.0]
    actions = [turn["action"] for t in read_jsonl(run_dir / "trajectories.jsonl") for turn in t["turns"]]
    assert actions and set(actions) == {""}, actions


@pytest.mark.slow
@pytest.mark.parametrize("name", ["qwen2", "phi3", "gemma3"])
def test_rl_ppo_with_a_value_head(family_models, tmp_path, name):
    recipe = rl_recipe(tmp_path / "rl", family_models[name], algo="ppo",
                       train={"value_learning_rate": 1e-2, "num_iterations": 2})
    run_dir, summary = _rl(tmp_path, recipe)
    assert summary["steps"] == 2
    records = _step_records(run_dir)
    assert all(math.isfinite(r["value_loss"]) and math.isfinite(r["loss"]) for r in records)
    assert (run_dir / "value_head.safetensors").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["llama", "qwen2"])
def test_rl_qlora(family_models, tmp_path, name):
    """4-bit base, LoRA adapters (Qwen2's q/k/v projections carry biases)."""
    recipe = rl_recipe(tmp_path / "rl", family_models[name], method="qlora", quantization={"bits": 4})
    run_dir, summary = _rl(tmp_path, recipe)
    assert summary["steps"] == 2
    assert all(math.isfinite(r["loss"]) for r in _step_records(run_dir))
    assert (run_dir / "adapter" / "adapter_config.json").is_file()
