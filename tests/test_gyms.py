"""Tests for gyms/: `python -m pytest tests/test_gyms.py -q`.

The first half are contract tests run against every registered gym, so a new gym is checked the moment
it is registered in `gyms/__init__.py`; the second half are the arithmetic gym's own.
"""

from __future__ import annotations

import doctest
import re
import warnings

import gymnasium
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given
from hypothesis import strategies as st

import gyms
import gyms.arithmetic
import gyms.base
import gyms.registry
import gyms.safe_math
from ftkit.errors import GymError
from gyms.arithmetic import format_answer, parse_answer, score_answer

GYM_NAMES = [g.short_name for g in gyms.list_gyms()]
ORACLE_GYMS = [g.short_name for g in gyms.list_gyms() if g.has_oracle]
SEEDS = range(50)
MAX_TURNS = 100  # a safety net for multi-turn gyms whose episodes never end


def play(env: gymnasium.Env, seed: int, policy) -> list[tuple]:
    """Play one episode; return every (obs, info) and (obs, reward, terminated, truncated, info)."""
    transcript: list[tuple] = [env.reset(seed=seed)]
    for _ in range(MAX_TURNS):
        step = env.step(policy(env))
        transcript.append(step)
        if step[2] or step[3]:
            return transcript
    raise AssertionError(f"episode with seed {seed} did not end within {MAX_TURNS} turns")


def is_flat_simple_dict(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, (str, int, float, bool)) for k, v in value.items()
    )


# -- contract tests: every registered gym -------------------------------------------------------------


