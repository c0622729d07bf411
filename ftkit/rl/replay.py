"""Unsolved problems played again: part of each step's problems are earlier ones the policy got wrong.

    ftkit rl recipes/grpo_smollm2_math.yaml rollout.replay_unsolved=0.5

Late in a GRPO run most fresh problems are easy for the policy: every sample of the group is right, the
advantages are 0, and the group teaches nothing (`identical_groups` in metrics.jsonl climbs to 0.8). The
problems it still misses (a carry into the hundreds, say) are rare among fresh draws, so they get few
gradient steps. With `rollout.replay_unsolved: f`, a share f of each step's problems are taken from those
of earlier steps that not every sample solved, newest first, and played again by the current policy
(on-policy: the episodes are new, only the problem is old). A problem is played again at most
`rollout.replay_limit` times, so one the policy never gets stops taking a place. Kimi k1.5's
"prioritized sampling" and the retry buffers of later reasoning RL work do the same over a fixed
problem set; here the problems are a gym's seeds, so no problem set needs to exist.

The buffer belongs to the rollout side: `take` before a step's problems are played, `record` right after,
in the thread that plays them (with `rollout.async_steps`, the background one), so it is the same
whatever the two threads' speeds. Each process keeps its own; a checkpoint holds every process's, and a
resumed run replays exactly what it would have. Problems played with other reset options (a curriculum
moved up a level) are forgotten: they were another level's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ftkit.rl.rollout import Episode

BUFFER_STEPS = 4  # the buffer keeps the newest problems of about this many steps' worth of problems


@dataclass
class ReplayBuffer:
    """Problems (gym seeds) not solved by every sample of their group, newest last.

    >>> buffer = ReplayBuffer(share=0.5, limit=2)
    >>> buffer.take(4, options=None)                  # nothing missed yet: every problem is fresh
    []
    >>> # ... the step's groups are played; seeds 11 and 13 were missed by some sample:
    >>> buffer.entries = [[11, 1], [13, 1]]
    >>> buffer.take(4, options=None)                  # half of 4 problems, newest first
    [13, 11]
    """

    share: float  # the share of a step's problems taken from the buffer (at most)
    limit: int  # times one problem is played again, at most
    entries: list[list[int]] = field(default_factory=list)  # [seed, times played again so far], newest last
    options_key: str = "null"  # the reset options the entries were played with (JSON)
    playing: dict[int, int] = field(default_factory=dict)  # taken and not yet recorded: seed -> times played again

    def take(self, problems: int, options: dict[str, Any] | None) -> list[int]:
        """The seeds to play again among a step's `problems`, newest first; they leave the buffer until
        `record` sees how they went."""
        key = json.dumps(options, sort_keys=True, default=str)
        if key != self.options_key:  # another curriculum level: the old problems are not this level's
            self.entries, self.options_key = [], key
        start = len(self.entries) - min(round(self.share * problems), len(self.entries))
        taken = self.entries[start:][::-1]
        del self.entries[start:]
        self.playing = {seed: uses for seed, uses in taken}
        return [seed for seed, _ in taken]

    def record(self, episodes: Sequence[Episode], problems: int) -> None:
        """Keep the problems of `episodes` (every one played this step, trained on or not) that some episode
        did not solve and that were played again fewer than `limit` times; at most `BUFFER_STEPS` steps'
        worth of `problems` are kept, the newest."""
        solved: dict[int, bool] = {}
        for episode in episodes:  # in order of play: groups are next to each other
            seed = episode.trajectory.seed
            solved[seed] = solved.get(seed, True) and episode.trajectory.solved
        for seed, all_solved in solved.items():
            uses = self.playing.get(seed, 0)
            if not all_solved and uses < self.limit:
                self.entries.append([seed, uses + 1])
        self.playing = {}
        del self.entries[: max(0, len(self.entries) - BUFFER_STEPS * problems)]

    def state_dict(self) -> dict[str, Any]:
        return {"entries": [list(entry) for entry in self.entries], "options_key": self.options_key}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.entries = [[int(seed), int(uses)] for seed, uses in state["entries"]]
        self.options_key = str(state["options_key"])
        self.playing = {}
