"""A safe little calculator for untrusted text: `evaluate(parse("(25-3)*4/8"))` is `Fraction(11, 1)`.

    >>> from gyms.safe_math import evaluate, parse, to_text
    >>> tree = parse("(12 + 7) * 3 - 4")
    >>> evaluate(tree)
    Fraction(53, 1)
    >>> to_text(tree)
    '(12+7)*3-4'

Models write arithmetic expressions as answers (countdown) and as tool calls (calculator). Python's
`eval` would run anything they wrote, so this module reads them itself: a tokenizer that knows only
whole numbers, `+ - * /`, parentheses and spaces, and a recursive-descent parser for the usual grammar

    expr   := term (("+" | "-") term)*          lowest precedence, left to right
    term   := unary (("*" | "/") unary)*
    unary  := "-" unary | atom                  a leading minus: "-3", "2*-3"
    atom   := NUMBER | "(" expr ")"

It builds a small tree (`Num`, `Neg`, `BinOp`) that `evaluate` computes exactly, with `Fraction`s, so
that 7/2*2 is 7 and not 7.000000000000001. Anything else (names, `**`, `.`, `__import__`) is a
`MathError`, and so is anything too long or too deeply nested to be a sensible answer: the limits keep a
hostile expression from costing more than a few microseconds.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction

MAX_LENGTH = 200  # characters in one expression
MAX_NUMBER_DIGITS = 12  # digits in one number literal: 12 digits times 200 characters stays small
MAX_DEPTH = 30  # nested parentheses and leading minuses
OPERATORS = "+-*/"
ALIASES = {"×": "*", "÷": "/", "−": "-"}  # the signs people type for times, divide and minus
PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}

# ASCII digits only ([0-9], not \d, which also matches "５" and "٥"); spaces and tabs between tokens.
_TOKEN = re.compile(r"[ \t]*(?:([0-9]+)|(.))", re.DOTALL)


class MathError(ValueError):
    """The text is not an expression this module accepts, or cannot be computed (division by zero)."""


@dataclass(frozen=True)
class Num:
    """A whole number written in the expression: `Num(12)`."""

    value: int


@dataclass(frozen=True)
class Neg:
    """A leading minus: `-3` is `Neg(Num(3))`."""

    operand: Expr


@dataclass(frozen=True)
class BinOp:
    """`left op right`: `12+7` is `BinOp("+", Num(12), Num(7))`."""

    op: str
    left: Expr
    right: Expr


Expr = Num | Neg | BinOp


# -- reading text -----------------------------------------------------------------------------------------


def tokenize(text: str) -> list[str]:
    """The tokens of an expression, with Unicode signs made ASCII:

    >>> tokenize("12 × (3+4)")
    ['12', '*', '(', '3', '+', '4', ')']

    Raises `MathError` on any character that is not a digit, operator, parenthesis or space.
    """
    if len(text) > MAX_LENGTH:
        raise MathError(f"expression is {len(text)} characters long; at most {MAX_LENGTH} are allowed")
    tokens = []
    for match in _TOKEN.finditer(text.rstrip(" \t")):
        number, symbol = match.groups()
        if number is not None:
            if len(number) > MAX_NUMBER_DIGITS:
                raise MathError(f"number {number[:20]}... has more than {MAX_NUMBER_DIGITS} digits")
            tokens.append(number)
            continue
        symbol = ALIASES.get(symbol, symbol)
        if symbol not in OPERATORS + "()":
            raise MathError(f"unexpected character {symbol!r} at position {match.start(2)}")
        tokens.append(symbol)
    return tokens


def parse(text: str) -> Expr:
    """The expression tree of `text`, or a `MathError` saying what is wrong:

    >>> parse("2*(3+4)")
    BinOp(op='*', left=Num(value=2), right=BinOp(op='+', left=Num(value=3), right=Num(value=4)))
    """
    parser = _Parser(tokenize(text))
    tree = parser.expr(depth=0)
    if parser.peek() is not None:
        raise MathError(f"unexpected {parser.peek()!r} after a complete expression")
    return tree


class _Parser:
    """Recursive descent over a token list: one method per grammar rule (see the module docstring)."""

    def __init__(self, tokens: list[str]) -> None:
        if not tokens:
            raise MathError("empty expression")
        self.tokens = tokens
        self.position = 0

    def peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise MathError("the expression ends too early")
        self.position += 1
        return token

    def expr(self, depth: int) -> Expr:
        tree = self.term(depth)
        while self.peek() in ("+", "-"):
            op = self.take()
            tree = BinOp(op, tree, self.term(depth))
        return tree

    def term(self, depth: int) -> Expr:
        tree = self.unary(depth)
        while self.peek() in ("*", "/"):
            op = self.take()
            tree = BinOp(op, tree, self.unary(depth))
        return tree

    def unary(self, depth: int) -> Expr:
        if depth > MAX_DEPTH:  # a bound on recursion: "((((...1))))" must not overflow the stack
            raise MathError(f"expression nests more than {MAX_DEPTH} levels deep")
        if self.peek() == "-":
            self.take()
            return Neg(self.unary(depth + 1))
        return self.atom(depth)

    def atom(self, depth: int) -> Expr:
        token = self.take()
        if token.isdigit():
            return Num(int(token))
        if token == "(":
            tree = self.expr(depth + 1)
            if self.take() != ")":
                raise MathError("a parenthesis is not closed")
            return tree
        raise MathError(f"expected a number or '(' but found {token!r}")


# -- computing ----------------------------------------------------------------------------------------


def evaluate(tree: Expr, *, exact_division: bool = False) -> Fraction:
    """The exact value of a tree:

    >>> evaluate(parse("7/2")), evaluate(parse("6/3"), exact_division=True)
    (Fraction(7, 2), Fraction(2, 1))

    Division by zero is a `MathError`; so is a division with a remainder when `exact_division` is set
    (countdown's rule: "÷ only when exact").
    """
    if isinstance(tree, Num):
        return Fraction(tree.value)
    if isinstance(tree, Neg):
        return -evaluate(tree.operand, exact_division=exact_division)
    left = evaluate(tree.left, exact_division=exact_division)
    right = evaluate(tree.right, exact_division=exact_division)
    if tree.op == "+":
        return left + right
    if tree.op == "-":
        return left - right
    if tree.op == "*":
        return left * right
    if right == 0:
        raise MathError("division by zero")
    quotient = left / right
    if exact_division and quotient.denominator != 1:
        raise MathError(f"{format_number(left)}/{format_number(right)} is not a whole number")
    return quotient


def numbers_in(tree: Expr) -> Counter[int]:
    """How often each number is written in the expression: `numbers_in(parse("3*3+4"))` is {3: 2, 4: 1}."""
    if isinstance(tree, Num):
        return Counter([tree.value])
    if isinstance(tree, Neg):
        return numbers_in(tree.operand)
    return numbers_in(tree.left) + numbers_in(tree.right)


def format_number(value: Fraction) -> str:
    """A value as text: `format_number(Fraction(12))` is "12", `format_number(Fraction(7, 2))` is "7/2"."""
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


# -- writing text -------------------------------------------------------------------------------------


def to_text(tree: Expr) -> str:
    """The expression written with the parentheses its shape needs, so `parse(to_text(t)) == t`:

    >>> to_text(BinOp("-", Num(10), BinOp("-", Num(4), Num(3))))
    '10-(4-3)'
    >>> to_text(BinOp("*", BinOp("+", Num(1), Num(2)), Num(3)))
    '(1+2)*3'
    """
    if isinstance(tree, Num):
        return str(tree.value)
    if isinstance(tree, Neg):
        return "-" + _child_text(tree.operand, needs_parens=not isinstance(tree.operand, Num))
    precedence = PRECEDENCE[tree.op]
    # The parser reads left to right, so a right operand of equal precedence needs parentheses to stay
    # on the right: 10-(4-3) is not 10-4-3. A minus inside an operation is parenthesised for the reader.
    left = _child_text(tree.left, needs_parens=_precedence(tree.left) < precedence)
    right = _child_text(tree.right, needs_parens=_precedence(tree.right) <= precedence)
    return f"{left}{tree.op}{right}"


def _precedence(tree: Expr) -> int:
    if isinstance(tree, BinOp):
        return PRECEDENCE[tree.op]
    return 0 if isinstance(tree, Neg) else 3  # Neg: always in parentheses inside an operation


def _child_text(tree: Expr, *, needs_parens: bool) -> str:
    text = to_text(tree)
    return f"({text})" if needs_parens else text
