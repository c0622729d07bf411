"""Tests for the episode runner: `python -m pytest tests/test_runner.py -q`."""

from __future__ import annotations

import doctest
import json
import re

import pytest

import gyms
import gyms.runner
from ftkit.errors import GymError
from gyms.runner import EnvPolicy, Trajectory, oracle_policy, random_policy, run_episodes
from gyms.spec import GymSpec


class StepsEnv(gyms.TextEnv):
    """A tiny multi-turn gym: say "go" until the hidden number of steps (1 to 3) is done."""

    multi_turn = True
    has_oracle = True

    def _reset(self, options):
        self._length = int(options.get("length", self.np_random.integers(1, 4)))
        self._done = 0
        return self._obs(), self._info()

    def _step(self, action):
        if action == "go":
            self._done += 1
        solved = self._done == self._length
        obs = "done" if solved else self._obs()
        return obs, float(solved), solved, False, {**self._info(), "solved": solved}

    def oracle(self):
        return "go"

    def _obs(self):
        return f"{self._length - self._done} left; say go"

    def _info(self):
        return {"answer": "go", "difficulty": {"length": self._length}}


class ForeverEnv(StepsEnv):
    """A multi-turn gym whose episodes never end."""

    def _step(self, action):
        return "again", 0.0, False, False, {**self._info(), "solved": False}


@pytest.fixture
def steps_gym(temporary_gym):
    return temporary_gym("ftkit/TestSteps-v0", StepsEnv, "test_steps", multi_turn=True)


def episode_lengths(seeds):
    env = gyms.make("test_steps")
    return [env.reset(seed=s)[1]["difficulty"]["length"] for s in seeds]


class CountingPolicy:
    """Says `action` to everything and records the size of every batch it was given."""

    def __init__(self, action="go"):
        self.action = action
        self.batches: list[list] = []

    def __call__(self, observations):
        self.batches.append(list(observations))
        return [self.action] * len(observations)


# -- single-turn ------------------------------------------------------------------------------------------


def test_single_turn_scripted_policy_one_call_for_the_whole_batch():
    policy = CountingPolicy("0")
    trajectories = run_episodes(GymSpec("arithmetic", {"digits": 2}), policy, seeds=[0, 1, 2])
    assert len(policy.batches) == 1 and len(policy.batches[0]) == 3
    for seed, t in zip([0, 1, 2], trajectories):
        assert isinstance(t, Trajectory) and t.seed == seed and t.gym == "ftkit/Arithmetic-v0"
        assert t.num_turns == 1 and t.terminated and not t.truncated
        assert re.fullmatch(r"[0-9]+\+[0-9]+=", t.turns[0].observation)
        assert t.turns[0].action == "0" and t.total_reward == 0.0 and t.solved is False
        assert t.reset_info["answer"] == t.info["answer"]


def test_oracle_policy_solves_and_the_observation_is_the_gyms():
    trajectories = run_episodes("arithmetic", oracle_policy(), seeds=range(5))
    env = gyms.make("arithmetic")
    for t in trajectories:
        assert t.solved and t.total_reward == 1.0
        assert t.turns[0].observation == env.reset(seed=t.seed)[0]


def test_options_per_episode_and_shared():
    shared = run_episodes("arithmetic", oracle_policy(), [0, 1], options={"op": "*", "digits": 4})
    assert [t.info["difficulty"] for t in shared] == [{"op": "*", "digits": 4}] * 2
    each = run_episodes("arithmetic", oracle_policy(), [0, 1], options=[{"digits": 1}, None])
    assert [t.info["difficulty"]["digits"] for t in each] == [1, 3]
    with pytest.raises(GymError, match="one per seed"):
        run_episodes("arithmetic", oracle_policy(), [0, 1], options=[{"digits": 1}])


def test_to_dict_is_one_json_line():
    (t,) = run_episodes("arithmetic", oracle_policy(), [7])
    record = json.loads(json.dumps(t.to_dict()))
    assert record["gym"] == "ftkit/Arithmetic-v0" and record["seed"] == 7 and record["solved"] is True
    assert record["turns"][0]["action"] == record["info"]["answer"]
    assert record["num_turns"] == 1 and record["total_reward"] == 1.0


def test_to_jsonable_handles_numpy_and_tuples():
    import numpy as np

    assert gyms.runner.to_jsonable({"a": np.int64(3), "b": (1, np.float32(0.5)), 4: {1, 2}}) == {
        "a": 3,
        "b": [1, 0.5],
        "4": [1, 2],
    }


# -- multi-turn and lockstep ------------------------------------------------------------------------------


