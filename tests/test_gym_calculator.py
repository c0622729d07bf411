"""Tests for gyms/calculator.py: `python -m pytest tests/test_gym_calculator.py -q`."""

from __future__ import annotations

import doctest
import re
from fractions import Fraction

import numpy as np
import pytest

import gyms
import gyms.calculator
from ftkit.errors import GymError
from gyms.calculator import TEMPLATES, parse_action, run_calculator
from gyms.safe_math import evaluate, parse


@pytest.mark.parametrize(
    ("action", "parsed"),
    [
        ("calc: 17*24", ("calc", "17*24")),
        ("  CALC:17 * 24  \nthen I answer", ("calc", "17 * 24")),
        ("answer: 349", ("answer", "349")),
        ("Answer:  -3 ", ("answer", "-3")),
        ("answer: 349 pens", ("answer", "349 pens")),  # parsed as an answer, but not a whole number
        ("349", None),
        ("the answer: 349", None),
        ("calculate 17*24", None),
        ("", None),
        ("\nanswer: 349", None),  # only the first line counts
    ],
)
def test_parse_action(action, parsed):
    assert parse_action(action) == parsed


def test_the_tool_computes_exactly_and_reports_errors_in_ascii():
    assert run_calculator("17*24") == (Fraction(408), "408")
    assert run_calculator("(408 - 59)") == (Fraction(349), "349")
    assert run_calculator("10/4") == (Fraction(5, 2), "5/2")
    assert run_calculator("1/0") == (None, "error: division by zero")
    value, reply = run_calculator("2×é")
    assert value is None and reply.isascii() and "'?'" in reply
    assert run_calculator("__import__('os')")[1].startswith("error: unexpected character '_'")


def reset_pens(env):
    """A pens problem; its numbers read back from the text."""
    obs, info = env.reset(seed=0, options={"template": "pens"})
    boxes, per_box, sold = map(int, re.findall(r"[0-9]+", obs.split("\n")[0]))
    assert info["answer"] == str(boxes * per_box - sold)
    return boxes, per_box, sold


def test_a_tool_call_flow():
    env = gyms.make("calculator")
    boxes, per_box, sold = reset_pens(env)
    obs, reward, terminated, truncated, info = env.step(f"calc: {boxes}*{per_box}")
    assert obs == str(boxes * per_box)
    assert (reward, terminated, truncated, info["solved"]) == (0.0, False, False, False)
    assert info["format_reward"] == 1.0
    obs, *_ = env.step(f"calc: {obs}-{sold}")
    assert obs == str(boxes * per_box - sold)
    obs, reward, terminated, truncated, info = env.step(f"answer: {obs}")
    assert (obs, reward, terminated, info["solved"]) == ("correct", 1.0, True, True)


def test_a_wrong_answer_ends_the_episode_with_nothing():
    env = gyms.make("calculator")
    reset_pens(env)
    obs, reward, terminated, _, info = env.step("answer: 1")
    assert (obs, reward, terminated, info["format_reward"]) == ("incorrect", 0.0, True, 1.0)
    reset_pens(env)
    assert env.step("answer: lots")[1:3] == (0.0, True)


def test_invalid_actions_and_tool_calls_use_up_turns():
    env = gyms.make("calculator", max_turns=3)
    reset_pens(env)
    obs, reward, terminated, truncated, info = env.step("I think it is 349")
    assert obs.startswith("invalid action") and info["format_reward"] == 0.0
    assert env.step("calc: 1/0")[0] == "error: division by zero"
    _, reward, terminated, truncated, _ = env.step("calc: 1+1")
    assert (reward, terminated, truncated) == (0.0, False, True)


def test_oracle_calls_the_tool_then_answers():
    env = gyms.make("calculator")
    boxes, per_box, sold = reset_pens(env)
    total = boxes * per_box
    actions = []
    while True:
        actions.append(gyms.oracle(env))
        _, reward, terminated, _, _ = env.step(actions[-1])
        if terminated:
            break
    assert actions == [f"calc: {boxes}*{per_box}", f"calc: {total}-{sold}", f"answer: {total - sold}"]
    assert reward == 1.0


def test_oracle_answers_at_once_when_the_value_is_already_known():
    env = gyms.make("calculator")
    boxes, per_box, sold = reset_pens(env)
    env.step(f"calc: {boxes}*{per_box}-{sold}")  # someone did it all in one call
    assert gyms.oracle(env) == f"answer: {boxes * per_box - sold}"
    reset_pens(env)
    env.step(f"calc: {boxes}*{per_box}")  # the first step is done: the oracle goes on with the second
    assert gyms.oracle(env) == f"calc: {boxes * per_box}-{sold}"


@pytest.mark.parametrize("template", list(TEMPLATES))
@pytest.mark.parametrize("digits", [1, 2, 3, 4])
def test_every_template_chains_whole_steps_to_its_answer(template, digits):
    rng = np.random.default_rng(0)
    for _ in range(20):
        problem = TEMPLATES[template](rng, digits)
        values = [evaluate(parse(step)) for step in problem.steps]
        assert all(v.denominator == 1 and v > 0 for v in values)
        assert values[-1] == problem.answer and len(problem.steps) in (2, 3)
        # Every step uses only numbers from the text or earlier results.
        known = {int(n) for n in re.findall(r"[0-9]+", problem.text)}
        for step, step_value in zip(problem.steps, values):
            assert {int(n) for n in re.findall(r"[0-9]+", step)} <= known
            known.add(int(step_value))


def test_difficulty_and_reset_options():
    env = gyms.make("calculator", digits=3, templates=["garden"])
    _, info = env.reset(seed=0)
    assert info["difficulty"] == {"template": "garden", "digits": 3, "steps": 3}
    _, info = env.reset(seed=0, options={"template": "trip", "digits": 1})
    assert info["difficulty"] == {"template": "trip", "digits": 1, "steps": 2}
    seen = {gyms.make("calculator").reset(seed=s)[1]["difficulty"]["template"] for s in range(60)}
    assert seen == set(TEMPLATES)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"digits": 0}, "digits"),
        ({"digits": 5}, "digits"),
        ({"templates": []}, "templates"),
        ({"templates": ["pen"]}, 'unknown template \'pen\' \\(did you mean "pens"\\?\\)'),
        ({"max_turns": 0}, "max_turns"),
    ],
)
def test_bad_arguments_are_errors(kwargs, named):
    with pytest.raises(GymError, match=named):
        gyms.make("calculator", **kwargs)


def test_bad_reset_options_are_errors():
    env = gyms.make("calculator")
    with pytest.raises(GymError, match="options\\['template'\\]"):
        env.reset(seed=0, options={"template": "zoo"})
    with pytest.raises(GymError, match='unknown reset option "digit"'):
        env.reset(seed=0, options={"digit": 2})


def test_docstring_examples_run():
    assert doctest.testmod(gyms.calculator).failed == 0
