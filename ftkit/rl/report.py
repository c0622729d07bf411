"""What an RL run shows and leaves behind: the start banner, the progress bar, metrics.jsonl with
advice, sample trajectories, held-out accuracy lines, and summary.json with its printed digest.

    python -c "from ftkit.rl.report import episode_stats; help(episode_stats)"

Only the main process writes; step metrics are averaged over every process first.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import torch
from rich.console import Console

from ftkit import trackers
from ftkit.report import difficulty_fields
from ftkit.report import refresh as refresh_report
from ftkit.rl import algorithms as alg
from ftkit.rl.advice import REPEAT_EVERY, SAMPLER_START, accuracy_drop, advise, sampler_mismatch
from ftkit.rl.checkpoint import weights_name
from ftkit.runs import MetricsLog, write_json_atomic, write_text_atomic

if TYPE_CHECKING:
    from ftkit.evaluate import EvalResult
    from ftkit.models import ResolvedModel
    from ftkit.rl.config import RLRecipe
    from ftkit.rl.curriculum import Curriculum
    from ftkit.rl.objectives import Objective
    from ftkit.rl.rollout import RolloutBatch


class Report:
    """The run's console and files; its state (warnings given, accuracy so far) goes into checkpoints."""

    def __init__(self, recipe: RLRecipe, objective: Objective, accelerator, console: Console):
        self.recipe = recipe
        self.objective = objective
        self.accelerator = accelerator
        self.console = console
        self.is_main = accelerator.is_main_process
        self.run_dir = recipe.run_dir
        self.metrics = MetricsLog(recipe.run_dir / "metrics.jsonl")
        self.warnings = MetricsLog(recipe.run_dir / "warnings.jsonl")  # as printed, for report.html
        self.warned: dict[str, int] = {}  # advice key -> the step it was last printed at
        self.eval_history: list[float] = []  # held-out accuracy at each evaluation
        self.sampler_kl_start: list[float] = []  # the sampler mismatch of the first steps: a drift's baseline

    def announce(self, resolved: ResolvedModel, parameters: dict[str, int], curriculum: Curriculum | None) -> None:
        c, r = self.console, self.recipe
        c.print(f"run folder: {self.run_dir}")
        if resolved.is_fallback:
            c.print(f"[bold yellow]FALLBACK:[/] {resolved.fallback_reason}; training {resolved.used} instead")
        c.print(f"model: {resolved.used} ({parameters['total'] / 1e6:.2f}M parameters, "
                f"{parameters['trainable'] / 1e6:.2f}M trainable, method {r.method})")
        c.print(f"weights: {resolved.weights_source}", markup=False, highlight=False)
        c.print(f"{r.algo.upper()} on {r.gym.id} {r.gym.kwargs or ''}: {r.train.max_steps} steps of "
                f"{r.rollout.prompts_per_step} problems x {r.rollout.num_generations} episodes"
                + (f", curriculum on {curriculum.option} {curriculum.levels}" if curriculum else ""))
        c.print(f"[dim]{self.objective.note}[/]")

    def log_step(self, step: int, stats: dict[str, Any], batch: RolloutBatch) -> None:
        """One step's metrics (mean over processes) in metrics.jsonl, advice, and sample trajectories."""
        stats = mean_across_processes(self.accelerator, stats)
        if not self.is_main:
            return
        self.metrics.append({"step": step, **stats})
        trackers.log(self.accelerator, {"step": step, **stats})  # report_to's trackers: the same numbers
        for key, message in [*advise(stats, self.objective.compares_groups), *self._sampler_advice(stats)]:
            if step - self.warned.get(key, -REPEAT_EVERY) >= REPEAT_EVERY:
                self.warned[key] = step
                self._warn(step, key, message)
        self._write_samples(step, batch)

    def _sampler_advice(self, stats: dict[str, Any]) -> list[tuple[str, str]]:
        """A warning when the engine's sampling log-probs are far from the trainer's, or drifting away."""
        message = sampler_mismatch(self.sampler_kl_start, stats, self.recipe.rollout.top_p)
        if "sampler_kl" in stats and len(self.sampler_kl_start) < SAMPLER_START:
            self.sampler_kl_start.append(stats["sampler_kl"])
        return [("sampler_mismatch", message)] if message else []

    def _write_samples(self, step: int, batch: RolloutBatch) -> None:
        """A few of this step's trajectories (the best and the worst first) in trajectories.jsonl."""
        keep = self.recipe.train.samples_per_step
        if not keep:
            return
        ranked = sorted(batch.episodes, key=lambda e: e.reward, reverse=True)
        picked = ranked if len(ranked) <= keep else (ranked[: max(keep - 1, 1)] + ranked[-1:])[:keep]
        with (self.run_dir / "trajectories.jsonl").open("a") as f:
            for episode in picked:
                f.write(json.dumps({"step": step, "group": episode.group, **episode.trajectory.to_dict()}) + "\n")

    def log_eval(self, step: int, result: EvalResult) -> None:
        """A held-out evaluation: metrics.jsonl, a warning if accuracy fell, and one line on the console."""
        record = {"step": step, "heldout_accuracy": result.accuracy, **difficulty_fields(result.by_difficulty)}
        if result.mean_turns is not None:
            record["heldout_mean_turns"] = result.mean_turns
            record["heldout_turns_to_solve"] = result.turns_to_solve
        self.metrics.append(record)
        trackers.log(self.accelerator, record)
        warning = accuracy_drop(self.eval_history, result.accuracy)
        if warning:
            self._warn(step, "accuracy_drop", warning)
        self.eval_history.append(result.accuracy)
        turns = f", {result.mean_turns:.2f} turns per episode" if result.mean_turns is not None else ""
        self.console.print(f"step {step}: held-out accuracy {result.accuracy:.1%} ({result.correct}/{result.n}){turns}")
        refresh_report(self.run_dir, self.console)  # a page kept open shows this evaluation when reloaded

    def _warn(self, step: int, key: str, message: str) -> None:
        """A warning on the console and in warnings.jsonl, where report.html reads it."""
        self.console.print(f"[yellow]warning (step {step}):[/] {message}")
        self.warnings.append({"step": step, "key": key, "message": message})

    def state_dict(self) -> dict[str, Any]:
        return {"eval_history": self.eval_history, "warned": self.warned, "sampler_kl_start": self.sampler_kl_start}

    def load_state_dict(self, state: dict[str, Any], step: int) -> None:
        """Resume at `step`: the state saved with it, and metrics.jsonl and trajectories.jsonl cut back to
        it (nothing logged twice)."""
        self.eval_history = list(state.get("eval_history", []))
        self.warned = dict(state.get("warned", {}))
        self.sampler_kl_start = list(state.get("sampler_kl_start", []))
        if self.is_main:
            self.metrics.truncate_after(step)
            self.warnings.truncate_after(step)
            if (self.run_dir / "trajectories.jsonl").is_file():
                MetricsLog(self.run_dir / "trajectories.jsonl").truncate_after(step)

    def write_summary(self, result: EvalResult | None, resolved: ResolvedModel, step: int,
                      wall_time_s: float | None, parameters: dict[str, int], resumed: bool) -> dict[str, Any]:
        """eval.json, samples.md, the curves and summary.json; returns the summary ({} off the main process)."""
        if not self.is_main:
            return {}
        from ftkit.plots import plot_rl_run

        if result is not None:
            write_json_atomic(self.run_dir / "eval.json", result.to_dict())
            from ftkit.evaluate import samples_markdown

            write_text_atomic(self.run_dir / "samples.md", samples_markdown(result))
        records = self.metrics.read()
        steps = [r for r in records if "reward_mean" in r]
        heldout = [r for r in records if "heldout_accuracy" in r]
        start = heldout[0] if heldout and heldout[0]["step"] == 0 else None
        r = self.recipe
        summary = {
            "algo": r.algo, "method": r.method, "gym": r.gym.id, "gym_kwargs": r.gym.kwargs,
            "model": resolved.used, "fallback_used": resolved.is_fallback,
            "fallback_reason": resolved.fallback_reason, "weights_source": resolved.weights_source,
            "steps": step, "episodes": step * r.episodes_per_step,
            **_heldout(start, result),
            "reward_mean_last10": _mean([s["reward_mean"] for s in steps[-10:]]),
            "wall_time_s": wall_time_s,
            "rollout_tokens_per_s": _mean([s["rollout_tokens_per_s"] for s in steps]),
            "train_tokens_per_s": _mean([s["train_tokens_per_s"] for s in steps]),
            "parameters": parameters,
            "processes": self.accelerator.num_processes,
            "distributed_type": self.accelerator.distributed_type.value,  # NO, MULTI_CPU, MULTI_GPU, DEEPSPEED...
            "model_dir": str(self.run_dir / weights_name(r.method)),
            "plots": [str(p) for p in plot_rl_run(self.run_dir)],
            "warnings": sorted(self.warned),
            "resumed": resumed,
        }
        write_json_atomic(self.run_dir / "summary.json", summary)
        page = refresh_report(self.run_dir, self.console)  # last: the page shows summary.json too
        summary["report"] = str(page) if page else None
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
        if s["report"]:
            c.print(f"report: {s['report']}  (open it in a browser; no network needed)")


