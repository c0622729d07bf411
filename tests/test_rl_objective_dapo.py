"""DAPO (Yu et al. 2025) against hand-computed values: clip-higher, the recipe's defaults, the soft overlong
penalty, overlong filtering, and dynamic sampling's draws (the trainer runs are in tests/test_rl_trainer.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from ftkit.errors import ConfigError
from ftkit.rl.algorithms import policy_loss, soft_overlong_penalty
from ftkit.rl.config import load_rl_recipe
from ftkit.rl.dynamic_sampling import fill_with_informative_groups, split_groups
from ftkit.rl.objectives import DAPO, GRPO, make_objective
from ftkit.rl.policy import pad_episodes
from ftkit.rl.rollout import Episode, RolloutBatch, add_overlong_penalty


def recipe(algo: str = "dapo", overrides: list[str] | None = None):
    return load_rl_recipe(None, base={"name": "t", "algo": algo, "gym": {"id": "arithmetic"},
                                      "rollout": {"num_generations": 4}, "eval": {"n": 20}}, overrides=overrides)


# -- clip-higher -----------------------------------------------------------------------------------------

def test_clip_higher_lets_a_good_unlikely_token_grow_and_leaves_the_lower_clip_alone():
    old = torch.zeros(1, 2)
    new = torch.log(torch.tensor([[1.25, 0.75]])).requires_grad_()  # ratios 1.25 and 0.75
    mask = torch.ones(1, 2)
    # A = +1, eps 0.2 both ways: min(r, clip(r)) = 1.2 (clipped) and 0.75 -> loss -(1.2 + 0.75) / 2
    symmetric, stats = policy_loss(new, old, torch.tensor([1.0]), mask, 0.2)
    assert symmetric.item() == pytest.approx(-0.975) and stats["clip_fraction"] == pytest.approx(0.5)
    # eps_high 0.28: 1.25 < 1.28 is not clipped -> loss -(1.25 + 0.75) / 2, and the token keeps its gradient
    higher, stats = policy_loss(new, old, torch.tensor([1.0]), mask, (0.2, 0.28))
    assert higher.item() == pytest.approx(-1.0) and stats["clip_fraction"] == 0.0
    higher.backward()
    assert new.grad[0].tolist() == pytest.approx([-1.25 / 2, -0.75 / 2])  # d(-r / 2)/d log r = -r / 2
    # A = -1: the lower clip (1 - 0.2 = 0.8) is the same in both: max(0.75, 0.8) = 0.8 and max(1.25, 1.2) = 1.25
    for clip in (0.2, (0.2, 0.28)):
        loss, stats = policy_loss(new.detach(), old, torch.tensor([-1.0]), mask, clip)
        assert loss.item() == pytest.approx((1.25 + 0.8) / 2) and stats["clip_fraction"] == pytest.approx(0.5)


def test_the_objective_passes_epsilon_high_to_the_loss():
    x = SimpleNamespace(logprobs=torch.log(torch.tensor([[1.25]])), old_logprobs=torch.zeros(1, 1),
                        mask=torch.ones(1, 1), advantages=torch.tensor([1.0]), ref_logprobs=None,
                        importance_weights=None)
    assert DAPO(recipe().train, 4).loss(x)[0].item() == pytest.approx(-1.25)  # 1.25 < 1 + 0.28
    assert GRPO(recipe("grpo").train, 4).loss(x)[0].item() == pytest.approx(-1.2)  # clipped at 1 + 0.2


# -- the recipe ------------------------------------------------------------------------------------------

def test_algo_dapo_is_grpo_with_the_papers_settings_unless_the_recipe_says_otherwise():
    r = recipe()
    assert isinstance(make_objective(r), DAPO) and isinstance(make_objective(r), GRPO)
    assert (r.train.epsilon, r.train.epsilon_high, r.train.loss_type) == (0.2, 0.28, "dapo")
    assert r.rollout.dynamic_filtering and r.train.mask_truncated_completions
    assert make_objective(r).aggregation == "token"
    plain = recipe("grpo")
    assert plain.train.epsilon_high is None and not plain.rollout.dynamic_filtering
    assert not plain.train.mask_truncated_completions
    mine = recipe(overrides=["train.epsilon_high=0.3", "rollout.dynamic_filtering=false",
                             "train.mask_truncated_completions=false"])
    assert mine.train.epsilon_high == 0.3 and not mine.rollout.dynamic_filtering
    assert not mine.train.mask_truncated_completions
    wider = recipe(overrides=["train.epsilon=0.3"])  # epsilon_high follows a recipe's own epsilon, as in TRL
    assert (wider.train.epsilon, wider.train.epsilon_high) == (0.3, None)
    a_la_carte = recipe("grpo", ["train.epsilon_high=0.28", "rollout.dynamic_filtering=true"])
    assert a_la_carte.train.epsilon_high == 0.28 and a_la_carte.rollout.dynamic_filtering


@pytest.mark.parametrize(("algo", "overrides", "expected"), [
    ("dapo", ["train.loss_type=grpo"], 'algo dapo is GRPO with train.loss_type "dapo" (got "grpo")'),
    ("ppo", ["rollout.dynamic_filtering=true", "rollout.num_generations=1"], "which every group of one episode is"),
    ("grpo", ["rollout.max_num_gen_batches=3"], "set rollout.dynamic_filtering: true"),
    ("dapo", ["rollout.max_num_gen_batches=0"], "max_num_gen_batches"),
    ("grpo", ["rollout.overlong_buffer_len=16"], "must be less than rollout.max_completion_length (16)"),
    ("grpo", ["rollout.overlong_penalty_factor=2"], "needs rollout.overlong_buffer_len > 0"),
    ("grpo", ["train.epsilon_high=-1"], "epsilon_high"),
    ("dapo", ["train.epsilon_high=0.1"], "train.epsilon_high (0.1) is below train.epsilon (0.2)"),
])
def test_bad_dapo_settings_are_one_line(algo, overrides, expected):
    with pytest.raises(ConfigError) as caught:
        recipe(algo, overrides)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


# -- overlong shaping ------------------------------------------------------------------------------------

def test_soft_overlong_penalty_by_hand():
    lengths = torch.tensor([3, 6, 7, 8, 10, 12])
    # max 10, buffer 4: free up to 6 tokens, then (6 - L) / 4: 7 -> -0.25, 8 -> -0.5, 10 -> -1; beyond: -1
    assert soft_overlong_penalty(lengths, 10, 4).tolist() == pytest.approx([0, 0, -0.25, -0.5, -1, -1])
    assert soft_overlong_penalty(lengths, 10, 4, factor=2.0).tolist() == pytest.approx([0, 0, -0.5, -1, -2, -2])
    # TRL's example (get_soft_overlong_punishment(100, 20) on 90 tokens): -0.5
    assert soft_overlong_penalty(torch.tensor([90]), 100, 20).item() == pytest.approx(-0.5)


def episode(policy_mask: list[int], reward_positions: list[tuple[int, float]], group: int = 0,
            cut_actions: tuple[int, ...] = ()) -> Episode:
    tokens = SimpleNamespace(input_ids=list(range(len(policy_mask))), policy_mask=policy_mask,
                             logprobs=[0.0] * len(policy_mask))
    return Episode(None, tokens, group, list(reward_positions), list(cut_actions))


def test_the_overlong_penalty_lands_on_each_actions_own_reward():
    # Two turns: tokens 2-4 are the first action (3 tokens, reward 1 on token 4), 6-7 the second (2 tokens).
    ep = episode([0, 0, 1, 1, 1, 0, 1, 1], [(4, 1.0), (7, 0.0)])
    assert ep.action_lengths() == [3, 2]
    add_overlong_penalty(RolloutBatch([ep], 0, 0.0), max_length=4, buffer_len=2, factor=1.0)
    # free up to 4 - 2 = 2 tokens: 3 tokens -> (2 - 3) / 2 = -0.5 on the first turn; 2 tokens -> 0 on the second
    assert ep.reward_positions == [(4, 0.5), (7, 0.0)] and ep.reward == 0.5


def test_masking_a_cut_action_keeps_its_reward_and_the_episodes_other_actions():
    cut, whole = episode([0, 1, 1], [(2, 0.0)], cut_actions=[0]), episode([0, 1, 0], [(1, 1.0)])
    cut.masked_actions = list(cut.cut_actions)  # what the trainer does with train.mask_truncated_completions
    assert pad_episodes([cut, whole], pad_id=0)["loss_mask"].tolist() == [[0.0, 0.0], [1.0, 0.0]]
    assert cut.reward == 0.0 and cut.hit_length_limit == 1
    # Two turns, the second cut: only its tokens (6-7) leave the loss; the first action's stay.
    turns = episode([0, 0, 1, 1, 1, 0, 1, 1], [(4, 1.0), (7, 0.0)], cut_actions=[1])
    turns.masked_actions = [1]
    assert turns.loss_mask() == [0, 0, 1, 1, 1, 0, 0, 0] and turns.policy_tokens == 5


# -- dynamic sampling ------------------------------------------------------------------------------------

def fake_batch(rewards: list[list[float]], tokens: int = 10) -> RolloutBatch:
    """One generation batch: group g's episodes got rewards[g]."""
    episodes = [SimpleNamespace(reward=r, group=g) for g, group in enumerate(rewards) for r in group]
    return RolloutBatch(episodes, generated_tokens=tokens, seconds=1.0, context_cuts=1, model_scores=[0.5])


