"""Tests for data_tools/gym_data.py: `python -m pytest tests/test_gym_data.py -q`."""

from __future__ import annotations

import gymnasium
import pytest

import gyms
import gyms.registry
from data_tools.gym_data import gym_examples, item_seed
from ftkit.errors import DataError
from gyms.arithmetic import score_answer
from gyms.spec import GymSpec

ONE_DIGIT_SUMS = GymSpec("arithmetic", {"ops": ["+"], "digits": 1})  # exactly 100 distinct problems: 0+0= ... 9+9=


def test_records_are_correct_demonstrations():
    records = gym_examples(GymSpec("arithmetic", {"ops": ["+", "-"], "digits": [1, 3]}), 20, seed=0)
    assert len(records) == 20
    for record in records:
        assert set(record) == {"prompt", "completion", "answer", "source", "index", "seed", "difficulty"}
        assert record["source"] == "ftkit/Arithmetic-v0" and record["seed"] == 0
        assert score_answer(record["completion"], record["answer"]) == 1.0
        assert set(record["difficulty"]) == {"op", "digits"}


def test_each_record_can_be_regenerated_from_its_seed_and_index():
    records = gym_examples(ONE_DIGIT_SUMS, 10, seed=3)
    env = ONE_DIGIT_SUMS.make()
    for record in records:
        obs, info = env.reset(seed=item_seed(record["seed"], record["index"]))
        assert (obs, info["answer"]) == (record["prompt"], record["answer"])


def test_same_arguments_give_the_same_records_and_other_seeds_differ():
    first = gym_examples("arithmetic", 30, seed=7)
    assert first == gym_examples("ftkit/Arithmetic-v0", 30, seed=7)
    other = gym_examples("arithmetic", 30, seed=8)
    assert [r["prompt"] for r in first] != [r["prompt"] for r in other]


def test_item_seed_is_stable_and_spreads_nearby_seeds():
    assert item_seed(0, 0) == item_seed(0, 0)
    assert len({item_seed(seed, index) for seed in range(10) for index in range(10)}) == 100


def test_prompts_are_unique_even_in_a_small_problem_space():
    records = gym_examples(ONE_DIGIT_SUMS, 90, seed=0)
    prompts = [r["prompt"] for r in records]
    assert len(set(prompts)) == 90
    assert records[-1]["index"] > 89  # repeats were skipped, not returned


def test_excluded_prompts_never_appear_and_train_eval_are_disjoint():
    held_out = gym_examples(ONE_DIGIT_SUMS, 30, seed=1)
    held_out_prompts = {r["prompt"] for r in held_out}
    train = gym_examples(ONE_DIGIT_SUMS, 60, seed=0, exclude_prompts=held_out_prompts)
    assert len(train) == 60
    assert not held_out_prompts & {r["prompt"] for r in train}


def test_a_problem_space_too_small_for_n_is_an_error():
    with pytest.raises(DataError, match="too small"):
        gym_examples(ONE_DIGIT_SUMS, 101, seed=0)
    everything = {r["prompt"] for r in gym_examples(ONE_DIGIT_SUMS, 100, seed=0)}
    with pytest.raises(DataError, match="too small"):
        gym_examples(ONE_DIGIT_SUMS, 1, seed=0, exclude_prompts=everything)


@pytest.mark.parametrize("n", [0, -1, 2.5, True])
def test_n_must_be_a_positive_int(n):
    with pytest.raises(DataError, match="n must be a positive"):
        gym_examples("arithmetic", n, seed=0)


class _NoOracleEnv(gyms.TextEnv):
    def _reset(self, options):
        return "say hello", {"answer": "hello", "difficulty": {}}


@pytest.fixture
def no_oracle_gym(monkeypatch):
    """Register a gym without an oracle for one test, leaving both registries as they were."""
    monkeypatch.setattr(gyms.registry, "_GYMS", dict(gyms.registry._GYMS))
    gyms.register_gym(
        "ftkit/NoOracle-v0", _NoOracleEnv, short_name="no-oracle", description="test only", has_oracle=False
    )
    yield "no-oracle"
    del gymnasium.registry["ftkit/NoOracle-v0"]


def test_a_gym_without_an_oracle_is_an_error_naming_it(no_oracle_gym):
    with pytest.raises(DataError, match='gym "no-oracle" has no oracle'):
        gym_examples(no_oracle_gym, 5, seed=0)
