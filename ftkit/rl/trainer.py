"""RL against a gym: GRPO, RLOO or PPO, full fine-tuning or LoRA, on Accelerate.

    ftkit rl --gym arithmetic                  # the recipes/grpo_arithmetic.yaml task, from runs/gpt2_math_lora/merged
    ftkit rl recipes/ppo_arithmetic.yaml train.steps=50
    accelerate launch -m ftkit rl recipes/grpo_arithmetic.yaml

One RL step, as `RLRun.step()` reads:

1. **Rollout.** Draw `prompts_per_step` problems and play each `group_size` times with the current
   policy, sampling through the generation engine (`ftkit/rl/rollout.py`). The gym scores every episode.
2. **Advantages.** How much better each episode (or, for PPO, each token) did than expected:
   GRPO and RLOO compare an episode with the others of its group; PPO asks its value head (GAE).
3. **Update.** Minimise the clipped policy-gradient loss (plus KL to the reference and, for PPO, the
   value loss) over `epochs` passes of minibatches, with gradient accumulation and clipping.

Around it: held-out evaluation before training and every N steps (the same scoring as `ftkit eval`),
metrics in metrics.jsonl, resumable checkpoints, curves and sample trajectories in the run folder.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from ftkit.config import recipe_to_yaml
from ftkit.errors import TrainingError
from ftkit.evaluate import EvalResult, evaluate_on_gym, heldout_problems, is_multi_turn, samples_markdown
from ftkit.models import count_parameters, load_model, load_tokenizer, lora_config, resolve_model
from ftkit.rl import algorithms as alg
from ftkit.rl.advice import REPEAT_EVERY, START_NOTES, accuracy_drop, advise
from ftkit.rl.config import RLRecipe
from ftkit.rl.curriculum import Curriculum
from ftkit.rl.policy import ValueHead, disable_dropout, forward_tokens, pad_episodes, token_rewards
from ftkit.rl.rollout import RolloutBatch, add_model_reward, collect
from ftkit.runs import (
    TRAINING_DATA_FILE,
    MetricsLog,
    checkpoints,
    last_complete_checkpoint,
    save_folder_atomic,
    start_run_folder,
    write_json_atomic,
    write_text_atomic,
)

CHECKPOINT_STATE = "trainer_state.json"  # written last: a checkpoint without it is incomplete


def main(recipe: RLRecipe, *, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Run an RL recipe end to end; returns the summary (also written to summary.json)."""
    return RLRun(recipe, resume=resume, overwrite=overwrite).run()


