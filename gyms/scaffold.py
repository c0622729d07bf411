"""Write a new, working gym to start from: `ftkit gym new reverse_word`.

`scaffold_gym("reverse_word", gyms_dir, tests_dir)` writes three things, all of which pass
`ftkit gym check reverse_word` and pytest before you change a line:

- `gyms/reverse_word.py`: a complete single-turn gym (reverse a random word) with an oracle, a
  difficulty knob, one scoring function, and the docstring sections every ftkit gym has;
- its `register_gym(...)` call, appended to `gyms/__init__.py`;
- `tests/test_gym_reverse_word.py`: `ftkit gym check`'s checks plus the gym's own tests.

Then edit the task: change `_reset` (what is asked), `score_answer` (what counts as right) and
`oracle` (the right action), and keep `ftkit gym check` green.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path
from string import Template

from gyms.errors import GymError

_NAME = re.compile(r"[a-z][a-z0-9_]*")


def scaffold_gym(name: str, gyms_dir: Path, tests_dir: Path) -> list[Path]:
    """Write the gym, its registration and its tests; return the paths written (or changed).

    Refuses (`GymError`) a name that is not a lowercase Python identifier, or one whose module, test
    file, short name or id is taken. Nothing is written unless every check passes.
    """
    gyms_dir, tests_dir = Path(gyms_dir), Path(tests_dir)
    names = _names(name)
    gym_file, test_file, init_file = (
        gyms_dir / f"{name}.py",
        tests_dir / f"test_gym_{name}.py",
        gyms_dir / "__init__.py",
    )
    _check_target(name, names, gyms_dir, gym_file, test_file, init_file)
    tests_dir.mkdir(parents=True, exist_ok=True)
    gym_file.write_text(GYM_TEMPLATE.substitute(names))
    test_file.write_text(TEST_TEMPLATE.substitute(names))
    # The registration goes last: if anything above failed, gyms/__init__.py still imports cleanly.
    with init_file.open("a") as init:
        init.write(REGISTRATION_TEMPLATE.substitute(names))
    return [gym_file, init_file, test_file]


def _names(name: str) -> dict[str, str]:
    """The names the templates use: reverse_word -> ReverseWordEnv, "ftkit/ReverseWord-v0"."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or keyword.iskeyword(name):
        raise GymError(
            f'gym name "{name}" must be a lowercase Python identifier (letters, digits, underscores, '
            'starting with a letter), e.g. "reverse_word"'
        )
    camel = "".join(part.capitalize() for part in name.split("_"))
    return {"name": name, "class_name": f"{camel}Env", "gym_id": f"ftkit/{camel}-v0"}


def _check_target(
    name: str, names: dict[str, str], gyms_dir: Path, gym_file: Path, test_file: Path, init_file: Path
) -> None:
    """Refuse to overwrite anything: the module, the test file, a taken short name or id."""
    if not init_file.is_file() or not (gyms_dir / "base.py").is_file():
        raise GymError(
            f"{gyms_dir} is not a gyms package folder (no __init__.py and base.py); pass --dir .../gyms"
        )
    for taken in (gym_file, gyms_dir / name, test_file):
        if taken.exists():
            raise GymError(f'gym "{name}" already exists: {taken} is there; choose another name')
    registrations = init_file.read_text()
    if f'short_name="{name}"' in registrations or f'"{names["gym_id"]}"' in registrations:
        raise GymError(f'gym "{name}" already exists: {init_file} registers it; choose another name')


REGISTRATION_TEMPLATE = Template("""
register_gym(
    "${gym_id}",
    "gyms.${name}:${class_name}",
    short_name="${name}",
    description="reverse a random word (scaffolded by `ftkit gym new`: edit it into your task)",
)
""")

