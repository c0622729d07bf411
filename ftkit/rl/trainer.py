"""RL against a gym: GRPO, DAPO, GSPO, RLOO, REINFORCE++ or PPO, full fine-tuning or LoRA, on Accelerate.

    ftkit rl --gym arithmetic                  # the recipes/grpo_arithmetic.yaml task, from runs/gpt2_math_subtract/model
    ftkit rl recipes/ppo_arithmetic.yaml train.max_steps=50
    accelerate launch -m ftkit rl recipes/grpo_arithmetic.yaml

One RL step, as `RLRun.train_step()` reads:

1. **Rollout.** Draw `prompts_per_step` problems and play each `num_generations` times with the current
   policy, sampling through the generation engine (`ftkit/rl/rollout.py`). The gym scores every episode.
   With dynamic filtering (DAPO), groups of equal rewards are dropped and more problems drawn; with
   problem replay, part of the problems are earlier ones some sample missed (`ftkit/rl/replay.py`).
2. **Advantages.** How much better each episode (or, for PPO, each token) did than expected:
   GRPO, DAPO, GSPO and RLOO compare an episode with the others of its group; REINFORCE++ with the
   whole batch; PPO asks its value head (GAE). Each algorithm is one class in `ftkit/rl/objectives/`.
3. **Update.** Minimise the objective's clipped loss (plus KL to the reference and, for PPO, the
   value loss) over `num_iterations` passes of minibatches, with gradient accumulation and clipping
   (`ftkit/rl/update.py`).

With `rollout.async_steps: N`, the rollouts (1.) of the next steps run in a background thread while the
current step's advantages and update (2., 3.) run (`ftkit/rl/async_rollout.py`): each batch is then
played by a policy at most N updates old.

Around it: held-out evaluation before training and every N steps (the same scoring as `ftkit eval`),
metrics in metrics.jsonl, resumable checkpoints (`ftkit/rl/checkpoint.py`), curves and sample
trajectories in the run folder (`ftkit/rl/report.py`).
"""

from __future__ import annotations

import copy
import gc
import math
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from ftkit import trackers
from ftkit.config import recipe_to_yaml
from ftkit.errors import TrainingError
from ftkit.evaluate import EvalOptions, EvalResult, evaluate_on_gym
from ftkit.models import ResolvedModel, load_tokenizer, resolve_model
from ftkit.rl.async_rollout import AsyncRollouts, own_weights_engine
from ftkit.rl.checkpoint import Checkpoints, save_policy, save_value_head, weights_name
from ftkit.rl.config import RLRecipe
from ftkit.rl.curriculum import Curriculum
from ftkit.rl.distributed import accelerator_options, whole_weights
from ftkit.rl.dynamic_sampling import fill_with_informative_groups
from ftkit.rl.learner import Learner, build_learner
from ftkit.rl.objectives import make_objective
from ftkit.rl.replay import ReplayBuffer
from ftkit.rl.report import Progress, Report, episode_stats
from ftkit.rl.rollout import PlayOptions, RolloutBatch, add_model_reward, add_overlong_penalty, collect
from ftkit.rl.task import Task
from ftkit.rl.update import Update, step_seed
from ftkit.runs import TrainingData, save_folder_atomic, start_run_folder


