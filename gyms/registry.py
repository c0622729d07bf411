"""Find and build ftkit gyms by short name or full id: `env = gyms.make("arithmetic", digits=2)`.

Gyms are registered with `gymnasium.register` under the `ftkit/` namespace (all registrations live in
`gyms/__init__.py`), so `gymnasium.make("ftkit/Arithmetic-v0")` works too. This module adds what ftkit
needs on top: short names for recipes and the command line, one-line errors with a did-you-mean, and
the facts about each gym (`list_gyms()`) that tools check before using it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium
from gymnasium.envs.registration import load_env_creator

from gyms import adapters
from gyms.errors import GymError, did_you_mean

NAMESPACE = "ftkit"


@dataclass(frozen=True)
class GymInfo:
    """What ftkit knows about a registered gym: `[g.short_name for g in gyms.list_gyms()]`."""

    id: str  # the full Gymnasium id, e.g. "ftkit/Arithmetic-v0"
    short_name: str  # what recipes and the command line use, e.g. "arithmetic"
    description: str  # one line, shown by `ftkit gyms`
    multi_turn: bool  # can an episode last more than one step
    has_oracle: bool  # can it generate demonstrations (`gyms.oracle(env)`)


_GYMS: dict[str, GymInfo] = {}  # full id -> info, in registration order


def register_gym(
    id: str,
    entry_point: str | Callable[..., gymnasium.Env],
    *,
    short_name: str,
    description: str,
    multi_turn: bool = False,
    has_oracle: bool = True,
    kwargs: dict[str, Any] | None = None,
) -> None:
    """Register a gym with Gymnasium and ftkit:

        register_gym("ftkit/Arithmetic-v0", "gyms.arithmetic:ArithmeticEnv",
                     short_name="arithmetic", description="integer +, -, * with a chosen digit count")

    `entry_point` is a "module:Class" string, so that the gym's module is only imported when it is made
    (a class works too, e.g. for a gym defined in a test).
    `kwargs` are default constructor arguments; those given to `make` override them.
    """
    if not id.startswith(f"{NAMESPACE}/"):
        raise GymError(f'gym id "{id}" must start with "{NAMESPACE}/", e.g. "{NAMESPACE}/Arithmetic-v0"')
    info = GymInfo(id, short_name, description, multi_turn, has_oracle)
    if _GYMS.get(id) == info:
        return  # registering the same gym twice (e.g. a module reloaded) is harmless
    taken = {g.short_name: g.id for g in _GYMS.values() if g.id != id}
    if short_name in taken:
        raise GymError(f'short name "{short_name}" for {id} is already used by {taken[short_name]}')
    gymnasium.register(id=id, entry_point=entry_point, kwargs=dict(kwargs or {}))
    _GYMS[id] = info


def list_gyms() -> list[GymInfo]:
    """Every ftkit gym, in registration order: `for g in gyms.list_gyms(): print(g.short_name, g.id)`."""
    return list(_GYMS.values())


def resolve_id(name: str) -> str:
    """The full Gymnasium id for a short name or full id: `resolve_id("arithmetic")` -> "ftkit/Arithmetic-v0".

    Ids of adapted outside tasks keep their prefix: `resolve_id("rg:chain_sum")` -> "rg:chain_sum".
    """
    if name in _GYMS:
        return name
    if adapters.adapter_for(name) is not None:
        return adapters.resolve_id(name)
    for info in _GYMS.values():
        if info.short_name == name:
            return info.id
    short_names = [g.short_name for g in _GYMS.values()]
    hint = did_you_mean(str(name), short_names + list(_GYMS))
    raise GymError(f'unknown gym "{name}"{hint}; known gyms: {", ".join(short_names)}')


def make(name: str, **kwargs: Any) -> gymnasium.Env:
    """Build a gym with Gymnasium's standard wrappers: `env = gyms.make("arithmetic", ops=["+", "-"])`.

    `kwargs` go to the gym's constructor; an argument it does not take is a `GymError` naming it.
    For Gymnasium's own options (`max_episode_steps`, ...) call `gymnasium.make(resolve_id(name), ...)`.
    Adapted tasks (`gyms.make("rg:chain_sum")`) are built by their adapter in `gyms/adapters/`.
    """
    if adapters.adapter_for(name) is not None:
        return adapters.make(name, **kwargs)
    gym_id = resolve_id(name)
    _check_constructor_args(gym_id, kwargs)
    return gymnasium.make(gym_id, **kwargs)


def is_multi_turn(name: str, kwargs: dict[str, Any] | None = None) -> bool:
    """Can an episode of this gym last more than one step: `is_multi_turn("guess_number")` is True.

    Asks the built env (its `multi_turn` attribute), so adapted tasks answer too.
    """
    env = make(name, **(kwargs or {}))
    try:
        return bool(getattr(env.unwrapped, "multi_turn", False))
    finally:
        env.close()


def oracle(env: gymnasium.Env) -> str:
    """The correct action for `env`'s current state, through any wrappers: `env.step(gyms.oracle(env))`."""
    base = env.unwrapped
    if not getattr(base, "has_oracle", False):
        name = base.spec.id if base.spec is not None else type(base).__name__
        raise GymError(f"gym {name} has no oracle, so it cannot say the correct action")
    return base.oracle()


def _check_constructor_args(gym_id: str, kwargs: dict[str, Any]) -> None:
    """Reject an argument the gym's constructor does not take, before Gymnasium turns it into a TypeError."""
    spec = gymnasium.spec(gym_id)
    creator = load_env_creator(spec.entry_point) if isinstance(spec.entry_point, str) else spec.entry_point
    params = inspect.signature(creator).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return  # it takes anything; the gym validates its own arguments
    allowed = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    for key in kwargs:
        if key not in allowed:
            raise GymError(
                f'gym "{gym_id}" has no argument "{key}"{did_you_mean(key, allowed)}; '
                f"its arguments are: {', '.join(allowed)}"
            )
