"""The base class of every ftkit gym: a Gymnasium environment whose observations and actions are text.

    >>> import gyms
    >>> env = gyms.make("arithmetic", digits=2)
    >>> obs, info = env.reset(seed=0)
    >>> obs, reward, terminated, truncated, info = env.step(gyms.oracle(env))
    >>> reward, terminated, info["solved"]
    (1.0, True, True)

A new gym subclasses `TextEnv`, writes `_reset` and `_step` (and `oracle` when it can say the correct
action), and is registered in `gyms/__init__.py`. `gyms/arithmetic.py` is the worked example.
"""

from __future__ import annotations

import string
from typing import Any

import gymnasium
from gymnasium import spaces

from ftkit.errors import GymError


def text_space(max_length: int) -> spaces.Text:
    """A `spaces.Text` of printable ASCII, empty string included: `text_space(64).contains("1+2=")`.

    Gymnasium 1.4 wants an explicit charset; `min_length=0` because an empty observation (the one a
    finished episode returns) and an empty action (a model that said nothing) are both legitimate.
    """
    return spaces.Text(max_length=max_length, min_length=0, charset=string.printable)


class TextEnv(gymnasium.Env[str, str]):
    """A Gymnasium env that speaks text: `obs, info = env.reset(seed=0)`, then `env.step("579")`.

    The public methods are Gymnasium's, to the letter:

    - `reset(*, seed=None, options=None) -> (obs, info)` seeds `self.np_random` through
      `super().reset(seed=seed)` and then calls the subclass's `_reset(options)`. All randomness must
      come from `self.np_random`, so that a seed replays an episode exactly.
    - `step(action) -> (obs, reward, terminated, truncated, info)` checks the episode is running and
      calls the subclass's `_step(action)`.

    Keeping `reset` and `step` here and the gym's own logic in `_reset` / `_step` means every gym gets
    the same bookkeeping for free: stepping before `reset()` or after the episode ended raises
    `GymError`, `render()` shows the current observation, and `oracle()` refuses outside an episode.

    `step` accepts any `str`, even one longer than `action_space.max_length` or outside its charset:
    actions are untrusted model output, and a hostile action must score 0, not crash the training run.

    Standard info keys (every gym provides them, so training and evaluation code can rely on them):

    - `answer` (reset and step): the correct final answer as a string.
    - `difficulty` (reset and step): a flat dict of simple values, e.g. `{"op": "+", "digits": 3}`;
      `ftkit eval` reports accuracy per difficulty, and datasets store it with each example.
    - `solved` (step): `True` when the episode was won.

    Class attributes: `has_oracle` (does `oracle()` work) and `multi_turn` (can an episode last more
    than one step).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 1}  # env_checker warns without a render_fps
    has_oracle = False
    multi_turn = False

    def __init__(
        self,
        render_mode: str | None = None,
        *,
        max_observation_length: int = 4096,
        max_action_length: int = 4096,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise GymError(
                f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}"
            )
        self.render_mode = render_mode
        self.observation_space = text_space(max_observation_length)
        self.action_space = text_space(max_action_length)
        self._observation: str | None = None  # None until the first reset()
        self._episode_over = False

    # -- Gymnasium's API ----------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        """Start an episode: `obs, info = env.reset(seed=0, options=None)`."""
        super().reset(seed=seed)
        obs, info = self._reset(dict(options or {}))
        self._observation = obs
        self._episode_over = False
        return obs, info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        """Take one action: `obs, reward, terminated, truncated, info = env.step("579")`."""
        self._require_running("step()")
        if not isinstance(action, str):
            raise GymError(f"a text gym's action must be a str, got {type(action).__name__}: {action!r}")
        obs, reward, terminated, truncated, info = self._step(action)
        self._observation = obs
        self._episode_over = terminated or truncated
        return obs, reward, terminated, truncated, info

    def render(self) -> str | None:
        """The current observation, for `render_mode="ansi"`: `print(env.render())`."""
        if self.render_mode is None:
            gymnasium.logger.warn("render() needs a render_mode; make the gym with render_mode='ansi'")
            return None
        if self._observation is None:
            raise GymError("render() called before reset(); call env.reset(seed=...) first")
        return self._observation

    # -- what a gym writes --------------------------------------------------------------------------

    def oracle(self) -> str:
        """The correct action for the current state: `env.step(env.oracle())` wins (if `has_oracle`)."""
        raise NotImplementedError(f"{type(self).__name__} has no oracle (has_oracle is False)")

    def _reset(self, options: dict[str, Any]) -> tuple[str, dict]:
        """Draw a new problem from `self.np_random`; return `(observation, info)`."""
        raise NotImplementedError(f"{type(self).__name__} must implement _reset(options) -> (obs, info)")

    def _step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        """Apply `action`; return `(observation, reward, terminated, truncated, info)`."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement _step(action) -> (obs, reward, terminated, truncated, info)"
        )

    # -- helpers for subclasses -----------------------------------------------------------------------

    def _require_running(self, what: str) -> None:
        """Raise `GymError` unless an episode is under way (after `reset()`, before it ended)."""
        if self._observation is None:
            raise GymError(f"{what} called before reset(); call env.reset(seed=...) to start an episode")
        if self._episode_over:
            raise GymError(
                f"{what} called after the episode ended (terminated or truncated); "
                "call env.reset() to start a new one"
            )
