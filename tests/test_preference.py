"""`ftkit dpo` and `ftkit rm` smoke runs on a tiny model; an RL run rewarded by the trained reward model."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import write_pairs_folder
from safetensors.torch import load_file

from ftkit.cli import main
from ftkit.config import validate_recipe

# Chosen answers are digits, rejected ones words: a difference a tiny reward model learns in a few steps.
PAIRS = [{"prompt": f"{a}+{b}=", "chosen": str(a + b), "rejected": "no idea"} for a in range(6) for b in range(4)]


@pytest.fixture
def pairs_folder(tmp_path):
    return write_pairs_folder(tmp_path / "pairs", PAIRS)



def preference_recipe(tmp_path, kind: str, data_path: str, model: str, **extra) -> dict:
    recipe = {"name": f"tiny_{kind}", "kind": kind, "output_dir": str(tmp_path / kind), "model": {"name": model},
              "data": {"path": data_path},
              "train": {"max_steps": 3, "per_device_train_batch_size": 4, "learning_rate": 1e-3, "logging_steps": 1,
                        "save_steps": 2, "max_length": 32},
              "eval": {"n": 8, "seed": 1, "max_new_tokens": 3, "samples": 2}}
    recipe.update(extra)
    return recipe


def test_dpo_trains_the_policy_and_scores_it_on_the_gym(tmp_path, pairs_folder, tiny_model):
    from ftkit import preference

    recipe = validate_recipe(preference_recipe(tmp_path, "dpo", pairs_folder, tiny_model,
                                               gym={"id": "arithmetic", "kwargs": {"digits": 1}}))
    summary = preference.main(recipe)
    assert summary["steps"] == 3 and summary["eval_n"] == 8
    before, after = load_file(f"{tiny_model}/model.safetensors"), load_file(tmp_path / "dpo" / "model" / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    losses = [r["loss"] for r in map(json.loads, (tmp_path / "dpo" / "metrics.jsonl").read_text().splitlines())
              if "loss" in r]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    assert losses[0] == pytest.approx(0.6931, abs=1e-3)  # DPO starts at -log sigmoid(0): policy == reference


def test_dpo_with_lora_saves_only_the_adapter(tmp_path, pairs_folder, tiny_model):
    from ftkit import preference

    recipe = validate_recipe(preference_recipe(tmp_path, "dpo", pairs_folder, tiny_model, method="lora",
                                               eval={"n": 0}))
    preference.main(recipe)
    assert (tmp_path / "dpo" / "adapter" / "adapter_config.json").is_file()


def test_reward_model_learns_to_rank_and_rewards_an_rl_run(tmp_path, pairs_folder, tiny_model):
    from ftkit import preference
    from ftkit.preference import RewardScorer
    from ftkit.rl import trainer
    from ftkit.rl.config import load_rl_recipe

    recipe = validate_recipe(preference_recipe(tmp_path, "rm", pairs_folder, tiny_model,
                                               train={"max_steps": 30, "per_device_train_batch_size": 8,
                                                      "learning_rate": 3e-3, "logging_steps": 5, "max_length": 32},
                                               eval={"n": 0}))
    summary = preference.main(recipe)
    assert summary["eval_accuracy"] == 1.0  # on the 4 held-out pairs
    eval_file = json.loads((tmp_path / "rm" / "eval.json").read_text())
    assert eval_file["n"] == 4
    scorer = RewardScorer.load(str(tmp_path / "rm" / "model"))
    assert len(scorer.score(["1+1="], ["2"])) == 1
    rl = load_rl_recipe(None, base={
        "name": "rl_rm", "output_dir": str(tmp_path / "rl"), "algo": "grpo", "model": {"name": tiny_model},
        "gym": {"id": "arithmetic", "kwargs": {"digits": 1}},
        "rollout": {"prompts_per_step": 2, "num_generations": 4, "max_completion_length": 3},
        "train": {"max_steps": 2, "per_device_train_batch_size": 8, "save_steps": 10},
        "eval": {"n": 4, "max_new_tokens": 3, "samples": 1},
        "reward_model": {"path": str(tmp_path / "rm" / "model"), "verifier_weight": 0.5}})
    trainer.main(rl)
    steps = [json.loads(line) for line in (tmp_path / "rl" / "metrics.jsonl").read_text().splitlines()]
    steps = [s for s in steps if "reward_model_score" in s]
    assert len(steps) == 2
    # logged apart: the gym's own reward and the reward model's score
    assert all("reward_mean" in s and s["shaped_reward_mean"] != s["reward_mean"] for s in steps)


@pytest.mark.parametrize(("argv", "expected"), [
    (["dpo", "recipes/gpt2_math.yaml"], "run it with `ftkit sft"),
    (["sft", "recipes/dpo_arithmetic.yaml"], "run it with `ftkit dpo"),
    (["rm", "recipes/dpo_arithmetic.yaml"], "run it with `ftkit dpo"),
    (["dpo", "recipes/dpo_arithmetic.yaml", "train.bta=1"], 'did you mean "beta"'),
    (["rm", "recipes/rm_arithmetic.yaml", "data.path=no/such/folder"], "no such"),
])
def test_bad_preference_input_is_one_line(argv, expected, capsys, tmp_path):
    assert main([*argv, f"output_dir={tmp_path / 'x'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err and expected in err, err


def test_pairs_missing_a_column_name_the_row(tmp_path, tiny_model, capsys):
    import yaml

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "1+1=", "chosen": "2", "rejected": "3"}\n{"prompt": "1+2=", "chosen": "3"}\n')
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(preference_recipe(tmp_path, "dpo", str(bad), tiny_model, eval={"n": 0})))
    assert main(["dpo", str(recipe)]) == 2
    assert "row 1: missing rejected" in capsys.readouterr().err



@pytest.mark.parametrize(("kind", "stop", "message"), [
    ("dpo", {"min_accuracy": 0.5, "difficulty": {"op": "*"}}, "matches none of the held-out problems"),
    ("rm", {"min_accuracy": 0.5}, "needs held-out problems"),  # a reward model is scored on pairs, not a gym
])
def test_preference_runs_check_their_stop_conditions(tmp_path, pairs_folder, tiny_model, kind, stop, message):
    from ftkit import preference
    from ftkit.errors import ConfigError

    raw = preference_recipe(tmp_path, kind, pairs_folder, tiny_model, gym={"id": "arithmetic", "kwargs": {"digits": 1}})
    raw["eval"].update(every_steps=2, stop_when=stop)
    with pytest.raises(ConfigError, match=message):
        preference.main(validate_recipe(raw))
    assert not (tmp_path / kind).exists()  # checked before the run folder is made


CHAT_PAIRS = [{"prompt": [{"role": "user", "content": f"{a}+{b}="}], "chosen": [{"role": "assistant", "content": str(a + b)}],
               "rejected": [{"role": "assistant", "content": "no idea"}]} for a in range(6) for b in range(4)]


def test_reward_model_on_conversational_pairs_scores_the_conversations_it_trained_on(tmp_path, smol_model_dir):
    """Pairs as chat messages (TRL's conversational format): scored as TRL trains on them, the chat
    template's rendering of prompt + answer, not the messages joined as strings."""
    from transformers import AutoTokenizer

    from ftkit import preference
    from ftkit.preference import RewardScorer

    folder = write_pairs_folder(tmp_path / "chat_pairs", CHAT_PAIRS)
    recipe = validate_recipe(preference_recipe(tmp_path, "rm", folder, smol_model_dir,
                                               train={"max_steps": 2, "per_device_train_batch_size": 4,
                                                      "learning_rate": 1e-3, "max_length": 64},
                                               eval={"n": 0, "samples": 2}))
    summary = preference.main(recipe)
    assert json.loads((tmp_path / "rm" / "eval.json").read_text())["n"] == 4 and "eval_accuracy" in summary
    scorer = RewardScorer.load(str(tmp_path / "rm" / "model"))
    tok = AutoTokenizer.from_pretrained(smol_model_dir)
    pair = CHAT_PAIRS[0]
    trl_ids = tok.apply_chat_template(pair["prompt"] + pair["chosen"], tokenize=True, return_dict=True)["input_ids"]
    with torch.no_grad():
        expected = scorer.model(input_ids=torch.tensor([trl_ids])).logits[0, 0].item()
    assert scorer.score([pair["prompt"]], [pair["chosen"]]) == pytest.approx([expected], abs=1e-5)
