"""Unsolved problems played again (`rollout.replay_unsolved`, ftkit/rl/replay.py).

    python -m pytest tests/test_rl_replay.py -q

Resuming a run with replay exactly is tested in tests/test_rl_resume.py (its "grpo_replay" cases).
"""

from __future__ import annotations

import pytest
from test_rl_trainer import first_byte_gym, rl_recipe  # noqa: F401 (a fixture)

from ftkit.errors import ConfigError
from ftkit.rl.config import load_rl_recipe
from ftkit.rl.replay import BUFFER_STEPS, ReplayBuffer
from gyms.runner import Trajectory, Turn


class Played:
    """What `ReplayBuffer.record` reads of an episode: its trajectory's seed and whether it was solved."""

    def __init__(self, seed: int, solved: bool):
        self.trajectory = Trajectory(gym="g", seed=seed, turns=[Turn("o", "a", float(solved), {"solved": solved})])


def group(seed: int, solved: list[bool]) -> list[Played]:
    return [Played(seed, s) for s in solved]


def test_only_problems_some_sample_missed_are_kept_and_the_newest_come_back_first():
    buffer = ReplayBuffer(share=0.5, limit=2)
    assert buffer.take(4, options=None) == []
    buffer.record(group(1, [True, True]) + group(2, [True, False]) + group(3, [False, False]) + group(4, [True, True]), 4)
    assert buffer.entries == [[2, 1], [3, 1]]  # seeds 1 and 4 were solved by every sample
    assert buffer.take(4, options=None) == [3, 2]  # half of 4 problems, newest first
    assert buffer.entries == []


def test_a_problem_is_played_again_at_most_limit_times():
    buffer = ReplayBuffer(share=1.0, limit=2)
    buffer.record(group(7, [False]), 1)
    plays = []
    for _ in range(4):
        taken = buffer.take(1, options=None)
        plays.append(taken)
        buffer.record([p for seed in taken for p in group(seed, [False])], 1)
    assert plays == [[7], [7], [], []]  # missed every time: played again twice, then dropped


def test_a_solved_replay_leaves_and_the_share_is_rounded_to_whole_problems():
    buffer = ReplayBuffer(share=0.25, limit=3)
    buffer.record([p for seed in range(10, 20) for p in group(seed, [False, True])], 10)
    taken = buffer.take(10, options=None)
    assert taken == [19, 18]  # round(0.25 * 10) = 2 (banker's rounding of 2.5)
    buffer.record(group(19, [True, True]) + group(18, [False, True]), 10)
    assert buffer.entries[-1] == [18, 2] and [19, 2] not in buffer.entries and len(buffer.entries) == 9


def test_the_buffer_keeps_the_newest_problems_of_a_few_steps():
    buffer = ReplayBuffer(share=0.5, limit=2)
    for step in range(BUFFER_STEPS + 3):
        buffer.record([p for k in range(4) for p in group(100 * step + k, [False])], 4)
    assert len(buffer.entries) == BUFFER_STEPS * 4
    assert buffer.entries[0] == [100 * 3, 1] and buffer.entries[-1] == [100 * (BUFFER_STEPS + 2) + 3, 1]


def test_problems_of_other_reset_options_are_forgotten():
    buffer = ReplayBuffer(share=1.0, limit=2)
    buffer.take(2, options={"digits": 1})
    buffer.record(group(5, [False]), 2)
    assert buffer.take(2, options={"digits": 2}) == []  # the curriculum moved up: 5 was a 1-digit problem
    buffer.record(group(6, [False]), 2)
    assert buffer.take(2, options={"digits": 2}) == [6]


def test_the_state_round_trips_through_json():
    import json

    buffer = ReplayBuffer(share=0.5, limit=2)
    buffer.take(4, options={"size": 10})
    buffer.record(group(2, [False]) + group(3, [True, False]), 4)
    restored = ReplayBuffer(share=0.5, limit=2)
    restored.load_state_dict(json.loads(json.dumps(buffer.state_dict())))
    assert restored.take(4, options={"size": 10}) == buffer.take(4, options={"size": 10}) == [3, 2]


def test_replay_settings_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="replay_unsolved"):
        load_rl_recipe(None, base=rl_recipe(tmp_path, rollout={"replay_unsolved": 1.5}))
    with pytest.raises(ConfigError, match="replay_limit counts .* set rollout.replay_unsolved"):
        load_rl_recipe(None, base=rl_recipe(tmp_path, rollout={"replay_limit": 3}))


@pytest.mark.usefixtures("first_byte_gym")
def test_a_step_plays_again_the_problems_the_last_one_missed(tmp_path):
    """Through the trainer: step 2's first problems are step 1's missed ones, in place of as many fresh ones."""
    from ftkit.rl.trainer import RLRun

    recipe = load_rl_recipe(None, base=rl_recipe(tmp_path, rollout={"replay_unsolved": 0.5}, eval={"n": 0}))
    run = RLRun(recipe)
    run.setup()
    first = run.play_step(0, None)
    missed = {e.trajectory.seed for e in first.played if not e.trajectory.solved}
    assert first.replayed_seeds == [] and missed  # a fresh tiny model misses most problems
    second = run.play_step(1, None)
    seeds = list(dict.fromkeys(e.trajectory.seed for e in second.played))  # the step's problems, in order
    fresh = run.task.training_seeds(1, None)
    assert len(second.replayed_seeds) == 2 and set(second.replayed_seeds) <= missed
    assert seeds == second.replayed_seeds + fresh[:2]
    assert not set(fresh) & {e.trajectory.seed for e in first.played}
