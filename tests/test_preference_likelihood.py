"""`reward_head: likelihood`: a reward model scored by its own log-likelihood, trained, saved and loaded back."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import write_pairs_folder

from ftkit.cli import main
from ftkit.config import validate_recipe
from ftkit.preference import sequence_logprob

# Chosen answers are two digits, rejected ones two letters: equal lengths, so an untrained model's
# likelihood does not already rank them by length, and a few steps of training must do it.
PAIRS = [{"prompt": f"{a}+{b}=", "chosen": f"{a + b:02d}", "rejected": "no"} for a in range(6) for b in range(4)]


@pytest.fixture
def pairs_folder(tmp_path):
    return write_pairs_folder(tmp_path / "pairs", PAIRS)



def rm_recipe(tmp_path, data_path: str, model: str, **extra) -> dict:
    recipe = {"name": "tiny_rm", "kind": "rm", "reward_head": "likelihood", "output_dir": str(tmp_path / "rm"),
              "model": {"name": model}, "data": {"path": data_path},
              "train": {"max_steps": 30, "per_device_train_batch_size": 8, "learning_rate": 3e-3,
                        "logging_steps": 5, "save_steps": 100, "max_length": 32},
              "eval": {"n": 0, "samples": 2}}
    recipe.update(extra)
    return recipe


def test_sequence_logprob_sums_each_tokens_logprob_after_the_first_whatever_the_padding():
    logits = torch.tensor([[[0.0, 1.0, 2.0], [2.0, 0.0, 0.0], [0.0, 0.0, 3.0], [1.0, 1.0, 1.0]]])
    ids = torch.tensor([[0, 2, 0, 1]])
    logp = torch.log_softmax(logits, dim=-1)[0]
    by_hand = logp[0, 2] + logp[1, 0] + logp[2, 1]  # token t scored by the logits at t - 1
    assert sequence_logprob(logits, ids, torch.ones_like(ids)).item() == pytest.approx(by_hand.item())
    # one pad on either side: the first real token has no context and is not counted
    pad = torch.zeros(1, 1, 3)
    right = sequence_logprob(torch.cat([logits, pad], 1), torch.cat([ids, ids[:, :1]], 1), torch.tensor([[1, 1, 1, 1, 0]]))
    left = sequence_logprob(torch.cat([pad, logits], 1), torch.cat([ids[:, :1], ids], 1), torch.tensor([[0, 1, 1, 1, 1]]))
    assert right.item() == pytest.approx(by_hand.item()) and left.item() == pytest.approx(by_hand.item())


@pytest.mark.parametrize("method", ["full", "lora"])
def test_likelihood_reward_model_learns_to_rank_and_scores_as_it_trained(tmp_path, pairs_folder, tiny_model, method):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftkit import preference
    from ftkit.preference import RewardScorer

    extra = {"method": method, "lora": {"r": 8, "alpha": 16, "target_modules": "all-linear"}} if method == "lora" else {}
    summary = preference.main(validate_recipe(rm_recipe(tmp_path, pairs_folder, tiny_model, **extra)))
    assert summary["eval_accuracy"] == 1.0  # the 4 held-out pairs
    folder = tmp_path / "rm" / ("model" if method == "full" else "adapter")
    scorer = RewardScorer.load(str(folder))
    pair = PAIRS[21]
    chosen, rejected = scorer.score([pair["prompt"]] * 2, [pair["chosen"], pair["rejected"]])
    assert chosen > rejected
    if method == "lora":
        assert json.loads((folder / "adapter_config.json").read_text())["task_type"] == "CAUSAL_LM"
        return
    # the saved folder is a plain causal LM, marked; its score is the log-likelihood of prompt + answer + EOS
    assert json.loads((folder / "config.json").read_text())["ftkit_reward_head"] == "likelihood"
    lm, tok = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    ids = torch.tensor([tok(pair["prompt"] + pair["chosen"] + tok.eos_token)["input_ids"]])
    with torch.no_grad():
        logp = torch.log_softmax(lm(ids).logits[0, :-1], dim=-1).gather(-1, ids[0, 1:, None]).sum().item()
    assert chosen == pytest.approx(logp, abs=1e-4)


def test_reward_head_is_for_reward_models_only(capsys, tmp_path):
    assert main(["sft", "recipes/gpt2_math.yaml", "reward_head=likelihood", f"output_dir={tmp_path / 'x'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err and "kind: rm" in err, err