def test_multi_turn_lockstep_one_policy_call_per_turn(steps_gym):
    seeds = list(range(12))
    lengths = episode_lengths(seeds)
    assert set(lengths) == {1, 2, 3}  # the seeds cover every episode length
    policy = CountingPolicy()
    trajectories = run_episodes(steps_gym, policy, seeds)
    assert len(policy.batches) == max(lengths)  # one call per turn, not per episode
    assert [len(b) for b in policy.batches] == [
        sum(n > turn for n in lengths) for turn in range(max(lengths))
    ]
    assert [t.num_turns for t in trajectories] == lengths
    assert all(t.solved and t.terminated and t.total_reward == 1.0 for t in trajectories)


def test_chat_observations_carry_the_conversation(steps_gym):
    seen = []

    def policy(observations):
        seen.append(observations)
        return ["wait" if len(conversation) == 2 else "go" for conversation in observations]

    chat = GymSpec(steps_gym, chat=True, system_prompt="Be brief.")
    (t,) = run_episodes(chat, policy, [0], options={"length": 1})
    first, second = seen[0][0], seen[1][0]
    assert first == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "1 left; say go"},
    ]
    assert second == [
        *first,
        {"role": "assistant", "content": "wait"},
        {"role": "user", "content": "1 left; say go"},
    ]
    assert [turn.action for turn in t.turns] == ["wait", "go"] and t.solved
    assert t.messages() == [*second, {"role": "assistant", "content": "go"}]
    assert t.final_observation == "done"


def test_text_observations_are_the_latest_observation(steps_gym):
    policy = CountingPolicy()
    run_episodes(steps_gym, policy, [0], options={"length": 3})
    assert [b[0] for b in policy.batches] == ["3 left; say go", "2 left; say go", "1 left; say go"]


def test_max_turns_truncates(steps_gym):
    trajectories = run_episodes(GymSpec(steps_gym, max_turns=2), CountingPolicy(), [0, 1], options={"length": 3})
    assert all(t.num_turns == 2 and t.truncated and not t.terminated and not t.solved for t in trajectories)


def test_an_episode_that_never_ends_is_an_error(temporary_gym, monkeypatch):
    name = temporary_gym("ftkit/TestForever-v0", ForeverEnv, "test_forever", multi_turn=True)
    monkeypatch.setattr(gyms.runner, "SAFETY_MAX_TURNS", 5)
    with pytest.raises(GymError, match="did not end within 5 turns; pass max_turns"):
        run_episodes(name, CountingPolicy(), [0])
    assert run_episodes(GymSpec(name, max_turns=4), CountingPolicy(), [0])[0].truncated


def test_env_policy_sees_the_running_envs(steps_gym):
    sizes = []

    def fn(observations, envs):
        sizes.append(len(envs))
        assert all(isinstance(env.unwrapped, StepsEnv) for env in envs)
        return [gyms.oracle(env) for env in envs]

    trajectories = run_episodes(steps_gym, EnvPolicy(fn), [0, 1, 2, 3])
    assert all(t.solved for t in trajectories) and sizes[0] == 4 and sizes == sorted(sizes, reverse=True)


def test_random_policy_replays_and_does_not_touch_the_gyms_randomness():
    def play():
        return [t.to_dict() for t in run_episodes("arithmetic", random_policy(["1", "2", "3"]), [0, 1, 2])]

    first = play()
    assert first == play()
    assert {t["turns"][0]["action"] for t in first} <= {"1", "2", "3"}
    env = gyms.make("arithmetic")
    assert [t["turns"][0]["observation"] for t in first] == [env.reset(seed=s)[0] for s in (0, 1, 2)]


def test_batching_does_not_change_an_episode(steps_gym):
    alone = run_episodes(steps_gym, CountingPolicy(), [5])[0].to_dict()
    batched = run_episodes(steps_gym, CountingPolicy(), [1, 5, 9])[1].to_dict()
    assert alone == batched


