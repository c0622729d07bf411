"""REINFORCE++ (Hu 2025) against hand-computed values: token returns, the KL-shaped reward, normalisation over
the whole batch, and the group-baseline variant (the trainer runs are in tests/test_rl_trainer.py)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from ftkit.errors import ConfigError
from ftkit.rl import algorithms as alg
from ftkit.rl.algorithms import discounted_returns
from ftkit.rl.config import load_rl_recipe
from ftkit.rl.objectives import ReinforcePlusPlus, ReinforcePlusPlusBaseline, ScoredBatch, make_objective


def recipe(algo: str = "reinforce_plus_plus", overrides: list[str] | None = None):
    return load_rl_recipe(None, base={"name": "t", "algo": algo, "gym": {"id": "arithmetic"},
                                      "rollout": {"num_generations": 2}}, overrides=overrides)


def batch(rewards, groups, mask, reward_positions=None, old=None, ref=None) -> ScoredBatch:
    """Episodes as the objectives see them: input_ids only give the length (loss_mask is one shorter)."""
    mask = torch.tensor(mask)
    positions = reward_positions or [[] for _ in rewards]
    episodes = [SimpleNamespace(reward=r, group=g, reward_positions=p) for r, g, p in zip(rewards, groups, positions)]
    tensors = {"input_ids": torch.zeros(mask.shape[0], mask.shape[1] + 1, dtype=torch.long), "loss_mask": mask}
    return ScoredBatch(episodes, tensors, torch.tensor(rewards), old_logprobs=old, old_values=None, ref_logprobs=ref,
                       mean_std=alg.masked_mean_std)


def test_discounted_returns_by_hand_skip_environment_tokens():
    rewards = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    mask = torch.tensor([[1.0, 0.0, 1.0, 1.0]])  # token 1 is the environment's
    # gamma 0.5: t=3: 1; t=2: 0 + 0.5 x 1 = 0.5; t=0: 0 + 0.5 x 0.5 = 0.25 (token 1 is not a step)
    assert discounted_returns(rewards, mask, gamma=0.5).tolist() == [[0.25, 0.0, 0.5, 1.0]]
    assert discounted_returns(rewards, mask).tolist() == [[1.0, 0.0, 1.0, 1.0]]  # gamma 1: reward to go


def test_reinforce_pp_normalises_returns_over_every_token_of_the_batch():
    # Episode 0: policy tokens at columns 1-2, reward 1 on its last token (input position 3 -> column 2).
    # Episode 1: one policy token at column 1, reward 0.
    scored = batch([1.0, 0.0], [0, 1], [[0.0, 1.0, 1.0], [0.0, 1.0, 0.0]], [[(3, 1.0)], [(2, 0.0)]])
    advantages, returns = ReinforcePlusPlus(recipe().train, 2).advantages(scored)
    # returns on the 3 policy tokens: 1, 1, 0; mean 2/3, std sqrt(((1/3)^2 x 2 + (2/3)^2) / 3) = sqrt(2) / 3
    # -> (1 - 2/3) / (sqrt(2)/3) = 1/sqrt(2) and (0 - 2/3) / (sqrt(2)/3) = -sqrt(2); 0 off the policy's tokens
    r = 1 / math.sqrt(2)
    assert advantages.tolist()[0] == pytest.approx([0.0, r, r], abs=1e-6)
    assert advantages.tolist()[1] == pytest.approx([0.0, -math.sqrt(2), 0.0], abs=1e-6)
    assert returns is None


def test_reinforce_pp_folds_the_kl_into_each_tokens_reward():
    old = torch.tensor([[0.0, -0.8, -0.6], [0.0, -0.6, 0.0]])
    ref = torch.tensor([[0.0, -1.0, -1.0], [0.0, -1.0, 0.0]])  # log p - log p_ref: 0.2, 0.4 and 0.4
    scored = batch([1.0, 0.0], [0, 1], [[0.0, 1.0, 1.0], [0.0, 1.0, 0.0]], [[(3, 1.0)], [(2, 0.0)]], old, ref)
    objective = ReinforcePlusPlus(recipe(overrides=["train.beta=0.5"]).train, 2)
    advantages, _ = objective.advantages(scored)
    # shaped rewards: episode 0 [-, -0.1, 1 - 0.2 = 0.8], episode 1 [-, -0.2]; returns 0.7, 0.8 and -0.2
    returns = torch.tensor([0.7, 0.8, -0.2])
    expected = (returns - returns.mean()) / returns.std(unbiased=False)
    assert [advantages[0, 1], advantages[0, 2], advantages[1, 1]] == pytest.approx(expected.tolist(), abs=1e-5)
    assert objective.needs_old_logprobs and not ReinforcePlusPlus(recipe().train, 2).needs_old_logprobs
    # its KL is in the reward, not the loss (as PPO's)
    x = SimpleNamespace(logprobs=old, old_logprobs=old, mask=scored.tensors["loss_mask"], advantages=advantages,
                        ref_logprobs=ref, importance_weights=None)
    loss, stats = objective.loss(x)
    assert "kl" in stats and loss.item() == pytest.approx(-(advantages.sum() / 3).item(), abs=1e-6)


def test_reinforce_pp_baseline_centres_on_the_group_then_scales_by_the_batch():
    mask = [[1.0, 1.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]
    scored = batch([1.0, 0.0, 0.0, 0.0], [0, 0, 1, 1], mask)
    advantages, _ = ReinforcePlusPlusBaseline(recipe("reinforce_plus_plus_baseline").train, 2).advantages(scored)
    # minus the group's mean: 0.5, -0.5, 0, 0; on the 5 policy tokens: 0.5, 0.5, -0.5, 0, 0
    # mean 0.1, std sqrt((0.16 + 0.16 + 0.36 + 0.01 + 0.01) / 5) = sqrt(0.14)
    std = math.sqrt(0.14)
    assert advantages[0].tolist() == pytest.approx([0.4 / std] * 2, abs=1e-6)
    assert advantages[1].tolist() == pytest.approx([-0.6 / std, 0.0], abs=1e-6)
    assert advantages[2:, 0].tolist() == pytest.approx([-0.1 / std] * 2, abs=1e-6)
    # the same episodes in another order get the same advantages, row for row
    order = [3, 0, 2, 1]
    shuffled = batch([[1.0, 0.0, 0.0, 0.0][i] for i in order], [[0, 0, 1, 1][i] for i in order], [mask[i] for i in order])
    again, _ = ReinforcePlusPlusBaseline(recipe("reinforce_plus_plus_baseline").train, 2).advantages(shuffled)
    torch.testing.assert_close(again, advantages[order])


def test_what_reinforce_pp_needs_and_allows():
    plain, baseline = make_objective(recipe()), make_objective(recipe("reinforce_plus_plus_baseline"))
    assert not plain.compares_groups and not plain.kl_in_loss and not plain.needs_value_head
    assert baseline.compares_groups and baseline.kl_in_loss
    one = recipe(overrides=["rollout.num_generations=1"])  # no group needed
    assert one.rollout.num_generations == 1
    with pytest.raises(ConfigError, match="reinforce_plus_plus_baseline compares episodes of the same problem"):
        recipe("reinforce_plus_plus_baseline", ["rollout.num_generations=1"])
