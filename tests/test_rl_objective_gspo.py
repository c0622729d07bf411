"""GSPO (Zheng et al. 2025) against hand-computed values: one importance ratio per sequence, clipped as a whole,
and what `algo: gspo` sets (the trainer run is in tests/test_rl_trainer.py)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from ftkit.errors import ConfigError
from ftkit.rl import algorithms as alg
from ftkit.rl.algorithms import importance_ratio, policy_loss
from ftkit.rl.config import load_rl_recipe
from ftkit.rl.objectives import GRPO, GSPO, ScoredBatch, make_objective


def recipe(algo: str = "gspo", overrides: list[str] | None = None):
    return load_rl_recipe(None, base={"name": "t", "algo": algo, "gym": {"id": "arithmetic"},
                                      "rollout": {"num_generations": 2}}, overrides=overrides)


def test_the_sequence_ratio_is_the_geometric_mean_of_its_tokens_ratios():
    old = torch.zeros(1, 3)
    new = torch.log(torch.tensor([[4.0, 1.0, 9.0]]))  # the third token is padding
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    assert importance_ratio(new, old, mask, "token")[0].tolist() == pytest.approx([4.0, 1.0, 9.0])
    # exp((log 4 + log 1) / 2) = sqrt(4 * 1) = 2, on every position of the sequence
    assert importance_ratio(new, old, mask, "sequence")[0].tolist() == pytest.approx([2.0, 2.0, 2.0])
    with pytest.raises(ValueError, match='"token" or "sequence"'):
        importance_ratio(new, old, mask, "episode")


def test_sequence_level_loss_and_gradient_by_hand():
    old, mask, advantage = torch.zeros(1, 2), torch.ones(1, 2), torch.tensor([1.0])
    wide = (0.9, 10.0)  # nothing clipped

    new = torch.log(torch.tensor([[4.0, 1.0]])).requires_grad_()
    loss, _ = policy_loss(new, old, advantage, mask, wide, aggregation="sequence", level="sequence")
    # -s x A with s = 2; d(-s)/d log p_t = -s / 2 = -1 for both tokens: the sequence moves as one
    assert loss.item() == pytest.approx(-2.0)
    loss.backward()
    assert new.grad[0].tolist() == pytest.approx([-1.0, -1.0])

    per_token = torch.log(torch.tensor([[4.0, 1.0]])).requires_grad_()
    loss, _ = policy_loss(per_token, old, advantage, mask, wide, aggregation="sequence", level="token")
    # token ratios 4 and 1: -(4 + 1) / 2, gradients -r_t / 2 = -2 and -0.5
    assert loss.item() == pytest.approx(-2.5)
    loss.backward()
    assert per_token.grad[0].tolist() == pytest.approx([-2.0, -0.5])


def test_the_sequence_ratio_is_clipped_as_a_whole():
    old, mask = torch.zeros(1, 2), torch.ones(1, 2)
    new = torch.log(torch.tensor([[4.0, 1.0]])).requires_grad_()  # s = 2 > 1 + 0.2
    loss, stats = policy_loss(new, old, torch.tensor([1.0]), mask, 0.2, aggregation="sequence", level="sequence")
    assert loss.item() == pytest.approx(-1.2) and stats["clip_fraction"] == 1.0 and stats["ratio_mean"] == 2.0
    loss.backward()
    assert new.grad.abs().sum() == 0  # a clipped sequence gets no gradient at all, not even its token of ratio 1
    # GSPO's own ranges: log s = 3e-4 per token on average is inside 1 + 4e-4 but 6e-4 is not
    near = torch.full((1, 2), 3e-4)
    assert policy_loss(near, old, torch.tensor([1.0]), mask, (3e-4, 4e-4), level="sequence")[1]["clip_fraction"] == 0
    far = torch.full((1, 2), 6e-4)
    assert policy_loss(far, old, torch.tensor([1.0]), mask, (3e-4, 4e-4), level="sequence")[1]["clip_fraction"] == 1


def test_at_ratio_one_gspos_gradient_is_grpos_with_the_sequence_mean_loss():
    torch.manual_seed(0)
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    logprobs = -torch.rand(2, 3)

    def grad(objective):
        lp = logprobs.clone().requires_grad_()
        x = SimpleNamespace(logprobs=lp, old_logprobs=logprobs, mask=mask, advantages=torch.tensor([1.0, -0.5]),
                            ref_logprobs=None, importance_weights=None)
        objective.loss(x)[0].backward()
        return lp.grad

    # -A_i / |y_i| / B on each token: [-1/3 / 2] x 3 and [0.5 / 2]
    expected = torch.tensor([[-1 / 6, -1 / 6, -1 / 6], [0.25, 0.0, 0.0]])
    torch.testing.assert_close(grad(GSPO(recipe().train, 2)), expected)
    torch.testing.assert_close(grad(GRPO(recipe("grpo", ["train.loss_type=grpo"]).train, 2)), expected)


def test_algo_gspo_sets_the_sequence_level_and_the_papers_clip_ranges():
    r = recipe()
    assert isinstance(make_objective(r), GSPO)
    assert (r.train.importance_sampling_level, r.train.loss_type) == ("sequence", "grpo")
    assert (r.train.epsilon, r.train.epsilon_high) == (3e-4, 4e-4)
    own = recipe(overrides=["train.epsilon=0.1", "train.loss_type=dapo"])
    assert (own.train.epsilon, own.train.epsilon_high, own.train.loss_type) == (0.1, None, "dapo")  # high = eps
    grpo_seq = recipe("grpo", ["train.importance_sampling_level=sequence"])
    assert grpo_seq.train.importance_sampling_level == "sequence" and grpo_seq.train.epsilon == 0.2
    with pytest.raises(ConfigError, match='algo gspo is GRPO with train.importance_sampling_level "sequence"'):
        recipe(overrides=["train.importance_sampling_level=token"])
    with pytest.raises(ConfigError, match="importance_sampling_level"):
        recipe("grpo", ["train.importance_sampling_level=episode"])


def test_gspos_advantages_are_grpos():
    rewards, groups = [1.0, 0.0, 1.0, 1.0], [0, 0, 1, 1]
    episodes = [SimpleNamespace(reward=r, group=g) for r, g in zip(rewards, groups)]
    batch = ScoredBatch(episodes, {}, torch.tensor(rewards), None, None, None, mean_std=alg.masked_mean_std)
    advantages, _ = GSPO(recipe().train, 2).advantages(batch)
    # group 0: mean 0.5, unbiased std sqrt(0.5): +-0.5 / (0.7071 + 1e-4); group 1 all equal: 0
    half = 0.5 / (math.sqrt(0.5) + 1e-4)
    assert advantages.tolist() == pytest.approx([half, -half, 0.0, 0.0])
