"""Countdown: reach a target from given numbers with + - * /: from 3 7 12 25, make 46 as `(25-12)*3+7`.

    >>> import gyms
    >>> env = gyms.make("countdown")
    >>> obs, info = env.reset(seed=0)
    >>> _, reward, terminated, _, info = env.step(gyms.oracle(env))
    >>> reward, terminated, info["format_reward"]
    (1.0, True, 1.0)

The answer is an arithmetic expression, read by `gyms.safe_math` (never `eval`). Every puzzle is
solvable: the gym first builds a random expression from the numbers and makes its value the target, and
that expression is the oracle's answer (other solutions score just as well).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gyms.base import TextEnv, check_range, check_reset_options, check_whole_number
from gyms.safe_math import BinOp, Expr, MathError, Num, evaluate, format_number, numbers_in, parse, to_text

MAX_COUNT = 8  # the most numbers a puzzle gives
MAX_TRIES = 100  # puzzles drawn until one's target is in range (almost always the first few)
RESET_OPTIONS = ("numbers",)


@dataclass(frozen=True)
class Score:
    """How an answer did: `reward` (1.0 when it reaches the target by the rules), `format_reward` (1.0
    when it is an expression at all) and `error`, why it scored 0 (None when it did not)."""

    reward: float
    format_reward: float
    error: str | None


def score_expression(action: str, numbers: Sequence[int], target: int) -> Score:
    """Score an answer against a puzzle:

    >>> score_expression("(25-12)*3+7", [3, 7, 12, 25], 46)
    Score(reward=1.0, format_reward=1.0, error=None)
    >>> score_expression("25+25-4", [3, 4, 12, 25], 46).error
    'uses 25 more times than it is given'

    Only the first line counts, stripped of surrounding whitespace. It must parse (`safe_math.parse`),
    use each given number at most once (a number given twice may be used twice), divide only exactly,
    and equal the target.
    """
    try:
        tree = parse(action.split("\n", 1)[0].strip())
    except MathError as error:
        return Score(0.0, 0.0, f"not an expression: {error}")
    overused = numbers_in(tree) - Counter(numbers)
    if overused:
        number = min(overused)
        if number not in numbers:
            return Score(0.0, 1.0, f"{number} is not one of the numbers")
        return Score(0.0, 1.0, f"uses {number} more times than it is given")
    try:
        value = evaluate(tree, exact_division=True)
    except MathError as error:
        return Score(0.0, 1.0, str(error))
    if value != target:
        return Score(0.0, 1.0, f"the expression makes {format_number(value)}, not {target}")
    return Score(1.0, 1.0, None)


class CountdownEnv(TextEnv):
    """The numbers game from the TV show Countdown: `env = gyms.make("countdown", numbers=[4, 6])`.

    ## Description

    Each episode gives a few numbers and a target, e.g. `3 7 12 25` and `46`. The agent answers with
    one arithmetic expression that makes the target, such as `(25-12)*3+7`, using `+ - * /` and
    parentheses and each given number at most once; a division must come out whole.

    The puzzle is drawn so that it can be solved: `count` numbers uniform in 1..`max_number`, then a
    random expression over 2 to `count` of them (two items of a pool are combined at a time with an
    operator that keeps values positive whole numbers: `-` takes the smaller from the larger, `/` only
    divides exactly and never by 1), redrawn until its value is at most `max_target` and is not one of
    the numbers. Its value is the target and the expression is the oracle's answer.

    ## Action Space

    Text (printable ASCII, up to 4096 characters): the expression, alone on the first line (anything
    after the first line is ignored). `× ÷ −` are read as `* / -`; a leading minus is allowed; nothing
    else (no `**`, names, decimals). See `gyms.safe_math`.

    ## Observation Space

    Text (printable ASCII, up to 512 characters): `"Use the numbers 3 7 12 25 to make 46. Write one
    expression with + - * / and parentheses that uses each number at most once (division only when it
    is exact)."` After the step it is `""`.

    ## Rewards

    1.0 if the expression is valid and makes the target by the rules (`score_expression`), else 0.0.
    `format_reward` in the step's info is 1.0 when the first line parsed as an expression at all.

    ## Episode End

    The episode terminates after one step. It is never truncated.

    ## Arguments

    - `numbers`: how many numbers a puzzle gives, an int or a `[min, max]` range (2 to 8). Default
      `[4, 6]`. More numbers make more possible solutions but a larger search.
    - `max_number`: the largest number given (2 to 1000). Default 25.
    - `max_target`: the largest target (10 to 100000). Default 100.
    - `render_mode`: None or "ansi".

    `reset(options={"numbers": 6})` pins the count for one episode.

    Info (reset and step): `answer` (one solution), `numbers`, `target` and `difficulty`
    (`{"numbers": 4, "max_number": 25, "max_target": 100}`); step adds `solved`, `format_reward` and
    `error` (why the answer scored 0, or None).

    ## Version History

    - v0: initial version.
    """

    has_oracle = True

    def __init__(
        self,
        numbers: int | Sequence[int] = (4, 6),
        max_number: int = 25,
        max_target: int = 100,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(render_mode=render_mode, max_observation_length=512, max_action_length=4096)
        self.numbers = check_range(numbers, "numbers", 2, MAX_COUNT)
        self.max_number = check_whole_number(max_number, "max_number", 2, 1000)
        self.max_target = check_whole_number(max_target, "max_target", 10, 100_000)
        self._numbers: list[int] = []
        self._target = 0
        self._solution = ""

    def oracle(self) -> str:
        """The expression the puzzle was built from: `env.step(env.unwrapped.oracle())` scores 1.0."""
        self._require_running("oracle()")
        return self._solution

    def _reset(self, options: dict[str, Any]) -> tuple[str, dict]:
        check_reset_options(options, RESET_OPTIONS, "countdown")
        if "numbers" in options:
            count = check_whole_number(options["numbers"], "options['numbers']", 2, MAX_COUNT)
        else:
            count = int(self.np_random.integers(self.numbers[0], self.numbers[1] + 1))
        self._numbers, tree = self._draw_puzzle(count)
        self._target = int(evaluate(tree, exact_division=True))
        self._solution = to_text(tree)
        shown = " ".join(map(str, self._numbers))
        obs = (
            f"Use the numbers {shown} to make {self._target}. Write one expression with + - * / and "
            "parentheses that uses each number at most once (division only when it is exact)."
        )
        return obs, self._info()

    def _step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        score = score_expression(action, self._numbers, self._target)
        info = {**self._info(), "solved": score.reward == 1.0}
        info.update(format_reward=score.format_reward, error=score.error)
        return "", score.reward, True, False, info

    def _draw_puzzle(self, count: int) -> tuple[list[int], Expr]:
        """`count` numbers and an expression over some of them whose value makes a fair target."""
        for _ in range(MAX_TRIES):
            numbers = [int(n) for n in self.np_random.integers(1, self.max_number + 1, size=count)]
            tree = self._draw_expression(numbers)
            value = evaluate(tree)
            if value <= self.max_target and value not in numbers:
                break
        # After MAX_TRIES misses (only with extreme settings) the last draw stands: still solvable.
        return numbers, tree

    def _draw_expression(self, numbers: list[int]) -> Expr:
        """Combine 2 to all of `numbers`, two at a time, into one expression of positive whole values."""
        used = int(self.np_random.integers(2, len(numbers) + 1))
        order = self.np_random.permutation(len(numbers))[:used]
        pool: list[Expr] = [Num(numbers[i]) for i in order]
        while len(pool) > 1:
            first = pool.pop(int(self.np_random.integers(len(pool))))
            second = pool.pop(int(self.np_random.integers(len(pool))))
            pool.append(self._combine(first, second))
        return pool[0]

    def _combine(self, a: Expr, b: Expr) -> Expr:
        """`a op b` or `b op a`, with an operator among those that keep the value a positive whole number."""
        big, small = (a, b) if evaluate(a) >= evaluate(b) else (b, a)
        big_value, small_value = evaluate(big), evaluate(small)
        choices = [BinOp("+", a, b), BinOp("*", a, b)]
        if big_value != small_value:
            choices.append(BinOp("-", big, small))
        if small_value > 1 and big_value % small_value == 0:
            choices.append(BinOp("/", big, small))
        return choices[int(self.np_random.integers(len(choices)))]

    def _info(self) -> dict[str, Any]:
        return {
            "answer": self._solution,
            "numbers": list(self._numbers),
            "target": self._target,
            "difficulty": {
                "numbers": len(self._numbers),
                "max_number": self.max_number,
                "max_target": self.max_target,
            },
        }
