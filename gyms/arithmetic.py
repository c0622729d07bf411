"""Integer arithmetic, one problem per episode: `python -c "import gyms; print(gyms.make('arithmetic').reset(seed=0))"`.

With `terms=3` or more a problem is a longer expression whose parentheses follow a random tree shape,
e.g. `(12+7)*3-4=`: the gym draws the tree, computes its value from the tree with `gyms.safe_math`, and
writes it out with the parentheses the shape needs; no string is ever evaluated.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Sequence
from typing import Any

from gyms.base import TextEnv, check_range, check_reset_options, check_whole_number
from gyms.errors import GymError
from gyms.safe_math import BinOp, Expr, Num, evaluate, to_text

OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul}
OP_ALIASES = {"×": "*", "−": "-"}  # the multiplication sign and the Unicode minus, as people type them
ANSWER_FORMATS = ("plain", "reversed")
# equation: "12+34=", the first line must be the integer; question: "What is 12 + 34?", the last integer counts
# question_brief: the question, then BRIEF_INSTRUCTION, as a person asks a chat model for a bare result
STYLES = {"equation": "first_line", "question": "last_number", "question_brief": "last_number"}
BRIEF_INSTRUCTION = " Answer with just the number."
REVERSED_PREFIX = "rev "
# Operands are drawn with numpy's int64 generator; 18 digits is the most that always fits.
MAX_DIGITS = 18
MAX_TERMS = 8
RESET_OPTIONS = ("op", "digits", "terms")
# The longest problem: "rev ", MAX_TERMS operands, the operators between them, a pair of parentheses
# around every operation but the outermost, and "=".
# With style="question": "What is " and "?" instead of "=", and a space either side of each operator
# (question_brief: and the instruction after it).
MAX_PROBLEM_LENGTH = (4 + MAX_TERMS * MAX_DIGITS + (MAX_TERMS - 1) + 2 * (MAX_TERMS - 2) + 1 + 8 + 2 * (MAX_TERMS - 1)
                      + len(BRIEF_INSTRUCTION))

# ASCII digits only: Python's `\d` also matches full-width and other scripts' digits ("５７９").
_INTEGER = re.compile(r"-?[0-9]+")


def parse_answer(response: str) -> str | None:
    """The answer a response gives, or None when it is not an integer:

    >>> parse_answer("  -42 \\nbecause 6*7=42")
    '-42'
    >>> parse_answer("the answer is 42") is None
    True

    Only the first line counts, stripped of surrounding whitespace, and it must be a whole integer
    written in ASCII digits with an optional leading "-". Leading zeros are kept (in the reversed
    format they are significant). The text is matched, never evaluated.
    """
    first_line = response.split("\n", 1)[0].strip()
    return first_line if _INTEGER.fullmatch(first_line) else None


def parse_last_number(response: str) -> str | None:
    """The last integer anywhere in the response, or None when it has none:

    >>> parse_last_number("23 + 45 = 68."), parse_last_number("It is -7, I think"), parse_last_number("no")
    ('68', '-7', None)

    For chat models that answer in their own words ("R1-Zero" style RL: only the result is checked).
    A "-" right before the digits counts as the sign.
    """
    numbers = _INTEGER.findall(response)
    return numbers[-1] if numbers else None


PARSERS = {"first_line": parse_answer, "last_number": parse_last_number}


def score_answer(response: str, answer: str, answer_parse: str = "first_line") -> float:
    """1.0 when the response gives exactly the answer, else 0.0:

    >>> score_answer("579", "579"), score_answer("579 579", "579"), score_answer("+579", "579")
    (1.0, 0.0, 0.0)
    >>> score_answer("123 + 456 = 579", "579", answer_parse="last_number")
    1.0

    `answer_parse` says where the answer is: the first line, or the last number in the response. The
    gym's reward and `ftkit eval` both call this function, so they cannot drift apart.
    """
    return 1.0 if PARSERS[answer_parse](response) == answer else 0.0


def partial_score(response: str, answer: str, answer_parse: str = "first_line") -> float:
    """The share of the answer's characters the response has in the right place, 1.0 only when exact:

    >>> partial_score("975", "975"), partial_score("985", "975"), partial_score("97", "975"), partial_score("x", "975")
    (1.0, 0.6666666666666666, 0.6666666666666666, 0.0)

    A denser reward than `score_answer` for RL on problems the policy rarely gets exactly right: an
    answer with one wrong digit beats one with three. Positions are compared from the left (in the
    reversed format that is least-significant first, the order the digits are computed in); a longer
    or shorter answer is divided by the longer of the two lengths, so only the exact answer scores 1.
    """
    parsed = PARSERS[answer_parse](response)
    if parsed is None:
        return 0.0
    if parsed == answer:
        return 1.0
    matches = sum(a == b for a, b in zip(parsed, answer))
    return matches / max(len(parsed), len(answer))


def format_answer(value: int, answer_format: str) -> str:
    """The answer text for a result: `format_answer(-150, "reversed")` -> "-051".

    "reversed" writes the digits least-significant first (Lee et al. 2023, "Teaching Arithmetic to
    Small Transformers": a model then produces each digit after the ones it depends on). The sign
    stays in front and trailing zeros become leading ones: 300 -> "003".
    """
    digits = str(abs(value))
    if answer_format == "reversed":
        digits = digits[::-1]
    return f"-{digits}" if value < 0 else digits


class ArithmeticEnv(TextEnv):
    """Integer arithmetic: `env = gyms.make("arithmetic", ops=["+", "-"], digits=[1, 3])`.

    ## Description

    Each episode poses one problem such as `123+456=`; the agent answers with the result, `579`. Both
    operands have the same number of digits d (d is drawn uniformly from the `digits` range, then each
    operand uniformly among the numbers with exactly d digits; for d = 1 that is 0-9). The operator is
    drawn uniformly from `ops`. Subtraction can give negative results.

    With `terms` = n >= 3 the problem has n operands of d digits, e.g. `(12+7)*3-4=`: the gym draws a
    random binary tree with n leaves (each split point uniform), an operator from `ops` for each of its
    n - 1 operations, and writes the tree with the parentheses its shape needs (`gyms.safe_math.to_text`;
    a right operand of equal precedence keeps its parentheses, `12-(7-3)`). The usual precedence holds:
    `*` before `+` and `-`.

    ## Action Space

    Text (printable ASCII, up to 4096 characters): the answer. Only the first line counts, stripped of
    surrounding whitespace; see `parse_answer`. Longer or non-ASCII actions are accepted and score 0.
    With `style="question"` the answer is the last integer anywhere in the text
    (`parse_last_number`): "23 + 45 = 68" answers 68.

    ## Observation Space

    Text (printable ASCII, up to 219 characters): `"123+456="`, `"123-456="`, `"12*34="`, with
    `terms=4` `"(12+7)*3-4="`. With
    `answer_format="reversed"` the problem is prefixed with `"rev "` (`"rev 123+456="`), telling the
    player to write the result's digits least-significant first. With `style="question"` it is
    a question a chat model reads naturally: `"What is 123 + 456?"`. After the step it is `""`.

    ## Rewards

    1.0 if the answer is exactly right (`score_answer`), else 0.0. Plain: 123+456 -> "579",
    123-456 -> "-333". Reversed: 123+456 -> "975", 100-250 -> "-051", 100+200 -> "003".
    With `partial_credit=True` a wrong integer answer earns the share of its characters that are in
    the right place (`partial_score`): "985" for "975" earns 2/3. `solved` (what evaluation counts)
    is still the exact match.

    ## Episode End

    The episode terminates after one step. It is never truncated.

    ## Arguments

    - `ops`: the operators to draw from, any of "+", "-", "*" ("×" and "−" are accepted and mean "*"
      and "-"). Default `("+",)`.
    - `digits`: the digit count of each operand, an int or a `[min, max]` range (1 to 18). Default 3.
    - `terms`: how many operands, an int or a `[min, max]` range (2 to 8). Default 2. A fixed value
      draws nothing from the generator, so two-term problems are the same as before `terms` existed.
    - `answer_format`: "plain" or "reversed". Default "plain".
    - `op_weights`: how often each of `ops` is drawn, relative weights in the same order, e.g.
      `ops=["+", "-"], op_weights=[4, 1]` for four additions to one subtraction. Default: uniform.
    - `partial_credit`: reward wrong answers by their share of right characters (see Rewards).
      Default False.
    - `style`: "equation" (`123+456=`, the first line must be the integer) or "question"
      (`What is 123 + 456?`, the last integer in the answer counts: for chat models that answer in
      their own words), or "question_brief" (`What is 123 + 456? Answer with just the number.`: how
      a person asks a chat model for a bare result; it asks, it does not score, the last integer
      still counts). Default "equation".
    - `render_mode`: None or "ansi".

    `reset(options={"op": "*", "digits": 5, "terms": 3})` pins the operator (every operator, when
    there are several), digit count and/or number of terms for one episode (any supported value,
    inside or outside the constructor's choices: handy to test generalisation).

    Info (reset and step): `answer` and `difficulty` (`{"op": "+", "digits": 3}`; with three or more
    terms `{"op": "+*", "digits": 3, "terms": 4}`, where "op" lists the operators that occur, in the
    order "+-*"); step adds `parsed` (what `parse_answer` read, or None) and `solved`.

    ## Version History

    - v0: initial version. Later, still v0 because every default problem is unchanged: `terms` for
      longer expressions with parentheses, and the observation space's length raised from 64 to 168
      characters to fit them (190 with `style`, 219 with its brief form); `op_weights`; `partial_credit` (off by default); `style` (default
      unchanged) for chat models, and its "question_brief" form.
    """

    has_oracle = True

    def __init__(
        self,
        ops: Sequence[str] = ("+",),
        digits: int | Sequence[int] = 3,
        answer_format: str = "plain",
        render_mode: str | None = None,
        terms: int | Sequence[int] = 2,
        op_weights: Sequence[float] | None = None,
        partial_credit: bool = False,
        style: str = "equation",
    ) -> None:
        super().__init__(
            render_mode=render_mode, max_observation_length=MAX_PROBLEM_LENGTH, max_action_length=4096
        )
        self.ops = _check_ops(ops)
        self.op_weights = _check_op_weights(op_weights, self.ops)
        self.digits = check_range(digits, "digits", 1, MAX_DIGITS)
        self.answer_format = _check_answer_format(answer_format)
        self.terms = check_range(terms, "terms", 2, MAX_TERMS)
        if not isinstance(partial_credit, bool):
            raise GymError(f"partial_credit must be true or false; got {partial_credit!r}")
        self.partial_credit = partial_credit
        self.style = _check_choice(style, "style", tuple(STYLES))
        self.answer_parse = STYLES[self.style]
        self._op = ""  # the operator, or with three or more terms the operators that occur
        self._num_digits = 0
        self._num_terms = 2
        self._answer = ""

    def oracle(self) -> str:
        """The correct answer to the current problem: `env.step(env.unwrapped.oracle())` scores 1.0."""
        self._require_running("oracle()")
        return self._answer

    def _reset(self, options: dict[str, Any]) -> tuple[str, dict]:
        check_reset_options(options, RESET_OPTIONS, "arithmetic")
        self._num_terms = self._choose_terms(options)
        if self._num_terms == 2:
            # The original two-operand problem, drawn exactly as before `terms` existed.
            self._op, self._num_digits = self._choose_difficulty(options)
            a, b = self._draw_operand(self._num_digits), self._draw_operand(self._num_digits)
            value, problem = OPS[self._op](a, b), f"{a}{self._op}{b}"
        else:
            value, problem = self._draw_long_problem(options)
        self._answer = format_answer(value, self.answer_format)
        prefix = REVERSED_PREFIX if self.answer_format == "reversed" else ""
        if self.style != "equation":  # operators spaced out: operands are >= 0, so every sign is one
            spaced = re.sub(r"([-+*])", r" \1 ", problem)
            obs = f"{prefix}What is {spaced}?" + BRIEF_INSTRUCTION * (self.style == "question_brief")
        else:
            obs = f"{prefix}{problem}="
        return obs, {"answer": self._answer, "difficulty": self._difficulty()}

    def _step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        parsed = PARSERS[self.answer_parse](action)
        solved = score_answer(action, self._answer, self.answer_parse) == 1.0
        reward = partial_score(action, self._answer, self.answer_parse) if self.partial_credit else float(solved)
        info = {
            "answer": self._answer,
            "parsed": parsed,
            "solved": solved,
            "difficulty": self._difficulty(),
        }
        return "", reward, True, False, info

    def _choose_difficulty(self, options: dict[str, Any]) -> tuple[str, int]:
        """The episode's operator and digit count: pinned by `options`, else drawn from `np_random`."""
        return self._choose_op(options), self._choose_digits(options)

    def _choose_op(self, options: dict[str, Any]) -> str:
        if "op" in options:
            return _check_op(options["op"], "options['op']")
        if self.op_weights is None:  # uniform: the original draw, so default problems stay the same
            return self.ops[int(self.np_random.integers(len(self.ops)))]
        return self.ops[int(self.np_random.choice(len(self.ops), p=self.op_weights))]

    def _choose_digits(self, options: dict[str, Any]) -> int:
        if "digits" in options:
            return check_whole_number(options["digits"], "options['digits']", 1, MAX_DIGITS)
        return int(self.np_random.integers(self.digits[0], self.digits[1] + 1))

    def _choose_terms(self, options: dict[str, Any]) -> int:
        if "terms" in options:
            return check_whole_number(options["terms"], "options['terms']", 2, MAX_TERMS)
        low, high = self.terms
        # Draw only when there is a choice, so that terms=2 consumes no randomness (see the docstring).
        return low if low == high else int(self.np_random.integers(low, high + 1))

    def _draw_long_problem(self, options: dict[str, Any]) -> tuple[int, str]:
        """A random expression tree of `self._num_terms` operands: its value and its text."""
        self._num_digits = self._choose_digits(options)
        tree = self._draw_tree(self._num_terms, options)
        text = to_text(tree)
        self._op = "".join(op for op in OPS if op in text)  # operands are >= 0: every sign is an operator
        return int(evaluate(tree)), text

    def _draw_tree(self, num_leaves: int, options: dict[str, Any]) -> Expr:
        """A random binary tree: split the leaves at a uniform point, an operator per split."""
        if num_leaves == 1:
            return Num(self._draw_operand(self._num_digits))
        op = self._choose_op(options)
        left_leaves = int(self.np_random.integers(1, num_leaves))
        left = self._draw_tree(left_leaves, options)
        return BinOp(op, left, self._draw_tree(num_leaves - left_leaves, options))

    def _draw_operand(self, num_digits: int) -> int:
        """A uniform number with exactly `num_digits` digits (0-9 for one digit)."""
        low = 0 if num_digits == 1 else 10 ** (num_digits - 1)
        # int(): numpy's int64 would overflow when two 18-digit operands are multiplied.
        return int(self.np_random.integers(low, 10**num_digits))

    def _difficulty(self) -> dict[str, Any]:
        difficulty = {"op": self._op, "digits": self._num_digits}  # a new dict each call: callers keep infos
        if self._num_terms > 2:
            difficulty["terms"] = self._num_terms  # two-term problems keep their original difficulty
        return difficulty


# -- argument checks: each error names the argument, the bad value and what is allowed ------------------


_ALLOWED_OPS = ", ".join(f'"{o}"' for o in [*OPS, *OP_ALIASES])


def _normalise_op(op: Any) -> str | None:
    """The ASCII operator for "+", "-", "*", "×" or "−"; None for anything else."""
    if not isinstance(op, str):
        return None
    op = OP_ALIASES.get(op, op)
    return op if op in OPS else None


def _check_op(op: Any, name: str) -> str:
    normalised = _normalise_op(op)
    if normalised is None:
        raise GymError(f"{name} must be one of {_ALLOWED_OPS}; got {op!r}")
    return normalised


def _check_ops(ops: Any) -> tuple[str, ...]:
    if isinstance(ops, str):
        ops = [ops]  # ops="+" means one operator, not a sequence of characters
    if not isinstance(ops, Sequence) or len(ops) == 0:
        raise GymError(f'ops must be a non-empty list of operators such as ["+", "-", "*"]; got {ops!r}')
    unknown = [op for op in ops if _normalise_op(op) is None]
    if unknown:
        raise GymError(f"ops may only contain {_ALLOWED_OPS}; got {list(ops)!r} (unknown: {unknown!r})")
    # Drop repeats so that the draw stays uniform over distinct operators.
    return tuple(dict.fromkeys(_check_op(op, "ops") for op in ops))


def _check_op_weights(weights: Any, ops: tuple[str, ...]) -> tuple[float, ...] | None:
    """Normalised draw probabilities for `ops`, or None for uniform."""
    if weights is None:
        return None
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence) or len(weights) != len(ops):
        raise GymError(f"op_weights must be a list of {len(ops)} numbers, one per op in {list(ops)}; got {weights!r}")
    if any(isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w < float("inf") for w in weights) or not sum(weights) > 0:
        raise GymError(f"op_weights must be non-negative numbers with a positive sum; got {list(weights)!r}")
    total = float(sum(weights))
    return tuple(float(w) / total for w in weights)


def _check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise GymError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def _check_answer_format(answer_format: Any) -> str:
    if answer_format not in ANSWER_FORMATS:
        raise GymError(f"answer_format must be one of {', '.join(ANSWER_FORMATS)}; got {answer_format!r}")
    return answer_format