GYM_TEMPLATE = Template('''"""Reverse a random word, one problem per episode: `ftkit gym play ${name}`.

Written by `ftkit gym new ${name}` as a complete, working gym to edit into your own task: change
`_reset` (what is asked), `score_answer` (what counts as right) and `oracle` (the right action), update
the class docstring, and keep `ftkit gym check ${name}` and `pytest tests/test_gym_${name}.py` green.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from numbers import Integral
from typing import Any

from gyms.base import TextEnv
from gyms.errors import GymError, did_you_mean

LETTERS = string.ascii_lowercase
MAX_LENGTH = 20
RESET_OPTIONS = ("length",)


def parse_answer(response: str) -> str:
    """The answer a response gives: its first line without surrounding whitespace.

    >>> parse_answer("  olleh \\\\nbecause h-e-l-l-o backwards is o-l-l-e-h")
    'olleh'
    """
    return response.split("\\n", 1)[0].strip()


def score_answer(response: str, answer: str) -> float:
    """1.0 when the response's first line is exactly the answer, else 0.0:

    >>> score_answer("olleh", "olleh"), score_answer("olleh olleh", "olleh"), score_answer("OLLEH", "olleh")
    (1.0, 0.0, 0.0)

    The gym's reward and `ftkit eval` both call this one function, so they cannot drift apart.
    """
    return 1.0 if parse_answer(response) == answer else 0.0


class ${class_name}(TextEnv):
    """Reverse a word: `env = gyms.make("${name}", length=[3, 6])`.

    ## Description

    Each episode shows a random lowercase word, e.g. `Reverse the letters: hello`; the agent writes it
    backwards, `olleh`. The word's length is drawn uniformly from the `length` range, then each letter
    uniformly from a-z.

    ## Action Space

    Text (printable ASCII, up to 256 characters): the reversed word. Only the first line counts,
    stripped of surrounding whitespace; see `parse_answer`.

    ## Observation Space

    Text (printable ASCII, up to 64 characters): `Reverse the letters: hello`. After the step it is `""`.

    ## Rewards

    1.0 if the first line is exactly the reversed word (`score_answer`), else 0.0.

    ## Episode End

    The episode terminates after one step. It is never truncated.

    ## Arguments

    - `length`: the word's length, an int or a `[min, max]` range (1 to 20). Default `[3, 6]`.
    - `render_mode`: None or "ansi".

    `reset(options={"length": 8})` pins the length for one episode.

    Info (reset and step): `answer` and `difficulty` (`{"length": 5}`); step adds `solved`.

    ## Version History

    - v0: initial version.
    """

    has_oracle = True

    def __init__(self, length: int | Sequence[int] = (3, 6), render_mode: str | None = None) -> None:
        super().__init__(render_mode=render_mode, max_observation_length=64, max_action_length=256)
        self.length = _check_length(length)
        self._word = ""

    def oracle(self) -> str:
        """The correct answer: `env.step(env.unwrapped.oracle())` scores 1.0."""
        self._require_running("oracle()")
        return self._word[::-1]

    def _reset(self, options: dict[str, Any]) -> tuple[str, dict]:
        for key in options:
            if key not in RESET_OPTIONS:
                raise GymError(
                    f'unknown reset option "{key}"{did_you_mean(str(key), RESET_OPTIONS)}; '
                    f"${name} takes: {', '.join(RESET_OPTIONS)}"
                )
        if "length" in options:
            length = _check_length(options["length"], "options['length']")[0]
        else:
            # All randomness comes from self.np_random, so a seed replays the episode exactly.
            length = int(self.np_random.integers(self.length[0], self.length[1] + 1))
        self._word = "".join(LETTERS[i] for i in self.np_random.integers(len(LETTERS), size=length))
        return f"Reverse the letters: {self._word}", self._info()

    def _step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        reward = score_answer(action, self._word[::-1])
        return "", reward, True, False, {**self._info(), "solved": reward == 1.0}

    def _info(self) -> dict[str, Any]:
        return {"answer": self._word[::-1], "difficulty": {"length": len(self._word)}}


def _is_length(n: Any) -> bool:
    return isinstance(n, Integral) and not isinstance(n, bool) and 1 <= n <= MAX_LENGTH


def _check_length(value: Any, name: str = "length") -> tuple[int, int]:
    """`value` as a (min, max) pair: 4 -> (4, 4), [3, 6] -> (3, 6); anything else is a `GymError`."""
    if _is_length(value):
        return int(value), int(value)
    pair = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else []
    if len(pair) != 2 or not all(_is_length(n) for n in pair) or pair[0] > pair[1]:
        raise GymError(
            f"{name} must be a whole number from 1 to {MAX_LENGTH} or a [min, max] pair; got {value!r}"
        )
    return int(pair[0]), int(pair[1])
''')

TEST_TEMPLATE = Template('''"""Tests for the ${name} gym: `python -m pytest tests/test_gym_${name}.py -q`."""

from __future__ import annotations

import doctest

import pytest

import gyms
import gyms.${name}
from gyms.checks import check_gym
from gyms.errors import GymError
from gyms.${name} import score_answer


def test_ftkit_gym_check_passes():
    """Gymnasium's env checker, replay, oracle and reward-hacking probes: `ftkit gym check ${name}`."""
    report = check_gym("${name}")
    assert report.passed, [f"{r.name}: {r.detail}" for r in report.failures]


def test_the_oracle_wins_and_a_wrong_answer_does_not():
    env = gyms.make("${name}")
    _, info = env.reset(seed=0)
    assert env.step(gyms.oracle(env))[1] == 1.0
    env.reset(seed=0)
    assert env.step(info["answer"] + "x")[1] == 0.0


@pytest.mark.parametrize(
    ("response", "answer", "score"),
    [
        ("olleh", "olleh", 1.0),
        (" olleh \\nbecause", "olleh", 1.0),
        ("ollehOLLEH", "olleh", 0.0),
        ("hello", "olleh", 0.0),
    ],
)
def test_score_answer_examples(response, answer, score):
    assert score_answer(response, answer) == score


def test_reset_option_pins_the_difficulty():
    env = gyms.make("${name}", length=3)
    _, info = env.reset(seed=0, options={"length": 9})
    assert info["difficulty"] == {"length": 9} and len(info["answer"]) == 9


@pytest.mark.parametrize("length", [0, 21, [5, 2], "long", True])
def test_bad_length_is_an_error(length):
    with pytest.raises(GymError, match="length"):
        gyms.make("${name}", length=length)


def test_unknown_reset_option_is_an_error():
    with pytest.raises(GymError, match='did you mean "length"'):
        gyms.make("${name}").reset(seed=0, options={"lenght": 4})


def test_docstring_examples_run():
    assert doctest.testmod(gyms.${name}).failed == 0
''')