@pytest.mark.parametrize("name", GYM_NAMES)
def test_gym_passes_gymnasium_env_checker(name):
    env = gyms.make(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the checker reports most problems as warnings
        check_env(env.unwrapped)


@pytest.mark.parametrize("name", GYM_NAMES)
def test_registry_facts_match_the_gym_class(name):
    info = next(g for g in gyms.list_gyms() if g.short_name == name)
    env = gyms.make(name).unwrapped
    assert isinstance(env, gyms.TextEnv)
    assert info.id.startswith("ftkit/") and gyms.resolve_id(name) == gyms.resolve_id(info.id) == info.id
    assert (info.has_oracle, info.multi_turn) == (env.has_oracle, env.multi_turn)


@pytest.mark.parametrize("name", GYM_NAMES)
def test_same_seed_replays_identically(name):
    def policy(env):
        return gyms.oracle(env) if env.unwrapped.has_oracle else "42"

    for seed in range(5):
        assert play(gyms.make(name), seed, policy) == play(gyms.make(name), seed, policy)


@pytest.mark.parametrize("name", GYM_NAMES)
def test_standard_info_keys(name):
    env = gyms.make(name)
    obs, info = env.reset(seed=0)
    assert isinstance(obs, str) and isinstance(info["answer"], str)
    assert is_flat_simple_dict(info["difficulty"])
    _, reward, _, _, info = env.step("")
    assert isinstance(reward, float) and isinstance(info["solved"], bool)
    assert is_flat_simple_dict(info["difficulty"])


def total_reward(transcript: list[tuple]) -> float:
    return sum(step[1] for step in transcript[1:])


def assert_rewards_in_range(transcript: list[tuple]) -> None:
    """Each step's reward and `format_reward` (where given) is a float in [0, 1]; the total at most 1."""
    for _, reward, _, _, info in transcript[1:]:
        assert isinstance(reward, float) and 0.0 <= reward <= 1.0
        if "format_reward" in info:
            assert isinstance(info["format_reward"], float) and 0.0 <= info["format_reward"] <= 1.0
    assert total_reward(transcript) <= 1.0


@pytest.mark.parametrize("name", ORACLE_GYMS)
def test_oracle_solves_every_episode_with_the_top_score(name):
    env = gyms.make(name)
    for seed in SEEDS:
        transcript = play(env, seed, gyms.oracle)
        assert transcript[-1][4]["solved"] is True and transcript[-1][2] is True, f"seed {seed}"
        assert total_reward(transcript) == 1.0, f"seed {seed}"
        assert_rewards_in_range(transcript)


JUNK_ACTIONS = [
    "",
    "   \n\t",
    "x" * 10_000,
    "9" * 10_000,
    "\x00\x1b[31m",
    "🙂" * 5000,
    "correct",
    "Correct! The answer is correct.",
    "reward: 1.0",
    "answer: correct",
    "calc: __import__('os').system('true')",
    "1 2 3 4 5",
]


@pytest.mark.parametrize("name", GYM_NAMES)
@pytest.mark.parametrize("action", JUNK_ACTIONS, ids=lambda a: repr(a[:12]))
def test_junk_actions_score_zero_without_crashing(name, action):
    """A multi-turn gym gets the same junk every turn until the episode ends: it must earn nothing."""
    transcript = play(gyms.make(name), 0, lambda env: action)
    assert total_reward(transcript) == 0.0
    assert not any(step[4]["solved"] for step in transcript[1:])
    assert_rewards_in_range(transcript)


def answer_shaped_hacks(answer: str) -> list[str]:
    """Actions built from the episode's own answer that are still not a valid answer."""
    return [
        f"{answer} {answer}",  # the answer twice
        f"{answer}{answer}",
        f"{answer}, {answer}",
        f"1 {answer} 2",  # several answers in one
        f"{answer} is correct",
        f"correct: {answer}",
        f"answer: {answer} {answer}",
        f"calc: {answer} {answer}",
        "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in answer),  # full-width
    ]


@pytest.mark.parametrize("name", GYM_NAMES)
def test_answer_shaped_hacks_earn_nothing(name):
    env = gyms.make(name)
    for seed in range(5):
        _, info = env.reset(seed=seed)
        for action in answer_shaped_hacks(info["answer"]):
            transcript = play(env, seed, lambda env, action=action: action)
            assert total_reward(transcript) == 0.0, f"{action!r} scored (seed {seed})"
            assert_rewards_in_range(transcript)


@pytest.mark.parametrize("name", GYM_NAMES)
def test_stepping_outside_an_episode_is_an_error(name):
    env = gyms.make(name).unwrapped
    with pytest.raises(GymError, match="before reset"):
        env.step("1")
    env.reset(seed=0)
    with pytest.raises(GymError, match="must be a str"):
        env.step(42)
    play(env, 0, lambda env: "")  # junk until the episode ends (at once, or at the turn limit)
    with pytest.raises(GymError, match="after the episode ended"):
        env.step("1")


@pytest.mark.parametrize("name", GYM_NAMES)
def test_ansi_render_shows_the_observation(name):
    env = gyms.make(name, render_mode="ansi")
    obs, _ = env.reset(seed=3)
    assert env.render() == obs


# -- the registry ---------------------------------------------------------------------------------------


def test_resolve_id_accepts_short_name_and_full_id():
    assert gyms.resolve_id("arithmetic") == gyms.resolve_id("ftkit/Arithmetic-v0") == "ftkit/Arithmetic-v0"


@pytest.mark.parametrize(
    ("name", "suggestion"), [("arithmatic", "arithmetic"), ("ftkit/Arithmetic-v1", "ftkit/Arithmetic-v0")]
)
def test_unknown_gym_is_one_line_with_did_you_mean(name, suggestion):
    with pytest.raises(GymError) as error:
        gyms.make(name)
    message = str(error.value)
    assert f'unknown gym "{name}"' in message and f'did you mean "{suggestion}"' in message
    assert "known gyms: arithmetic" in message and "\n" not in message


def test_unknown_constructor_argument_is_named():
    with pytest.raises(GymError, match=r'no argument "opps" \(did you mean "ops"\?\)'):
        gyms.make("arithmetic", opps=["+"])


def test_register_gym_rejects_bad_ids_and_taken_short_names():
    with pytest.raises(GymError, match='must start with "ftkit/"'):
        gyms.register_gym("Arithmetic-v9", "gyms.arithmetic:ArithmeticEnv", short_name="x", description="")
    with pytest.raises(GymError, match="already used by ftkit/Arithmetic-v0"):
        gyms.register_gym(
            "ftkit/Other-v0", "gyms.arithmetic:ArithmeticEnv", short_name="arithmetic", description=""
        )
    assert "ftkit/Other-v0" not in gymnasium.registry


class _NoOracleEnv(gyms.TextEnv):
    """The smallest possible gym: say "hello" to win."""

    def _reset(self, options):
        return "say hello", {"answer": "hello", "difficulty": {}}

    def _step(self, action):
        solved = action == "hello"
        return "", float(solved), True, False, {"answer": "hello", "solved": solved, "difficulty": {}}


def test_oracle_helper_refuses_a_gym_without_one():
    env = _NoOracleEnv()
    env.reset(seed=0)
    with pytest.raises(GymError, match="has no oracle"):
        gyms.oracle(env)
    assert env.step("hello")[1] == 1.0


def test_oracle_reaches_through_wrappers_and_refuses_outside_an_episode():
    env = gyms.make("arithmetic")
    assert env is not env.unwrapped
    _, info = env.reset(seed=0)
    assert gyms.oracle(env) == info["answer"]
    env.step("")
    with pytest.raises(GymError, match="after the episode ended"):
        gyms.oracle(env)


class _CountingEnv(gyms.TextEnv):
    """A multi-turn gym that never ends by itself: only the base class's turn limit stops it."""

    multi_turn = True

    def _reset(self, options):
        return "count", {"answer": "", "difficulty": {}}

    def _step(self, action):
        return str(self.turn), 0.0, False, False, {"answer": "", "solved": False, "difficulty": {}}


def test_base_class_counts_turns_and_truncates_at_max_turns():
    env = _CountingEnv(max_turns=3)
    env.reset(seed=0)
    steps = [env.step("x") for _ in range(3)]
    assert [obs for obs, *_ in steps] == ["1", "2", "3"]  # `self.turn` is the step being taken
    assert [truncated for *_, truncated, _ in steps] == [False, False, True]
    assert not any(terminated for _, _, terminated, _, _ in steps)
    with pytest.raises(GymError, match="after the episode ended"):
        env.step("x")
    env.reset(seed=0)
    assert env.turn == 0 and env.step("x")[0] == "1"


def test_without_max_turns_the_base_class_never_truncates():
    env = _CountingEnv()
    env.reset(seed=0)
    assert not any(env.step("x")[3] for _ in range(200))


@pytest.mark.parametrize("max_turns", [0, -1, 2.5, True, "6"])
def test_max_turns_must_be_a_positive_whole_number(max_turns):
    expected = f"max_turns must be a whole number from 1 to 1000; got {max_turns!r}"
    with pytest.raises(GymError, match=re.escape(expected)):
        _CountingEnv(max_turns=max_turns)


# -- the arithmetic gym -----------------------------------------------------------------------------------

PROBLEM = re.compile(r"(rev )?([0-9]+)([-+*])([0-9]+)=")


@pytest.mark.parametrize(
    ("value", "answer_format", "expected"),
    [
        (579, "plain", "579"),  # 123+456
        (-333, "plain", "-333"),  # 123-456
        (0, "plain", "0"),  # 5-5
        (579, "reversed", "975"),
        (-333, "reversed", "-333"),
        (-150, "reversed", "-051"),  # 100-250: the sign stays in front
        (300, "reversed", "003"),  # 100+200: trailing zeros become leading ones
        (0, "reversed", "0"),
        (56088, "reversed", "88065"),  # 123*456
    ],
)
def test_format_answer_hand_computed(value, answer_format, expected):
    assert format_answer(value, answer_format) == expected


@pytest.mark.parametrize("answer_format", ["plain", "reversed"])
@pytest.mark.parametrize("op", ["+", "-", "*"])
def test_observation_and_answer_agree(op, answer_format):
    env = gyms.make("arithmetic", ops=[op], digits=[1, 6], answer_format=answer_format)
    for seed in range(40):
        obs, info = env.reset(seed=seed)
        prefix, a, shown_op, b = PROBLEM.fullmatch(obs).groups()
        assert (prefix is not None) == (answer_format == "reversed") and shown_op == op
        assert len(a) == len(b) == info["difficulty"]["digits"]
        assert a == str(int(a)) and b == str(int(b))  # no leading zeros: exactly d digits
        expected = {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
        digits = info["answer"].lstrip("-")
        if answer_format == "reversed":
            digits = digits[::-1]
        assert int(digits) * (-1 if info["answer"].startswith("-") else 1) == expected
        assert info["difficulty"] == {"op": op, "digits": len(a)}


def test_pinned_observations():
    env = gyms.make("arithmetic", digits=2)
    obs, info = env.reset(seed=0)
    assert PROBLEM.fullmatch(obs) and info["difficulty"] == {"op": "+", "digits": 2}
    env = gyms.make("arithmetic", answer_format="reversed")
    assert env.reset(seed=0)[0].startswith("rev ")


def test_digit_range_and_ops_are_all_drawn():
    env = gyms.make("arithmetic", ops=["+", "-", "*"], digits=[1, 3])
    seen = {tuple(env.reset(seed=s)[1]["difficulty"].values()) for s in range(200)}
    assert seen == {(op, d) for op in "+-*" for d in (1, 2, 3)}


def test_unicode_operator_aliases_become_ascii():
    env = gyms.make("arithmetic", ops=["×", "−", "+", "+"])
    assert env.unwrapped.ops == ("*", "-", "+")
    obs, _ = env.reset(seed=0, options={"op": "×"})
    assert "*" in obs and "×" not in obs


def test_reset_options_pin_difficulty_for_one_episode():
    env = gyms.make("arithmetic", ops=["+"], digits=2)
    obs, info = env.reset(seed=0, options={"op": "*", "digits": 5})
    assert info["difficulty"] == {"op": "*", "digits": 5}
    assert PROBLEM.fullmatch(obs).group(3) == "*" and len(PROBLEM.fullmatch(obs).group(2)) == 5
    _, _, _, _, step_info = env.step(info["answer"])
    assert step_info["difficulty"] == {"op": "*", "digits": 5}
    assert env.reset(seed=0)[1]["difficulty"] == {"op": "+", "digits": 2}  # back to the constructor's


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"digit": 2}, 'unknown reset option "digit" (did you mean "digits"?)'),
        ({"digits": 0}, "options['digits']"),
        ({"op": "/"}, "options['op']"),
    ],
)
def test_bad_reset_options_are_errors(options, named):
    with pytest.raises(GymError) as error:
        gyms.make("arithmetic").reset(seed=0, options=options)
    assert named in str(error.value)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"ops": ["/"]}, "ops"),
        ({"ops": []}, "ops"),
        ({"ops": 3}, "ops"),
        ({"digits": 0}, "digits"),
        ({"digits": 19}, "digits"),
        ({"digits": 2.5}, "digits"),
        ({"digits": True}, "digits"),
        ({"digits": [3, 1]}, "digits"),
        ({"digits": [1, 2, 3]}, "digits"),
        ({"answer_format": "rev"}, "answer_format"),
        ({"render_mode": "rgb_array"}, "render_mode"),
    ],
)
def test_bad_constructor_arguments_name_the_argument_and_value(kwargs, named):
    (value,) = kwargs.values()
    with pytest.raises(GymError) as error:
        gyms.arithmetic.ArithmeticEnv(**kwargs)
    message = str(error.value)
    assert named in message and (repr(value) in message or repr(list(value)) in message)


