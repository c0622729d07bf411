"""The RL arithmetic against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from ftkit.rl.algorithms import (
    gae,
    group_advantages,
    identical_group_fraction,
    kl_penalty,
    policy_loss,
    rloo_advantages,
    value_loss,
)


def test_grpo_group_advantages_by_hand():
    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    adv = group_advantages(rewards, group_size=4, eps=0.0)
    # group 1: mean 0.75, unbiased std sqrt(((.25)^2*3 + (.75)^2)/3) = 0.5
    assert adv[:4].tolist() == pytest.approx([0.5, -1.5, 0.5, 0.5])
    assert adv[4:].tolist() == [0.0, 0.0, 0.0, 0.0]  # identical rewards: nothing to learn
    dr = group_advantages(rewards, group_size=4, scale=False)  # Dr. GRPO: no std division
    assert dr[:4].tolist() == pytest.approx([0.25, -0.75, 0.25, 0.25])
    assert identical_group_fraction(rewards, 4) == 0.5


def test_rloo_baseline_leaves_each_completion_out():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0])
    # r_0 = 1, others (0, 0, 1) mean 1/3 -> 2/3; r_1 = 0, others (1, 0, 1) mean 2/3 -> -2/3
    assert rloo_advantages(rewards, 4).tolist() == pytest.approx([2 / 3, -2 / 3, -2 / 3, 2 / 3])
    with pytest.raises(ValueError, match="group_size >= 2"):
        rloo_advantages(rewards, 1)
    with pytest.raises(ValueError, match="multiple of group_size"):
        group_advantages(torch.ones(5), 4)


def test_gae_by_hand_skips_environment_tokens():
    rewards = torch.tensor([[0.0, 0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 9.0, 0.6, 0.8]])  # 9.0 sits on an environment token: ignored
    mask = torch.tensor([[1.0, 0.0, 1.0, 1.0]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    # t=3: delta = 1 + 0 - 0.8 = 0.2, A = 0.2
    # t=2: delta = 0 + 0.8 - 0.6 = 0.2, A = 0.2 + 0.5 * 0.2 = 0.3
    # t=0: delta = 0 + 0.6 - 0.5 = 0.1, A = 0.1 + 0.5 * 0.3 = 0.25
    assert adv.tolist()[0] == pytest.approx([0.25, 0.0, 0.3, 0.2])
    assert ret.tolist()[0] == pytest.approx([0.75, 0.0, 0.9, 1.0])


def test_clipped_policy_loss_by_hand():
    old = torch.zeros(1, 3)
    new = torch.log(torch.tensor([[1.5, 0.5, 1.1]]))  # ratios 1.5, 0.5, 1.1
    mask = torch.ones(1, 3)
    loss, stats = policy_loss(new, old, torch.tensor([1.0]), mask, clip_eps=0.2)
    # A = +1: min(r, clip(r)) = 1.2, 0.5, 1.1 -> loss = -(1.2 + 0.5 + 1.1) / 3
    assert loss.item() == pytest.approx(-(1.2 + 0.5 + 1.1) / 3)
    assert stats["clip_fraction"] == pytest.approx(1 / 3)  # only 1.5 is clipped (0.5 with A > 0 is not)
    loss_neg, stats_neg = policy_loss(new, old, torch.tensor([-1.0]), mask, clip_eps=0.2)
    # A = -1: min(-r, -clip(r)) = -1.5, -0.8, -1.1 -> loss = (1.5 + 0.8 + 1.1) / 3
    assert loss_neg.item() == pytest.approx((1.5 + 0.8 + 1.1) / 3)
    assert stats_neg["clip_fraction"] == pytest.approx(1 / 3)


def test_masked_tokens_carry_no_gradient_and_aggregations_differ():
    old = torch.zeros(2, 3)
    new = torch.zeros(2, 3, requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    loss, _ = policy_loss(new, old, torch.tensor([1.0, 2.0]), mask)
    loss.backward()
    assert new.grad[0, 2] == 0 and new.grad[1, 1] == 0 and new.grad[1, 2] == 0
    # token mean: -(1 + 1 + 2) / 3; sequence mean: -((1 + 1) / 2 + 2 / 1) / 2
    assert loss.item() == pytest.approx(-4 / 3)
    seq, _ = policy_loss(new.detach(), old, torch.tensor([1.0, 2.0]), mask, aggregation="sequence")
    assert seq.item() == pytest.approx(-1.5)


def test_value_loss_and_kl_by_hand():
    values, old, returns = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.0]]), torch.tensor([[0.0, 0.1]])
    # token 0: unclipped (1-0)^2 = 1, clipped V = 0.7 -> 0.49, max 1; token 1: 0.01 both
    assert value_loss(values, old, returns, torch.ones(1, 2)).item() == pytest.approx(0.5 * (1 + 0.01) / 2)
    p, q = torch.log(torch.tensor([0.5])), torch.log(torch.tensor([0.25]))
    assert kl_penalty(p, q, "k1").item() == pytest.approx(math.log(2))
    assert kl_penalty(p, q, "k3").item() == pytest.approx(0.5 - 1 - math.log(0.5))
    assert kl_penalty(p, p, "k3").item() == 0.0
