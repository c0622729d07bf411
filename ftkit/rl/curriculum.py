"""An adaptive curriculum: raise the gym's difficulty once the policy solves enough at the current one.

    python -c "from ftkit.rl.curriculum import Curriculum; c = Curriculum('digits', [1, 2, 3]); print(c.options())"

GRPO and RLOO learn only from groups whose episodes got different rewards. A task far too hard gives
all-zero groups and a task far too easy all-one groups: both teach nothing. Starting easy and moving
up when the success rate passes a threshold keeps the policy where its groups disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Curriculum:
    """Levels of one reset option, easiest first; `update(success_rate)` after every step.

    >>> c = Curriculum("digits", [1, 2, 3], threshold=0.8, window=2)
    >>> [c.update(rate) for rate in (0.9, 0.7, 0.9, 0.9)], c.options()
    ([False, False, True, False], {'digits': 2})

    The level moves up when the mean success rate of the last `window` steps at this level reaches
    `threshold`; it never moves down. The last level is kept once reached.
    """

    option: str
    levels: list[Any]
    threshold: float = 0.8
    window: int = 3
    level: int = 0
    recent: list[float] = field(default_factory=list)

    def options(self) -> dict[str, Any]:
        """The reset options for the current level: `env.reset(seed=..., options=c.options())`."""
        return {self.option: self.levels[self.level]}

    @property
    def value(self) -> Any:
        return self.levels[self.level]

    def update(self, success_rate: float) -> bool:
        """Record a step's success rate; returns True when this moved the curriculum up a level."""
        self.recent = (self.recent + [success_rate])[-self.window :]
        ready = len(self.recent) == self.window and sum(self.recent) / self.window >= self.threshold
        if ready and self.level + 1 < len(self.levels):
            self.level += 1
            self.recent = []
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"level": self.level, "recent": list(self.recent)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.level, self.recent = int(state["level"]), list(state["recent"])