def _full_width(text: str) -> str:
    return "".join(chr(ord(c) - ord("0") + ord("０")) if c.isdigit() else c for c in text)


def _hostile_variants(answer: str) -> list[str]:
    """Answers that contain the right one but are not it; every one must earn 0."""
    return [
        answer * 2,
        f"{answer} {answer}",
        f"1 {answer} 2",
        f"the answer is {answer}",
        f"{answer} is the answer",
        f"={answer}",
        f"{answer}.0",
        f"+{answer}",
        f"0{answer}",
        f"({answer})",
        _full_width(answer),
        "correct",
        "1.0",
        "True",
        f"{answer[:-1]}\n{answer}",  # the right answer on the second line
    ]


@pytest.mark.parametrize("answer_format", ["plain", "reversed"])
def test_hostile_answers_earn_nothing(answer_format):
    env = gyms.make("arithmetic", ops=["+", "-"], answer_format=answer_format)
    for seed in range(10):
        _, info = env.reset(seed=seed)
        for action in _hostile_variants(info["answer"]):
            env.reset(seed=seed)
            assert env.step(action)[1] == 0.0, f"{action!r} scored for answer {info['answer']!r}"


def test_two_term_problems_are_unchanged_by_the_terms_knob():
    """Pinned from before `terms` existed: the default problems must stay exactly the same."""
    env = gyms.make("arithmetic")
    assert [env.reset(seed=s)[0] for s in range(3)] == ["865+673=", "525+560=", "853+335="]
    env = gyms.make("arithmetic", ops=["+", "-", "*"], digits=[1, 4], answer_format="reversed", terms=2)
    assert [env.reset(seed=s)[0] for s in range(3)] == ["rev 560*342=", "rev 779-955=", "rev 19*36="]


