"""`train.advantage_level: turn`: each turn of a multi-turn episode gets its own advantage, by hand."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from ftkit.errors import ConfigError
from ftkit.rl import algorithms as alg
from ftkit.rl.config import load_rl_recipe
from ftkit.rl.objectives import ScoredBatch, make_objective


def recipe(algo: str = "grpo", **train):
    return load_rl_recipe(None, base={"name": "t", "algo": algo, "gym": {"id": "guess_number"},
                                      "rollout": {"num_generations": 2}, "train": train})


def test_turn_advantages_by_hand():
    # group 0: episode 0 earns 0.2, 0.2 then 1.0 in three turns; episode 1 earns 0.2 then 0 in two.
    # group 1: both earn 0 in every turn, so nothing to learn, as GRPO.
    rewards = torch.tensor([[0.2, 0.2, 1.0], [0.2, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 1, 1], [1, 0, 0]])
    # returns: episode 0 [1.4, 1.2, 1.0], episode 1 [0.2, 0.0]; turn means 0.8, 0.6 and 1.0 (episode 0 alone)
    centred = torch.tensor([[0.6, 0.6, 0.0], [-0.6, -0.6, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(alg.turn_advantages(rewards, mask, 2, scale=False), centred)
    std = torch.tensor([1.4, 0.2]).std()  # of the group's episode returns, unbiased
    torch.testing.assert_close(alg.turn_advantages(rewards, mask, 2, eps=0.0), centred / std)


def test_one_turn_per_episode_is_grpo():
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.5, 0.0, 1.0])
    torch.testing.assert_close(alg.turn_advantages(rewards[:, None], torch.ones(6, 1), 3)[:, 0],
                               alg.group_advantages(rewards, 3))


def episode(group: int, turns: list[tuple[int, float]]):
    """An episode whose turns end at these input_ids positions with these rewards."""
    return SimpleNamespace(group=group, reward_positions=turns, reward=sum(r for _, r in turns))


def test_grpo_spreads_each_turns_advantage_over_that_turns_tokens():
    # input_ids: a 2-token observation, then actions and observations; loss-mask column t predicts token t + 1.
    # episode a: action ids 2-3 (reward 0), observation 4, action 5-6 (reward 1); episode b: action 2-3 (reward 0),
    # observation 4-5, action 6 (reward 0). Loss-mask columns of a's actions: 1-2 and 4-5; b's: 1-2 and 5.
    episodes = [episode(7, [(3, 0.0), (6, 1.0)]), episode(7, [(3, 0.0), (6, 0.0)])]
    loss_mask = torch.tensor([[0, 1, 1, 0, 1, 1], [0, 1, 1, 0, 0, 1]], dtype=torch.float32)
    batch = ScoredBatch(episodes, {"loss_mask": loss_mask}, torch.tensor([1.0, 0.0]), old_logprobs=None,
                        old_values=None, ref_logprobs=None, mean_std=alg.masked_mean_std)
    advantages, _ = make_objective(recipe(advantage_level="turn", scale_rewards="none")).advantages(batch)
    # returns a [1, 1], b [0, 0]: 0.5 above and below each turn's mean
    torch.testing.assert_close(advantages, torch.tensor([[0, .5, .5, 0, .5, .5], [0, -.5, -.5, 0, 0, -.5]]))
    per_episode, _ = make_objective(recipe(scale_rewards="none")).advantages(batch)
    torch.testing.assert_close(per_episode, torch.tensor([0.5, -0.5]))  # the same here: the reward came last

    # a reward earned in the first turn is not credited to the second
    episodes = [episode(7, [(3, 1.0), (6, 0.0)]), episode(7, [(3, 0.0), (6, 0.0)])]
    batch.episodes, batch.rewards = episodes, torch.tensor([1.0, 0.0])
    advantages, _ = make_objective(recipe(advantage_level="turn", scale_rewards="none")).advantages(batch)
    torch.testing.assert_close(advantages, torch.tensor([[0, .5, .5, 0, 0, 0], [0, -.5, -.5, 0, 0, 0]]))


@pytest.mark.parametrize("algo", ["ppo", "rloo", "reinforce_plus_plus"])
def test_turn_level_advantages_are_for_grpo_and_its_variants(algo):
    with pytest.raises(ConfigError, match='advantage_level "turn" is for algo grpo, dapo, gspo'):
        recipe(algo, advantage_level="turn")
