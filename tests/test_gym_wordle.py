"""Tests for gyms/wordle.py: `python -m pytest tests/test_gym_wordle.py -q`."""

from __future__ import annotations

import doctest
import re
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

import gyms
import gyms.wordle
from ftkit.errors import GymError
from gyms.wordle import consistent_candidates, parse_guess, score_guess, word_list


@pytest.mark.parametrize(
    ("guess", "answer", "marks"),
    [
        ("crane", "crane", "GGGGG"),
        ("crane", "stump", "-----"),
        ("crane", "nacre", "YYYYG"),
        # Duplicate letters, worked by hand. A letter is yellow only while the answer has an unmatched
        # copy of it left, and greens take their copies first.
        ("speed", "abide", "--Y-Y"),  # "abide" has one e: the first e of "speed" takes it
        ("geese", "those", "---GG"),  # the final e is green, so no e is left for the others
        ("allee", "eagle", "YY-YG"),  # one l in "eagle": the first l is yellow, the second grey
        ("lolly", "hello", "-YGG-"),  # both l's of "hello" are matched in place; the first l is grey
        ("eerie", "sheep", "YY---"),  # two e's in "sheep": two yellows, the third e grey
        ("mamma", "maxim", "GGY--"),  # m: one green, then the other copy yellow, the third grey
    ],
)
def test_marks_hand_computed(guess, answer, marks):
    assert score_guess(guess, answer) == marks


words = st.text(alphabet="abcde", min_size=5, max_size=5)


@given(words, words)
def test_marks_count_each_letter_at_most_as_often_as_the_answer_has_it(guess, answer):
    marks = score_guess(guess, answer)
    for letter in set(guess):
        coloured = sum(m != "-" for g, m in zip(guess, marks) if g == letter)
        assert coloured == min(guess.count(letter), answer.count(letter))
    assert all((m == "G") == (g == a) for g, a, m in zip(guess, answer, marks))


def test_the_bundled_word_list():
    words = word_list()
    assert len(words) == 1000 and len(set(words)) == 1000 and list(words) == sorted(words)
    assert all(re.fullmatch(r"[a-z]{5}", w) for w in words)
    assert {"crane", "about", "water"} <= set(words)


@pytest.mark.parametrize(
    ("action", "parsed"),
    [
        ("crane", "crane"),
        ("  CRANE \nbecause it has common letters", "crane"),
        ("crane crane", None),
        ("cranes", None),
        ("xyzzy", None),  # five letters, not in the list
        ("ｃｒａｎｅ", None),  # full-width letters
        ("", None),
        ("correct", None),
    ],
)
def test_parse_guess(action, parsed):
    assert parse_guess(action) == parsed


def test_a_game_turn_by_turn():
    env = gyms.make("wordle")
    obs, info = env.reset(seed=0)
    hidden = info["answer"]
    assert "in 6 tries" in obs and info["difficulty"] == {"max_turns": 6}
    other = "crane" if hidden != "crane" else "about"
    obs, reward, terminated, truncated, info = env.step(other)
    assert obs == f"{other} {score_guess(other, hidden)}"
    assert (reward, terminated, truncated, info["format_reward"]) == (0.0, False, False, 1.0)
    obs, reward, terminated, truncated, info = env.step("qwert")
    assert obs.startswith("not a word from the list")
    assert (reward, terminated, info["format_reward"], env.unwrapped.turn) == (0.0, False, 0.0, 2)
    obs, reward, terminated, truncated, info = env.step(hidden.upper())
    assert obs == f"{hidden} GGGGG" and reward == 1.0 and terminated and info["solved"]


def test_six_misses_truncate_with_nothing():
    env = gyms.make("wordle")
    hidden = env.reset(seed=1)[1]["answer"]
    miss = "crane" if hidden != "crane" else "about"
    steps = [env.step(miss) for _ in range(6)]
    assert [s[3] for s in steps] == [False] * 5 + [True] and sum(s[1] for s in steps) == 0.0


def test_max_turns_is_the_difficulty_knob():
    env = gyms.make("wordle", max_turns=3)
    assert env.reset(seed=0)[1]["difficulty"] == {"max_turns": 3}
    obs, info = env.reset(seed=0, options={"max_turns": 10})
    assert "in 10 tries" in obs and info["difficulty"] == {"max_turns": 10}
    with pytest.raises(GymError, match="max_turns"):
        gyms.make("wordle", max_turns=0)
    with pytest.raises(GymError, match='unknown reset option "max_turn"'):
        env.reset(seed=0, options={"max_turn": 3})


def test_oracle_guesses_consistent_words_and_always_wins():
    env = gyms.make("wordle")
    turns = Counter()
    for seed in range(30):
        env.reset(seed=seed)
        history = []
        for turn in range(1, 7):
            guess = gyms.oracle(env)
            if turn < 6:  # before the last turn the oracle plays hard mode
                assert guess in consistent_candidates(history)
            obs, reward, terminated, _, _ = env.step(guess)
            history.append((guess, obs.split()[1]))
            if terminated:
                break
        assert reward == 1.0, f"seed {seed}"
        turns[turn] += 1
    assert sum(n * t for t, n in turns.items()) / 30 < 4.5  # it plays well, not just on the last turn


def test_on_the_last_turn_the_oracle_names_the_hidden_word():
    env = gyms.make("wordle", max_turns=1)
    _, info = env.reset(seed=5)
    assert gyms.oracle(env) == info["answer"]


def test_docstring_examples_run():
    assert doctest.testmod(gyms.wordle).failed == 0
