"""Trainer callbacks: progress bar, metrics file, NaN guard and held-out accuracy during training.

    ftkit sft recipes/gpt2_math.yaml   # the progress bar and runs/gpt2_math/metrics.jsonl come from here

They hook into `transformers.Trainer` (which TRL's SFTTrainer is), so the same callbacks serve every
trainer built on it.
"""

from __future__ import annotations

import math
import time
from typing import Any

from rich.console import Console
from transformers import TrainerCallback

from ftkit.errors import TrainingError
from ftkit.progress import StepProgress
from ftkit.runs import MetricsLog


class ProgressCallback(TrainerCallback):
    """A rich progress bar with loss, tokens/s and time left; off a terminal, a plain line at most every
    FTKIT_PROGRESS_SECONDS (`ftkit.progress`), so a long run's log stays readable."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.progress: StepProgress | None = None
        self.tokens_per_s = 0.0
        self._last: tuple[float, float] | None = None  # (time, cumulative tokens) at the last log

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:  # one bar for a multi-process run, from the main process
            return
        self.progress = StepProgress(self.console, "train", total=state.max_steps, done=state.global_step)
        self.progress.start()

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "num_tokens" in logs:
            now, tokens = time.perf_counter(), float(logs["num_tokens"])
            if self._last is not None and now > self._last[0] and tokens > self._last[1]:
                self.tokens_per_s = (tokens - self._last[1]) / (now - self._last[0])
            self._last = (now, tokens)
        if "loss" not in logs or self.progress is None:
            return
        self.progress.update(state.global_step, f"loss {logs['loss']:.4f}  {self.tokens_per_s:,.0f} tok/s")

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class MetricsCallback(TrainerCallback):
    """Writes every log (loss, learning rate, token accuracy, eval results...) to metrics.jsonl."""

    def __init__(self, log: MetricsLog):
        self.log = log
        self.started = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero:  # only the main process writes the run folder
            return
        record: dict[str, Any] = {"step": state.global_step, "epoch": state.epoch,
                                  "time_s": round(time.perf_counter() - self.started, 3)}
        record.update(logs or {})
        self.log.append(record)


class NanGuard(TrainerCallback):
    """Stops with a clear message as soon as the logged loss is NaN or infinite.

    Checkpoints saved before that point stay intact, so the run can resume with a lower learning rate.
    """

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if isinstance(loss, float) and not math.isfinite(loss):
            raise TrainingError(
                f"the training loss became {loss} at step {state.global_step}: lower train.learning_rate "
                f"(now {args.learning_rate:g}) or train.max_grad_norm, then --resume from the last checkpoint"
            )


class HeldoutAccuracyCallback(TrainerCallback):
    """Scores exact-match accuracy on held-out gym problems every N steps (for the accuracy curve).

    With stop conditions (`eval.stop_when` in a recipe), training ends at the first of these evaluations
    where every condition holds: the accuracy it watches (all problems, or one difficulty) is at least
    its `min_accuracy`. The decision is made on the main process and shared, so every process of a
    distributed run stops at the same step.
    """

    def __init__(self, every_steps: int, score_fn, log: MetricsLog, stop_when=(), console: Console | None = None,
                 after=None):
        self.every_steps = every_steps
        # model -> (accuracy on all scored problems, {label: accuracy} for each stop condition's label), and
        # optionally a third item: more fields for the record (each difficulty group's accuracy)
        self.score_fn = score_fn
        self.after = after  # called with each evaluation's record once it is logged (trackers, report.html)
        self.log = log
        self.stop_when = list(stop_when)  # ftkit.config.StopCondition
        self.console = console or Console(stderr=True, highlight=False)
        self.stopped_at: dict[str, Any] | None = None  # the step and accuracies that ended training early

    def on_step_end(self, args, state, control, model=None, **kwargs):
        last_step = state.global_step >= state.max_steps  # the final evaluation covers it
        if state.global_step % self.every_steps or last_step:
            return
        stop = False
        if state.is_world_process_zero:
            accuracy, watched, *more = self.score_fn(model)
            fields = more[0] if more else {}
            record = {"step": state.global_step, "epoch": state.epoch, "heldout_accuracy": accuracy,
                      **{f"heldout_accuracy {label}": a for label, a in watched.items()}, **fields}
            self.log.append(record)
            stop = bool(self.stop_when) and all(a >= c.min_accuracy for c, a in zip(self.stop_when, watched.values()))
            if stop:
                self._announce_stop(state.global_step, watched)
            if self.after is not None:
                self.after(record)
        if self.stop_when and _share_from_main(stop):
            control.should_training_stop = True

    def _announce_stop(self, step: int, watched: dict[str, float]) -> None:
        self.stopped_at = {"step": step, "accuracy": watched}
        met = ", ".join(f"{label} {a:.1%} >= {c.min_accuracy:.0%}" for (label, a), c in zip(watched.items(), self.stop_when))
        self.console.print(f"stopping at step {step}: eval.stop_when holds (held-out accuracy {met})")
        for (label, a), c in zip(watched.items(), self.stop_when):
            if a > c.max_accuracy:
                self.console.print(f"[bold yellow]warning:[/] {label} {a:.1%} is past its max_accuracy "
                                   f"{c.max_accuracy:.0%}: the band was overshot between two evaluations; "
                                   "lower eval.every_steps to check more often")


def _share_from_main(flag: bool) -> bool:
    """The main process's `flag` on every process (a no-op without torch.distributed)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    box = [flag]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])
