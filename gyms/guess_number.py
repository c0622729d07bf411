"""Guess the hidden number, told "higher" or "lower" after each guess: the worked example of a multi-turn gym.

    >>> import gyms
    >>> env = gyms.make("guess_number", max_number=100)
    >>> obs, info = env.reset(seed=0)
    >>> env.step("50")[0] in ("higher", "lower", "correct")
    True
"""

from __future__ import annotations

import re
from typing import Any

from gyms.base import TextEnv, check_reset_options, check_whole_number
from gyms.errors import GymError

MAX_MAX_NUMBER = 10**12
MIN_REWARD_WHEN_SOLVED = 0.5  # what a win on the very last turn still earns
RESET_OPTIONS = ("max_number",)

_GUESS = re.compile(r"[0-9]{1,13}")  # ASCII digits, short enough that int() is instant


def optimal_turns(max_number: int) -> int:
    """Guesses binary search needs in the worst case over [1, max_number]: `optimal_turns(100)` is 7.

    It is ceil(log2(max_number + 1)), which is `max_number.bit_length()`.
    """
    return max_number.bit_length()


def default_max_turns(max_number: int) -> int:
    """The default turn limit: two more than binary search needs, `default_max_turns(100)` is 9."""
    return optimal_turns(max_number) + 2


def solved_reward(turn: int, max_number: int, max_turns: int) -> float:
    """The reward for finding the number on guess `turn` (1-based):

    >>> [solved_reward(t, 100, 9) for t in (1, 7, 8, 9)]
    [1.0, 1.0, 0.75, 0.5]

    1.0 up to the binary-search optimum K = `optimal_turns(max_number)`; after it, linearly down to
    `MIN_REWARD_WHEN_SOLVED` (0.5) on the last allowed turn L:

        reward = 1 - (1 - 0.5) * (turn - K) / (L - K)     for K < turn <= L

    so a win always beats a loss (0.0) and a faster win never earns less than a slower one.
    """
    best = optimal_turns(max_number)
    if turn <= best:
        return 1.0
    return 1.0 - (1.0 - MIN_REWARD_WHEN_SOLVED) * (turn - best) / (max_turns - best)


def parse_guess(action: str, max_number: int) -> int | None:
    """The number an action guesses, or None when it is not a whole number from 1 to `max_number`:

    >>> parse_guess(" 42 \\nbecause it is the middle", 100), parse_guess("42 43", 100), parse_guess("0", 100)
    (42, None, None)

    Only the first line counts, stripped of surrounding whitespace; it must be ASCII digits alone.
    """
    first_line = action.split("\n", 1)[0].strip()
    if not _GUESS.fullmatch(first_line):
        return None
    guess = int(first_line)
    return guess if 1 <= guess <= max_number else None