class RLRun:
    def __init__(self, recipe: RLRecipe, *, resume: bool = False, overwrite: bool = False,
                 console: Console | None = None):
        from accelerate import Accelerator

        self.recipe = recipe
        self.resume = resume
        self.overwrite = overwrite
        self.run_dir = recipe.run_dir
        self.accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=_mixed_precision(recipe))
        self.is_main = self.accelerator.is_main_process
        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True, quiet=not self.is_main)
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl")
        self.step = 0
        self.curriculum = Curriculum(**recipe.curriculum.model_dump()) if recipe.curriculum else None
        self.warned: dict[str, int] = {}
        self.eval_history: list[float] = []

    def run(self) -> dict[str, Any]:
        self._setup_task()  # first: a bad gym id or gym argument should leave no run folder behind
        self._setup_run_dir()
        try:
            self._setup_model()
            self._setup_optimizer()
        except Exception:
            if not self.resume and self.is_main:
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise
        if self.resume:
            self._load_checkpoint()
        self._announce()
        if self.step == 0:
            self.before = self.evaluate()
        started = time.perf_counter()
        self.train()
        self.wall_time_s = time.perf_counter() - started
        self.save_model()
        result = self.evaluate(final=True)
        summary = self.write_report(result)
        self.accelerator.end_training()  # without it, multi-process runs may abort at exit
        return summary

    # -- setup -------------------------------------------------------------------------------------

    def _setup_task(self) -> None:
        gym = self.recipe.gym
        self.multi_turn = is_multi_turn(gym.id, gym.kwargs)
        ev = self.recipe.eval
        self.heldout_prompts: set[str] = set()
        if ev.n and not self.multi_turn:  # multi-turn problems differ by seed, not by their first text
            self.heldout_prompts = {p["prompt"] for p in heldout_problems(gym.id, gym.kwargs, ev.n, ev.seed)}
        import gyms

        self.sampler_env = gyms.make(gym.id, **gym.kwargs)
        self.reward_scorer = None
        if self.recipe.reward_model is not None:
            from ftkit.preference import RewardScorer

            self.reward_scorer = RewardScorer.load(self.recipe.reward_model.path)

    def _setup_run_dir(self) -> None:
        if self.is_main:
            start_run_folder(self.run_dir, recipe_to_yaml(self.recipe), resume=self.resume, overwrite=self.overwrite)
        self.accelerator.wait_for_everyone()

    def _setup_model(self) -> None:
        r = self.recipe
        with self.accelerator.main_process_first():  # a scratch model is built once, then read by the others
            self.resolved = resolve_model(r.model, self.run_dir, seed=r.seed)
        self.tokenizer = load_tokenizer(self.resolved.path, r.model)
        checkpoint = self._resume_checkpoint() if self.resume else None
        full = r.method == "full"
        weights = str(checkpoint / "model") if checkpoint is not None and full else self.resolved.path
        model = load_model(weights, r.model, r.method, r.quantization)
        self.ref_model = None
        if full and r.train.kl_coef > 0:  # LoRA's reference is the same model with its adapters disabled
            self.ref_model = load_model(self.resolved.path, r.model, "full").eval().requires_grad_(False)
            self.ref_model.to(self.accelerator.device)
        if not full:
            model = self._add_adapters(model, checkpoint)
        disable_dropout(model)
        torch.manual_seed(r.seed)
        self.value_head = ValueHead(model.config.hidden_size) if r.algo == "ppo" else None
        if self.value_head is not None and checkpoint is not None:
            from safetensors.torch import load_file

            self.value_head.load_state_dict(load_file(checkpoint / "value_head.safetensors"))
        self.model = model
        trainable, total = count_parameters(model)
        self.params = {"trainable": trainable, "total": total}

    def _add_adapters(self, model, checkpoint: Path | None):
        from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training

        if self.recipe.method == "qlora":
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        if checkpoint is not None:
            return PeftModel.from_pretrained(model, checkpoint / "adapter", is_trainable=True)
        return get_peft_model(model, lora_config(self.recipe.lora))

    def _setup_optimizer(self) -> None:
        from transformers import get_scheduler

        t = self.recipe.train
        groups = [{"params": [p for p in self.model.parameters() if p.requires_grad], "lr": t.learning_rate}]
        if self.value_head is not None:
            groups.append({"params": list(self.value_head.parameters()),
                           "lr": t.value_learning_rate or t.learning_rate})
        self.optimizer = torch.optim.AdamW(groups, weight_decay=t.weight_decay)
        per_process = self._episodes_per_process()
        minibatch = min(t.minibatch_size or per_process, per_process)
        self.minibatch = minibatch
        optimizer_steps = t.steps * t.epochs * math.ceil(per_process / minibatch)
        # transformers' "constant" ignores num_warmup_steps; its warm-up twin is a separate name.
        schedule = "constant_with_warmup" if t.lr_schedule == "constant" and t.warmup_steps else t.lr_schedule
        self.scheduler = get_scheduler(schedule, self.optimizer, num_warmup_steps=t.warmup_steps,
                                       num_training_steps=optimizer_steps)
        prepared = self.accelerator.prepare(self.model, self.optimizer, self.scheduler,
                                            *([self.value_head] if self.value_head is not None else []))
        self.model, self.optimizer, self.scheduler = prepared[:3]
        if self.value_head is not None:
            self.value_head = prepared[3]
        from ftkit.vllm_engine import make_engine

        ro = self.recipe.rollout
        self.engine = make_engine(ro.engine, self.policy, self.tokenizer, batch_size=ro.batch_size,
                                  model_path=self.resolved.path, gpu_memory_utilization=ro.gpu_memory_utilization,
                                  seed=self.recipe.seed)

    @property
    def policy(self):
        """The model without Accelerate's wrappers: what generates, saves and is evaluated."""
        return self.accelerator.unwrap_model(self.model)

    def _episodes_per_process(self) -> int:
        world = self.accelerator.num_processes
        if self.recipe.rollout.prompts_per_step % world:
            raise TrainingError(f"rollout.prompts_per_step ({self.recipe.rollout.prompts_per_step}) must be a "
                                f"multiple of the number of processes ({world})")
        return self.recipe.rollout.prompts_per_step // world * self.recipe.rollout.group_size

    def _announce(self) -> None:
        c, r, resolved = self.console, self.recipe, self.resolved
        c.print(f"run folder: {self.run_dir}")
        if resolved.is_fallback:
            c.print(f"[bold yellow]FALLBACK:[/] {resolved.fallback_reason}; training {resolved.used} instead")
        c.print(f"model: {resolved.used} ({self.params['total'] / 1e6:.2f}M parameters, "
                f"{self.params['trainable'] / 1e6:.2f}M trainable, method {r.method})")
        c.print(f"{r.algo.upper()} on {r.gym.id} {r.gym.kwargs or ''}: {r.train.steps} steps of "
                f"{r.rollout.prompts_per_step} problems x {r.rollout.group_size} episodes"
                + (f", curriculum on {self.curriculum.option} {self.curriculum.levels}" if self.curriculum else ""))
        c.print(f"[dim]{START_NOTES[r.algo]}[/]")

    # -- the loop ----------------------------------------------------------------------------------

    def train(self) -> None:
        progress = _Progress(self.console, self.recipe.train.steps, self.step)
        limit = self.recipe.train.time_limit_minutes
        deadline = time.perf_counter() + limit * 60 if limit else math.inf
        with progress:
            while self.step < self.recipe.train.steps:
                if time.perf_counter() > deadline:
                    self.console.print(f"time limit of {limit:g} minutes reached at step {self.step}")
                    break
                stats = self.train_step()
                self.step += 1
                self._log(stats)
                progress.update(self.step, stats)
                if self.step % self.recipe.eval_every == 0 and self.step < self.recipe.train.steps:
                    self.evaluate()
                if self.step % self.recipe.train.save_every == 0 and self.step < self.recipe.train.steps:
                    self.save_checkpoint()

    def train_step(self) -> dict[str, Any]:
        """One RL step: rollout, advantages, update. Returns the step's metrics."""
        started = time.perf_counter()
        torch.manual_seed(_step_seed(self.recipe.seed, self.step, self.accelerator.process_index))
        batch = self.rollout()
        self._last_batch = batch
        update_started = time.perf_counter()
        stats = self.update(batch)
        self.engine.sync_weights(self.policy)  # vLLM samples from its own copy of the weights
        update_s = time.perf_counter() - update_started
        stats.update(_episode_stats(batch, self.recipe.rollout.group_size))
        stats["rollout_tokens_per_s"] = batch.tokens_per_s
        stats["train_tokens_per_s"] = stats.pop("_trained_tokens") / update_s if update_s else 0.0
        stats["rollout_s"], stats["update_s"] = batch.seconds, update_s
        stats["step_s"] = time.perf_counter() - started
        if self.curriculum is not None:
            stats["curriculum_level"] = self.curriculum.value
            if self.curriculum.update(stats["success_rate"]):
                self.console.print(f"curriculum: success rate passed {self.curriculum.threshold:.0%}, "
                                   f"{self.curriculum.option} -> {self.curriculum.value}")
        return stats

    def rollout(self) -> RolloutBatch:
        r = self.recipe
        from ftkit.engine import SamplingParams
        from ftkit.evaluate import context_length

        # The update recomputes every log-prob with the training forward pass (the "old" policy is the
        # policy before the update), so the engine need not return its sampling log-probs here.
        params = SamplingParams(max_new_tokens=r.rollout.max_new_tokens, temperature=r.rollout.temperature,
                                top_p=r.rollout.top_p, stop=tuple(r.rollout.stop), logprobs=False)
        seeds = self._training_seeds()
        options = [self.curriculum.options()] * len(seeds) if self.curriculum else None
        batch = collect(self.engine, self.tokenizer, r.gym.id, seeds, params, group_size=r.rollout.group_size,
                        env_kwargs=r.gym.kwargs, options=options, chat=r.gym.chat,
                        system_prompt=r.gym.system_prompt, max_turns=r.gym.max_turns,
                        max_context=context_length(self.policy),
                        format_reward_weight=r.rollout.format_reward_weight)
        if r.reward_model is not None:
            add_model_reward(batch, self.reward_scorer, self.tokenizer, weight=r.reward_model.weight,
                             verifier_weight=r.reward_model.verifier_weight)
        return batch

    def _training_seeds(self) -> list[int]:
        """This process's problems for this step: a fixed seed stream, skipping held-out prompts.

        Step s walks item indices s * 10**6, s * 10**6 + 1, ... of `gym.train_seed`, so a resumed run
        draws exactly the problems it would have drawn, and no training prompt is a held-out one.
        """
        from data_tools.gym_data import item_seed

        r = self.recipe
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        wanted = r.rollout.prompts_per_step
        options = self.curriculum.options() if self.curriculum else None
        seeds, index = [], self.step * 1_000_000
        while len(seeds) < wanted:
            seed = item_seed(r.gym.train_seed, index)
            index += 1
            if self.heldout_prompts:
                prompt, _ = self.sampler_env.reset(seed=seed, options=options)
                if prompt in self.heldout_prompts:
                    continue
            seeds.append(seed)
        per_process = wanted // world
        return seeds[rank * per_process : (rank + 1) * per_process]

    # -- the update --------------------------------------------------------------------------------

    def update(self, batch: RolloutBatch) -> dict[str, Any]:
        """Advantages, then the clipped loss over minibatches; returns loss statistics."""
        t, device = self.recipe.train, self.accelerator.device
        episodes = batch.episodes
        tensors = {k: v.to(device) for k, v in pad_episodes(episodes, self.tokenizer.pad_token_id).items()}
        rewards = torch.tensor([e.reward for e in episodes], device=device)
        scored = self._score(tensors)  # old log-probs, reference log-probs, old values (no gradient)
        advantages, returns = self._advantages(episodes, rewards, tensors, scored)

        totals: dict[str, float] = {}
        trained_tokens = 0
        n = len(episodes)
        generator = torch.Generator().manual_seed(_step_seed(self.recipe.seed, self.step, 0))
        for _ in range(t.epochs):
            order = torch.randperm(n, generator=generator).tolist()
            for start in range(0, n, self.minibatch):
                rows = order[start : start + self.minibatch]
                step_stats = self._optimizer_step(rows, tensors, advantages, returns, scored)
                for key, value in step_stats.items():
                    totals.setdefault(key, 0.0)
                    totals[key] += value
                trained_tokens += int(tensors["attention_mask"][rows].sum())
        count = t.epochs * math.ceil(n / self.minibatch)
        stats = {key: value / count for key, value in totals.items()}
        stats["lr"] = self.scheduler.get_last_lr()[0]
        stats["_trained_tokens"] = trained_tokens
        return stats

    def _score(self, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor | None]:
        """Log-probs and values before the update, and the reference's log-probs, without gradient.

        With one optimizer step per rollout (GRPO/RLOO's default) the "old" policy is the current one,
        so its log-probs come from the training forward pass itself (detached) and this pass is skipped.
        """
        t = self.recipe.train
        one_update = t.epochs == 1 and self.minibatch >= len(tensors["input_ids"])
        need_old = self.value_head is not None or not one_update
        need_ref = t.kl_coef > 0
        old, values, ref = [], [], []
        if not (need_old or need_ref):
            return {"old_logprobs": None, "old_values": None, "ref_logprobs": None}
        micro = t.micro_batch_size
        temperature = self.recipe.rollout.temperature
        with torch.no_grad():
            for start in range(0, len(tensors["input_ids"]), micro):
                ids = tensors["input_ids"][start : start + micro]
                attn = tensors["attention_mask"][start : start + micro]
                if need_old:
                    with self.accelerator.autocast():
                        lp, _, v = forward_tokens(self.model, ids, attn, temperature, self.value_head)
                    old.append(lp)
                    values.append(v)
                if need_ref:
                    ref.append(self._reference_logprobs(ids, attn, temperature))
        cat = lambda xs: torch.cat(xs) if xs and xs[0] is not None else None  # noqa: E731
        return {"old_logprobs": cat(old), "old_values": cat(values), "ref_logprobs": cat(ref)}

    def _reference_logprobs(self, ids, attn, temperature):
        with self.accelerator.autocast():
            if self.ref_model is not None:
                return forward_tokens(self.ref_model, ids, attn, temperature)[0]
            with self.policy.disable_adapter():  # LoRA: the base model is the reference
                return forward_tokens(self.model, ids, attn, temperature)[0]

    def _advantages(self, episodes, rewards, tensors, scored):
        """(advantages, returns): per episode (B,) for GRPO/RLOO, per token (B, L-1) for PPO."""
        r, t = self.recipe, self.recipe.train
        if r.algo == "grpo":
            return alg.group_advantages(rewards, r.rollout.group_size, scale=t.scale_rewards), None
        if r.algo == "rloo":
            return alg.rloo_advantages(rewards, r.rollout.group_size), None
        mask = tensors["loss_mask"]
        token_r = token_rewards(episodes, tensors["input_ids"].shape[1]).to(mask.device)
        if scored["ref_logprobs"] is not None:  # PPO folds the KL penalty into the reward (InstructGPT)
            token_r = token_r - t.kl_coef * (scored["old_logprobs"] - scored["ref_logprobs"]) * mask
        advantages, returns = alg.gae(token_r, scored["old_values"].float(), mask, t.gamma, t.lam)
        mean, std = self._global_mean_std(advantages, mask)
        return (advantages - mean) / (std + 1e-8) * mask, returns

    def _global_mean_std(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std of x over the masked tokens of every process (whitening must not depend on the layout)."""
        sums = torch.stack([(x * mask).sum(), (x * x * mask).sum(), mask.sum()]).float()
        sums = self.accelerator.reduce(sums, reduction="sum") if self.accelerator.num_processes > 1 else sums
        mean = sums[0] / sums[2].clamp(min=1)
        return mean, (sums[1] / sums[2].clamp(min=1) - mean**2).clamp(min=0).sqrt()

    def _optimizer_step(self, rows, tensors, advantages, returns, scored) -> dict[str, float]:
        """One optimizer step over a minibatch, in micro-batches whose gradients accumulate."""
        t = self.recipe.train
        mask_all = tensors["loss_mask"]
        denominator = float(mask_all[rows].sum()) if t.loss_aggregation == "token" else float(len(rows))
        if self.accelerator.num_processes > 1:
            # DDP averages the processes' gradients; dividing by the mean count over processes (not this
            # process's own) makes that average the mean over every token of the global minibatch.
            count = torch.tensor([denominator], device=self.accelerator.device)
            denominator = float(self.accelerator.reduce(count, reduction="mean"))
        sums: dict[str, float] = {}
        micros = [rows[i : i + t.micro_batch_size] for i in range(0, len(rows), t.micro_batch_size)]
        for k, micro in enumerate(micros):
            sync = k == len(micros) - 1  # all-reduce gradients across processes only once per step
            with _maybe_no_sync(self.accelerator, self.model, sync):
                loss, stats = self._micro_loss(micro, tensors, advantages, returns, scored)
                weight = float(mask_all[micro].sum()) if t.loss_aggregation == "token" else float(len(micro))
                self.accelerator.backward(loss * weight / max(denominator, 1.0))
            for key, value in stats.items():
                sums[key] = sums.get(key, 0.0) + value * weight / max(denominator, 1.0)
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        grad_norm = self.accelerator.clip_grad_norm_(params, t.max_grad_norm)
        sums["grad_norm"] = float(grad_norm)
        if not math.isfinite(sums["loss"]) or not math.isfinite(sums["grad_norm"]):
            raise TrainingError(f"the RL loss became {sums['loss']} (grad norm {sums['grad_norm']}) at step "
                                f"{self.step + 1}: lower train.learning_rate (now {t.learning_rate:g}), then "
                                "--resume from the last checkpoint")
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return sums

    def _micro_loss(self, rows, tensors, advantages, returns, scored):
        t, algo = self.recipe.train, self.recipe.algo
        ids, attn, mask = (tensors[k][rows] for k in ("input_ids", "attention_mask", "loss_mask"))
        with self.accelerator.autocast():
            logprobs, entropy, values = forward_tokens(self.model, ids, attn, self.recipe.rollout.temperature,
                                                       self.value_head, with_entropy=True)
        old = scored["old_logprobs"][rows] if scored["old_logprobs"] is not None else logprobs.detach()
        loss, clip_stats = alg.policy_loss(logprobs, old, advantages[rows], mask, t.clip_eps, t.loss_aggregation)
        stats = {"policy_loss": loss.item(), "entropy": alg.masked_mean(entropy, mask).item(), **clip_stats}
        if scored["ref_logprobs"] is not None:
            kl = alg.aggregate(alg.kl_penalty(logprobs, scored["ref_logprobs"][rows], t.kl_estimator), mask,
                            t.loss_aggregation)
            stats["kl"] = kl.item()
            if algo != "ppo":  # GRPO and RLOO put the KL in the loss; PPO already put it in the reward
                loss = loss + t.kl_coef * kl
        if algo == "ppo":
            v_loss = alg.value_loss(values, scored["old_values"][rows], returns[rows], mask, t.value_clip)
            stats["value_loss"] = v_loss.item()
            loss = loss + t.value_coef * v_loss
        stats["loss"] = loss.item()
        return loss, stats

    # -- logging -----------------------------------------------------------------------------------

    def _log(self, stats: dict[str, Any]) -> None:
        stats = _mean_across_processes(self.accelerator, stats)
        if not self.is_main:
            return
        self.metrics.append({"step": self.step, **stats})
        for key, message in advise(stats, self.recipe.algo):
            if self.step - self.warned.get(key, -REPEAT_EVERY) >= REPEAT_EVERY:
                self.warned[key] = self.step
                self.console.print(f"[yellow]warning (step {self.step}):[/] {message}")
        self._write_samples()

    def _write_samples(self) -> None:
        """A few of this step's trajectories (the best and the worst first) in trajectories.jsonl."""
        keep = self.recipe.train.samples_per_step
        batch = getattr(self, "_last_batch", None)
        if not keep or batch is None:
            return
        ranked = sorted(batch.episodes, key=lambda e: e.reward, reverse=True)
        picked = ranked if len(ranked) <= keep else (ranked[: max(keep - 1, 1)] + ranked[-1:])[:keep]
        with (self.run_dir / "trajectories.jsonl").open("a") as f:
            for episode in picked:
                f.write(json.dumps({"step": self.step, "group": episode.group, **episode.trajectory.to_dict()}) + "\n")

    # -- evaluation --------------------------------------------------------------------------------

    def evaluate(self, final: bool = False) -> EvalResult | None:
        r, ev = self.recipe, self.recipe.eval
        if not ev.n:
            return None
        result = None
        if self.is_main:
            result = evaluate_on_gym(self.policy, self.tokenizer, r.gym.id, r.gym.kwargs, n=ev.n, seed=ev.seed,
                                     batch_size=ev.batch_size,
                                     max_new_tokens=ev.max_new_tokens or r.rollout.max_new_tokens,
                                     samples=ev.samples if final else 0, chat=r.gym.chat,
                                     system_prompt=r.gym.system_prompt, max_turns=r.gym.max_turns)
            record = {"step": self.step, "heldout_accuracy": result.accuracy}
            if result.mean_turns is not None:
                record["heldout_mean_turns"] = result.mean_turns
                record["heldout_turns_to_solve"] = result.turns_to_solve
            self.metrics.append(record)
            warning = accuracy_drop(self.eval_history, result.accuracy)
            if warning:
                self.console.print(f"[yellow]warning (step {self.step}):[/] {warning}")
            self.eval_history.append(result.accuracy)
            turns = f", {result.mean_turns:.2f} turns per episode" if result.mean_turns is not None else ""
            self.console.print(f"step {self.step}: held-out accuracy {result.accuracy:.1%} "
                               f"({result.correct}/{result.n}){turns}")
        self.accelerator.wait_for_everyone()
        return result

    # -- checkpoints -------------------------------------------------------------------------------

    def save_checkpoint(self) -> None:
        """checkpoints/checkpoint-<step>/: weights, optimizer, scheduler, RNG and state, atomically."""
        self.accelerator.wait_for_everyone()
        if self.is_main:
            folder = self.run_dir / "checkpoints"
            save_folder_atomic(folder / f"checkpoint-{self.step}", self._write_checkpoint)
            for old in checkpoints(folder)[: -self.recipe.train.save_total_limit]:
                shutil.rmtree(old, ignore_errors=True)
        self.accelerator.wait_for_everyone()

    def _write_checkpoint(self, folder: Path) -> None:
        self._save_policy(folder / self._weights_name)
        self._save_value_head(folder)
        torch.save(self.optimizer.state_dict(), folder / "optimizer.pt")
        torch.save(self.scheduler.state_dict(), folder / "scheduler.pt")
        torch.save(_rng_state(), folder / "rng.pt")
        state = {"step": self.step, "curriculum": self.curriculum.state_dict() if self.curriculum else None,
                 "eval_history": self.eval_history, "warned": self.warned}
        (folder / CHECKPOINT_STATE).write_text(json.dumps(state, indent=2) + "\n")  # last: marks it whole

    @property
    def _weights_name(self) -> str:
        return "model" if self.recipe.method == "full" else "adapter"

    def _save_policy(self, folder: Path) -> None:
        self.policy.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)

    def _save_value_head(self, folder: Path) -> None:
        if self.value_head is None:
            return
        from safetensors.torch import save_file

        head = self.accelerator.unwrap_model(self.value_head)
        save_file({k: v.contiguous() for k, v in head.state_dict().items()}, folder / "value_head.safetensors")

    def _resume_checkpoint(self) -> Path:
        checkpoint = last_complete_checkpoint(self.run_dir / "checkpoints")
        if checkpoint is None:
            raise TrainingError(f"--resume: no complete checkpoint in {self.run_dir / 'checkpoints'}; run again "
                                "without --resume (and with --overwrite) to start over")
        self.checkpoint = checkpoint
        return checkpoint

    def _load_checkpoint(self) -> None:
        folder = self.checkpoint
        state = json.loads((folder / CHECKPOINT_STATE).read_text())
        self.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
        self.scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))
        _set_rng_state(torch.load(folder / "rng.pt", weights_only=True))
        self.step = int(state["step"])
        if self.curriculum is not None and state.get("curriculum"):
            self.curriculum.load_state_dict(state["curriculum"])
        self.eval_history = list(state.get("eval_history", []))
        self.warned = dict(state.get("warned", {}))
        if self.is_main:
            self.metrics.truncate_after(self.step)
        self.console.print(f"resuming from {folder} (step {self.step})")

    # -- the end -----------------------------------------------------------------------------------

    def save_model(self) -> None:
        """The trained policy as a standard Hugging Face folder (model/ or adapter/), written atomically."""
        self.accelerator.wait_for_everyone()
        self.model_dir = self.run_dir / self._weights_name
        if self.is_main:
            save_folder_atomic(self.model_dir, self._save_policy)
            self._save_value_head(self.run_dir)
            gym = self.recipe.gym
            write_json_atomic(self.model_dir / TRAINING_DATA_FILE, {
                "gym": gym.id, "gym_kwargs": gym.kwargs, "eval_seed": self.recipe.eval.seed, "train_size": None,
                "chat": gym.chat, "system_prompt": gym.system_prompt, "max_turns": gym.max_turns,
                "trained_with": f"ftkit rl ({self.recipe.algo})"})

    def write_report(self, result: EvalResult | None) -> dict[str, Any]:
        if not self.is_main:
            return {}
        from ftkit.plots import plot_rl_run

        if result is not None:
            write_json_atomic(self.run_dir / "eval.json", result.to_dict())
            write_text_atomic(self.run_dir / "samples.md", samples_markdown(result))
        records = self.metrics.read()
        steps = [r for r in records if "reward_mean" in r]
        heldout = [r for r in records if "heldout_accuracy" in r]
        start = heldout[0] if heldout and heldout[0]["step"] == 0 else None
        summary = {
            "algo": self.recipe.algo,
            "method": self.recipe.method,
            "gym": self.recipe.gym.id,
            "gym_kwargs": self.recipe.gym.kwargs,
            "model": self.resolved.used,
            "fallback_used": self.resolved.is_fallback,
            "steps": self.step,
            "episodes": self.step * self.recipe.episodes_per_step,
            "heldout_accuracy_start": start["heldout_accuracy"] if start else None,
            "heldout_accuracy_end": result.accuracy if result else None,
            "heldout_mean_turns_start": start.get("heldout_mean_turns") if start else None,
            "heldout_mean_turns_end": result.mean_turns if result else None,
            "heldout_turns_to_solve_start": start.get("heldout_turns_to_solve") if start else None,
            "heldout_turns_to_solve_end": result.turns_to_solve if result else None,
            "eval_by_difficulty": result.by_difficulty if result else None,
            "eval_n": result.n if result else 0,
            "reward_mean_last10": _mean([r["reward_mean"] for r in steps[-10:]]),
            "wall_time_s": getattr(self, "wall_time_s", None),
            "rollout_tokens_per_s": _mean([r["rollout_tokens_per_s"] for r in steps]),
            "train_tokens_per_s": _mean([r["train_tokens_per_s"] for r in steps]),
            "parameters": self.params,
            "processes": self.accelerator.num_processes,
            "model_dir": str(self.model_dir),
            "plots": [str(p) for p in plot_rl_run(self.run_dir)],
            "warnings": sorted(self.warned),
            "resumed": self.resume,
        }
        write_json_atomic(self.run_dir / "summary.json", summary)
        self._print_summary(summary)
        return summary

    def _print_summary(self, s: dict[str, Any]) -> None:
        c = self.console
        if s["heldout_accuracy_end"] is not None:
            start = s["heldout_accuracy_start"]
            before = f"{start:.1%} -> " if start is not None else ""
            c.print(f"held-out accuracy: {before}[bold]{s['heldout_accuracy_end']:.1%}[/] (n={s['eval_n']})")
        if s["heldout_turns_to_solve_end"] is not None:
            start = s["heldout_turns_to_solve_start"]
            c.print("turns to solve (an unsolved episode counts as the turn limit): "
                    + (f"{start:.2f} -> " if start is not None else "") + f"{s['heldout_turns_to_solve_end']:.2f}")
        wall = s["wall_time_s"] or 0.0
        c.print(f"{s['steps']} steps ({s['episodes']:,} episodes) in {wall:.0f}s; rollout "
                f"{s['rollout_tokens_per_s'] or 0:,.0f} tokens/s, training {s['train_tokens_per_s'] or 0:,.0f} tokens/s")
        c.print(f"model: {s['model_dir']}   curves: {', '.join(s['plots'])}")
        c.print(f"run folder: {self.run_dir}  (summary.json, metrics.jsonl, samples.md, trajectories.jsonl)")


