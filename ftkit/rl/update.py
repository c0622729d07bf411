"""One RL update: score the rollout batch, ask the objective for advantages, then minimise its loss over
`num_iterations` passes of minibatches, each one optimizer step made of accumulated micro-batches.

    python -c "from ftkit.rl.update import Update; help(Update.__call__)"

Losses are normalised over the whole minibatch of every process (its policy tokens for loss_type
"dapo", its episodes for "grpo"), so neither `per_device_train_batch_size` nor the number of processes
changes the update.

Each update logs where its time went: score_s (passes without gradient before it), forward_s (with the
loss), backward_s and optimizer_s (clipping and the step).

Every update also measures how far the engine's sampling log-probs are from the trainer's own
(`ftkit/rl/correction.py`: sampler_logprob_diff_mean and _max, sampler_kl in metrics.jsonl) and, with
`rollout.importance_sampling` tis or mis, weights each token's policy-gradient term to correct for it.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

import torch

from ftkit.errors import TrainingError
from ftkit.rl import algorithms as alg
from ftkit.rl import correction
from ftkit.rl.distributed import zero_stage
from ftkit.rl.objectives import LossInputs, Objective, ScoredBatch
from ftkit.rl.policy import forward_tokens, pad_episodes
from ftkit.vllm_engine import resolve_engine

if TYPE_CHECKING:
    from ftkit.rl.config import RLRecipe
    from ftkit.rl.learner import Learner
    from ftkit.rl.rollout import Episode


def step_seed(seed: int, step: int, rank: int) -> int:
    """The seed of one process's step: sampling and minibatch order replay exactly after a resume."""
    return (seed * 1_000_003 + step * 9_973 + rank) % (2**63)


