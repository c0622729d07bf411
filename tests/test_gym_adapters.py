"""Outside task libraries as gyms (`rg:`, `ta:`): `python -m pytest tests/test_gym_adapters.py -q`.

The reasoning-gym and TextArena tests need the extras (`pip install -e '.[reasoning-gym,textarena]'`)
and are skipped without them; the missing-extra messages are tested either way.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import warnings

import pytest
from gymnasium.utils.env_checker import check_env

import gyms
from ftkit.errors import GymError
from gyms import adapters
from gyms.checks import check_gym
from gyms.runner import oracle_policy, run_episodes
from gyms.spec import GymSpec

HAS_RG = importlib.util.find_spec("reasoning_gym") is not None
HAS_TA = importlib.util.find_spec("textarena") is not None
needs_rg = pytest.mark.skipif(not HAS_RG, reason="needs the reasoning-gym extra")
needs_ta = pytest.mark.skipif(not HAS_TA, reason="needs the textarena extra")
RG_TASKS = ["chain_sum", "basic_arithmetic", "letter_counting", "word_sorting", "maze", "countdown"]


# -- what every install sees --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "extra"), [("rg:chain_sum", "reasoning-gym"), ("ta:GuessTheNumber-v0", "textarena")]
)
def test_a_missing_extra_is_one_line_naming_it(monkeypatch, name, extra):
    monkeypatch.setattr(adapters, "is_installed", lambda adapter: False)
    for call in (gyms.make, gyms.resolve_id):
        with pytest.raises(GymError) as error:
            call(name)
        message = str(error.value)
        assert f"pip install 'ftkit[{extra}]'" in message and "\n" not in message
    assert adapters.task_names(name.split(":")[0]) == []


def test_prefixes_are_routed_and_plain_names_are_not():
    assert adapters.adapter_for("rg:chain_sum").extra == "reasoning-gym"
    assert adapters.adapter_for("ta:Mastermind-v0").extra == "textarena"
    assert adapters.adapter_for("arithmetic") is None and adapters.adapter_for("xx:y") is None


def test_flat_difficulty_keeps_simple_values_only():
    assert adapters.flat_difficulty({"a": 1, "b": {"c": "x", "d": [1, 2]}, "e": None, "f": [object()]}) == {
        "a": 1,
        "b.c": "x",
        "b.d": "[1, 2]",
    }
    assert adapters.flat_difficulty(None) == {}


# -- reasoning-gym ------------------------------------------------------------------------------------------


@needs_rg
@pytest.mark.parametrize("task", RG_TASKS)
def test_rg_task_passes_the_env_checker_and_its_oracle_scores(task):
    env = gyms.make(f"rg:{task}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
    trajectories = run_episodes(f"rg:{task}", oracle_policy(), seeds=range(5))
    assert all(t.solved and t.total_reward == 1.0 for t in trajectories)
    assert all(t.gym == f"rg:{task}" for t in trajectories)


@needs_rg
def test_rg_is_deterministic_from_the_seed_and_varies_across_seeds():
    env = gyms.make("rg:chain_sum")
    questions = [env.reset(seed=s)[0] for s in range(10)]
    assert questions == [gyms.make("rg:chain_sum").reset(seed=s)[0] for s in range(10)]
    assert len(set(questions)) >= 8


@needs_rg
def test_rg_step_scores_with_the_tasks_own_checker():
    env = gyms.make("rg:chain_sum", min_terms=2, max_terms=2)
    obs, info = env.reset(seed=0)
    assert obs.startswith("State the final answer") and isinstance(info["answer"], str)
    assert all(isinstance(v, (str, int, float, bool)) for v in info["difficulty"].values())
    _, reward, terminated, truncated, step_info = env.step(info["answer"])
    assert (reward, terminated, truncated, step_info["solved"], step_info["score"]) == (
        1.0,
        True,
        False,
        True,
        1.0,
    )
    env.reset(seed=0)
    assert env.step("not a number")[1] == 0.0


@needs_rg
def test_rg_partial_credit_is_opt_in():
    """reasoning-gym's base rule pays len(answer)/len(action) to an action containing the answer."""
    for partial_credit, expected in [(False, 0.0), (True, 0.5)]:
        env = gyms.make("rg:letter_counting", partial_credit=partial_credit)
        _, info = env.reset(seed=0)
        _, reward, _, _, step_info = env.step(info["answer"] * 2)
        assert reward == pytest.approx(expected) and step_info["score"] == pytest.approx(0.5)
        assert step_info["solved"] is False


@needs_rg
def test_rg_tasks_without_a_single_answer_have_no_oracle():
    env = gyms.make("rg:graph_color")
    _, info = env.reset(seed=0)
    assert env.unwrapped.has_oracle is False and info["answer"] == ""
    with pytest.raises(GymError, match="has no"):
        gyms.oracle(env)


