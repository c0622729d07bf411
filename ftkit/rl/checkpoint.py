"""Resumable RL checkpoints: checkpoints/checkpoint-<step>/ holds the policy's weights (model/ or
adapter/), PPO's value head, the optimizer, the schedule, every random generator and the run's state,
and with asynchronous rollouts the batches already played for the steps to come (in_flight.json). Under
DeepSpeed the optimizer's state is split over the processes: it is in deepspeed/, as the engine writes it
(each process its shard), instead of optimizer.pt, and a run resumes with the launch config it started with.

    ftkit rl recipes/grpo_arithmetic.yaml --resume      # continues from the last complete checkpoint

Each checkpoint is written into a staging folder and renamed into place (`ftkit.runs.save_folder_atomic`),
with trainer_state.json written last, so a kill at any moment leaves the previous checkpoint whole.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ftkit.errors import TrainingError
from ftkit.rl.distributed import whole_weights, zero_stage
from ftkit.runs import checkpoints, last_complete_checkpoint, save_folder_atomic

if TYPE_CHECKING:
    from ftkit.rl.learner import Learner

CHECKPOINT_STATE = "trainer_state.json"  # written last: a checkpoint without it is incomplete
IN_FLIGHT = "in_flight.json"  # asynchronous rollouts: each process's batches played ahead (JSON, not pickle)
DEEPSPEED_STATE = "deepspeed"  # under DeepSpeed: the engine's checkpoint (optimizer shards), tag DEEPSPEED_TAG
DEEPSPEED_TAG = "state"


def weights_name(method: str) -> str:
    """The folder the policy is saved in: model/ (full fine-tuning) or adapter/ (LoRA, QLoRA)."""
    return "model" if method == "full" else "adapter"


class Checkpoints:
    """The run's checkpoints folder: `save` every N steps, keeping `keep`; `latest` and `restore` to resume."""

    def __init__(self, accelerator, run_dir: Path, method: str, keep: int):
        self.accelerator = accelerator
        self.folder = run_dir / "checkpoints"
        self.weights_name = weights_name(method)
        self.keep = keep

    def save(self, step: int, learner: Learner, tokenizer, state: dict[str, Any],
             in_flight: list[dict[str, Any]] | None = None) -> None:
        """Write checkpoint-<step> (the main process writes, every process waits) and drop old ones.

        `in_flight` is this process's batches played ahead by asynchronous rollouts
        (`AsyncRollouts.in_flight`), None without them."""
        self.accelerator.wait_for_everyone()
        # Every process's generators, in rank order: each process draws from its own streams, and the
        # main process's alone would hand every other process the main one's on resume.
        rng_states = self.from_every_process(rng_state())
        batches = self.from_every_process(in_flight) if in_flight is not None else None
        shards = self._deepspeed_shards(step, learner)
        with whole_weights(self.accelerator, learner.model) as policy:  # ZeRO-3: every process gathers
            if self.accelerator.is_main_process:
                def write(folder: Path) -> None:
                    save_policy(folder / self.weights_name, policy, tokenizer)
                    save_value_head(self.accelerator, learner.value_head, folder)
                    if shards is None:
                        torch.save(learner.optimizer.state_dict(), folder / "optimizer.pt")
                    else:
                        os.replace(shards, folder / DEEPSPEED_STATE)
                    torch.save(learner.scheduler.state_dict(), folder / "scheduler.pt")
                    torch.save(rng_states, folder / "rng.pt")
                    if batches is not None:  # a list per process, in rank order
                        (folder / IN_FLIGHT).write_text(json.dumps(batches))
                    (folder / CHECKPOINT_STATE).write_text(json.dumps({"step": step, **state}, indent=2) + "\n")

                save_folder_atomic(self.folder / f"checkpoint-{step}", write)
                for old in checkpoints(self.folder)[: -self.keep]:
                    shutil.rmtree(old, ignore_errors=True)
        self.accelerator.wait_for_everyone()

    def _deepspeed_shards(self, step: int, learner: Learner) -> Path | None:
        """Under DeepSpeed, the folder the engine wrote its checkpoint to (None without DeepSpeed).

        Only the engine knows how the optimizer's state is split, so every process writes its shard with
        `save_checkpoint`, into a folder beside the checkpoint's that the main process then moves in whole:
        the checkpoint stays all-or-nothing."""
        if zero_stage(self.accelerator) is None:
            return None
        shards = self.folder / f".deepspeed-{step}"
        learner.model.save_checkpoint(str(shards), tag=DEEPSPEED_TAG, save_latest=False)
        self.accelerator.wait_for_everyone()
        return shards

    def from_every_process(self, value: Any) -> list[Any]:
        """[`value` of process 0, of process 1, ...] on the main process (every process must call it)."""
        from accelerate.utils import gather_object

        return gather_object([value]) if self.accelerator.num_processes > 1 else [value]

    def own_entry(self, per_process: list[Any], what: str) -> Any:
        """This process's entry of a list saved in rank order (`from_every_process`)."""
        rank = self.accelerator.process_index
        if rank >= len(per_process):
            raise TrainingError(f"--resume: the checkpoint holds the {what} of {len(per_process)} processes, not "
                                f"of process {rank}: resume with as many processes as the run had")
        return per_process[rank]

    def in_flight(self, checkpoint: Path) -> list[dict[str, Any]]:
        """This process's batches played ahead when `checkpoint` was written ([] if it has none)."""
        path = checkpoint / IN_FLIGHT
        if not path.is_file():
            return []
        return self.own_entry(json.loads(path.read_text()), f"batches played ahead ({path})")

    def latest(self) -> Path:
        """The newest complete checkpoint, or a one-line error saying how to start over."""
        checkpoint = last_complete_checkpoint(self.folder)
        if checkpoint is None:
            raise TrainingError(f"--resume: no complete checkpoint in {self.folder}; run again "
                                "without --resume (and with --overwrite) to start over")
        return checkpoint

    def restore(self, checkpoint: Path, learner: Learner) -> dict[str, Any]:
        """Load the optimizer, schedule and random generators; returns the run's state ("step", ...).

        The weights were loaded with the model (`build_learner(..., checkpoint)`)."""
        state = json.loads((checkpoint / CHECKPOINT_STATE).read_text())
        self._restore_optimizer(checkpoint, learner)
        learner.scheduler.load_state_dict(_load(checkpoint / "scheduler.pt"))
        set_rng_state(own_rng_state(_load(checkpoint / "rng.pt"), self.accelerator.process_index))
        return state

    def _restore_optimizer(self, checkpoint: Path, learner: Learner) -> None:
        """The optimizer's state: optimizer.pt, or under DeepSpeed each process's shard (`_deepspeed_shards`)."""
        shards = checkpoint / DEEPSPEED_STATE
        deepspeed = zero_stage(self.accelerator) is not None
        if deepspeed != shards.is_dir():
            written, now = ("under", "without") if shards.is_dir() else ("without", "under")
            raise TrainingError(f"--resume: {checkpoint} was written {written} DeepSpeed and this run is {now} it: "
                                "resume with the launch config the run started with")
        if not deepspeed:
            learner.optimizer.load_state_dict(_load(checkpoint / "optimizer.pt"))
            return
        # The weights were loaded with the model already; the engine's schedule is ftkit's (scheduler.pt).
        loaded, _ = learner.model.load_checkpoint(str(shards), tag=DEEPSPEED_TAG, load_optimizer_states=True,
                                                  load_lr_scheduler_states=False)
        if loaded is None:
            raise TrainingError(f"--resume: DeepSpeed could not read its state in {shards}: resume with the "
                                "launch config (ZeRO stage, process count) the run started with")


