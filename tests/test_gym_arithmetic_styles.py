"""The arithmetic gym for chat models: questions in words, and the last number as the answer."""

from __future__ import annotations

import pytest

import gyms
from gyms.arithmetic import MAX_PROBLEM_LENGTH, parse_last_number, score_answer
from gyms.errors import GymError


def test_question_style_asks_in_words_with_the_same_problem():
    plain = gyms.make("arithmetic", digits=2, ops=["+", "-"])
    question = gyms.make("arithmetic", digits=2, ops=["+", "-"], style="question")
    for seed in range(20):
        (obs, info), (q_obs, q_info) = plain.reset(seed=seed), question.reset(seed=seed)
        assert q_info == info  # the same draw, only the wording differs
        assert q_obs == "What is " + obs[:-1].replace("+", " + ").replace("-", " - ") + "?"


def test_last_number_reads_an_answer_in_words():
    env = gyms.make("arithmetic", digits=2, ops=["-"], style="question")
    obs, info = env.reset(seed=1)
    _, reward, _, _, step_info = env.step(f"{obs[8:-1]} = {info['answer']}. Done!")
    assert reward == 1.0 and step_info["solved"] and step_info["parsed"] == info["answer"]
    env.reset(seed=1)
    # the first-line rule would read nothing here; the last-number rule reads the wrong last number
    assert env.step(f"{info['answer']} is not it, it is 1000")[1] == 0.0


def test_parsers_differ_only_where_they_should():
    assert parse_last_number("23 + 45 = 68") == "68"
    assert parse_last_number("it is -9") == "-9"
    assert parse_last_number("no digits") is None
    assert score_answer("68", "68") == score_answer("68", "68", "last_number") == 1.0
    assert score_answer("23 + 45 = 68", "68") == 0.0


def test_longest_question_fits_the_observation_space():
    env = gyms.make("arithmetic", terms=8, digits=18, ops=["-"], style="question", answer_format="reversed")
    obs, _ = env.reset(seed=0)
    assert len(obs) <= MAX_PROBLEM_LENGTH


def test_unknown_style_is_a_gym_error():
    with pytest.raises(GymError, match="style must be one of equation, question, question_brief"):
        gyms.make("arithmetic", style="words")


def test_the_brief_question_adds_the_instruction_and_changes_nothing_else():
    plain = gyms.make("arithmetic", digits=2, style="question")
    brief = gyms.make("arithmetic", digits=2, style="question_brief")
    (obs, info), (b_obs, b_info) = plain.reset(seed=3), brief.reset(seed=3)
    assert b_obs == obs + " Answer with just the number." and b_info == info
    assert brief.step(f"= {info['answer']}")[1] == 1.0
    longest = gyms.make("arithmetic", terms=8, digits=18, ops=["-"], style="question_brief", answer_format="reversed")
    assert longest.observation_space.contains(longest.reset(seed=0)[0])
