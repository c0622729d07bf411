"""Tests for gyms/safe_math.py, the expression reader behind countdown and calculator.

    python -m pytest tests/test_gym_safe_math.py -q
"""

from __future__ import annotations

import doctest
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

import gyms.safe_math
from gyms.safe_math import (
    MAX_DEPTH,
    MAX_LENGTH,
    BinOp,
    MathError,
    Neg,
    Num,
    evaluate,
    numbers_in,
    parse,
    to_text,
    tokenize,
)


def value(text: str, exact: bool = False) -> Fraction:
    return evaluate(parse(text), exact_division=exact)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2+3*4", 14),  # * before +
        ("2*3+4", 10),
        ("10-4-3", 3),  # left to right: (10-4)-3, not 10-(4-3)
        ("10-(4-3)", 9),
        ("64/4/2", 8),
        ("2*(3+4)", 14),
        ("((2))", 2),
        ("-3*2", -6),
        ("2*-3", -6),
        ("-(2+3)", -5),
        ("--4", 4),
        (" 12 \t+ 7 ", 19),
        ("12×3−4÷2", 34),  # the Unicode signs people type
        ("007+1", 8),
        ("7/2*2", 7),  # exact: fractions, never floats
        ("1/3+1/3+1/3", 1),
    ],
)
def test_precedence_parentheses_and_exact_values(text, expected):
    assert value(text) == expected


def test_division_gives_fractions_unless_exactness_is_asked_for():
    assert value("7/2") == Fraction(7, 2)
    assert value("8/2", exact=True) == 4
    with pytest.raises(MathError, match="7/2 is not a whole number"):
        value("7/2", exact=True)
    with pytest.raises(MathError, match="not a whole number"):
        value("(7/2)*2", exact=True)  # every division must be exact, not just the result
    with pytest.raises(MathError, match="division by zero"):
        value("5/(3-3)")


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true')",
        "os",
        "x+1",
        "abs(3)",
        "2**3",
        "2**99999999",
        "9**9**9",
        "1e9",
        "1.5",
        "0x1f",
        "1_000",
        "3 % 2",
        "3 // 2",
        "1 2",
        "()",
        "(1",
        "1)",
        "+1",
        "1+",
        "",
        "   ",
        "１+2",  # full-width digit
        "٣+2",  # Arabic-Indic digit
        "1\n+2",
        "[1]",
        "lambda: 1",
        "9" * 13,  # one digit too many in a number
        "1+" * 150 + "1",  # too long
        "(" * (MAX_DEPTH + 2) + "1" + ")" * (MAX_DEPTH + 2),  # too deep
        "-" * (MAX_DEPTH + 2) + "1",
    ],
)
def test_anything_else_is_rejected(text):
    with pytest.raises(MathError):
        parse(text)


def test_limits_are_generous_enough_for_real_answers():
    assert value("(" * MAX_DEPTH + "1" + ")" * MAX_DEPTH) == 1
    assert value("9" * 12) == 999_999_999_999
    longest = "+".join(["1"] * (MAX_LENGTH // 2))  # 199 characters
    assert len(longest) <= MAX_LENGTH and value(longest) == MAX_LENGTH // 2


def test_error_messages_say_what_is_wrong():
    with pytest.raises(MathError, match="unexpected character '_' at position 0"):
        parse("__import__")
    with pytest.raises(MathError, match=f"at most {MAX_LENGTH}"):
        parse("1" * 1000)
    with pytest.raises(MathError, match="empty expression"):
        parse("")


def test_tokenize_and_numbers_in():
    assert tokenize("(25-12)×3") == ["(", "25", "-", "12", ")", "*", "3"]
    assert numbers_in(parse("3*3+(4-3)")) == {3: 3, 4: 1}


@pytest.mark.parametrize(
    ("tree", "text"),
    [
        (BinOp("-", Num(10), BinOp("-", Num(4), Num(3))), "10-(4-3)"),
        (BinOp("-", BinOp("-", Num(10), Num(4)), Num(3)), "10-4-3"),
        (BinOp("*", BinOp("+", Num(1), Num(2)), Num(3)), "(1+2)*3"),
        (BinOp("+", Num(1), BinOp("*", Num(2), Num(3))), "1+2*3"),
        (BinOp("+", Num(1), Neg(Num(2))), "1+(-2)"),
        (Neg(BinOp("+", Num(1), Num(2))), "-(1+2)"),
    ],
)
def test_to_text_writes_the_parentheses_the_shape_needs(tree, text):
    assert to_text(tree) == text and parse(text) == tree


# -- properties -----------------------------------------------------------------------------------------

trees = st.recursive(
    st.integers(0, 10**6).map(Num),
    lambda children: st.one_of(
        children.map(Neg),
        st.builds(BinOp, st.sampled_from("+-*/"), children, children),
    ),
    max_leaves=12,
)


@given(trees)
def test_to_text_round_trips_through_parse(tree):
    text = to_text(tree)
    if len(text) <= MAX_LENGTH:
        assert parse(text) == tree


@given(st.text(max_size=300))
def test_any_text_gives_a_value_or_a_math_error(text):
    try:
        result = evaluate(parse(text))
    except MathError:
        return
    assert isinstance(result, Fraction)


@given(st.text(alphabet="0123456789+-*/() ×÷−", max_size=60))
def test_arithmetic_looking_text_gives_a_value_or_a_math_error(text):
    try:
        result = evaluate(parse(text))
    except MathError:
        return
    assert isinstance(result, Fraction)


def test_docstring_examples_run():
    assert doctest.testmod(gyms.safe_math).failed == 0
