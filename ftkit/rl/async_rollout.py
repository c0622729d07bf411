"""Asynchronous rollouts: the batches of the next steps are played in a background thread while a step trains.

    ftkit rl recipes/grpo_arithmetic.yaml rollout.async_steps=1

With `rollout.async_steps: N` the sampler plays ahead of the trainer on a fixed schedule. At step 0, and
then at every N-th step t, the trainer takes the batch for t, waits until the sampler is idle, copies
the policy's weights (version t: t updates made) into the sampler, and hands it the batches for steps
t+1..t+N; then it trains step t while the sampler plays them, one after another. So the batch of a step
s > 0 comes from the policy of step N * floor((s - 1) / N): between 1 and N versions old (logged per step
as `async_lag`), and with N = 1 always the previous step's policy. A step then costs, at best, the larger
of its rollout and its update instead of their sum (bench/rl_async.py measures how close it gets).

Why a fixed schedule rather than "whatever the sampler has when it is free" (PipelineRL, prime-rl): the
version each batch is played by, and so the run, do not depend on how fast the two threads happened
to be, and a run can be resumed exactly. Why the sampler is synced only every N steps: it can only be
given new weights while it is not playing (vLLM's engine and the Hugging Face copy alike), and syncing
every step would make the trainer wait for the whole queue each time.

What the sampler plays from:

- **Weights of its own.** The Hugging Face engine samples from the training model itself, which the
  optimizer changes while a batch is being played; here it gets a copy (`CopiedPolicyEngine`): the
  trainable tensors copied, every frozen tensor (a LoRA or QLoRA base model, buffers) shared, so full
  fine-tuning pays one more copy of the weights and LoRA only its adapters. vLLM's engine has its own
  weights already and is used as it is.
- **Random numbers of its own.** Each batch draws from a `torch.Generator` seeded with the step it is
  played for (`update.step_seed`, the seed the synchronous loop gives torch's global generator at that
  step), never from the global generator the training thread uses; so with the same weights, a batch is
  the one the synchronous loop would have played.
- **A tokenizer of its own** (a copy), so that evaluation in the training thread and episodes and prompts in
  the background never share one.

The trainer's recomputed log-probs differ from the sampler's by the lag: `rollout.importance_sampling:
auto` is then "tis" (`ftkit/rl/correction.py`), as it is for vLLM.

A checkpoint at step t holds the batches already played for steps t and later (`in_flight.json`: token
ids, sampler log-probs, rewards, trajectories; JSON, never pickle), so a resumed run trains on exactly
those. Regenerating them instead would need the older weights they were played by saved beside the
checkpoint's, and an engine that samples bit for bit alike after a restart, which vLLM does not promise.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch

from ftkit.engine import HFEngine
from ftkit.errors import ConfigError
from ftkit.rl.rollout import Episode, RolloutBatch
from ftkit.rl.sequences import EpisodeTokens
from ftkit.rl.update import step_seed
from gyms.runner import Trajectory, Turn, to_jsonable

# play(step, options, generator) -> the batch for `step` (the trainer's rollout, run in the background)
PlayFn = Callable[[int, Any, torch.Generator], RolloutBatch]


class AsyncRollouts:
    """The background sampler: `batch, version = rollouts.take(step, policy, options)` at every step.

    `engine` samples from weights of its own (`own_weights_engine`); `play` runs one step's rollout with
    it. `threads` torch intra-op threads are split between the background thread and the training thread,
    which should take `training_threads` while they run side by side (each thread has its own count).
    """

    def __init__(self, engine, play: PlayFn, steps_ahead: int, max_steps: int, *, seed: int, rank: int,
                 device: torch.device | str = "cpu", threads: int = 1):
        self.engine = engine
        self.play = play
        self.ahead = steps_ahead
        self.max_steps = max_steps
        self.seed, self.rank, self.device = seed, rank, torch.device(device)
        self.training_threads, sampler_threads = split_threads(threads)
        # One worker: batches are played one after another, in step order, by weights synced in between.
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="ftkit-rollout", initializer=torch.set_num_threads,
                                           initargs=(sampler_threads,))
        self.pending: dict[int, tuple[int, Future]] = {}  # step -> (policy version that plays it, its batch)
        self.synced: int | None = None  # the policy version the sampler's weights were last synced to

    def take(self, step: int, policy, options: Any) -> tuple[RolloutBatch, int]:
        """The batch for `step` and the policy version it was played by (waiting for it if need be).

        At step 0 and every `steps_ahead`-th step, the sampler then gets the policy's weights and the
        next batches to play; `options` are the gym's reset options for them (a curriculum's level).
        """
        if step not in self.pending:  # step 0, or a resume from a checkpoint written without these batches
            self._sync(policy, step)
            self._submit(step, step, options)
        version, future = self.pending.pop(step)
        batch = future.result()
        later = range(step + 1, min(step + self.ahead, self.max_steps - 1) + 1)
        if step % self.ahead == 0 and later:
            self._sync(policy, step)
            for ahead in later:
                self._submit(ahead, step, options)
        return batch, version

    def _sync(self, policy, version: int) -> None:
        """Give the sampler the policy's weights (version `version`), once it has played what it was given."""
        for _, waiting in self.pending.values():  # the sampler must be idle to take new weights
            waiting.result()
        if self.synced != version:
            self.engine.sync_weights(policy)
            self.synced = version

    def _submit(self, step: int, version: int, options: Any) -> None:
        generator = torch.Generator(device=self.device).manual_seed(step_seed(self.seed, step, self.rank))
        self.pending[step] = (version, self.executor.submit(self.play, step, options, generator))

    def in_flight(self) -> list[dict[str, Any]]:
        """The batches played ahead for the steps still to come, as JSON-ready dicts (for a checkpoint);
        waits until the sampler has finished them."""
        return [{"step": step, "version": version, "batch": batch_to_dict(future.result())}
                for step, (version, future) in sorted(self.pending.items())]

    def restore(self, entries: list[dict[str, Any]], tokenizer) -> None:
        """Take back the batches `in_flight()` returned (read from a checkpoint)."""
        for entry in entries:
            done: Future = Future()
            done.set_result(batch_from_dict(entry["batch"], tokenizer))
            self.pending[int(entry["step"])] = (int(entry["version"]), done)

    def close(self) -> None:
        """Stop the background thread: the batch being played is finished, those queued are dropped."""
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.pending.clear()


