"""Wordle: find a hidden five-letter word from per-letter feedback, e.g. `crane -Y--G`.

    >>> import gyms
    >>> env = gyms.make("wordle")
    >>> obs, info = env.reset(seed=0)
    >>> obs, reward, terminated, truncated, info = env.step(info["answer"])
    >>> obs[-5:], reward, terminated
    ('GGGGG', 1.0, True)
"""

from __future__ import annotations

import functools
from collections import Counter
from importlib import resources
from typing import Any

from gyms.base import TextEnv, check_reset_options, check_whole_number

WORD_LENGTH = 5
DEFAULT_MAX_TURNS = 6
MAX_MAX_TURNS = 20
RESET_OPTIONS = ("max_turns",)
GREEN, YELLOW, GREY = "G", "Y", "-"
RULES = (
    "After each guess I show one mark per letter: G = right letter in the right place, "
    "Y = in the word but elsewhere, - = not in the word (or not that many times)."
)


@functools.cache
def word_list() -> tuple[str, ...]:
    """The bundled words, sorted (`gyms/data/wordle_words.txt`): `"crane" in word_list()` is True."""
    text = resources.files("gyms").joinpath("data/wordle_words.txt").read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line and not line.startswith("#"))


@functools.cache
def _word_set() -> frozenset[str]:
    return frozenset(word_list())


def score_guess(guess: str, answer: str) -> str:
    """Wordle's marks for `guess` against `answer`, one per letter:

    >>> score_guess("speed", "abide")
    '--Y-Y'

    Greens first; then, left to right, a letter is yellow only while the answer still has an unmatched
    copy of it. So the second "e" of "speed" is grey: "abide" has one "e", and the first took it.
    """
    marks = [GREY] * len(guess)
    unmatched: Counter[str] = Counter()  # the answer's letters not already matched by a green
    for i, (g, a) in enumerate(zip(guess, answer)):
        if g == a:
            marks[i] = GREEN
        else:
            unmatched[a] += 1
    for i, g in enumerate(guess):
        if marks[i] != GREEN and unmatched[g] > 0:
            marks[i] = YELLOW
            unmatched[g] -= 1
    return "".join(marks)


def parse_guess(action: str) -> str | None:
    """The word an action guesses (lowercased), or None when it is not a word from the list:

    >>> parse_guess("  Crane\\nit has common letters"), parse_guess("crane crane"), parse_guess("xyzzy")
    ('crane', None, None)

    Only the first line counts, stripped of surrounding whitespace.
    """
    word = action.split("\n", 1)[0].strip()
    if len(word) != WORD_LENGTH or not word.isascii():
        return None
    word = word.lower()
    return word if word in _word_set() else None


def consistent_candidates(history: list[tuple[str, str]]) -> list[str]:
    """The words that would have given every (guess, marks) in `history`, in list order:

    >>> consistent_candidates([("crane", "GGGG-")])
    ['crank']
    """
    return [w for w in word_list() if all(score_guess(guess, w) == marks for guess, marks in history)]


def best_candidate(candidates: list[str]) -> str:
    """The candidate whose distinct letters are most common among the candidates (ties: list order).

    A guess made of frequent letters splits the remaining words best, and since it is itself a
    candidate it may be the answer.
    """
    letter_counts = Counter(letter for word in candidates for letter in set(word))
    return max(candidates, key=lambda word: sum(letter_counts[letter] for letter in set(word)))