@needs_rg
@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("rg:chain_sam", {}, 'unknown reasoning-gym task "chain_sam" (did you mean "chain_sum"?)'),
        ("rg:chain_sum", {"min_term": 2}, 'no argument "min_term" (did you mean "min_terms"?)'),
        ("rg:chain_sum", {"seed": 3}, '"seed" is set by ftkit'),
        ("rg:chain_sum", {"min_terms": -1}, "rg:chain_sum rejected its arguments"),
        ("rg:chain_sum", {"partial_credit": "yes"}, "partial_credit must be"),
    ],
)
def test_rg_mistakes_are_one_line_gym_errors(name, kwargs, message):
    with pytest.raises(GymError) as error:
        gyms.make(name, **kwargs)
    assert message in str(error.value) and "\n" not in str(error.value)


@needs_rg
def test_rg_ids_resolve_and_list():
    assert gyms.resolve_id("rg:chain_sum") == "rg:chain_sum"
    names = adapters.task_names("rg")
    assert len(names) > 90 and "rg:chain_sum" in names and "rg:composite" not in names


@needs_rg
def test_rg_check_runs_and_finds_reasoning_gyms_lenient_parsing():
    report = check_gym("rg:basic_arithmetic", random_episodes=10)
    assert report.passed, [(r.name, r.detail) for r in report.failures]
    # chain_sum reads answers with int(), which also accepts full-width digits ("５７９").
    lenient = check_gym("rg:chain_sum", random_episodes=10)
    assert [r.name for r in lenient.failures] == ["hack: full-width answer"]


@needs_rg
def test_rg_spell_backward_near_one_scores_are_not_solved():
    """spell_backward pays 0.9999999999999998 to an action that starts with the answer: not a win."""
    env = gyms.make("rg:spell_backward")
    _, info = env.reset(seed=0)
    _, reward, _, _, step_info = env.step(info["answer"] + " and more")
    assert step_info["score"] < 1.0 and reward == 0.0 and step_info["solved"] is False


# -- TextArena ----------------------------------------------------------------------------------------------


@needs_ta
@pytest.mark.parametrize("game", ["GuessTheNumber-v0", "Mastermind-v0", "TowerOfHanoi-v0", "FrozenLake-v0"])
def test_ta_game_passes_the_env_checker_and_replays(game):
    env = gyms.make(f"ta:{game}")
    assert env.unwrapped.multi_turn
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)

    def play(seeds):
        return [
            t.to_dict()
            for t in run_episodes(GymSpec(f"ta:{game}", max_turns=30), lambda obs: ["[1]"] * len(obs), seeds)
        ]

    assert play([1, 2]) == play([1, 2])
    assert play([2]) == play([1, 2])[1:]  # a game's own randomness is its own, however many run at once


@needs_ta
def test_ta_guess_the_number_oracle_feedback_and_reward():
    env = gyms.make("ta:GuessTheNumber-v0")
    obs, info = env.reset(seed=0)
    assert "Guess The Number" in obs and info["answer"].isdigit()
    secret = int(info["answer"])
    wrong = 1 if secret != 1 else 2
    obs, reward, terminated, _, step_info = env.step(f"[{wrong}]")
    assert (reward, terminated, step_info["solved"]) == (0.0, False, False)
    assert obs == f"The target number is {'higher' if secret > wrong else 'lower'}."
    _, reward, terminated, _, step_info = env.step(gyms.oracle(env))
    assert (reward, terminated, step_info["solved"], step_info["score"]) == (1.0, True, True, 1.0)


@needs_ta
def test_ta_losing_near_miss_scores_only_with_partial_credit():
    for partial_credit in (False, True):
        env = gyms.make("ta:GuessTheNumber-v0", partial_credit=partial_credit)
        _, info = env.reset(seed=0)
        near = int(info["answer"]) % 20 + 1  # one away (or wrapped), never the secret
        trajectory_reward = 0.0
        for _ in range(10):
            _, reward, terminated, _, step_info = env.step(f"[{near}]")
            trajectory_reward += reward
            if terminated:
                break
        assert step_info["solved"] is False and step_info["score"] > 0
        assert (trajectory_reward > 0) == partial_credit


@needs_ta
@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("ta:Wordle-v0", "downloads nltk word lists"),
        ("ta:TwentyQuestions-v0", "hosted LLM"),
        ("ta:GuessTheNumbr-v0", 'did you mean "GuessTheNumber-v0"'),
        ("ta:Chess-v0", "is not adapted"),
    ],
)
def test_ta_unadapted_games_say_why(name, message):
    with pytest.raises(GymError) as error:
        gyms.make(name)
    assert message in str(error.value) and "\n" not in str(error.value)


@needs_ta
def test_ta_bad_game_argument_is_named():
    with pytest.raises(GymError, match='no argument "max_numbr" \\(did you mean "max_number"\\?\\)'):
        gyms.make("ta:GuessTheNumber-v0", max_numbr=10)
    env = gyms.make("ta:GuessTheNumber-v0", max_number=5)
    assert env.reset(seed=0)[1]["difficulty"]["max_number"] == 5


def test_docstring_examples_run():
    assert doctest.testmod(adapters).failed == 0
    if HAS_RG:
        assert doctest.testmod(importlib.import_module("gyms.adapters.reasoning_gym")).failed == 0
    if HAS_TA:
        assert doctest.testmod(importlib.import_module("gyms.adapters.textarena")).failed == 0
