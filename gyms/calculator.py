"""Word problems with a calculator tool: the agent writes `calc: 17*24`, reads `408`, then `answer: 349`.

    >>> import gyms
    >>> env = gyms.make("calculator")
    >>> obs, info = env.reset(seed=0)
    >>> action = gyms.oracle(env)
    >>> action.startswith("calc: ")
    True

The calculator is `gyms.safe_math` (never `eval`), so a tool call can hold anything and still only
ever computes + - * / over whole numbers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from gyms.base import TextEnv, check_reset_options, check_whole_number, printable
from gyms.errors import GymError, did_you_mean
from gyms.safe_math import MathError, evaluate, format_number, parse

MAX_DIGITS = 4
RESET_OPTIONS = ("digits", "template")
CALL, ANSWER = "calc:", "answer:"
INSTRUCTIONS = (
    "You may use a calculator: write `calc: <expression>` (+ - * / and parentheses) and I reply with "
    "the result. When you know the answer, write `answer: <number>`."
)

_INTEGER = re.compile(r"-?[0-9]{1,30}")  # ASCII digits; short enough that int() is instant


@dataclass(frozen=True)
class Problem:
    """A word problem, the calculations that solve it in order, and its answer."""

    text: str
    steps: tuple[str, ...]  # expressions, each using earlier results as plain numbers: ("17*24", "408-59")
    answer: int


# -- the templates: each draws its numbers from the generator and returns a Problem ---------------------


def _number(rng: np.random.Generator, digits: int) -> int:
    """A whole number with `digits` digits, at least 2 (1 and 0 make dull problems)."""
    return int(rng.integers(max(2, 10 ** (digits - 1)), 10**digits))


def _pens(rng: np.random.Generator, digits: int) -> Problem:
    boxes, per_box = _number(rng, digits), _number(rng, digits)
    total = boxes * per_box
    sold = int(rng.integers(1, total))
    text = f"A shop has {boxes} boxes of {per_box} pens and sells {sold} pens. How many pens are left?"
    return Problem(text, (f"{boxes}*{per_box}", f"{total}-{sold}"), total - sold)


def _tickets(rng: np.random.Generator, digits: int) -> Problem:
    friends, tickets, price = _number(rng, 1), _number(rng, 1), _number(rng, digits)
    count = friends * tickets
    text = (
        f"Each of {friends} friends buys {tickets} concert tickets at {price} dollars a ticket. "
        "How many dollars do they spend in all?"
    )
    return Problem(text, (f"{friends}*{tickets}", f"{count}*{price}"), count * price)


def _trip(rng: np.random.Generator, digits: int) -> Problem:
    speed, hours, extra = _number(rng, digits), _number(rng, 1), _number(rng, digits)
    text = (
        f"A bus drives at {speed} km an hour for {hours} hours, then {extra} km more. "
        "How many km does it drive?"
    )
    return Problem(text, (f"{speed}*{hours}", f"{speed * hours}+{extra}"), speed * hours + extra)


def _sharing(rng: np.random.Generator, digits: int) -> Problem:
    children, each = _number(rng, 1), _number(rng, digits)
    eaten = int(rng.integers(1, each))
    sweets = children * each  # drawn as a product, so the sharing comes out exact
    text = (
        f"{sweets} sweets are shared equally among {children} children, and each child eats {eaten} "
        "of them. How many sweets does each child have left?"
    )
    return Problem(text, (f"{sweets}/{children}", f"{each}-{eaten}"), each - eaten)


def _garden(rng: np.random.Generator, digits: int) -> Problem:
    rows_a, per_a = _number(rng, digits), _number(rng, 1)
    rows_b, per_b = _number(rng, digits), _number(rng, 1)
    tulips, roses = rows_a * per_a, rows_b * per_b
    text = (
        f"A garden has {rows_a} rows of {per_a} tulips and {rows_b} rows of {per_b} roses. "
        "How many flowers does it have?"
    )
    steps = (f"{rows_a}*{per_a}", f"{rows_b}*{per_b}", f"{tulips}+{roses}")
    return Problem(text, steps, tulips + roses)


def _savings(rng: np.random.Generator, digits: int) -> Problem:
    weekly, weeks = _number(rng, digits), _number(rng, 1) + 1
    saved = weekly * weeks
    spent = int(rng.integers(1, saved))
    text = (
        f"Sam saves {weekly} dollars every week for {weeks} weeks, then spends {spent} dollars on a bike. "
        "How many dollars are left?"
    )
    return Problem(text, (f"{weekly}*{weeks}", f"{saved}-{spent}"), saved - spent)


TEMPLATES: dict[str, Callable[[np.random.Generator, int], Problem]] = {
    "pens": _pens,
    "tickets": _tickets,
    "trip": _trip,
    "sharing": _sharing,
    "garden": _garden,
    "savings": _savings,
}


# -- reading actions ----------------------------------------------------------------------------------


def parse_action(action: str) -> tuple[str, str] | None:
    """("calc", expression) or ("answer", text) for a well-formed action's first line, else None:

    >>> parse_action("calc: 17*24"), parse_action("Answer: 349\\nbecause ..."), parse_action("349")
    (('calc', '17*24'), ('answer', '349'), None)

    The keyword is case-insensitive; what follows it is stripped of surrounding whitespace.
    """
    first_line = action.split("\n", 1)[0].strip()
    for keyword in (CALL, ANSWER):
        if first_line[: len(keyword)].lower() == keyword:
            return keyword[:-1], first_line[len(keyword) :].strip()
    return None


def run_calculator(expression: str) -> tuple[Fraction | None, str]:
    """The tool's value for `calc: <expression>` (None on an error) and its reply, in printable ASCII:

    >>> run_calculator("17*24"), run_calculator("7/2")
    ((Fraction(408, 1), '408'), (Fraction(7, 2), '7/2'))
    >>> run_calculator("2**8")
    (None, "error: expected a number or '(' but found '*'")
    """
    try:
        value = evaluate(parse(expression))
    except MathError as error:
        return None, printable(f"error: {error}")  # the message may quote a non-ASCII character
    return value, format_number(value)


class CalculatorEnv(TextEnv):
    """Arithmetic word problems solved with a calculator tool: `env = gyms.make("calculator", digits=3)`.

    ## Description

    Each episode poses a word problem that takes two or three arithmetic steps, drawn from a few
    templates (`TEMPLATES`: pens, tickets, trip, sharing, garden, savings), e.g. "A shop has 17 boxes
    of 24 pens and sells 59 pens. How many pens are left?". The agent may call the calculator as often
    as it likes, `calc: 17*24`, and reads the result as the next observation, `408`; it ends the
    episode with `answer: 349`. Learning when to call a tool, and to copy its result, is the point.

    ## Action Space

    Text (printable ASCII, up to 4096 characters); only the first line counts (`parse_action`):

    - `calc: <expression>`: whole numbers, `+ - * /`, parentheses (`gyms.safe_math`).
    - `answer: <whole number>`: the final answer; ends the episode.

    The keywords are case-insensitive. Any other first line is an invalid action.

    ## Observation Space

    Text (printable ASCII, up to 1024 characters): first the problem and `INSTRUCTIONS`; after a tool
    call, its result (`"408"`, `"7/2"` for a division with a remainder, or `"error: division by
    zero"`); after an invalid action, `"invalid action: write calc: <expression> or answer: <number>"`;
    after the answer, `"correct"` or `"incorrect"`.

    ## Rewards

    1.0 for the step that answers correctly, 0.0 for every other step (tool calls cost nothing but a
    turn). `format_reward` in each step's info is 1.0 when the action was a tool call that computed a value
    or an answer that is a whole number.

    ## Episode End

    Terminates on an `answer:` action, right or wrong. Truncated after `max_turns` turns without one
    (invalid actions and tool calls count as turns).

    ## Arguments

    - `digits`: the size of the problem's main quantities, in digits (1 to 4). Default 2.
    - `templates`: the templates to draw from, names from `TEMPLATES`. Default: all, uniformly.
    - `max_turns`: the turn limit (1 to 1000). Default 8: enough for three calls and an answer with
      room for mistakes.
    - `render_mode`: None or "ansi".

    `reset(options={"digits": 3, "template": "garden"})` pins the size and/or template for one episode.

    Info (reset and step): `answer` (the final answer) and `difficulty`
    (`{"template": "pens", "digits": 2, "steps": 2}`); step adds `solved` and `format_reward`.

    The oracle does the problem's next calculation that no tool result has shown yet (`calc: 17*24`,
    then `calc: 408-59`) and answers once the final value has been shown, or straight away when it has:
    its actions depend on the state, so it also finishes an episode that someone else started.

    ## Version History

    - v0: initial version.
    """

    has_oracle = True
    multi_turn = True

    def __init__(
        self,
        digits: int = 2,
        templates: Sequence[str] | None = None,
        max_turns: int = 8,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(
            render_mode=render_mode, max_observation_length=1024, max_action_length=4096, max_turns=max_turns
        )
        self.digits = check_whole_number(digits, "digits", 1, MAX_DIGITS)
        self.templates = _check_templates(templates)
        self._template = ""
        self._episode_digits = self.digits
        self._problem = Problem("", (), 0)
        self._shown: set[Fraction] = set()  # every value a tool call has returned this episode

    def oracle(self) -> str:
        """The next calculation nobody has done yet, or the answer once it has been shown."""
        self._require_running("oracle()")
        if Fraction(self._problem.answer) in self._shown:
            return f"answer: {self._problem.answer}"
        for step in self._problem.steps:
            if evaluate(parse(step)) not in self._shown:
                return f"calc: {step}"
        return f"answer: {self._problem.answer}"  # not reached: the last step's value is the answer

    def _reset(self, options: dict[str, Any]) -> tuple[str, dict]:
        check_reset_options(options, RESET_OPTIONS, "calculator")
        self._episode_digits = self.digits
        if "digits" in options:
            self._episode_digits = check_whole_number(options["digits"], "options['digits']", 1, MAX_DIGITS)
        if "template" in options:
            self._template = _check_templates([options["template"]], "options['template']")[0]
        else:
            self._template = self.templates[int(self.np_random.integers(len(self.templates)))]
        self._problem = TEMPLATES[self._template](self.np_random, self._episode_digits)
        self._shown = set()
        obs = f"{self._problem.text}\n{INSTRUCTIONS}"
        return obs, {"answer": str(self._problem.answer), "difficulty": self._difficulty()}

    def _step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        parsed = parse_action(action)
        solved, terminated, well_formed = False, False, False
        if parsed is None:
            obs = "invalid action: write calc: <expression> or answer: <number>"
        elif parsed[0] == "calc":
            value, obs = run_calculator(parsed[1])
            well_formed = value is not None
            if value is not None:
                self._shown.add(value)
        else:
            terminated, well_formed = True, bool(_INTEGER.fullmatch(parsed[1]))
            solved = well_formed and int(parsed[1]) == self._problem.answer
            obs = "correct" if solved else "incorrect"
        info = {
            "answer": str(self._problem.answer),
            "difficulty": self._difficulty(),
            "solved": solved,
            "format_reward": 1.0 if well_formed else 0.0,
        }
        return obs, float(solved), terminated, False, info

    def _difficulty(self) -> dict[str, Any]:
        return {"template": self._template, "digits": self._episode_digits, "steps": len(self._problem.steps)}


def _check_templates(templates: Sequence[str] | None, name: str = "templates") -> tuple[str, ...]:
    if templates is None:
        return tuple(TEMPLATES)
    if isinstance(templates, str):
        templates = [templates]  # templates="pens" means one template, not five letters
    if not isinstance(templates, Sequence) or len(templates) == 0:
        raise GymError(
            f"{name} must be a non-empty list of template names from {list(TEMPLATES)}; got {templates!r}"
        )
    for template in templates:
        if template not in TEMPLATES:
            hint = did_you_mean(str(template), TEMPLATES)
            raise GymError(f"{name}: unknown template {template!r}{hint}; choose from {', '.join(TEMPLATES)}")
    return tuple(dict.fromkeys(templates))
