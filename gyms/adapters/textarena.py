"""TextArena's single-player games as multi-turn ftkit gyms: `ftkit gym play ta:GuessTheNumber-v0`.

    >>> import gyms
    >>> env = gyms.make("ta:GuessTheNumber-v0")
    >>> obs, info = env.reset(seed=0)
    >>> env.step("[" + info["answer"] + "]")[1:4]
    (1.0, True, False)

TextArena (https://github.com/LeonGuertler/TextArena) is a collection of text games for LLMs. Only the
single-player games listed in `GAMES` are adapted: each was checked to run offline and to replay
exactly from a seed. Others are left out for a reason `UNSUPPORTED` states (several download nltk word
lists when first imported, or call a hosted LLM as the game master). Needs
`pip install 'ftkit[textarena]'`.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import random
from collections.abc import Iterator
from typing import Any

import gymnasium
import textarena
from textarena.envs.registration import ENV_REGISTRY

from gyms.adapters import AnyText, flat_difficulty, register_once
from gyms.base import TextEnv
from gyms.errors import GymError, did_you_mean

# The adapted games, each with a one-line description.
GAMES = {
    "GuessTheNumber-v0": "guess a number from 1 to 20 in 10 turns, told higher or lower",
    "GuessTheNumber-v0-hardcore": "guess a number from 1 to 50 in 10 turns, told higher or lower",
    "Mastermind-v0": "find a hidden code of 4 digits from exact/partial-match feedback",
    "TowerOfHanoi-v0": "move a tower of disks between three rods",
    "FrozenLake-v0": "walk across a frozen lake to the goal without falling into holes",
    "Minesweeper-v0-small": "clear a 5x5 minefield without hitting a mine",
    "LightsOut-v0": "switch off every light on a grid where each press toggles its neighbours",
    "FifteenPuzzle-v0": "slide tiles into order on a 4x4 board",
}
UNSUPPORTED = {
    **dict.fromkeys(
        ["Wordle-v0", "Hangman-v0", "WordLadder-v0", "WordSearch-v0", "Crosswords-v0"],
        "it downloads nltk word lists when it starts, which needs the internet",
    ),
    **dict.fromkeys(
        ["TwentyQuestions-v0", "GuessWho-v0"], "its game master is a hosted LLM (an OpenRouter API key)"
    ),
}
# The game's own secret answer, for the games where it is one value; the others report "".
_ANSWERS = {"GuessTheNumber": lambda env: str(env.game_number)}
# The oracle's action: the games where the answer is also a winning move.
_ORACLES = {"GuessTheNumber": lambda env: f"[{env.game_number}]"}
SOLVED_AT = 1.0  # TextArena gives 1 for a win
MAX_OBSERVATION_LENGTH = 100_000


def task_names() -> list[str]:
    """The adapted games, e.g. "GuessTheNumber-v0"."""
    return list(GAMES)


def describe(game: str) -> str:
    """One line about the game, for `ftkit gym list ta`."""
    return GAMES[game]


def resolve_task(game: str) -> str:
    """`game` itself when it is adapted, else a `GymError` saying why not or what is close."""
    if game in GAMES:
        return game
    if game in UNSUPPORTED:
        raise GymError(f"ta:{game} is not adapted: {UNSUPPORTED[game]}; adapted games: {', '.join(GAMES)}")
    known = "" if game in ENV_REGISTRY else " (TextArena has no such game)"
    raise GymError(
        f'TextArena game "{game}" is not adapted{known}{did_you_mean(game, GAMES)}; '
        f"adapted games: {', '.join(GAMES)}"
    )


def make(game: str, **kwargs: Any) -> gymnasium.Env:
    """`make("GuessTheNumber-v0")`: the game as a Gymnasium env, registered as "ta/GuessTheNumber-v0"."""
    gym_id = f"ta/{game}"
    register_once(gym_id, "gyms.adapters.textarena:TextArenaEnv", {"game": game})
    return gymnasium.make(gym_id, **kwargs)


class TextArenaEnv(TextEnv):
    """One TextArena single-player game: `env = gyms.make("ta:GuessTheNumber-v0")`.

    ## Description

    The game is TextArena's own, played through its "-raw" version (no TextArena wrappers), one
    player. Episodes replay exactly from a seed: TextArena draws from Python's global `random`, so the
    adapter gives each env its own `random` state and swaps it in around every call into the game.

    ## Action Space

    Text (printable ASCII, up to 4096 characters), passed to the game as it is. TextArena games read
    the move in square brackets, e.g. `[12]` or `[up]`; the first observation explains the format.

    ## Observation Space

    Text (any characters, up to 100,000): the messages the game sent to the player since its last
    action (the rules first; then feedback, boards, and the reason the game ended), joined by blank
    lines. The player's own action is not repeated; `run_episodes(GymSpec(..., chat=True), ...)` gives
    the history.

    ## Rewards

    1.0 on the step that wins the game, else 0.0. TextArena's own end-of-game score (a fraction for
    a near miss, -1 for repeated invalid moves) is in `info["score"]`; with `partial_credit=True` the
    reward is that score clipped to [0, 1] (ftkit rewards never go below 0).

    ## Episode End

    Terminates when TextArena ends the game (won, lost, out of turns, or a second invalid move in a
    row). TextArena enforces its own turn limits, so the episode is never truncated here.

    ## Arguments

    - `game`: the TextArena id, e.g. "GuessTheNumber-v0" (`gyms.make("ta:...")` sets it).
    - `partial_credit`: pay TextArena's partial scores (default False).
    - the game's own constructor arguments, e.g. `max_number=100` for GuessTheNumber.
    - `render_mode`: None or "ansi".

    Info: `answer` (the secret number for GuessTheNumber; `""` for the others), `difficulty` (the
    game's settings); step adds `solved`, and `score` once the game ended.

    ## Version History

    - v0: initial version (TextArena 0.7.4).
    """

    multi_turn = True
    has_oracle = False  # per instance: True for the games in _ORACLES

    def __init__(
        self, game: str, render_mode: str | None = None, partial_credit: bool = False, **game_kwargs: Any
    ) -> None:
        super().__init__(render_mode=render_mode, max_action_length=4096)
        self.observation_space = AnyText(MAX_OBSERVATION_LENGTH)
        self.game = resolve_task(game)
        if not isinstance(partial_credit, bool):
            raise GymError(f"partial_credit must be true or false; got {partial_credit!r}")
        self.partial_credit = partial_credit
        self.settings = {**ENV_REGISTRY[self.game].kwargs, **_check_game_kwargs(self.game, game_kwargs)}
        self._family = self.game.split("-")[0]
        self.has_oracle = self._family in _ORACLES
        self._random_state = random.Random(0).getstate()
        with self._own_random():
            self._game = textarena.make(f"{self.game}-raw", **game_kwargs)

    def oracle(self) -> str:
        """The winning move now (GuessTheNumber: the secret number in brackets)."""
        self._require_running("oracle()")
        if not self.has_oracle:
            raise GymError(f"ta:{self.game} has no oracle")
        return _ORACLES[self._family](self._game)

    def _reset(self, options: dict[str, Any]) -> tuple[str, dict]:
        if options:
            raise GymError(f"ta:{self.game} takes no reset options; got {sorted(options)}")
        game_seed = int(self.np_random.integers(2**31))
        with self._own_random():
            self._game.reset(num_players=1, seed=game_seed)  # seeds the (swapped-in) global random
            _, messages = self._game.get_observation()
        return _text(messages), self._info()

    def _step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        with self._own_random():
            done, _ = self._game.step(action)
            _, messages = self._game.get_observation()
            observation = _text(messages)
            if not done:
                return observation, 0.0, False, False, {**self._info(), "solved": False}
            rewards, game_info = self._game.close()
        score = float(rewards[0])
        solved = score >= SOLVED_AT
        reward = min(max(score, 0.0), 1.0) if self.partial_credit else float(solved)
        reason = str(game_info[0].get("reason", "") or "")
        observation = "\n\n".join(part for part in (observation, reason) if part)
        return observation, reward, True, False, {**self._info(), "solved": solved, "score": score}

    @contextlib.contextmanager
    def _own_random(self) -> Iterator[None]:
        """Run TextArena code with this env's own state of Python's global `random`, then put it back."""
        outer = random.getstate()
        random.setstate(self._random_state)
        try:
            yield
        finally:
            self._random_state = random.getstate()
            random.setstate(outer)

    def _info(self) -> dict[str, Any]:
        answer = _ANSWERS[self._family](self._game) if self._family in _ANSWERS else ""
        return {"answer": answer, "difficulty": flat_difficulty(self.settings)}


def _text(messages: list[tuple[int, str, Any]]) -> str:
    """The game's messages to the player as one text, leaving out the echo of the player's own action."""
    own_action = textarena.ObservationType.PLAYER_ACTION
    return "\n\n".join(str(message).strip() for _, message, kind in messages if kind != own_action)


def _check_game_kwargs(game: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Reject an argument the game's constructor does not take, with a did-you-mean."""
    module, _, name = ENV_REGISTRY[game].entry_point.partition(":")
    params = inspect.signature(getattr(importlib.import_module(module), name)).parameters
    allowed = [p for p in params if p != "self"]
    for key in kwargs:
        if key not in allowed:
            raise GymError(
                f'ta:{game} has no argument "{key}"{did_you_mean(key, allowed)}; its arguments are: {", ".join(allowed)}'
            )
    return dict(kwargs)