# -- a policy that breaks the rules is a one-line GymError ------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (lambda obs: ["1"], "returned 1 actions for 2 observations"),
        (lambda obs: ["1", "2", "3"], "returned 3 actions for 2 observations"),
        (lambda obs: ["1", 2], "action 1 is a int"),
        (lambda obs: [None, "1"], "action 0 is a NoneType"),
        (lambda obs: "12", "must return a list of actions"),
        (lambda obs: None, "must return a list of actions"),
    ],
)
def test_bad_policy_output_is_a_gym_error(policy, message):
    with pytest.raises(GymError, match=re.escape(message)) as error:
        run_episodes("arithmetic", policy, [0, 1])
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seeds": [-1]}, "non-negative ints"),
        ({"seeds": ["0"]}, "non-negative ints"),
        ({"seeds": [0], "gym": "arithmetc"}, 'did you mean "arithmetic"'),
    ],
)
def test_bad_arguments_are_gym_errors(kwargs, message):
    kwargs = {"gym": "arithmetic", "policy": CountingPolicy(), **kwargs}
    with pytest.raises(GymError, match=re.escape(message)):
        run_episodes(**kwargs)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_turns": 0}, "max_turns must be a positive int"),
        ({"max_turns": True}, "max_turns must be a positive int"),
        ({"system_prompt": "hi"}, "system_prompt needs chat=True"),
        ({"kwargs": [1]}, "the gym's arguments must be a dict"),
        ({"id": ""}, "a gym id must be a non-empty str"),
    ],
)
def test_a_bad_gym_spec_is_a_gym_error(fields, message):
    with pytest.raises(GymError, match=re.escape(message)):
        GymSpec(**{"id": "arithmetic", **fields})


def test_gym_spec_helpers():
    spec = GymSpec("arithmetic", {"digits": 2, "ops": ["+", "-"]})
    assert str(spec) == 'arithmetic {digits: 2, ops: ["+", "-"]}'
    assert str(GymSpec("guess_number", chat=True, max_turns=8)) == "guess_number (chat, max 8 turns)"
    assert spec.with_kwargs(digits=3).kwargs == {"digits": 3, "ops": ["+", "-"]} and spec.kwargs["digits"] == 2
    assert GymSpec.from_dict(spec.to_dict()) == spec and GymSpec.of("arithmetic") == GymSpec("arithmetic")
    assert len({spec, GymSpec("arithmetic", {"ops": ["+", "-"], "digits": 2}), GymSpec("arithmetic")}) == 2
    assert spec.full_id == "ftkit/Arithmetic-v0" and not spec.is_multi_turn
    assert GymSpec("guess_number").is_multi_turn
    env = spec.make()
    assert env.reset(seed=0)[0] == gyms.make("arithmetic", digits=2, ops=["+", "-"]).reset(seed=0)[0]
    kwargs = {"digits": 2}
    GymSpec("arithmetic", kwargs).kwargs["digits"] = 5
    assert kwargs == {"digits": 2}  # the spec holds a copy


def test_no_seeds_no_episodes():
    assert run_episodes("arithmetic", CountingPolicy(), []) == []


# -- with the multi-turn gyms of gyms/ ----------------------------------------------------------------------


def _binary_search(conversations):
    """Play guess_number from the chat history alone, as a model would: halve the range each turn."""
    guesses = []
    for messages in conversations:
        low, high = 1, int(re.search(r"from 1 to ([0-9]+)", messages[0]["content"]).group(1))
        for said, heard in zip(messages[1::2], messages[2::2]):
            guess = int(said["content"])
            low, high = (guess + 1, high) if heard["content"].startswith("higher") else (low, guess - 1)
        guesses.append(str((low + high) // 2))
    return guesses


@pytest.mark.skipif(
    "guess_number" not in [g.short_name for g in gyms.list_gyms()], reason="needs guess_number"
)
def test_guess_number_by_binary_search_over_chat():
    trajectories = run_episodes(GymSpec("guess_number", chat=True), _binary_search, seeds=range(20))
    assert all(t.solved and t.terminated for t in trajectories)
    assert max(t.num_turns for t in trajectories) > 1
    oracle = run_episodes("guess_number", oracle_policy(), seeds=range(20))
    assert all(t.solved and t.total_reward == 1.0 for t in oracle)


def test_docstring_examples_run():
    import gyms.spec

    assert doctest.testmod(gyms.runner).failed == 0
    assert doctest.testmod(gyms.spec).failed == 0


def test_reused_envs_replay_the_same_episodes_as_fresh_ones(monkeypatch):
    import gyms.runner

    _ENV_POOL: dict = {}
    monkeypatch.setattr(gyms.runner, "_ENV_POOL", _ENV_POOL)  # empty, whatever other tests left in it
    fresh = run_episodes("guess_number", oracle_policy(), seeds=[1, 2, 3])
    first = run_episodes("guess_number", oracle_policy(), seeds=[1, 2, 3], reuse_envs=True)
    pooled = next(envs for key, envs in _ENV_POOL.items() if key[0] == "ftkit/GuessNumber-v0")
    again = run_episodes("guess_number", oracle_policy(), seeds=[1, 2, 3, 4], reuse_envs=True)
    assert [t.to_dict() for t in first] == [t.to_dict() for t in fresh] == [t.to_dict() for t in again[:3]]
    assert len(again) == 4 and len(pooled) == 3