def groups_of(episodes) -> list[int]:
    return sorted({e.group for e in episodes})


def test_split_groups_by_whether_rewards_differ():
    informative, uninformative = split_groups(fake_batch([[1, 1], [0, 1], [0, 0], [0.5, 0]]).episodes)
    assert [[e.reward for e in g] for g in informative] == [[0, 1], [0.5, 0]]
    assert [[e.reward for e in g] for g in uninformative] == [[1, 1], [0, 0]]


def test_dynamic_sampling_draws_until_enough_groups_differ():
    batches = {(0, 2): fake_batch([[1, 1], [0, 1]]), (2, 2): fake_batch([[0, 0], [1, 0]])}
    calls = []

    def play(drawn, count):
        calls.append((drawn, count))
        return batches[(drawn, count)]

    batch = fill_with_informative_groups(play, wanted=2, max_batches=4)
    # 1 of 2 groups differed, 1 is missing: 1 x 2 / 1 = 2 more problems, which complete the step
    assert calls == [(0, 2), (2, 2)]
    # batch 0's group 1 and batch 1's group 1 (renumbered 2 + 1 = 3) train; the groups of equal rewards do not
    assert groups_of(batch.episodes) == [1, 3] and groups_of(batch.dropped) == [0, 2]
    assert (batch.gen_batches, batch.padded_groups, len(batch.played)) == (2, 0, 8)
    assert (batch.generated_tokens, batch.seconds, batch.context_cuts, batch.model_scores) == (20, 2.0, 2, [0.5, 0.5])