@pytest.mark.parametrize("answer_format", ["plain", "reversed"])
@pytest.mark.parametrize("terms", [3, 4, 6])
def test_long_problems_agree_with_their_answer(terms, answer_format):
    env = gyms.make("arithmetic", ops=list("+-*"), digits=[1, 2], terms=terms, answer_format=answer_format)
    with_parentheses = 0
    for seed in range(30):
        obs, info = env.reset(seed=seed)
        problem = obs.removeprefix("rev ").removesuffix("=")
        operands = re.findall(r"[0-9]+", problem)
        assert len(operands) == terms and {len(o) for o in operands} == {info["difficulty"]["digits"]}
        assert info["difficulty"]["terms"] == terms
        assert set(info["difficulty"]["op"]) == set(re.findall(r"[-+*]", problem))
        # The reader's check: the safe evaluator, on the text the player sees.
        value = int(gyms.safe_math.evaluate(gyms.safe_math.parse(problem)))
        assert info["answer"] == format_answer(value, answer_format)
        with_parentheses += "(" in problem
    assert with_parentheses > 0


def test_terms_range_and_reset_option():
    env = gyms.make("arithmetic", terms=[2, 4])
    seen = {env.reset(seed=s)[1]["difficulty"].get("terms", 2) for s in range(60)}
    assert seen == {2, 3, 4}
    _, info = env.reset(seed=0, options={"terms": 5, "op": "*"})
    assert info["difficulty"] == {"op": "*", "digits": 3, "terms": 5}