def _load(path: Path) -> Any:
    """A saved state, read onto the CPU: saved from the main process's GPU, the optimizer's moments would
    otherwise all land on that one GPU, once per process (`load_state_dict` moves them to each
    parameter's own device)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def save_policy(folder: Path, policy, tokenizer) -> None:
    """A standard Hugging Face folder: the weights (or adapter) and the tokenizer."""
    policy.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def save_value_head(accelerator, value_head, folder: Path) -> None:
    """PPO's value head as value_head.safetensors in `folder` (nothing without one)."""
    if value_head is None:
        return
    from safetensors.torch import save_file

    head = accelerator.unwrap_model(value_head)
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, folder / "value_head.safetensors")


def rng_state() -> dict[str, Any]:
    """This process's random generators (torch's, its GPU's, Python's and NumPy's) as tensors and plain
    lists, so `torch.load(weights_only=True)` reads them."""
    import numpy as np

    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {"torch": torch.get_rng_state(), "python": [version, list(internal), gauss],
             "numpy": [name, torch.from_numpy(keys.astype("int64")), pos, has_gauss, cached]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()  # the current device: the one this process trains on
    return state


def own_rng_state(saved: dict[str, Any] | list[dict[str, Any]], rank: int) -> dict[str, Any]:
    """Process `rank`'s generators from rng.pt: a list in rank order, or one dict (checkpoints written
    before each process's were kept). A process the checkpoint had none for takes the main one's."""
    states = saved if isinstance(saved, list) else [saved]
    return states[rank] if rank < len(states) else states[0]


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np

    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype("uint32"), pos, has_gauss, cached))