class WordleEnv(TextEnv):
    """Wordle, the word game: `env = gyms.make("wordle", max_turns=6)`.

    ## Description

    The gym hides a five-letter English word drawn uniformly from a bundled list of 1,000 common words
    (`gyms/data/wordle_words.txt`). Each turn the agent guesses a word from the same list and gets one
    mark per letter (`score_guess`): G for the right letter in the right place, Y for a letter that is
    in the word elsewhere, - for a letter that is not (or not that many times: duplicate letters are
    marked the way the original game marks them).

    ## Action Space

    Text (printable ASCII, up to 4096 characters): a guess, the word alone on the first line (case and
    surrounding whitespace are ignored; anything after the first line too). See `parse_guess`.

    ## Observation Space

    Text (printable ASCII, up to 512 characters). First the rules: `"Guess the hidden five-letter English
    word in 6 tries. After each guess I show ..."`. Then, after each guess, the guess and its marks:
    `"crane -Y--G"`; a winning guess shows `"GGGGG"`. An action that is not a word from the list gets
    `"not a word from the list: guess a five-letter English word"`.

    ## Rewards

    1.0 on the step that finds the word, in whichever turn (a win is a win; `env.unwrapped.turn` says
    how many it took), 0.0 otherwise.

    ## Episode End

    Terminates when the word is found. Truncated after `max_turns` turns without it. An invalid guess
    counts as a turn, as in a game with a clock: junk cannot stall an episode.

    ## Arguments

    - `max_turns`: how many guesses (1 to 20). Default 6, the original game's. Fewer is harder: the
      difficulty knob; `reset(options={"max_turns": 4})` pins it for one episode.
    - `render_mode`: None or "ansi".

    Info (reset and step): `answer` (the hidden word) and `difficulty` (`{"max_turns": 6}`); step adds
    `solved` and `format_reward` (1.0 when the guess was a word from the list).

    The oracle plays the game in hard mode: it guesses a word consistent with all the marks so far
    (`best_candidate` of `consistent_candidates`), except on the last turn, where the hidden word is the
    only correct action. Over the bundled list that strategy alone finds 997 of the 1,000 words within
    6 turns (catch, hatch and shave need the last-turn rule), so the oracle's episode always scores 1.0.

    ## Version History

    - v0: initial version.
    """

    has_oracle = True
    multi_turn = True

    def __init__(self, max_turns: int = DEFAULT_MAX_TURNS, render_mode: str | None = None) -> None:
        max_turns = check_whole_number(max_turns, "max_turns", 1, MAX_MAX_TURNS)
        super().__init__(
            render_mode=render_mode, max_observation_length=512, max_action_length=4096, max_turns=max_turns
        )
        self._episode_turns = max_turns  # this episode's limit (a reset option may pin another)
        self._hidden = ""
        self._history: list[tuple[str, str]] = []  # (guess, marks) of every valid guess so far

    def oracle(self) -> str:
        """A word consistent with the marks so far; on the last turn, the hidden word."""
        self._require_running("oracle()")
        if self.turn + 1 >= self._episode_turns:
            return self._hidden
        return best_candidate(consistent_candidates(self._history))

    def _turn_limit(self) -> int:
        return self._episode_turns

    def _reset(self, options: dict[str, Any]) -> tuple[str, dict]:
        check_reset_options(options, RESET_OPTIONS, "wordle")
        self._episode_turns = self.max_turns
        if "max_turns" in options:
            self._episode_turns = check_whole_number(
                options["max_turns"], "options['max_turns']", 1, MAX_MAX_TURNS
            )
        words = word_list()
        self._hidden = words[int(self.np_random.integers(len(words)))]
        self._history = []
        obs = f"Guess the hidden five-letter English word in {self._episode_turns} tries. {RULES}"
        return obs, {"answer": self._hidden, "difficulty": self._difficulty()}

    def _step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        guess = parse_guess(action)
        if guess is None:
            feedback, solved = "not a word from the list: guess a five-letter English word", False
        else:
            marks = score_guess(guess, self._hidden)
            self._history.append((guess, marks))
            feedback, solved = f"{guess} {marks}", guess == self._hidden
        info = {
            "answer": self._hidden,
            "difficulty": self._difficulty(),
            "solved": solved,
            "format_reward": 0.0 if guess is None else 1.0,
        }
        return feedback, float(solved), solved, False, info

    def _difficulty(self) -> dict[str, Any]:
        return {"max_turns": self._episode_turns}