@pytest.mark.parametrize("terms", [1, 9, [3, 2], 2.0])
def test_bad_terms_are_errors(terms):
    with pytest.raises(GymError, match="terms"):
        gyms.make("arithmetic", terms=terms)


@pytest.mark.parametrize(
    ("response", "answer", "score"),
    [
        ("579", "579", 1.0),
        ("  579 \t", "579", 1.0),
        ("579\nbecause 123+456=579", "579", 1.0),
        ("-051", "-051", 1.0),
        ("579579", "579", 0.0),
        ("579 579", "579", 0.0),
        ("578 579 580", "579", 0.0),
        ("the answer is 579", "579", 0.0),
        ("５７９", "579", 0.0),
        ("٥٧٩", "579", 0.0),
        ("+579", "579", 0.0),
        ("- 333", "-333", 0.0),
        ("51", "-051", 0.0),  # reversed answers are compared as text: the leading zero matters
        ("", "", 0.0),  # an empty answer is never an integer
    ],
)
def test_score_answer_examples(response, answer, score):
    assert score_answer(response, answer) == score


def test_docstring_examples_run():
    for module in (gyms, gyms.base, gyms.registry, gyms.arithmetic):
        assert doctest.testmod(module).failed == 0, module.__name__


# -- properties of the one scoring function ------------------------------------------------------------