# ---------------------------------------------------------------------------------------------------
# helpers


class _Progress:
    """A rich progress bar with reward and success rate; plain lines when not on a terminal."""

    def __init__(self, console: Console, total: int, done: int):
        from ftkit.callbacks import progress_bar

        self.console = console
        self.progress = progress_bar(console, "rl")
        self.task = self.progress.add_task("rl", total=total, completed=done, stats="")
        self.total = total

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def update(self, step: int, stats: dict[str, Any]) -> None:
        text = (f"reward {stats['reward_mean']:.3f}  solved {stats['success_rate']:.0%}  "
                f"{stats['rollout_tokens_per_s']:,.0f} rollout tok/s")
        self.progress.update(self.task, completed=step, stats=text)
        if not self.console.is_terminal:
            self.console.print(f"step {step}/{self.total}  {text}", highlight=False)


def _episode_stats(batch: RolloutBatch, group_size: int) -> dict[str, Any]:
    """What the rollout batch shows about the policy: reward, success, lengths, turns."""
    episodes = batch.episodes
    rewards = torch.tensor([e.trajectory.total_reward for e in episodes])  # the gym's own, unshaped
    trained = torch.tensor([e.reward for e in episodes])
    actions = sum(e.trajectory.num_turns for e in episodes)
    formats = [t.info["format_reward"] for e in episodes for t in e.trajectory.turns if "format_reward" in t.info]
    stats = {
        "reward_mean": rewards.mean().item(),
        "reward_std": rewards.std().item() if len(rewards) > 1 else 0.0,
        "success_rate": sum(e.trajectory.solved for e in episodes) / len(episodes),
        "response_length": sum(e.policy_tokens for e in episodes) / len(episodes),
        "turns_mean": actions / len(episodes),
        "identical_groups": alg.identical_group_fraction(trained, group_size),
        "length_limit_fraction": sum(e.hit_length_limit for e in episodes) / max(1, actions),
        "context_cut_fraction": batch.context_cuts / len(episodes),
        "episodes": len(episodes),
    }
    if formats:
        stats["format_reward"] = sum(formats) / len(formats)
    if batch.model_scores:  # logged apart from the gym's (verifier's) reward above
        stats["reward_model_score"] = sum(batch.model_scores) / len(batch.model_scores)
    if not torch.equal(rewards, trained):
        stats["shaped_reward_mean"] = trained.mean().item()
    return stats


def _maybe_no_sync(accelerator, model, sync: bool):
    from contextlib import nullcontext

    return nullcontext() if sync else accelerator.no_sync(model)


def _mean_across_processes(accelerator, stats: dict[str, Any]) -> dict[str, Any]:
    if accelerator.num_processes == 1:
        return stats
    keys = sorted(k for k, v in stats.items() if isinstance(v, (int, float)))
    values = torch.tensor([float(stats[k]) for k in keys], device=accelerator.device)
    reduced = accelerator.reduce(values, reduction="mean")
    return {**stats, **dict(zip(keys, reduced.tolist()))}


def _mixed_precision(recipe: RLRecipe) -> str:
    gpu_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return "bf16" if gpu_bf16 and recipe.method == "full" else "no"


def _step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 9_973 + rank) % (2**63)


def _rng_state() -> dict[str, Any]:
    """Random generators' states as tensors and plain lists, so `torch.load(weights_only=True)` reads them."""
    import numpy as np

    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {"torch": torch.get_rng_state(), "python": [version, list(internal), gauss],
            "numpy": [name, torch.from_numpy(keys.astype("int64")), pos, has_gauss, cached]}


def _set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np

    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype("uint32"), pos, has_gauss, cached))


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
