"""Sampler-trainer consistency: the importance weights and mismatch figures by hand, a deliberately
different sampler whose corrected gradient is closer to the on-policy one, the warning, and a tiny run.

    python -m pytest tests/test_rl_correction.py -q
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from ftkit.rl import algorithms as alg
from ftkit.rl.advice import sampler_mismatch
from ftkit.rl.config import load_rl_recipe
from ftkit.rl.correction import Mismatch, importance_weights, resolve_mode
from ftkit.rl.objectives import LossInputs, make_objective
from ftkit.rl.policy import forward_tokens

LOG = torch.log


def test_weights_by_hand():
    trainer = LOG(torch.tensor([[0.5, 0.9, 0.2]]))
    sampler = LOG(torch.tensor([[0.1, 0.9, 0.4]]))  # ratios 5, 1, 0.5
    torch.testing.assert_close(importance_weights(trainer, sampler, "tis", 3.0), torch.tensor([[3.0, 1.0, 0.5]]))
    torch.testing.assert_close(importance_weights(trainer, sampler, "mis", 3.0), torch.tensor([[0.0, 1.0, 0.5]]))
    assert importance_weights(trainer, sampler, "none", 3.0) is None
    unknown = torch.tensor([[float("nan"), math.log(0.9), math.log(0.4)]])  # an engine that gave no log-prob
    torch.testing.assert_close(importance_weights(trainer, unknown, "tis", 3.0), torch.tensor([[1.0, 1.0, 0.5]]))


def test_weights_carry_no_gradient():
    trainer = LOG(torch.tensor([[0.5, 0.2]])).requires_grad_()
    assert not importance_weights(trainer, LOG(torch.tensor([[0.1, 0.4]])), "tis", 3.0).requires_grad


def test_auto_corrects_vllm_and_leaves_hugging_face_alone():
    assert resolve_mode("auto", "vllm") == "tis" and resolve_mode("auto", "hf") == "none"
    assert resolve_mode("mis", "hf") == "mis" and resolve_mode("none", "vllm") == "none"
    with pytest.raises(ValueError, match="auto or one of none, tis, mis"):
        resolve_mode("token_truncate", "vllm")


def test_mismatch_by_hand_over_known_policy_tokens():
    trainer = LOG(torch.tensor([[0.5, 0.9, 0.2, 0.3], [0.5, 0.5, 0.5, 0.5]]))
    sampler = LOG(torch.tensor([[0.1, 0.9, 0.4, 0.3], [0.5, float("nan"), 0.5, 0.5]]))
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0]])  # 3 + 2 policy tokens, one without a log-prob
    mismatch = Mismatch(cap=3.0)
    mismatch.add(trainer[:1], sampler[:1], mask[:1])  # added in two parts, as micro-batches are
    mismatch.add(trainer[1:], sampler[1:], mask[1:])
    stats = mismatch.stats()
    diffs = [math.log(5), 0.0, math.log(0.5), 0.0]  # log trainer - log sampler on the 4 known tokens
    assert stats["sampler_logprob_diff_mean"] == pytest.approx(sum(abs(d) for d in diffs) / 4)
    assert stats["sampler_logprob_diff_max"] == pytest.approx(math.log(5))
    assert stats["sampler_kl"] == pytest.approx(-sum(diffs) / 4)
    assert stats["importance_sampling_capped_fraction"] == pytest.approx(1 / 4)  # ratio 5 > 3
    assert Mismatch(cap=3.0).stats() == {}  # nothing measured: no figures rather than zeros


def test_policy_loss_weights_each_tokens_term():
    logprobs = LOG(torch.tensor([[0.5, 0.25]])).requires_grad_()
    loss, _ = alg.policy_loss(logprobs, logprobs.detach(), torch.tensor([1.0]), torch.ones(1, 2),
                              weights=torch.tensor([[3.0, 0.0]]))
    loss.backward()
    assert loss.item() == pytest.approx(-(3.0 + 0.0) / 2)  # ratio 1, advantage 1, mean over 2 tokens
    torch.testing.assert_close(logprobs.grad, torch.tensor([[-1.5, 0.0]]))


# -- a deliberately different sampler ---------------------------------------------------------------------

VOCAB, LENGTH, SAMPLES = 6, 2, 8192


def tiny_policy():
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=VOCAB, n_positions=8, n_embd=16, n_layer=1, n_head=2, bos_token_id=0,
                        eos_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    torch.manual_seed(0)
    policy = GPT2LMHeadModel(config)
    with torch.no_grad():
        for p in policy.parameters():
            p.mul_(3)  # a peakier distribution than the near-uniform initialisation
    sampler = GPT2LMHeadModel(config)
    sampler.load_state_dict(policy.state_dict())
    noise = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in sampler.parameters():
            p.add_(0.03 * torch.randn(p.shape, generator=noise))
    return policy, sampler


def reward(ids: torch.Tensor) -> torch.Tensor:
    return (ids[:, 1] == 2).float() + (ids[:, 2] == 4).float()


def completion_logprobs(model, ids: torch.Tensor) -> torch.Tensor:
    return forward_tokens(model, ids, torch.ones_like(ids), 1.0, loss_mask=torch.ones(len(ids), LENGTH))[0]


def sample(model, n: int) -> torch.Tensor:
    ids = torch.zeros(n, 1, dtype=torch.long)  # the prompt: one token
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for _ in range(LENGTH):
            probs = model(input_ids=ids).logits[:, -1].softmax(-1)
            ids = torch.cat([ids, torch.multinomial(probs, 1, generator=generator)], dim=1)
    return ids


def gradient(policy) -> torch.Tensor:
    out = torch.cat([p.grad.flatten() for p in policy.parameters()])
    policy.zero_grad()
    return out


def test_a_corrected_gradient_is_closer_to_the_on_policy_one():
    """The sampler is a perturbed copy of the policy (what other kernels or another dtype do to a sampler,
    exaggerated so that it stands above sampling noise): 8192 two-token completions drawn from it train
    the policy through the GRPO objective with and without the correction, and each gradient is compared
    with the exact on-policy gradient of the expected reward, summed over all 36 completions."""
    policy, sampler = tiny_policy()
    every = torch.tensor([[0, *ids] for ids in itertools.product(range(VOCAB), repeat=LENGTH)])
    expected_reward = (completion_logprobs(policy, every).sum(1).exp() * reward(every)).sum()
    expected_reward.backward()
    true = gradient(policy)

    ids = sample(sampler, SAMPLES)
    with torch.no_grad():
        sampler_logprobs = completion_logprobs(sampler, ids)
    rewards = reward(ids)
    objective = make_objective(load_rl_recipe(None, base={"name": "t", "gym": {"id": "arithmetic"}}))

    def policy_gradient(mode: str) -> torch.Tensor:
        logprobs = completion_logprobs(policy, ids)
        old = logprobs.detach()
        loss, _ = objective.loss(LossInputs(logprobs, old, torch.ones_like(old), rewards - rewards.mean(),
                                            importance_weights=importance_weights(old, sampler_logprobs, mode, 3.0)))
        loss.backward()
        return -gradient(policy)

    def error(g: torch.Tensor) -> float:  # the angle's cosine is what matters: the loss's scale is arbitrary
        return 1 - torch.nn.functional.cosine_similarity(g, true, dim=0).item()

    mismatch = Mismatch(3.0)
    mismatch.add(completion_logprobs(policy, ids).detach(), sampler_logprobs, torch.ones(SAMPLES, LENGTH))
    assert mismatch.stats()["sampler_logprob_diff_mean"] > 0.2  # a sampler that really differs
    uncorrected, tis, mis = (error(policy_gradient(mode)) for mode in ("none", "tis", "mis"))
    assert uncorrected > 0.02  # about 14 degrees off
    assert tis < uncorrected / 4 and mis < uncorrected / 4  # about 5 degrees off each


# -- the warning -------------------------------------------------------------------------------------------

def stats(kl: float, capped: float | None = None) -> dict:
    out = {"sampler_kl": kl, "sampler_logprob_diff_mean": 10 * kl}
    return out if capped is None else {**out, "importance_sampling_capped_fraction": capped}


def test_a_warning_when_the_mismatch_is_large_or_grows():
    assert sampler_mismatch([], stats(1e-6), top_p=1.0) is None  # rounding
    large = sampler_mismatch([], stats(0.02), top_p=1.0)
    assert "KL 0.0200 per token" in large and "turn on rollout.importance_sampling: tis" in large
    assert "up from" not in large and "bf16 against fp32" in large
    start = [0.001, 0.0012, 0.0009, 0.0011, 0.001]
    assert sampler_mismatch(start, stats(0.003), top_p=1.0) is None  # 3x: not yet
    grown = sampler_mismatch(start, stats(0.005, capped=0.02), top_p=1.0)
    assert "up from 0.0010 at the start" in grown and "correcting for it (2.0% of tokens over the cap)" in grown
    assert sampler_mismatch(start[:2], stats(0.005), top_p=1.0) is None  # no baseline yet, and not large
    assert "rollout.top_p 0.9 truncates" in sampler_mismatch([], stats(0.1), top_p=0.9)
    lagged = sampler_mismatch([], {**stats(0.02), "async_lag": 1}, top_p=1.0)  # async: old weights, not precision
    assert "policy of 1 update(s) ago" in lagged and "bf16 against fp32" not in lagged


# -- a tiny run --------------------------------------------------------------------------------------------

def tiny_run(tmp_path, **rollout) -> tuple[list[dict], dict]:
    import json

    from ftkit.rl import trainer

    recipe = {"name": "mismatch", "output_dir": str(tmp_path / "run"), "model": {"name": "scratch:tiny"},
              "gym": {"id": "arithmetic"}, "eval": {"n": 0},
              "rollout": {"prompts_per_step": 4, "num_generations": 4, "max_completion_length": 4, **rollout},
              "train": {"max_steps": 2, "learning_rate": 1e-3}}
    summary = trainer.main(load_rl_recipe(None, base=recipe))
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if "reward_mean" in r], summary


def test_a_run_logs_the_mismatch_and_warns_when_top_p_truncates(tmp_path):
    records, summary = tiny_run(tmp_path / "plain")
    for record in records:  # Hugging Face generate samples from the training model: rounding only
        assert 0 <= record["sampler_logprob_diff_mean"] <= record["sampler_logprob_diff_max"] < 1e-4
        assert abs(record["sampler_kl"]) < 1e-4 and "importance_sampling_capped_fraction" not in record
    assert "sampler_mismatch" not in summary["warnings"]

    records, summary = tiny_run(tmp_path / "top_p", top_p=0.9, importance_sampling="tis")
    for record in records:  # the near-uniform tiny model keeps 90% of its mass in the nucleus: log(1 / 0.9)
        assert record["sampler_logprob_diff_mean"] == pytest.approx(-math.log(0.9), abs=0.02)
        assert record["sampler_kl"] == pytest.approx(-math.log(0.9), abs=0.02)
        assert record["importance_sampling_capped_fraction"] == 0  # trainer / sampler is below 1 here
    assert "sampler_mismatch" in summary["warnings"]