integers_as_text = st.integers().map(str)
padding = st.text(alphabet=" \t\r", max_size=3)


@given(st.text(), st.one_of(st.text(), integers_as_text))
def test_score_is_one_only_for_the_exact_first_line(response, answer):
    score = score_answer(response, answer)
    assert score in (0.0, 1.0)
    if score == 1.0:
        assert response.split("\n", 1)[0].strip() == answer
        assert re.fullmatch(r"-?[0-9]+", answer)


@given(st.text())
def test_parse_answer_returns_an_ascii_integer_or_none(response):
    parsed = parse_answer(response)
    assert parsed is None or (parsed.isascii() and re.fullmatch(r"-?[0-9]+", parsed))


@given(integers_as_text, padding, padding, st.text())
def test_a_padded_answer_with_any_explanation_after_it_scores(answer, before, after, rest):
    assert score_answer(f"{before}{answer}{after}\n{rest}", answer) == 1.0


@given(st.integers(), st.sampled_from(["plain", "reversed"]))
def test_format_answer_round_trips(value, answer_format):
    text = format_answer(value, answer_format)
    digits = text.lstrip("-")
    if answer_format == "reversed":
        digits = digits[::-1]
    assert int(digits) * (-1 if text.startswith("-") else 1) == value
    assert parse_answer(text) == text


def test_arithmetic_op_weights_set_how_often_each_op_is_drawn():
    import gyms

    env = gyms.make("arithmetic", ops=["+", "-"], op_weights=[4, 1])
    ops = [env.reset(seed=seed)[1]["difficulty"]["op"] for seed in range(2000)]
    assert 0.76 < ops.count("+") / len(ops) < 0.84
    uniform = gyms.make("arithmetic", ops=["+", "-"])
    same = gyms.make("arithmetic", ops=["+", "-"], op_weights=None)
    assert [uniform.reset(seed=s)[0] for s in range(20)] == [same.reset(seed=s)[0] for s in range(20)]
    only_minus = gyms.make("arithmetic", ops=["+", "-"], op_weights=[0, 1])
    assert {only_minus.reset(seed=s)[1]["difficulty"]["op"] for s in range(50)} == {"-"}
    for bad in ([1], [1, -1], [0, 0], "ab", [1, float("nan")], [1, True]):
        with pytest.raises(GymError, match="op_weights"):
            gyms.make("arithmetic", ops=["+", "-"], op_weights=bad)


def test_arithmetic_partial_credit_rewards_right_digits_but_only_exact_answers_solve():
    import gyms
    from gyms.arithmetic import partial_score

    assert partial_score("975", "975") == 1.0
    assert partial_score("985", "975") == pytest.approx(2 / 3)
    assert partial_score("9750", "975") == pytest.approx(3 / 4)  # an extra digit is not exact
    assert partial_score("-051", "-051") == 1.0 and partial_score("051", "-051") == 0.0
    assert partial_score("seven", "7") == 0.0
    env = gyms.make("arithmetic", ops=["+"], answer_format="reversed", partial_credit=True)
    _, info = env.reset(seed=3)
    answer = info["answer"]
    wrong_last = answer[:-1] + str((int(answer[-1]) + 1) % 10)
    _, reward, _, _, info = env.step(wrong_last)
    assert reward == pytest.approx((len(answer) - 1) / len(answer)) and info["solved"] is False
    env.reset(seed=3)
    assert env.step(answer)[1] == 1.0
    plain = gyms.make("arithmetic", ops=["+"], answer_format="reversed")
    plain.reset(seed=3)
    assert plain.step(wrong_last)[1] == 0.0  # off by default: the reward stays exact-match
    with pytest.raises(GymError, match="partial_credit"):
        gyms.make("arithmetic", partial_credit="yes")
