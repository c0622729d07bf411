"""RL objectives: the registry matches the recipe's choices, advantages follow each episode's group
(whatever order the episodes arrive in), scale_rewards' three modes by hand, and each loss's terms."""

from __future__ import annotations

import typing
from types import SimpleNamespace

import pytest
import torch

from ftkit.rl import algorithms as alg
from ftkit.rl.config import RLRecipe, load_rl_recipe
from ftkit.rl.objectives import GRPO, OBJECTIVES, PPO, RLOO, LossInputs, ScoredBatch, make_objective


def recipe(algo: str = "grpo", **train) -> RLRecipe:
    return load_rl_recipe(None, base={"name": "t", "algo": algo, "gym": {"id": "arithmetic"},
                                      "rollout": {"num_generations": 4}, "train": train})


def scored(rewards: list[float], groups: list[int]) -> ScoredBatch:
    episodes = [SimpleNamespace(reward=r, group=g) for r, g in zip(rewards, groups)]
    return ScoredBatch(episodes, {}, torch.tensor(rewards), old_logprobs=None, old_values=None, ref_logprobs=None,
                       mean_std=alg.masked_mean_std)


def test_every_algo_of_the_recipe_has_one_objective():
    choices = typing.get_args(RLRecipe.model_fields["algo"].annotation)
    assert sorted(choices) == sorted(OBJECTIVES)
    for name, cls in OBJECTIVES.items():
        assert cls.name == name and isinstance(make_objective(recipe(name)), cls)


def test_ftkit_rl_algo_offers_every_objective():
    from ftkit.cli.rl import ALGOS

    assert sorted(ALGOS) == sorted(OBJECTIVES)


def test_what_each_objective_needs():
    grpo, rloo, ppo = (make_objective(recipe(a)) for a in ("grpo", "rloo", "ppo"))
    assert not grpo.needs_value_head and not grpo.needs_old_logprobs and grpo.compares_groups
    assert not rloo.needs_value_head and rloo.compares_groups
    assert ppo.needs_value_head and ppo.needs_old_logprobs and not ppo.compares_groups
    assert not grpo.needs_reference and make_objective(recipe("grpo", beta=0.1)).needs_reference


@pytest.mark.parametrize("algo", ["grpo", "rloo"])
def test_advantages_follow_the_episodes_groups_when_the_episodes_arrive_shuffled(algo):
    rewards = [1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    groups = [0, 0, 0, 0, 1, 1, 1, 1]
    objective = make_objective(recipe(algo))
    in_order, _ = objective.advantages(scored(rewards, groups))
    expected = {"grpo": alg.group_advantages, "rloo": alg.rloo_advantages}[algo](torch.tensor(rewards), 4)
    torch.testing.assert_close(in_order, expected)
    order = [5, 0, 7, 2, 1, 6, 4, 3]  # the groups interleaved
    shuffled, _ = objective.advantages(scored([rewards[i] for i in order], [groups[i] for i in order]))
    torch.testing.assert_close(shuffled, expected[order])


def test_a_group_of_the_wrong_size_is_an_error():
    with pytest.raises(ValueError, match="group 1 has 3 episodes; every group needs group_size=4"):
        make_objective(recipe("grpo")).advantages(scored([1.0] * 7, [0, 0, 0, 0, 1, 1, 1]))


def test_scale_rewards_group_batch_and_none_by_hand():
    rewards, groups = [1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0], [0] * 4 + [1] * 4
    centred = torch.tensor([0.25, -0.75, 0.25, 0.25, -0.25, -0.25, -0.25, 0.75])
    none, _ = GRPO(recipe(scale_rewards="none").train, 4).advantages(scored(rewards, groups))
    torch.testing.assert_close(none, centred)  # Dr. GRPO
    group, _ = GRPO(recipe(scale_rewards="group").train, 4).advantages(scored(rewards, groups))
    torch.testing.assert_close(group, centred / (0.5 + 1e-4))  # each group's unbiased std is 0.5
    batch, _ = GRPO(recipe(scale_rewards="batch").train, 4).advantages(scored(rewards, groups))
    batch_std = torch.tensor(rewards).std()  # unbiased, over the 8 rewards: sqrt(2/7)
    torch.testing.assert_close(batch, centred / (batch_std + 1e-4))
    assert recipe(scale_rewards=True).train.scale_rewards == "group"  # TRL's booleans
    assert recipe(scale_rewards=False).train.scale_rewards == "none"


def inputs(ref: bool = False, ppo: bool = False) -> LossInputs:
    logprobs = torch.log(torch.tensor([[0.5, 0.25]]))
    return LossInputs(logprobs=logprobs, old_logprobs=logprobs, mask=torch.ones(1, 2), advantages=torch.tensor([1.0]),
                      ref_logprobs=torch.log(torch.tensor([[0.25, 0.25]])) if ref else None,
                      values=torch.tensor([[1.0, 0.0]]) if ppo else None,
                      old_values=torch.tensor([[0.5, 0.0]]) if ppo else None,
                      returns=torch.tensor([[0.0, 0.1]]) if ppo else None)


def test_loss_terms_by_hand():
    grpo = GRPO(recipe(beta=0.5).train, 4)
    alone, stats = GRPO(recipe().train, 4).loss(inputs())
    assert alone.item() == pytest.approx(-1.0) and "kl" not in stats  # ratio 1, advantage 1
    with_kl, stats = grpo.loss(inputs(ref=True))
    kl = (0.5 - 1 - torch.log(torch.tensor(0.5)).item()) / 2  # k3 on the first token, 0 on the second
    assert stats["kl"] == pytest.approx(kl) and with_kl.item() == pytest.approx(-1.0 + 0.5 * kl)
    assert RLOO(recipe("rloo", beta=0.5).train, 4).loss(inputs(ref=True))[0].item() == pytest.approx(with_kl.item())
    ppo_loss, stats = PPO(recipe("ppo", beta=0.5, value_coef=0.5).train, 4).loss(inputs(ref=True, ppo=True))
    # PPO's KL is in its reward, not its loss; the value loss is 0.5 * (1 + 0.01) / 2 (tests/test_rl_algorithms.py)
    assert stats["kl"] == pytest.approx(kl) and stats["value_loss"] == pytest.approx(0.2525)
    assert ppo_loss.item() == pytest.approx(-1.0 + 0.5 * 0.2525)


def test_loss_type_maps_onto_the_aggregation():
    assert make_objective(recipe(loss_type="dapo")).aggregation == "token"
    assert make_objective(recipe(loss_type="grpo")).aggregation == "sequence"
