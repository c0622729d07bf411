"""Tests for gyms/guess_number.py: `python -m pytest tests/test_gym_guess_number.py -q`."""

from __future__ import annotations

import doctest

import pytest

import gyms
import gyms.guess_number
from ftkit.errors import GymError
from gyms.guess_number import default_max_turns, optimal_turns, parse_guess, solved_reward


@pytest.mark.parametrize(
    ("max_number", "turns"), [(1, 1), (2, 2), (3, 2), (4, 3), (7, 3), (100, 7), (1024, 11)]
)
def test_optimal_turns_is_binary_search_worst_case(max_number, turns):
    assert optimal_turns(max_number) == turns


def test_solved_reward_formula_hand_computed():
    # max_number 100: K = 7 turns for binary search, L = 9 turns allowed by default.
    assert default_max_turns(100) == 9
    assert [solved_reward(t, 100, 9) for t in range(1, 10)] == [1.0] * 7 + [0.75, 0.5]
    # A longer limit spreads the same 1.0 -> 0.5 slope over more turns: K = 7, L = 12.
    assert [solved_reward(t, 100, 12) for t in (7, 8, 10, 12)] == [1.0, 0.9, 0.7, 0.5]
    # A limit at or below K: every win is worth 1.0.
    assert solved_reward(5, 100, 5) == 1.0


def play_guesses(env, guesses):
    """Reset with seed 0 and play `guesses`; return the steps."""
    env.reset(seed=0)
    return [env.step(g) for g in guesses]


def test_feedback_says_higher_lower_correct():
    env = gyms.make("guess_number")
    hidden = int(env.reset(seed=0)[1]["answer"])
    assert 1 < hidden < 100  # so that both neighbours are valid guesses
    steps = play_guesses(env, [str(hidden - 1), str(hidden + 1), str(hidden)])
    assert [obs for obs, *_ in steps] == ["higher", "lower", "correct"]
    obs, reward, terminated, truncated, info = steps[-1]
    assert terminated and not truncated and info["solved"] and info["format_reward"] == 1.0
    assert reward == 1.0  # third guess: well within the optimum of 7


def test_a_slow_win_earns_less_and_a_loss_nothing():
    env = gyms.make("guess_number")
    hidden = int(env.reset(seed=0)[1]["answer"])
    wrong = str(1 if hidden != 1 else 2)
    steps = play_guesses(env, [wrong] * 7 + [str(hidden)])  # found on turn 8 of 9
    assert [s[1] for s in steps] == [0.0] * 7 + [0.75]
    steps = play_guesses(env, [wrong] * 9)
    assert sum(s[1] for s in steps) == 0.0
    assert steps[-1][3] is True and not any(s[2] for s in steps)  # truncated, not terminated


@pytest.mark.parametrize("action", ["", "0", "101", "-5", "5.0", "5 5", "fifty", "５", "+5", "1" * 10_000])
def test_invalid_guesses_get_feedback_and_count_as_a_turn(action):
    env = gyms.make("guess_number")
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(action)
    assert obs == "invalid guess: answer with a whole number from 1 to 100"
    assert (reward, terminated, truncated, info["format_reward"]) == (0.0, False, False, 0.0)
    assert env.unwrapped.turn == 1


def test_parse_guess_reads_the_first_line_only():
    assert parse_guess("  42\t\nor maybe 43", 100) == 42
    assert parse_guess("042", 100) == 42
    assert parse_guess("42\n", 41) is None


@pytest.mark.parametrize("max_number", [2, 3, 10, 100, 1000, 10**9])
def test_oracle_is_binary_search_and_wins_within_the_optimum(max_number):
    env = gyms.make("guess_number", max_number=max_number)
    for seed in range(25):
        env.reset(seed=seed)
        for _ in range(optimal_turns(max_number)):
            _, reward, terminated, _, _ = env.step(gyms.oracle(env))
            if terminated:
                break
        assert terminated and reward == 1.0, f"seed {seed}: not found in {optimal_turns(max_number)} turns"


def test_oracle_uses_feedback_from_other_players_guesses():
    env = gyms.make("guess_number")
    hidden = int(env.reset(seed=3)[1]["answer"])
    guess = hidden - 1 if hidden > 1 else hidden + 1
    env.step(str(guess))
    env.step("junk")  # an invalid guess teaches nothing
    expected_range = (hidden, 100) if guess < hidden else (1, hidden)
    assert int(gyms.oracle(env)) == sum(expected_range) // 2


def test_reset_option_changes_range_and_default_turn_limit():
    env = gyms.make("guess_number")
    obs, info = env.reset(seed=0, options={"max_number": 1000})
    assert info["difficulty"] == {"max_number": 1000, "max_turns": 12}
    assert "from 1 to 1000" in obs and "12 guesses" in obs
    assert env.reset(seed=0)[1]["difficulty"] == {"max_number": 100, "max_turns": 9}
    assert gyms.make("guess_number", max_turns=4).reset(seed=0)[1]["difficulty"]["max_turns"] == 4


def test_progress_reward_pays_the_share_of_the_range_each_guess_rules_out():
    env = gyms.make("guess_number", max_number=16, progress_reward=0.5)
    hidden = int(env.reset(seed=0)[1]["answer"])
    assert 2 < hidden < 15
    # hidden - 2 rules out 1..hidden-2; repeating it, or guessing outside what is left, rules out nothing;
    # hidden + 2 rules out hidden+2..16; hidden + 1 then rules out itself; the win rules out the last 2.
    guesses = [hidden - 2, hidden - 2, 1, hidden + 2, hidden + 1, hidden]
    steps = play_guesses(env, [str(g) for g in guesses])
    ruled_out = [hidden - 2, 0, 0, 16 - (hidden + 1), 1, 2]
    assert [s[4]["progress"] for s in steps] == pytest.approx([n / 16 for n in ruled_out])
    assert sum(ruled_out) == 16  # a solved episode's progress adds up to the whole range
    assert [s[1] for s in steps] == pytest.approx([0.5 * n / 16 for n in ruled_out[:-1]]
                                                  + [0.5 * solved_reward(6, 16, 7) + 0.5 * 2 / 16])
    assert steps[-1][2]  # terminated: found
    oracle_total = 0.0  # binary search: an episode still earns 1.0 in all
    env.reset(seed=0)
    while True:
        _, reward, terminated, truncated, _ = env.step(gyms.oracle(env))
        oracle_total += reward
        if terminated or truncated:
            break
    assert oracle_total == pytest.approx(1.0)
    env.reset(seed=0)
    assert env.step("junk")[1] == 0.0  # an invalid guess earns nothing
    assert env.step(f"{hidden - 2}\n{hidden + 2}")[1] == 0.0  # nor one with more answers on other lines
    env.reset(seed=0)
    assert env.step(f"{hidden - 2}\n")[1] == pytest.approx(0.5 * (hidden - 2) / 16)  # a clean guess is paid
    unshaped = gyms.make("guess_number", max_number=16)
    unshaped.reset(seed=0)
    assert unshaped.step(str(hidden - 2))[1] == 0.0  # the default: the win's reward alone


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [({"max_number": 1}, "max_number"), ({"max_number": 2.5}, "max_number"), ({"max_turns": 0}, "max_turns"),
     ({"progress_reward": 1}, "progress_reward"), ({"progress_reward": "a"}, "progress_reward")],
)
def test_bad_arguments_are_errors(kwargs, named):
    with pytest.raises(GymError, match=named):
        gyms.make("guess_number", **kwargs)


def test_docstring_examples_run():
    assert doctest.testmod(gyms.guess_number).failed == 0