def _heldout(start: dict[str, Any] | None, result: EvalResult | None) -> dict[str, Any]:
    """The summary's held-out figures: at step 0 (`start`, from metrics.jsonl) and at the end."""
    return {
        "heldout_accuracy_start": start["heldout_accuracy"] if start else None,
        "heldout_accuracy_end": result.accuracy if result else None,
        "heldout_mean_turns_start": start.get("heldout_mean_turns") if start else None,
        "heldout_mean_turns_end": result.mean_turns if result else None,
        "heldout_turns_to_solve_start": start.get("heldout_turns_to_solve") if start else None,
        "heldout_turns_to_solve_end": result.turns_to_solve if result else None,
        "eval_by_difficulty": result.by_difficulty if result else None,
        "eval_n": result.n if result else 0,
    }


class Progress:
    """A rich progress bar with reward and success rate; off a terminal, a plain line at most every
    FTKIT_PROGRESS_SECONDS and the last step's (`ftkit.progress.StepProgress`)."""

    def __init__(self, console: Console, total: int, done: int):
        from ftkit.progress import StepProgress

        self.progress = StepProgress(console, "rl", total=total, done=done)

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def update(self, step: int, stats: dict[str, Any]) -> None:
        self.progress.update(step, f"reward {stats['reward_mean']:.3f}  solved {stats['success_rate']:.0%}  "
                                   f"{stats['rollout_tokens_per_s']:,.0f} rollout tok/s")