def split_threads(total: int) -> tuple[int, int]:
    """(training thread's, sampler's) torch intra-op threads: `total` shared, at least one each.

    Two threads each asking for every core would run more OpenMP threads than there are cores, and a team
    member that loses its core holds the rest of its team at the next barrier: on the 2-core machine this
    was written on, loaded by other jobs, the arithmetic recipe took 2.5 s per step with 2 threads and 0.5 s
    with 1 (bench/rl_async.py).
    """
    sampler = max(1, total // 2)
    return max(1, total - sampler), sampler


class CopiedPolicyEngine(HFEngine):
    """The Hugging Face engine on a copy of the policy, synced by copying: `CopiedPolicyEngine(policy, tok)`.

    Only trainable tensors are copied; frozen ones (a LoRA base model, QLoRA's 4-bit weights, buffers)
    are shared with the policy, which never writes them. Give it a tokenizer no other thread uses.
    """

    def __init__(self, policy, tokenizer, batch_size: int = 64, loop: str = "auto"):
        super().__init__(policy_copy(policy), tokenizer, batch_size=batch_size, loop=loop)

    def sync_weights(self, model) -> None:
        """Copy the policy's trainable weights into the sampler's copy (call while it is not sampling)."""
        own = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, param in model.named_parameters():
                if param.requires_grad:
                    own[name].copy_(param)


def policy_copy(policy):
    """A copy of `policy` for sampling: its trainable tensors copied, its frozen ones shared, no gradients."""
    frozen = [t for t in itertools.chain(policy.parameters(), policy.buffers()) if not t.requires_grad]
    sampler = copy.deepcopy(policy, memo={id(t): t for t in frozen})
    return sampler.requires_grad_(False)


def own_weights_engine(engine, policy, tokenizer, batch_size: int):
    """The engine asynchronous rollouts sample with: vLLM's (weights of its own) as it is; for the Hugging
    Face engine, which samples from the training model itself, one on a copy of the policy."""
    if not isinstance(engine, HFEngine):
        return engine
    own = CopiedPolicyEngine(policy, tokenizer, batch_size=batch_size, loop=engine.loop)
    if not own.uses_lean_loop():
        from ftkit import decode

        raise ConfigError(f"rollout.async_steps: this model samples through model.generate "
                          f"({decode.unsupported(policy)}), which draws from torch's global random generator "
                          "and cannot give each step's batch its own: set rollout.async_steps: 0")
    return own


def copy_bytes(engine, policy) -> int:
    """Bytes the sampler's own copy adds beside the policy: its tensors that the policy does not share."""
    if not isinstance(engine, CopiedPolicyEngine):
        return 0
    shared = {t.data_ptr() for t in itertools.chain(policy.parameters(), policy.buffers())}
    return sum(t.numel() * t.element_size() for t in itertools.chain(engine.model.parameters(), engine.model.buffers())
               if t.data_ptr() not in shared)


# -- batches as JSON, for checkpoints ---------------------------------------------------------------------

_BATCH_FIELDS = ("generated_tokens", "seconds", "context_cuts", "model_scores", "gen_batches", "padded_groups",
                 "generate_seconds", "replayed_seeds")


def batch_to_dict(batch: RolloutBatch) -> dict[str, Any]:
    """Everything a step reads from its batch, as plain JSON values (floats keep every bit: JSON writes
    Python's shortest repr, which reads back to the same float)."""
    return {"episodes": [episode_to_dict(e) for e in batch.episodes],
            "dropped": [episode_to_dict(e) for e in batch.dropped],
            **{name: getattr(batch, name) for name in _BATCH_FIELDS}}


def batch_from_dict(data: dict[str, Any], tokenizer) -> RolloutBatch:
    return RolloutBatch(episodes=[episode_from_dict(e, tokenizer) for e in data["episodes"]],
                        dropped=[episode_from_dict(e, tokenizer) for e in data["dropped"]],
                        **{name: data[name] for name in _BATCH_FIELDS if name in data})


def episode_to_dict(episode: Episode) -> dict[str, Any]:
    t = episode.tokens
    return {"group": episode.group, "reward_positions": [list(p) for p in episode.reward_positions],
            "cut_actions": episode.cut_actions, "masked_actions": episode.masked_actions,
            "tokens": {"chat": t.chat, "system_prompt": t.system_prompt, "input_ids": t.input_ids,
                       "policy_mask": t.policy_mask, "logprobs": t.logprobs, "messages": t.messages,
                       "last_action": t._last_action},
            "trajectory": to_jsonable(dataclasses.asdict(episode.trajectory))}


def episode_from_dict(data: dict[str, Any], tokenizer) -> Episode:
    tokens = dict(data["tokens"])
    last_action = tokens.pop("last_action")
    trajectory = dict(data["trajectory"])
    trajectory["turns"] = [Turn(**turn) for turn in trajectory["turns"]]
    return Episode(trajectory=Trajectory(**trajectory),
                   tokens=EpisodeTokens(tokenizer, **tokens, _last_action=last_action),
                   group=data["group"], reward_positions=[tuple(p) for p in data["reward_positions"]],
                   cut_actions=data["cut_actions"], masked_actions=data["masked_actions"])
