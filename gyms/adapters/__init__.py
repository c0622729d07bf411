"""Outside task libraries as ftkit gyms, by prefix: `gyms.make("rg:chain_sum")`, `gyms.make("ta:GuessTheNumber-v0")`.

| prefix | library | install |
| --- | --- | --- |
| `rg:` | reasoning-gym: ~100 procedurally generated reasoning tasks, single-turn | `pip install 'ftkit[reasoning-gym]'` |
| `ta:` | TextArena: single-player text games, multi-turn | `pip install 'ftkit[textarena]'` |

The libraries are optional extras: nothing here imports them until such a gym is asked for, and a
missing one is a one-line `GymError` naming the extra to install. `gyms.registry.resolve_id` and
`gyms.make` send every id with one of these prefixes here.
"""

from __future__ import annotations

import importlib
import importlib.util
import string
from dataclasses import dataclass
from typing import Any

import gymnasium
from gymnasium import spaces

from gyms.errors import GymError


@dataclass(frozen=True)
class Adapter:
    """One outside library: its id prefix, the module that adapts it, and how to install it."""

    prefix: str  # "rg", used as "rg:chain_sum"
    module: str  # the adapter module, imported only when needed
    package: str  # the library's import name, to test whether it is installed
    extra: str  # the ftkit extra that installs it
    label: str  # the library's name, for messages and `ftkit gym list`
    multi_turn: bool

    @property
    def install(self) -> str:
        return f"pip install 'ftkit[{self.extra}]'"


ADAPTERS = {
    "rg": Adapter(
        "rg", "gyms.adapters.reasoning_gym", "reasoning_gym", "reasoning-gym", "reasoning-gym", False
    ),
    "ta": Adapter("ta", "gyms.adapters.textarena", "textarena", "textarena", "TextArena", True),
}

EXAMPLES = ("rg:chain_sum", "ta:GuessTheNumber-v0")  # what `ftkit gym list` shows first


def adapter_for(name: str) -> Adapter | None:
    """The adapter whose prefix `name` starts with ("rg:chain_sum" -> rg), or None for ftkit's own gyms."""
    prefix, colon, _ = str(name).partition(":")
    return ADAPTERS.get(prefix) if colon else None


def is_installed(adapter: Adapter) -> bool:
    return importlib.util.find_spec(adapter.package) is not None


def load(adapter: Adapter) -> Any:
    """The adapter's module, or a one-line `GymError` naming the extra when its library is missing."""
    if not is_installed(adapter):
        raise GymError(
            f"{adapter.prefix}: gyms need {adapter.label}, which is not installed; run: {adapter.install}"
        )
    return importlib.import_module(adapter.module)


def resolve_id(name: str) -> str:
    """The canonical id of an adapted task, checked to exist: "rg:chain_sum" -> "rg:chain_sum"."""
    adapter = adapter_for(name)
    if adapter is None:
        raise GymError(
            f'"{name}" is not an adapter id; they look like "rg:chain_sum" or "ta:GuessTheNumber-v0"'
        )
    task = name.partition(":")[2]
    return f"{adapter.prefix}:{load(adapter).resolve_task(task)}"


def make(name: str, **kwargs: Any) -> gymnasium.Env:
    """Build an adapted task as a Gymnasium env (with Gymnasium's standard wrappers)."""
    adapter = adapter_for(name)
    task = resolve_id(name).partition(":")[2]
    return load(adapter).make(task, **kwargs)


def task_names(prefix: str) -> list[str]:
    """Every task an installed adapter offers, as full ids ("rg:ab", ...); [] when its library is missing."""
    adapter = ADAPTERS[prefix]
    if not is_installed(adapter):
        return []
    return [f"{prefix}:{task}" for task in load(adapter).task_names()]


# -- helpers the adapter modules share ------------------------------------------------------------------


class AnyText(spaces.Text):
    """A `spaces.Text` that contains any string up to `max_length`: `AnyText(100).contains("❌ 5×3")`.

    Outside libraries write text we do not control (reasoning-gym questions use "❌", box drawing and
    emoji), so no finite charset can be promised. Sampling still draws printable ASCII.
    """

    def __init__(self, max_length: int) -> None:
        super().__init__(max_length=max_length, min_length=0, charset=string.printable)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length


def flat_difficulty(values: Any, prefix: str = "") -> dict[str, str | int | float | bool]:
    """A flat dict of simple values, as the `difficulty` info key wants:

    >>> flat_difficulty({"num_terms": (2, 6), "ops": {"plus": True}, "name": None})
    {'num_terms': '[2, 6]', 'ops.plus': True}

    Nested dicts become dotted keys, lists of simple values their text, anything else is dropped.
    """
    flat: dict[str, str | int | float | bool] = {}
    if not isinstance(values, dict):
        return flat
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, (str, int, float, bool)):
            flat[name] = value.item() if hasattr(value, "item") else value
        elif isinstance(value, dict):
            flat.update(flat_difficulty(value, prefix=f"{name}."))
        elif isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float, bool)) for v in value):
            flat[name] = str(list(value))
    return flat


def register_once(gym_id: str, entry_point: Any, kwargs: dict[str, Any]) -> None:
    """Register an adapted task with Gymnasium the first time it is made (there are too many to list)."""
    if gym_id not in gymnasium.registry:
        gymnasium.register(id=gym_id, entry_point=entry_point, kwargs=kwargs)
