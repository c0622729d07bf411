"""A gym as a task: which gym, built with which arguments, and how a policy sees it.

    >>> from gyms.spec import GymSpec
    >>> spec = GymSpec("arithmetic", {"digits": 2})
    >>> str(spec), spec.is_multi_turn
    ('arithmetic {digits: 2}', False)
    >>> env = spec.make()

Everything that plays or scores a gym takes one of these: the episode runner, data collection,
evaluation, RL rollouts. Recipes write it as their `gym:` section (`id`, `kwargs`, `chat`,
`system_prompt`, `max_turns`), and a trained model's folder remembers it, so "which gym, and how" is
spelled the same everywhere. A plain gym id is shorthand for a spec with default settings
(`GymSpec.of("arithmetic")`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import gymnasium

from gyms.errors import GymError


@dataclass(frozen=True)
class GymSpec:
    """`GymSpec(id, kwargs, chat=False, system_prompt=None, max_turns=None)`:

    - `id`: a short name (`arithmetic`), a full id (`ftkit/Arithmetic-v0`) or an adapted task (`rg:chain_sum`).
    - `kwargs`: the gym's constructor arguments.
    - `chat`: the policy sees the conversation as chat messages instead of the latest text.
    - `system_prompt`: with `chat`, the first message of every conversation.
    - `max_turns`: multi-turn gyms: an episode is cut (truncated) after this many actions.
    """

    id: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    chat: bool = False
    system_prompt: str | None = None
    max_turns: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise GymError(f"a gym id must be a non-empty str such as \"arithmetic\", got {self.id!r}")
        if self.kwargs is not None and not isinstance(self.kwargs, dict):
            raise GymError(f"the gym's arguments must be a dict, got {type(self.kwargs).__name__}")
        object.__setattr__(self, "kwargs", dict(self.kwargs or {}))  # the caller's dict stays the caller's
        if self.max_turns is not None and (
            isinstance(self.max_turns, bool) or not isinstance(self.max_turns, int) or self.max_turns < 1
        ):
            raise GymError(f"max_turns must be a positive int or None, got {self.max_turns!r}")
        if self.system_prompt is not None and not self.chat:
            raise GymError("system_prompt needs chat=True: a text observation has nowhere to put it")

    @classmethod
    def of(cls, gym: GymSpec | str) -> GymSpec:
        """`gym` itself, or a gym id as a spec with default settings."""
        return gym if isinstance(gym, GymSpec) else cls(gym)

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> GymSpec:
        """The inverse of `to_dict()`; keys it does not know are ignored."""
        return cls(**{f.name: fields[f.name] for f in dataclasses.fields(cls) if f.name in fields})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with every field: `GymSpec.from_dict(spec.to_dict()) == spec`."""
        return dataclasses.asdict(self)

    @property
    def full_id(self) -> str:
        """The registered id, e.g. "ftkit/Arithmetic-v0" (its -vN is the gym's version)."""
        from gyms.registry import resolve_id

        return resolve_id(self.id)

    def make(self) -> gymnasium.Env:
        """A new env with these arguments (`gyms.make(id, **kwargs)`); close it when done."""
        from gyms.registry import make

        return make(self.id, **self.kwargs)

    @cached_property
    def is_multi_turn(self) -> bool:
        """Can an episode last more than one step (asks a built env, so adapted tasks answer too)."""
        from gyms.registry import is_multi_turn

        return is_multi_turn(self.id, self.kwargs)

    def with_kwargs(self, **kwargs: Any) -> GymSpec:
        """The same task with some constructor arguments changed: `spec.with_kwargs(digits=4)`."""
        return dataclasses.replace(self, kwargs={**self.kwargs, **kwargs})

    def __hash__(self) -> int:  # a value: equal specs hash alike, although kwargs is a dict
        return hash((self.id, json.dumps(self.kwargs, sort_keys=True, default=repr), self.chat,
                     self.system_prompt, self.max_turns))

    def __str__(self) -> str:
        text = self.id
        if self.kwargs:
            text += " {" + ", ".join(f"{k}: {_short(v)}" for k, v in self.kwargs.items()) + "}"
        playing = (["chat"] if self.chat else []) + ([f"max {self.max_turns} turns"] if self.max_turns else [])
        return f"{text} ({', '.join(playing)})" if playing else text


def _short(value: Any) -> str:
    """A kwarg's value the way a recipe writes it: digits: 2, ops: ["+", "-"]."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value)
    except TypeError:
        return repr(value)