class GuessNumberEnv(TextEnv):
    """Find a hidden whole number by guessing: `env = gyms.make("guess_number", max_number=1000)`.

    ## Description

    The gym hides a number drawn uniformly from 1 to `max_number`. Each turn the agent guesses a number
    and is told whether the hidden one is higher or lower. Halving the range every time (binary search)
    always finds it within `optimal_turns(max_number)` guesses (7 for 100); the game is to learn that.

    ## Action Space

    Text (printable ASCII, up to 4096 characters): a guess, the number alone on the first line
    (surrounding whitespace is ignored; anything after the first line too). See `parse_guess`.

    ## Observation Space

    Text (printable ASCII, up to 256 characters). First: `"Guess the whole number from 1 to 100. You
    have 9 guesses; after each I say higher or lower."` Then after each guess: `"higher"` (the hidden
    number is larger than the guess), `"lower"`, `"correct"`, or, for an action that is not a whole
    number in range, `"invalid guess: answer with a whole number from 1 to 100"`.

    ## Rewards

    0.0 on every step that does not find the number. The step that finds it earns `solved_reward`:
    1.0 within the binary-search optimum K, then linearly less down to 0.5 on the last allowed turn.
    An episode that runs out of turns earns 0.0 in total.

    With `progress_reward` p > 0, the win earns (1 - p) x `solved_reward`, and every guess also earns
    p x the share of the range that its feedback rules out (`progress`): of the numbers still possible
    before it, those no longer possible after it (all of them when it is correct), over `max_number`.
    Binary search's guesses earn about p/2, p/4, ...; a guess outside what the feedback so far allows, an
    invalid one, or one with more lines after it (several answers: only a clean guess is paid), earns nothing. Over a solved episode the progress adds up to p (it is the change of
    a potential, Ng et al. 1999, so the best strategy stays the same), so an episode still earns at most
    1.0 and the oracle's exactly 1.0; an unsolved one earns p x the share it ruled out.

    ## Episode End

    Terminates when the number is guessed. Truncated when `max_turns` guesses (invalid ones included:
    they count as a turn, so junk cannot stall an episode) have not found it.

    ## Arguments

    - `max_number`: the range is 1 to `max_number` (2 to 10**12). Default 100. The difficulty knob:
      binary search needs one more guess each time it doubles.
    - `max_turns`: the turn limit. Default `optimal_turns(max_number) + 2` (9 for 100).
    - `progress_reward`: p above, from 0 to 1 (excluded). Default 0: the reward is the win's alone.
    - `render_mode`: None or "ansi".

    `reset(options={"max_number": 1000})` pins the range for one episode (and, with the default
    `max_turns`, its turn limit).

    Info (reset and step): `answer` (the hidden number) and `difficulty`
    (`{"max_number": 100, "max_turns": 9}`); step adds `solved`, `format_reward` (1.0 when the action
    was a whole number in range) and `progress` (the share of the range the guess ruled out).

    The oracle plays binary search on the feedback so far: the middle of the numbers still possible.

    ## Version History

    - v0: initial version; `progress_reward` added later (its default, 0, keeps the rewards unchanged).
    """

    has_oracle = True
    multi_turn = True

    def __init__(
        self, max_number: int = 100, max_turns: int | None = None, render_mode: str | None = None,
        progress_reward: float = 0.0,
    ) -> None:
        super().__init__(
            render_mode=render_mode, max_observation_length=256, max_action_length=4096, max_turns=max_turns
        )
        self.max_number = check_whole_number(max_number, "max_number", 2, MAX_MAX_NUMBER)
        if isinstance(progress_reward, bool) or not isinstance(progress_reward, (int, float)) \
                or not 0 <= progress_reward < 1:
            raise GymError(f"progress_reward must be a number from 0 to less than 1, got {progress_reward!r}")
        self.progress_reward = float(progress_reward)
        self._range = self.max_number  # this episode's max_number
        self._hidden = 0
        self._low, self._high = 1, self.max_number  # the numbers the feedback so far leaves possible

    def oracle(self) -> str:
        """Binary search: the middle of the numbers still possible (always wins within the optimum)."""
        self._require_running("oracle()")
        return str((self._low + self._high) // 2)

    def _turn_limit(self) -> int:
        return self.max_turns if self.max_turns is not None else default_max_turns(self._range)

    def _reset(self, options: dict[str, Any]) -> tuple[str, dict]:
        check_reset_options(options, RESET_OPTIONS, "guess_number")
        self._range = self.max_number
        if "max_number" in options:
            self._range = check_whole_number(
                options["max_number"], "options['max_number']", 2, MAX_MAX_NUMBER
            )
        self._hidden = int(self.np_random.integers(1, self._range + 1))
        self._low, self._high = 1, self._range
        obs = (
            f"Guess the whole number from 1 to {self._range}. You have {self._turn_limit()} guesses; "
            "after each I say higher or lower."
        )
        return obs, {"answer": str(self._hidden), "difficulty": self._difficulty()}

    def _step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        guess = parse_guess(action, self._range)
        solved = guess == self._hidden
        possible_before = self._high - self._low + 1
        if guess is None:
            feedback = f"invalid guess: answer with a whole number from 1 to {self._range}"
        elif guess < self._hidden:
            feedback, self._low = "higher", max(self._low, guess + 1)
        elif guess > self._hidden:
            feedback, self._high = "lower", min(self._high, guess - 1)
        else:
            feedback = "correct"
        clean = guess is not None and "\n" not in action.strip()
        progress = (possible_before - (0 if solved else self._high - self._low + 1)) / self._range if clean else 0.0
        win = solved_reward(self.turn, self._range, self._turn_limit()) if solved else 0.0
        reward = (1.0 - self.progress_reward) * win + self.progress_reward * progress
        info = {
            "answer": str(self._hidden),
            "difficulty": self._difficulty(),
            "solved": solved,
            "format_reward": 0.0 if guess is None else 1.0,
            "progress": progress,
        }
        return feedback, reward, solved, False, info

    def _difficulty(self) -> dict[str, Any]:
        return {"max_number": self._range, "max_turns": self._turn_limit()}