def test_each_further_draw_is_as_large_as_the_shortfall_needs():
    calls = []

    def play(drawn, count):
        calls.append((drawn, count))
        if drawn == 0:  # 3 of 4 groups differ
            return fake_batch([[0, 1], [1, 0], [1, 1], [0, 1]])
        return fake_batch([[1, 1]] * count)  # then none: the cap of 3 x 4 problems ends it

    batch = fill_with_informative_groups(play, wanted=4, max_batches=3)
    # 1 missing, 3 found in 4: ceil(1 x 4 / 3) = 2; 3 in 6: ceil(6 / 3) = 2; 3 in 8: ceil(8 / 3) = 3;
    # 3 in 11: ceil(11 / 3) = 4, but the cap of 3 x 4 = 12 problems leaves 1
    assert calls == [(0, 4), (4, 2), (6, 2), (8, 3), (11, 1)]
    assert (batch.padded_groups, len(batch.episodes), len(batch.played)) == (1, 8, 24)


def test_dynamic_sampling_keeps_only_what_it_needs():
    batch = fill_with_informative_groups(lambda d, c: fake_batch([[0, 1], [1, 0], [1, 1]]), wanted=1, max_batches=3)
    assert groups_of(batch.episodes) == [0] and groups_of(batch.dropped) == [1, 2] and batch.gen_batches == 1


def test_at_the_cap_groups_of_equal_rewards_fill_the_step():
    calls = []

    def play(drawn, count):
        calls.append((drawn, count))
        return fake_batch([[1, 1], [0, 0], [0, 1]] if drawn == 0 else [[0, 0], [1, 1], [1, 1]])

    batch = fill_with_informative_groups(play, wanted=3, max_batches=2)
    # 2 missing at 1 in 3: 6 more wanted, but the cap of 2 x 3 problems leaves 3
    assert calls == [(0, 3), (3, 3)]
    # one informative group (id 2): topped up with the first two groups of equal rewards (0, 1)
    assert groups_of(batch.episodes) == [0, 1, 2] and groups_of(batch.dropped) == [3, 4, 5]
    assert (batch.gen_batches, batch.padded_groups) == (2, 2)
    assert len(batch.episodes) == 6  # the step's size, whatever was found


def test_when_nothing_differs_the_next_draw_takes_all_the_cap_allows():
    calls = []
    fill_with_informative_groups(lambda d, c: calls.append((d, c)) or fake_batch([[1, 1]] * c), wanted=2, max_batches=4)
    assert calls == [(0, 2), (2, 6)]


def test_further_draws_continue_the_steps_problems_the_same_after_a_resume():
    from ftkit.rl.task import Task

    task = Task(recipe(overrides=["rollout.prompts_per_step=4"]))
    batch, more = task.training_seeds(5), task.more_seeds(5, None, 1, 0, taken=0, count=3)
    assert len(batch) == 4 and len(more) == 3 and not set(batch) & set(more)
    assert task.more_seeds(5, None, 1, 0, taken=1, count=2) == more[1:]  # a second draw goes on from the first
    assert task.more_seeds(5, None, 1, 0, taken=0, count=3) == more  # a resumed run draws the same problems
    # two processes take turns along the same stream: no problem twice
    rank0, rank1 = (task.more_seeds(5, None, 2, rank, taken=0, count=2) for rank in (0, 1))
    assert rank0 + rank1 == [more[0], more[2], more[1], task.more_seeds(5, None, 1, 0, 0, 4)[3]]
    assert not set(more) & set(task.training_seeds(6))  # and none of the next step's