def episode_stats(batch: RolloutBatch, group_size: int) -> dict[str, Any]:
    """What the rollout batch shows about the policy: reward, success, lengths, turns.

    Over every episode played, including those dynamic filtering left out of training (so reward and
    success rate stay an unbiased view of the policy; with `rollout.replay_unsolved` they include the problems
    played again, which are harder than fresh ones); `problems_drawn` counts this process's problems.
    """
    episodes = batch.played
    rewards = torch.tensor([e.trajectory.total_reward for e in episodes])  # the gym's own, unshaped
    trained = torch.tensor([e.reward for e in episodes])
    actions = sum(e.trajectory.num_turns for e in episodes)
    formats = [t.info["format_reward"] for e in episodes for t in e.trajectory.turns if "format_reward" in t.info]
    grouped = trained[alg.group_rows([e.group for e in episodes], group_size).reshape(-1)]
    stats = {
        "reward_mean": rewards.mean().item(),
        "reward_std": rewards.std().item() if len(rewards) > 1 else 0.0,
        "success_rate": sum(e.trajectory.solved for e in episodes) / len(episodes),
        "response_length": sum(e.policy_tokens for e in episodes) / len(episodes),
        "turns_mean": actions / len(episodes),
        "identical_groups": alg.identical_group_fraction(grouped, group_size),
        "length_limit_fraction": sum(e.hit_length_limit for e in episodes) / max(1, actions),
        "context_cut_fraction": batch.context_cuts / len(episodes),
        "episodes": len(episodes),
        "problems_drawn": len(episodes) // group_size,
        "generate_s": batch.generate_seconds,  # of the rollout's seconds, those spent sampling
    }
    if batch.gen_batches is not None:  # dynamic filtering
        stats["num_gen_batches"] = batch.gen_batches
        stats["padded_groups"] = batch.padded_groups
    if batch.replayed_seeds is not None:  # rollout.replay_unsolved: problems some sample missed before
        # Counts, present at every step and on every process (their means are taken across processes).
        replayed = set(batch.replayed_seeds)
        stats["replayed_problems"] = len(replayed)
        stats["replayed_solved"] = sum(e.trajectory.solved for e in episodes if e.trajectory.seed in replayed)
    if formats:
        stats["format_reward"] = sum(formats) / len(formats)
    if batch.model_scores:  # logged apart from the gym's (verifier's) reward above
        stats["reward_model_score"] = sum(batch.model_scores) / len(batch.model_scores)
    if not torch.equal(rewards, trained):
        stats["shaped_reward_mean"] = trained.mean().item()
    return stats


def mean_across_processes(accelerator, stats: dict[str, Any]) -> dict[str, Any]:
    if accelerator.num_processes == 1:
        return stats
    keys = sorted(k for k, v in stats.items() if isinstance(v, (int, float)))
    values = torch.tensor([float(stats[k]) for k in keys], device=accelerator.device)
    reduced = accelerator.reduce(values, reduction="mean")
    return {**stats, **dict(zip(keys, reduced.tolist()))}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