class Update:
    """Trains `learner` on rollout batches with `objective`: `stats = update(episodes, step)`."""

    def __init__(self, accelerator, learner: Learner, objective: Objective, recipe: RLRecipe, pad_id: int):
        self.accelerator = accelerator
        self.learner = learner
        self.objective = objective
        self.train = recipe.train
        self.temperature = recipe.rollout.temperature
        self.seed = recipe.seed
        self.pad_id = pad_id
        rollout = recipe.rollout
        self.correction = correction.resolve_mode(rollout.importance_sampling, resolve_engine(rollout.engine),
                                                  rollout.async_steps)
        self.cap = rollout.importance_sampling_cap
        self.mismatch = correction.Mismatch(self.cap)  # a fresh one for each call
        self.seconds: dict[str, float] = {}  # where this call's time went (see `_timed`)
        # Under DeepSpeed the engine clips and steps inside the backward that ends a step (see `_backward`).
        self.deepspeed = zero_stage(accelerator) is not None

    def __call__(self, episodes: list[Episode], step: int) -> dict[str, Any]:
        """Advantages, then the clipped loss over minibatches; returns the update's mean statistics."""
        device = self.accelerator.device
        self.seconds = dict.fromkeys(("score_s", "forward_s", "backward_s", "optimizer_s"), 0.0)
        tensors = {k: v.to(device) for k, v in pad_episodes(episodes, self.pad_id).items()}
        rewards = torch.tensor([e.reward for e in episodes], device=device)
        with self._timed("score_s"):
            scored = self.score(episodes, tensors, rewards)
        advantages, returns = self.objective.advantages(scored)
        self.mismatch = correction.Mismatch(self.cap)
        if scored.old_logprobs is not None:  # every row was scored before the update: measure them all, once
            self.mismatch.add(scored.old_logprobs, tensors["sample_logprobs"], tensors["loss_mask"])

        totals: dict[str, float] = {}
        trained_tokens = skipped = 0
        n, minibatch, iterations = len(episodes), self.learner.minibatch, self.train.num_iterations
        generator = torch.Generator().manual_seed(step_seed(self.seed, step, 0))
        for _ in range(iterations):
            order = torch.randperm(n, generator=generator).tolist()
            for start in range(0, n, minibatch):
                rows = order[start : start + minibatch]
                run = self.rows_to_run(rows, scored, advantages)
                for key, value in self._optimizer_step(rows, run, scored, advantages, returns, step).items():
                    totals[key] = totals.get(key, 0.0) + value
                trained_tokens += int(tensors["attention_mask"][run].sum())
                skipped += len(rows) - len(run)
        count = iterations * math.ceil(n / minibatch)
        stats = {key: value / count for key, value in totals.items()}
        stats["lr"] = self.learner.scheduler.get_last_lr()[0]
        stats["skipped_episodes"] = skipped / (iterations * n)
        stats["_trained_tokens"] = trained_tokens
        stats.update(self.mismatch_stats())
        stats.update(self.seconds)
        return stats

    @contextmanager
    def _timed(self, key: str):
        """Add the block's seconds to `self.seconds[key]`, logged as where the update's time went: score_s
        (passes without gradient before the update), forward_s (with the loss), backward_s, optimizer_s
        (clipping and the step). On a GPU the device is synchronised first, so that a phase is not
        billed for the kernels of the one before."""
        if self.accelerator.device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        yield
        if self.accelerator.device.type == "cuda":
            torch.cuda.synchronize()
        self.seconds[key] += time.perf_counter() - started

    def mismatch_stats(self) -> dict[str, float]:
        """The sampler-trainer mismatch of this update, over every process (`correction.Mismatch`).

        Its tokens are every policy token when the batch was scored before the update (PPO, or more than
        one optimizer step per rollout); otherwise, those of the episodes the update computed, which
        leaves out the groups of equal rewards that `rows_to_run` skips (measuring them would cost the
        forward pass the skipping saves). The capped fraction is logged only when a correction uses it.
        """
        accelerator = self.accelerator
        sum_all = max_all = None
        if accelerator.num_processes > 1:
            def sum_all(t: torch.Tensor) -> torch.Tensor:
                return accelerator.reduce(t.to(accelerator.device), reduction="sum").cpu()

            def max_all(t: torch.Tensor) -> torch.Tensor:
                return accelerator.gather(t.to(accelerator.device).reshape(1)).max().cpu()

        stats = self.mismatch.stats(sum_all, max_all)
        if self.correction == "none":
            stats.pop("importance_sampling_capped_fraction", None)
        return stats

    def rows_to_run(self, rows: list[int], scored: ScoredBatch, advantages: torch.Tensor) -> list[int]:
        """The rows of a minibatch whose loss can have a gradient, shortest first.

        With no KL term and no value loss, an episode whose advantage is 0 at every token (a GRPO or
        RLOO group whose rewards were all equal) adds exactly 0 to the loss and to its gradient, whatever
        its ratio: its forward and backward passes are skipped. Late in a run most groups are all right
        (and early on all wrong), so this is often a third to a half of the update's time. The loss is
        still divided by every row's count, so the gradient is the same as without skipping. One row
        always runs, so the optimizer (and DDP's all-reduce) sees a gradient at every step.
        Rows are sorted by length so that micro-batches of similar lengths pad little.
        """
        lengths = scored.tensors["attention_mask"].sum(dim=1)
        if self.objective.zero_advantage_is_zero_loss and scored.ref_logprobs is None:
            nonzero = (advantages[rows] != 0).reshape(len(rows), -1).any(dim=1).tolist()
            rows = [row for row, keep in zip(rows, nonzero) if keep] or rows[:1]
        return sorted(rows, key=lambda row: int(lengths[row]))

    def score(self, episodes: list[Episode], tensors: dict[str, torch.Tensor], rewards: torch.Tensor) -> ScoredBatch:
        """Log-probs and values before the update, and the reference's log-probs, without gradient.

        With one optimizer step per rollout (GRPO/RLOO's default) the "old" policy is the current one,
        so its log-probs come from the training forward pass itself (detached) and this pass is skipped.
        """
        one_update = self.train.num_iterations == 1 and self.learner.minibatch >= len(episodes)
        need_old = self.objective.needs_old_logprobs or self.objective.needs_value_head or not one_update
        need_ref = self.objective.needs_reference
        old, values, ref = [], [], []
        micro = self.train.per_device_train_batch_size
        with torch.no_grad():
            for start in range(0, len(episodes) if need_old or need_ref else 0, micro):
                ids = tensors["input_ids"][start : start + micro]
                attn = tensors["attention_mask"][start : start + micro]
                mask = tensors["loss_mask"][start : start + micro]
                if need_old:
                    with self.accelerator.autocast():
                        lp, _, v = forward_tokens(self.learner.model, ids, attn, self.temperature,
                                                  self.learner.value_head, loss_mask=mask)
                    old.append(lp)
                    values.append(v)
                if need_ref:
                    ref.append(self._reference_logprobs(ids, attn, mask))
        cat = lambda xs: torch.cat(xs) if xs and xs[0] is not None else None  # noqa: E731
        return ScoredBatch(episodes, tensors, rewards, old_logprobs=cat(old), old_values=cat(values),
                           ref_logprobs=cat(ref), mean_std=self.mean_std)

    def _reference_logprobs(self, ids: torch.Tensor, attn: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with self.accelerator.autocast():
            if self.learner.ref_model is not None:
                return forward_tokens(self.learner.ref_model, ids, attn, self.temperature, loss_mask=mask)[0]
            with self.accelerator.unwrap_model(self.learner.model).disable_adapter():  # LoRA: the base model
                return forward_tokens(self.learner.model, ids, attn, self.temperature, loss_mask=mask)[0]

    def mean_std(self, x: torch.Tensor, mask: torch.Tensor, unbiased: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std of x over the masked entries of every process (whitening must not depend on the layout)."""
        accelerator = self.accelerator
        all_reduce = (lambda t: accelerator.reduce(t, reduction="sum")) if accelerator.num_processes > 1 else None
        return alg.masked_mean_std(x, mask, unbiased, all_reduce)

    def _optimizer_step(self, rows: list[int], run: list[int], scored: ScoredBatch, advantages: torch.Tensor,
                        returns: torch.Tensor | None, step: int) -> dict[str, float]:
        """One optimizer step over the minibatch `rows`, of which the rows `run` are computed (see
        `rows_to_run`), in micro-batches whose gradients accumulate."""
        t, accelerator = self.train, self.accelerator
        mask_all = scored.tensors["loss_mask"]
        per_token = self.objective.aggregation == "token"
        denominator = float(mask_all[rows].sum()) if per_token else float(len(rows))
        if accelerator.num_processes > 1:
            # DDP averages the processes' gradients; dividing by the mean count over processes (not this
            # process's own) makes that average the mean over every token of the global minibatch.
            count = torch.tensor([denominator], device=accelerator.device)
            denominator = float(accelerator.reduce(count, reduction="mean"))
        sums: dict[str, float] = {}
        ran = 0.0  # the share of the denominator computed: logged statistics are means over those rows
        size = t.per_device_train_batch_size
        micros = [run[i : i + size] for i in range(0, len(run), size)]
        for k, micro in enumerate(micros):
            sync = k == len(micros) - 1  # all-reduce gradients across processes only once per step
            with nullcontext() if sync else accelerator.no_sync(self.learner.model):
                with self._timed("forward_s"):
                    loss, stats = self._micro_loss(micro, scored, advantages, returns)
                weight = float(mask_all[micro].sum()) if per_token else float(len(micro))
                with self._timed("backward_s"):
                    self._backward(loss * weight / max(denominator, 1.0), last=sync)
            ran += weight / max(denominator, 1.0)
            for key, value in stats.items():
                sums[key] = sums.get(key, 0.0) + value * weight / max(denominator, 1.0)
        for key in sums:  # the skipped rows' loss is exactly 0; the other statistics are over computed rows
            if key not in ("loss", "policy_loss"):
                sums[key] /= max(ran, 1e-12)
        with self._timed("optimizer_s"):
            return self._apply(sums, step)

    def _backward(self, loss: torch.Tensor, last: bool) -> None:
        """The backward pass of one micro-batch; `last`: the optimizer step's last one.

        Under DeepSpeed, Accelerate's `sync_gradients` marks the engine's accumulation boundary: at the last
        micro-batch the engine reduces the gradients, clips them to max_grad_norm and steps the optimizer,
        inside this backward (`ftkit/rl/distributed.py` gave it the recipe's values). Each loss is already
        divided by the whole minibatch's size, so the engine must not divide it by its accumulation count.
        """
        if not self.deepspeed:
            self.accelerator.backward(loss)
            return
        self.accelerator.sync_gradients = last
        self.accelerator.backward(loss, scale_wrt_gas=False)

    def _apply(self, sums: dict[str, float], step: int) -> dict[str, float]:
        """Clip the accumulated gradient and step the optimizer, unless the loss is not a number.

        Under DeepSpeed the engine has clipped and stepped in the last backward (`_backward`), so the step's
        time counts as backward_s; here the engine's gradient norm is read, the optimizer's step is a no-op,
        the schedule steps, and a loss that is not a number still stops the run with the same error.
        """
        optimizer, t = self.learner.optimizer, self.train
        params = [p for group in optimizer.param_groups for p in group["params"]]
        sums["grad_norm"] = float(self.accelerator.clip_grad_norm_(params, t.max_grad_norm))
        if not math.isfinite(sums["loss"]) or not math.isfinite(sums["grad_norm"]):
            raise TrainingError(f"the RL loss became {sums['loss']} (grad norm {sums['grad_norm']}) at step "
                                f"{step + 1}: lower train.learning_rate (now {t.learning_rate:g}), then "
                                "--resume from the last checkpoint")
        optimizer.step()
        self.learner.scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return sums

    def _micro_loss(self, rows: list[int], scored: ScoredBatch, advantages: torch.Tensor,
                    returns: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, float]]:
        # The batch is padded to its longest episode; this micro-batch only to its own longest.
        length = int(scored.tensors["attention_mask"][rows].sum(dim=1).max())

        def pick(x: torch.Tensor | None, columns: int = length - 1) -> torch.Tensor | None:
            if x is None:
                return None
            x = x[rows]
            return x[:, :columns] if x.dim() == 2 else x

        ids, attn = (pick(scored.tensors[k], length) for k in ("input_ids", "attention_mask"))
        mask = pick(scored.tensors["loss_mask"])
        with self.accelerator.autocast():
            logprobs, entropy, values = forward_tokens(self.learner.model, ids, attn, self.temperature,
                                                       self.learner.value_head, with_entropy=True, loss_mask=mask)
        old = pick(scored.old_logprobs) if scored.old_logprobs is not None else logprobs.detach()
        sampled = pick(scored.tensors["sample_logprobs"])
        if scored.old_logprobs is None:  # not scored before the update: measure the rows computed here
            self.mismatch.add(old, sampled, mask)
        inputs = LossInputs(logprobs, old, mask, pick(advantages), ref_logprobs=pick(scored.ref_logprobs),
                            values=values, old_values=pick(scored.old_values), returns=pick(returns),
                            importance_weights=correction.importance_weights(old, sampled, self.correction, self.cap))
        loss, stats = self.objective.loss(inputs)
        stats["entropy"] = alg.masked_mean(entropy, mask).item()
        stats["loss"] = loss.item()
        return loss, stats
