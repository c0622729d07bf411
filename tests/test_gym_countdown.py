"""Tests for gyms/countdown.py: `python -m pytest tests/test_gym_countdown.py -q`."""

from __future__ import annotations

import doctest
import re
from collections import Counter

import pytest

import gyms
import gyms.countdown
from ftkit.errors import GymError
from gyms.countdown import score_expression
from gyms.safe_math import evaluate, numbers_in, parse

NUMBERS = [3, 7, 12, 25]


@pytest.mark.parametrize(
    ("action", "target", "reward", "format_reward"),
    [
        ("(25-12)*3+7", 46, 1.0, 1.0),
        ("  (25 - 12) × 3 + 7 \nbecause 13*3 = 39", 46, 1.0, 1.0),  # first line only; Unicode times
        ("25+12", 37, 1.0, 1.0),  # not every number has to be used
        ("12/3+25", 29, 1.0, 1.0),  # exact division
        ("-3+25", 22, 1.0, 1.0),  # a leading minus is allowed
        ("25+25-4", 46, 0.0, 1.0),  # 25 twice, and 4 is not given
        ("25+21", 46, 0.0, 1.0),  # 21 is not given
        ("2512", 2512, 0.0, 1.0),  # two numbers glued together are a different number
        ("7/3*12+25", 53, 0.0, 1.0),  # 7/3 is not whole, though 7/3*12 = 28 is
        ("25/(12-12)", 1, 0.0, 1.0),
        ("25+12", 46, 0.0, 1.0),  # wrong value
        ("46", 46, 0.0, 1.0),  # 46 is not given
        ("(25-12)*3+7 (25-12)*3+7", 46, 0.0, 0.0),  # two answers
        ("(25-12)*3+7=46", 46, 0.0, 0.0),
        ("46 = (25-12)*3+7", 46, 0.0, 0.0),
        ("correct", 46, 0.0, 0.0),
        ("", 46, 0.0, 0.0),
        ("__import__('os')", 46, 0.0, 0.0),
        ("25**1", 25, 0.0, 0.0),
    ],
)
def test_score_expression(action, target, reward, format_reward):
    score = score_expression(action, NUMBERS, target)
    assert (score.reward, score.format_reward) == (reward, format_reward)
    assert (score.error is None) == (reward == 1.0)


def test_a_number_given_twice_may_be_used_twice():
    assert score_expression("5*5+3", [5, 5, 3], 28).reward == 1.0
    assert score_expression("5*5*5", [5, 5, 3], 125).error == "uses 5 more times than it is given"


def test_errors_say_why():
    assert score_expression("25+21", NUMBERS, 46).error == "21 is not one of the numbers"
    assert score_expression("7/3*12+25", NUMBERS, 53).error == "7/3 is not a whole number"
    assert score_expression("25+12", NUMBERS, 46).error == "the expression makes 37, not 46"
    assert score_expression("2**3", NUMBERS, 8).error.startswith("not an expression: ")


PROMPT = re.compile(r"Use the numbers ([0-9 ]+) to make ([0-9]+)\. .*")


def test_every_puzzle_is_solvable_by_its_own_answer():
    env = gyms.make("countdown")
    for seed in range(100):
        obs, info = env.reset(seed=seed)
        shown, target = PROMPT.fullmatch(obs).groups()
        numbers = [int(n) for n in shown.split()]
        assert numbers == info["numbers"] and int(target) == info["target"]
        assert 4 <= len(numbers) <= 6 and all(1 <= n <= 25 for n in numbers)
        assert 1 <= info["target"] <= 100 and info["target"] not in numbers
        solution = parse(info["answer"])
        assert not numbers_in(solution) - Counter(numbers)
        assert evaluate(solution, exact_division=True) == info["target"]
        assert info["difficulty"] == {"numbers": len(numbers), "max_number": 25, "max_target": 100}


def test_operators_are_all_used_across_puzzles():
    env = gyms.make("countdown")
    answers = "".join(env.reset(seed=s)[1]["answer"] for s in range(100))
    assert set("+-*/()") <= set(answers)


def test_difficulty_knobs():
    env = gyms.make("countdown", numbers=3, max_number=100, max_target=1000)
    for seed in range(20):
        _, info = env.reset(seed=seed)
        assert len(info["numbers"]) == 3 and info["target"] <= 1000
    assert len(env.reset(seed=0, options={"numbers": 7})[1]["numbers"]) == 7


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"numbers": 1}, "numbers"),
        ({"numbers": [6, 4]}, "numbers"),
        ({"max_number": 1}, "max_number"),
        ({"max_target": 5}, "max_target"),
    ],
)
def test_bad_arguments_are_errors(kwargs, named):
    with pytest.raises(GymError, match=named):
        gyms.make("countdown", **kwargs)


def test_bad_reset_option_is_named():
    with pytest.raises(GymError, match='unknown reset option "number" \\(did you mean "numbers"\\?\\)'):
        gyms.make("countdown").reset(seed=0, options={"number": 4})


def test_docstring_examples_run():
    assert doctest.testmod(gyms.countdown).failed == 0