def main(recipe: RLRecipe, *, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Run an RL recipe end to end; returns the summary (also written to summary.json).

        ftkit rl recipes/grpo_arithmetic.yaml train.max_steps=50

        summary = ftkit.rl.trainer.main(load_rl_recipe("recipes/grpo_arithmetic.yaml", ["train.max_steps=50"]))
    """
    return RLRun(recipe, resume=resume, overwrite=overwrite).run()


class RLRun:
    """One RL run: `setup()`, then `train()` step by step, then the final model, evaluation and summary."""

    def __init__(self, recipe: RLRecipe, *, resume: bool = False, overwrite: bool = False,
                 console: Console | None = None):
        from accelerate import Accelerator

        self.recipe = recipe
        self.resume = resume
        self.overwrite = overwrite
        self.run_dir = recipe.run_dir
        # report_to's trackers (checked first: Accelerate would silently drop one whose library is missing);
        # under a DeepSpeed launch config, its "auto" values filled from the recipe (ftkit/rl/distributed.py)
        self.accelerator = Accelerator(mixed_precision=_mixed_precision(recipe),
                                       log_with=trackers.accelerate_trackers(recipe), **accelerator_options(recipe))
        self.is_main = self.accelerator.is_main_process
        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True, quiet=not self.is_main)
        self.objective = make_objective(recipe)
        self.curriculum = Curriculum(**recipe.curriculum.model_dump()) if recipe.curriculum else None
        ro = recipe.rollout
        # rollout.replay_unsolved: this process's missed problems, played again (ftkit/rl/replay.py)
        self.replay = ReplayBuffer(ro.replay_unsolved, ro.replay_limit) if ro.replay_unsolved else None
        self.report = Report(recipe, self.objective, self.accelerator, self.console)
        self.checkpoints = Checkpoints(self.accelerator, self.run_dir, recipe.method, recipe.train.save_total_limit)
        self.model_dir = self.run_dir / weights_name(recipe.method)
        self.step = 0
        self.wall_time_s: float | None = None
        # Made by setup():
        self.task: Task | None = None
        self.resolved: ResolvedModel | None = None
        self.tokenizer = None
        self.learner: Learner | None = None
        self.update: Update | None = None
        self.engine = None
        self.rollout_tokenizer = None  # the tokenizer episodes are recorded with (a copy when asynchronous)
        self.rollouts: AsyncRollouts | None = None  # rollout.async_steps > 0: the sampler's background thread

    def run(self) -> dict[str, Any]:
        self.setup()
        # The run folder exists now (TensorBoard writes in it), and a resumed run's step is known.
        trackers.start(self.accelerator, self.recipe, resumed_at=self.step)
        self.report.announce(self.resolved, self.learner.parameters, self.curriculum)
        if self.step == 0:
            self.evaluate()
        started = time.perf_counter()
        self.train()
        self.wall_time_s = time.perf_counter() - started
        self.save_model()
        result = self.evaluate(final=True)
        summary = self.report.write_summary(result, self.resolved, self.step, self.wall_time_s,
                                            self.learner.parameters, self.resume)
        # Every process waits for the main one's summary and report first: a process that tore down its
        # process group while the main one was still writing aborted at exit ("terminate called without
        # an active exception", seen under load in the two-process kill test).
        self.accelerator.wait_for_everyone()
        self.accelerator.end_training()  # without it, multi-process runs may abort at exit
        return summary

    # -- setup -------------------------------------------------------------------------------------

    def setup(self) -> None:
        """The task, the run folder, the model and its optimizer, the engine; with --resume, the checkpoint."""
        self.task = Task(self.recipe)  # first: a bad gym id or gym argument should leave no run folder behind
        if self.is_main:
            start_run_folder(self.run_dir, recipe_to_yaml(self.recipe), resume=self.resume, overwrite=self.overwrite)
        self.accelerator.wait_for_everyone()
        try:
            checkpoint = self.checkpoints.latest() if self.resume else None
            self._setup_model(checkpoint)
        except Exception:
            if not self.resume and self.is_main:
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise
        if checkpoint is not None:
            self._restore(checkpoint)

    def _setup_model(self, checkpoint: Path | None) -> None:
        r = self.recipe
        with self.accelerator.main_process_first():  # a scratch model is built once, then read by the others
            self.resolved = resolve_model(r.model, self.run_dir, seed=r.seed)
        self.tokenizer = load_tokenizer(self.resolved.path, r.model)
        self.learner = build_learner(r, self.objective, self.accelerator, self.resolved.path, checkpoint)
        self.update = Update(self.accelerator, self.learner, self.objective, r, self.tokenizer.pad_token_id)
        from ftkit.vllm_engine import make_engine

        ro = r.rollout
        # Asynchronous rollouts record episodes (and the engine encodes prompts) in the background thread while
        # evaluation tokenizes in the training thread: each thread gets a tokenizer of its own.
        self.rollout_tokenizer = copy.deepcopy(self.tokenizer) if ro.async_steps else self.tokenizer
        self.engine = make_engine(ro.engine, self.policy, self.rollout_tokenizer, batch_size=ro.batch_size,
                                  model_path=self.resolved.path, gpu_memory_utilization=ro.vllm_gpu_memory_utilization,
                                  seed=r.seed)
        if ro.async_steps:
            self._setup_async()

    def _setup_async(self) -> None:
        """rollout.async_steps: a sampler with weights, random numbers and a tokenizer of its own, playing in
        a background thread (`ftkit/rl/async_rollout.py`)."""
        r, accelerator = self.recipe, self.accelerator
        plugin = getattr(accelerator.state, "deepspeed_plugin", None)
        if plugin is not None and plugin.zero_stage == 3:
            raise TrainingError("rollout.async_steps with DeepSpeed ZeRO-3: each process holds a shard of the "
                                "weights, so the sampler cannot keep a copy of its own; use ZeRO-2 or "
                                "rollout.async_steps: 0")
        self.engine = own_weights_engine(self.engine, self.policy, self.rollout_tokenizer, r.rollout.batch_size)
        self.rollouts = AsyncRollouts(self.engine, self.play_step, r.rollout.async_steps, r.train.max_steps,
                                      seed=r.seed, rank=accelerator.process_index, device=accelerator.device,
                                      threads=torch.get_num_threads())

    def _restore(self, checkpoint: Path) -> None:
        state = self.checkpoints.restore(checkpoint, self.learner)
        self.step = int(state["step"])
        if self.curriculum is not None and state.get("curriculum"):
            self.curriculum.load_state_dict(state["curriculum"])
        if self.replay is not None and state.get("replay"):
            self.replay.load_state_dict(self.checkpoints.own_entry(state["replay"], "replay buffers"))
        self.report.load_state_dict(state, self.step)
        # An engine with its own copy of the weights (vLLM) read them from the base model, and is synced
        # only after an update: without this, the first step after a resume sampled from the base model.
        self.engine.sync_weights(self.policy)
        if self.rollouts is not None:  # the batches played ahead before the checkpoint, trained on as they were
            self.rollouts.restore(self.checkpoints.in_flight(checkpoint), self.rollout_tokenizer)
        self.console.print(f"resuming from {checkpoint} (step {self.step})")

    @property
    def policy(self):
        """The model without Accelerate's wrappers: what generates, saves and is evaluated."""
        return self.accelerator.unwrap_model(self.learner.model)

    def whole_policy(self):
        """`with run.whole_policy() as policy:` the policy with every weight in place for the block. Under
        ZeRO-3 each process holds shards, which every process gathers here (so every process must enter,
        even where only the main one uses it: `ftkit/rl/distributed.py`); otherwise it is `policy` as it is.
        """
        return whole_weights(self.accelerator, self.learner.model)

    # -- the loop ----------------------------------------------------------------------------------

    def train(self) -> None:
        # The half-million objects that torch, transformers and the model leave behind are not garbage, but
        # each full collection walks them all: 0.3 s every ten steps or so, a tenth of a tiny model's step.
        # Frozen, collections skip them; unfrozen afterwards, they can be collected again.
        gc.collect()
        gc.freeze()
        threads = torch.get_num_threads()
        if self.rollouts is not None:  # the training thread leaves the background sampler its share of the cores
            torch.set_num_threads(self.rollouts.training_threads)
        try:
            self._train_steps()
        finally:
            gc.unfreeze()
            torch.set_num_threads(threads)
            if self.rollouts is not None:
                self.rollouts.close()

    def _train_steps(self) -> None:
        max_steps = self.recipe.train.max_steps
        limit = self.recipe.train.time_limit_minutes
        deadline = time.perf_counter() + limit * 60 if limit else math.inf
        with Progress(self.console, max_steps, self.step) as progress:
            while self.step < max_steps:
                if time.perf_counter() > deadline:
                    self.console.print(f"time limit of {limit:g} minutes reached at step {self.step}")
                    break
                stats = self.train_step()
                progress.update(self.step, stats)
                if self.step % self.recipe.eval_every == 0 and self.step < max_steps:
                    self.evaluate()
                if self.step % self.recipe.train.save_steps == 0 and self.step < max_steps:
                    self.save_checkpoint()

    def train_step(self) -> dict[str, Any]:
        """One RL step: rollout, advantages, update; logged, and returned as the step's metrics."""
        started = time.perf_counter()
        torch.manual_seed(step_seed(self.recipe.seed, self.step, self.accelerator.process_index))
        with self.whole_policy():  # the engine samples from the bare policy
            batch, waited = self.next_batch()
        update_started = time.perf_counter()
        stats = self.update(batch.episodes, self.step)
        if self.rollouts is None:  # asynchronous rollouts sync their sampler themselves, when it is idle
            with self.whole_policy() as policy:
                self.engine.sync_weights(policy)  # vLLM samples from its own copy of the weights
        update_s = time.perf_counter() - update_started
        stats.update(waited)
        stats.update(episode_stats(batch, self.recipe.rollout.num_generations))
        if self.recipe.train.mask_truncated_completions:  # the share of actions left out of the loss
            actions = sum(len(e.reward_positions) for e in batch.episodes)
            stats["masked_truncated_fraction"] = sum(len(e.masked_actions) for e in batch.episodes) / max(1, actions)
        stats["rollout_tokens_per_s"] = batch.tokens_per_s
        stats["train_tokens_per_s"] = stats.pop("_trained_tokens") / update_s if update_s else 0.0
        stats["rollout_s"], stats["update_s"] = batch.seconds, update_s
        stats["step_s"] = time.perf_counter() - started
        if self.curriculum is not None:
            stats["curriculum_level"] = self.curriculum.value
            if self.curriculum.update(stats["success_rate"]):
                self.console.print(f"curriculum: success rate passed {self.curriculum.threshold:.0%}, "
                                   f"{self.curriculum.option} -> {self.curriculum.value}")
        self.step += 1
        self.report.log_step(self.step, stats, batch)
        return stats

    def next_batch(self) -> tuple[RolloutBatch, dict[str, Any]]:
        """The current step's batch, and what asynchronous rollouts log about it: `async_lag` (updates
        between the policy that played it and the one trained now) and `rollout_wait_s` (how long the
        trainer waited for it, and for its sampler to take the new weights)."""
        options = self.curriculum.options() if self.curriculum else None
        if self.rollouts is None:
            return self.play_step(self.step, options), {}
        started = time.perf_counter()
        batch, version = self.rollouts.take(self.step, self.policy, options)
        return batch, {"async_lag": self.step - version, "rollout_wait_s": time.perf_counter() - started}

    def play_step(self, step: int, options: dict[str, Any] | None,
                  generator: torch.Generator | None = None) -> RolloutBatch:
        """This process's episodes for `step`, played by the engine's policy with the reset `options` (a
        curriculum's level), drawing random numbers from `generator` (None: torch's global one).

        With `rollout.dynamic_filtering`, only groups whose rewards differ, played from as many problems
        as it takes (`ftkit/rl/dynamic_sampling.py`).
        With `rollout.replay_unsolved`, part of the step's problems are earlier ones some sample missed
        (`ftkit/rl/replay.py`), in place of as many fresh ones.
        """
        ro, world, rank = self.recipe.rollout, self.accelerator.num_processes, self.accelerator.process_index
        seeds = self.task.training_seeds(step, options, world, rank)
        replayed = self.replay.take(len(seeds), options) if self.replay is not None else []
        seeds = replayed + seeds[: len(seeds) - len(replayed)]
        if not ro.dynamic_filtering:
            batch = self.play(seeds, options, generator)
        else:
            share = len(seeds)

            def draw(drawn: int, count: int) -> RolloutBatch:
                more = seeds if drawn == 0 else self.task.more_seeds(step, options, world, rank,
                                                                     taken=drawn - share, count=count)
                return self.play(more, options, generator)

            batch = fill_with_informative_groups(draw, share, ro.max_num_gen_batches)
        if self.replay is not None:
            self.replay.record(batch.played, len(seeds))
            batch.replayed_seeds = replayed
        return batch

    def play(self, seeds: list[int], options: dict[str, Any] | None,
             generator: torch.Generator | None = None) -> RolloutBatch:
        """Play each problem (gym seed) `num_generations` times; the episodes scored and shaped as the
        recipe says (reward model, overlong penalty, overlong filtering)."""
        from ftkit.engine import SamplingParams
        from ftkit.evaluate import context_length

        r, ro = self.recipe, self.recipe.rollout
        # The engine's own log-probs of the tokens it sampled: the update compares them with the trainer's
        # (sampler_kl in metrics.jsonl) and corrects the gradient for the difference (ftkit/rl/correction.py).
        params = SamplingParams(max_new_tokens=ro.max_completion_length, temperature=ro.temperature,
                                top_p=ro.top_p, stop=tuple(ro.stop), logprobs=True, generator=generator)
        play = PlayOptions(group_size=ro.num_generations, max_context=context_length(self.policy),
                           format_reward_weight=ro.format_reward_weight)
        tokenizer = self.rollout_tokenizer
        batch = collect(self.engine, tokenizer, self.task.gym, seeds, params, play,
                        options=[options] * len(seeds) if options is not None else None)
        if r.reward_model is not None:
            add_model_reward(batch, self.task.reward_scorer, tokenizer, weight=r.reward_model.weight,
                             verifier_weight=r.reward_model.verifier_weight)
        if ro.overlong_buffer_len:
            add_overlong_penalty(batch, ro.max_completion_length, ro.overlong_buffer_len, ro.overlong_penalty_factor)
        if r.train.mask_truncated_completions:  # DAPO's overlong filtering: a cut answer's reward says little
            for episode in batch.episodes:
                episode.masked_actions = list(episode.cut_actions)
        return batch

    # -- evaluation and saving ---------------------------------------------------------------------

    def evaluate(self, final: bool = False) -> EvalResult | None:
        """Held-out accuracy of the current policy (main process), logged; None with eval.n = 0."""
        r, ev = self.recipe, self.recipe.eval
        if not ev.n:
            return None
        result = None
        with self.whole_policy() as policy:  # under ZeRO-3 every process gathers, the main one evaluates
            if self.is_main:
                options = EvalOptions(n=ev.n, seed=ev.seed, batch_size=ev.batch_size,
                                      max_new_tokens=ev.max_new_tokens or r.rollout.max_completion_length,
                                      samples=ev.samples if final else 0)
                result = evaluate_on_gym(policy, self.tokenizer, self.task.gym, options)
                self.report.log_eval(self.step, result)
        self.accelerator.wait_for_everyone()
        return result

    def save_checkpoint(self) -> None:
        """checkpoints/checkpoint-<step>/: weights, optimizer, scheduler, RNG and state, and the batches
        played ahead by asynchronous rollouts, atomically."""
        in_flight = self.rollouts.in_flight() if self.rollouts is not None else None
        # Read after the batches played ahead are done: the buffer is then the one the next play starts from.
        replay = self.checkpoints.from_every_process(self.replay.state_dict()) if self.replay is not None else None
        state = {"curriculum": self.curriculum.state_dict() if self.curriculum else None, "replay": replay,
                 **self.report.state_dict()}
        self.checkpoints.save(self.step, self.learner, self.tokenizer, state, in_flight)

    def save_model(self) -> None:
        """The trained policy as a standard Hugging Face folder (model/ or adapter/), written atomically."""
        self.accelerator.wait_for_everyone()
        with self.whole_policy() as policy:  # under ZeRO-3 every process gathers, the main one saves
            if self.is_main:
                save_folder_atomic(self.model_dir, lambda folder: save_policy(folder, policy, self.tokenizer))
        if not self.is_main:
            return
        save_value_head(self.accelerator, self.learner.value_head, self.run_dir)
        TrainingData(gym=self.task.gym, train_seed=self.recipe.gym.train_seed, eval_seed=self.recipe.eval.seed,
                     trained_with=f"ftkit rl ({self.recipe.algo})").save(self.model_dir)


def _mixed_precision(recipe: RLRecipe) -> str:
    gpu_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return "bf16" if gpu_bf16 and recipe.method == "full" else "no"
