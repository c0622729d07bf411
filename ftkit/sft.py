"""Supervised fine-tuning (full, LoRA, QLoRA) through TRL's SFTTrainer, from a YAML recipe.

    ftkit sft recipes/gpt2_math.yaml
    ftkit sft recipes/gpt2_math.yaml method=lora train.learning_rate=1e-4 output_dir=runs/lora_try

The run follows a fixed shape: set up the run folder, the model, the data and the trainer; train;
save the model; evaluate on held-out problems; write curves and summary. Each step is a small method,
so reading `SFTRun.run()` top to bottom is reading what fine-tuning is.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console

from ftkit import callbacks, trackers
from ftkit.config import Recipe, recipe_to_yaml
from ftkit.errors import ConfigError, TrainingError
from ftkit.evaluate import (
    EvalResult,
    difficulty_key,
    generate,
    gym_prompt_ids,
    heldout_problems,
    samples_markdown,
    score_completions,
)
from ftkit.models import (
    ResolvedModel,
    count_parameters,
    load_model,
    load_tokenizer,
    lora_config,
    resolve_model,
)
from ftkit.plots import plot_run
from ftkit.report import difficulty_fields
from ftkit.report import refresh as refresh_report
from ftkit.runs import (
    MetricsLog,
    TrainingData,
    checkpoint_step,
    last_complete_checkpoint,
    save_folder_atomic,
    start_run_folder,
    write_json_atomic,
    write_text_atomic,
)
from ftkit.sft_data import DataModel, TrainingSet, data_model, training_set
from ftkit.trl_patches import score_only_trained_positions
from gyms.spec import GymSpec


def main(recipe: Recipe, *, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Run a recipe end to end; returns the summary (also written to summary.json).

        ftkit sft recipes/gpt2_math.yaml train.learning_rate=1e-4

        summary = ftkit.sft.main(load_recipe("recipes/gpt2_math.yaml", ["train.learning_rate=1e-4"]))
    """
    return SFTRun(recipe, resume=resume, overwrite=overwrite).run()


# The TRL trainer each kind of recipe runs with.
TRAINERS = {"sft": "SFTTrainer", "dpo": "DPOTrainer", "rm": "RewardTrainer"}


class SFTRun:
    accuracy_label = "held-out accuracy"

    def __init__(self, recipe: Recipe, *, resume: bool = False, overwrite: bool = False,
                 console: Console | None = None):
        import torch
        from accelerate import PartialState

        # Under `accelerate launch` every process runs this; only the main one writes the run folder.
        # On a CPU, `cpu=True` is what makes the launched processes a gloo group (MULTI_CPU); under
        # DeepSpeed the state must come from its launch config instead.
        deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
        self.state = PartialState(cpu=not torch.cuda.is_available() and not deepspeed)
        self.is_main = self.state.is_main_process
        self.recipe = recipe
        self.resume = resume
        self.overwrite = overwrite
        self.run_dir = recipe.run_dir
        # soft_wrap: a long line stays one line in logs and pipes (rich wraps at 80 columns otherwise)
        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl")
        self.heldout_callback: callbacks.HeldoutAccuracyCallback | None = None  # with eval.every_steps
        self.resume_checkpoint: Path | None = None  # --resume: the last complete checkpoint (_setup_trainer)
        # Made by _setup_data():
        self.data_model: DataModel | None = None  # the tokenizer and context length, before the model is loaded
        self.train_set: TrainingSet | None = None  # the examples as ids, each with where it came from
        self.train_dataset = None  # datasets.Dataset: input_ids and labels, as TRL takes them
        self.train_prompts: set[str] = set()  # held-out problems skip these
        self.eval_dataset = None  # a held-out file's examples, for the eval loss
        self.eval_gym: GymSpec | None = None  # what accuracy is scored on
        self.heldout: list[dict[str, Any]] = []
        # Made by _setup_model() and _setup_trainer():
        self.resolved: ResolvedModel | None = None
        self.tokenizer = None
        self.model = None
        self.peft_config = None
        self.trainer = None  # TRL's SFTTrainer, DPOTrainer or RewardTrainer
        self.params: dict[str, int] = {}
        self.layout: dict[str, Any] = {}  # how the global batch is split over processes
        self.effective_train_args: dict[str, Any] = {}
        # Made by train() and save_model():
        self.train_metrics: dict[str, Any] = {}
        self.model_dir = self.run_dir / "model"

    def run(self) -> dict[str, Any]:
        trackers.require(self.recipe.report_to)  # a missing tracker library is found before anything is made
        self._setup_data()  # first: a bad dataset should not leave an empty run folder behind
        self._check_stop_rule()
        self._setup_run_dir()
        try:
            self._setup_model()
            self._setup_trainer()
        except Exception:
            if not self.resume:  # nothing was trained yet: leave no half-made run folder behind
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise
        if self.is_main:
            self._announce()
        self.train()
        self.save_model()
        result = self.evaluate() if self.is_main else None
        summary = self.write_report(result) if self.is_main else {"process": self.state.process_index}
        self.state.wait_for_everyone()
        return summary

    # -- setup -------------------------------------------------------------------------------------

    def _setup_run_dir(self) -> None:
        if self.is_main:
            start_run_folder(self.run_dir, recipe_to_yaml(self.recipe), resume=self.resume, overwrite=self.overwrite)
        self.state.wait_for_everyone()

    def _setup_model(self) -> None:
        cfg = self.recipe.model
        with self.state.main_process_first():  # a scratch model is built once, then read by the others
            self.resolved: ResolvedModel = resolve_model(cfg, self.run_dir, seed=self.recipe.seed)
        self.tokenizer = load_tokenizer(self.resolved.path, cfg)
        self.model = self._load_model()
        self.peft_config = lora_config(self.recipe.lora) if self.recipe.method in ("lora", "qlora") else None

    def _load_model(self):
        """The model to train (a causal LM here; the reward-model run loads a one-output head)."""
        return load_model(self.resolved.path, self.recipe.model, self.recipe.method, self.recipe.quantization)

    def _setup_data(self) -> None:
        """Every example as the ids the model sees (`ftkit.sft_data`, also what `ftkit data show` shows)."""
        r = self.recipe
        self.data_model = data_model(r.model)
        self.train_set = training_set(r, self.data_model)
        self.train_dataset = self.train_set.dataset()
        self.train_prompts = self.train_set.prompts
        if r.data.eval_path:
            self.eval_dataset = training_set(r, self.data_model, r.data.eval_path).dataset()
        self.eval_gym = _eval_task(r, chat_data=self.train_set.chat)
        self.heldout = []
        if self.eval_gym and r.eval.n > 0:
            self.heldout = heldout_problems(self.eval_gym, r.eval.n, r.eval.seed, exclude_prompts=self.train_prompts)
        note = self.train_set.cut_note()
        if note and self.is_main:
            self.console.print(note)

    def _check_stop_rule(self) -> None:
        """Each of `eval.stop_when`'s conditions must watch problems that the evaluations during training score."""
        scored = self.heldout[: self.recipe.eval.during_training_n]
        if self.recipe.eval.stop_when and not scored:
            raise ConfigError("eval.stop_when needs held-out problems to score: give the recipe a gym (or eval.gym) "
                              "and eval.n > 0")
        for condition in self.recipe.eval.stop_when:
            if not any(_has_difficulty(p, condition.difficulty) for p in scored):
                seen = sorted({difficulty_key(p.get("difficulty") or {}) for p in scored}) or ["none"]
                raise ConfigError(f"eval.stop_when: difficulty {condition.difficulty} matches none of the held-out "
                                  f"problems scored during training (their difficulties: {', '.join(seen)})")

    def _setup_trainer(self) -> None:
        """TRL's trainer for the recipe's kind (SFTTrainer, DPOTrainer, RewardTrainer: one signature)."""
        import trl
        from transformers.trainer_callback import PrinterCallback

        trainer_class = getattr(trl, TRAINERS[self.recipe.kind])
        score_only_trained_positions()  # on a CPU too, as TRL does on GPUs (ftkit/trl_patches.py says why)
        extra_callbacks = [callbacks.ProgressCallback(self.console), callbacks.MetricsCallback(self.metrics),
                           callbacks.NanGuard()]
        if self.recipe.eval.every_steps and self.heldout:
            self.heldout_callback = callbacks.HeldoutAccuracyCallback(
                self.recipe.eval.every_steps, self._quick_heldout_accuracy, self.metrics,
                stop_when=self.recipe.eval.stop_when, console=self.console,
                after=self._after_evaluation)
            extra_callbacks.append(self.heldout_callback)
        self.trainer = trainer_class(
            model=self.model,
            args=self._sft_config(),
            train_dataset=self.train_dataset,
            eval_dataset=self.eval_dataset,
            processing_class=self.tokenizer,
            peft_config=self.peft_config,
            callbacks=extra_callbacks,
        )
        # With disable_tqdm, transformers prints every log dict; ftkit's progress bar replaces it.
        self.trainer.remove_callback(PrinterCallback)
        # TensorBoard into the run folder, the recipe as config; a --resume hides the killed run's later steps.
        if self.resume:
            self.resume_checkpoint = last_complete_checkpoint(self.run_dir / "checkpoints")
        resumed_at = checkpoint_step(self.resume_checkpoint) if self.resume_checkpoint else 0
        trackers.attach_to_trainer(self.trainer, self.recipe, resumed_at=resumed_at)
        trainable, total = count_parameters(self.trainer.model)
        self.params = {"trainable": trainable, "total": total}

    def _after_evaluation(self, record: dict[str, Any]) -> None:
        """An evaluation during training: its numbers to the recipe's trackers, and report.html redrawn
        (reloading the page shows it)."""
        trackers.log_to_trainer_trackers(self.trainer, record)
        refresh_report(self.run_dir, self.console)

    def _announce(self) -> None:
        """What is about to happen, once everything has been checked."""
        c, resolved = self.console, self.resolved
        c.print(f"run folder: {self.run_dir}")
        if resolved.is_fallback:
            c.print(f"[bold yellow]FALLBACK:[/] {resolved.fallback_reason}; training {resolved.used} "
                    f"instead of {resolved.spec} with the fallback's settings (recorded in summary.json)")
        c.print(f"model: {resolved.used} ({self.params['total'] / 1e6:.2f}M parameters, "
                f"{self.params['trainable'] / 1e6:.2f}M trainable, method {self.recipe.method})")
        c.print(f"weights: {resolved.weights_source}", markup=False, highlight=False)
        c.print(f"data: {len(self.train_dataset):,} training examples"
                + (f", {len(self.heldout):,} held-out problems from {self.eval_gym.id}" if self.heldout else ""))

    def _sft_config(self):
        """TRL's config (SFTConfig here; DPOConfig, RewardConfig in `ftkit.preference`): ftkit's defaults,
        then the recipe's `train:`, then the fallback's overrides."""
        import dataclasses

        import torch

        from ftkit.config import trl_config_class

        config_class = trl_config_class(self.recipe.kind)
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        defaults: dict[str, Any] = {
            "output_dir": str(self.run_dir / "checkpoints"),
            "seed": self.recipe.seed,
            "bf16": bf16,  # TRL defaults to bf16=True, which CPUs run slowly or not at all
            "use_cpu": not torch.cuda.is_available(),
            **trackers.trl_settings(self.recipe),  # report_to (and run_name, project with trackers)
            "disable_tqdm": True,  # ftkit's own progress bar shows loss and tokens/s
            "logging_steps": 10,
            "logging_first_step": True,
            # transformers hides NaN/inf losses from the logs by default; ftkit wants to see them and stop.
            "logging_nan_inf_filter": False,
            "save_strategy": "steps",
            "save_steps": 500,
            "save_total_limit": 2,
            # TRL turns activation checkpointing on by default: ~30% slower, and small models don't need it.
            "activation_checkpointing": False,
            "dataloader_num_workers": 0,
        }
        if self.eval_dataset is not None:  # a held-out file: log its loss beside the training loss
            defaults.update(eval_strategy="steps", eval_steps=self.recipe.train.get("save_steps", 500))
        known = {f.name for f in dataclasses.fields(config_class)}
        defaults = {k: v for k, v in defaults.items() if k in known}
        args = {**defaults, **self.recipe.train, **self.resolved.train_overrides}
        if "gradient_checkpointing" in args:  # transformers' old name; the new one would silently win
            args["activation_checkpointing"] = args.pop("gradient_checkpointing")
        self.layout = split_global_batch(args, self.state.num_processes)
        self.layout["distributed_type"] = str(self.state.distributed_type).split(".")[-1]
        self.effective_train_args = {k: v for k, v in args.items() if k != "output_dir"}
        try:
            return config_class(**args)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"train: {str(exc).splitlines()[0]}") from None

    # -- train -------------------------------------------------------------------------------------

    def train(self) -> None:
        checkpoint = self.resume_checkpoint
        if self.resume:
            if checkpoint is None:
                raise TrainingError(f"--resume: no complete checkpoint in {self.run_dir / 'checkpoints'}; "
                                    "run again without --resume (and with --overwrite) to start over")
            step = checkpoint_step(checkpoint)
            if self.is_main:
                self.metrics.truncate_after(step)
                self.console.print(f"resuming from {checkpoint} (step {step})")
        started = time.perf_counter()
        output = self.trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        self.train_metrics = dict(output.metrics)
        self.train_metrics["wall_time_s"] = time.perf_counter() - started

    # -- save --------------------------------------------------------------------------------------

    def save_model(self) -> None:
        """Save the trained model as a standard Hugging Face folder (adapters too, for LoRA/QLoRA).

        Each folder is written beside its final place and renamed into it, so a kill during the save
        leaves the previous version (or nothing), never a half-written model.
        """
        self.model_dir = self.run_dir / ("model" if self.peft_config is None else "adapter")
        # The trainer's own save: the main process writes, and under DeepSpeed ZeRO-3 the shards of
        # every process are gathered into full weights first (so every process must take part).
        staging = self.model_dir.with_name(f".{self.model_dir.name}.saving")
        if self.is_main:
            shutil.rmtree(staging, ignore_errors=True)
        self.state.wait_for_everyone()
        self.trainer.save_model(str(staging))
        self.state.wait_for_everyone()
        if not self.is_main:
            return
        if self.peft_config is None and not (staging / "model.safetensors").is_file() and \
                not any(staging.glob("model*.safetensors")):
            raise TrainingError(f"saving the model wrote no safetensors weights to {staging}")
        (staging / "training_args.bin").unlink(missing_ok=True)  # a pickle; the run folder keeps recipe.yaml
        self.tokenizer.save_pretrained(str(staging))
        save_folder_atomic(self.model_dir, lambda d: _move_contents(staging, d))
        shutil.rmtree(staging, ignore_errors=True)
        if self.peft_config is not None and self.recipe.merge_adapter:
            from ftkit.export import merge_adapter

            merge_adapter(self.model_dir, self.run_dir / "merged")
            self.console.print(f"merged LoRA into a plain model folder: {self.run_dir / 'merged'}")
        self._training_data_info().save(self.model_dir)
        # (only the main process gets here)

    def _training_data_info(self) -> TrainingData:
        """The task and the oracle examples trained on, for `ftkit eval` (model/ftkit_training_data.json)."""
        r = self.recipe
        # the task and how the model saw it (chat, system prompt): `ftkit eval` and RL from this model use it
        return TrainingData(gym=r.gym.spec() if r.gym else self.eval_gym,
                            train_seed=r.gym.train_seed if r.from_gym else None,
                            train_size=r.data.train_size if r.from_gym else None,
                            path=r.data.path, eval_seed=r.eval.seed, trained_with=f"ftkit {r.kind}")

    # -- evaluate ----------------------------------------------------------------------------------

    def evaluate(self) -> EvalResult | None:
        if not self.heldout:
            return None
        ev = self.recipe.eval
        completions = generate(self.trainer.model, self.tokenizer, self._prompt_ids(self.heldout),
                               max_new_tokens=ev.max_new_tokens, batch_size=ev.batch_size)
        result = score_completions(self.eval_gym, self.heldout, completions, ev.samples)
        write_json_atomic(self.run_dir / "eval.json", result.to_dict())
        write_text_atomic(self.run_dir / "samples.md", samples_markdown(result))
        self.metrics.append({"step": self.trainer.state.global_step, "heldout_accuracy": result.accuracy,
                             **difficulty_fields(result.by_difficulty)})
        return result

    def _quick_heldout_accuracy(self, model) -> tuple[float, dict[str, float], dict[str, float]]:
        """Accuracy on the first `eval.during_training_n` held-out problems, on the difficulty that each
        of `eval.stop_when`'s conditions watches (labelled like eval.json's groups, e.g. "op=-"), and on
        each difficulty group (as metrics.jsonl fields)."""
        ev = self.recipe.eval
        problems = self.heldout[: ev.during_training_n]
        completions = generate(model, self.tokenizer, self._prompt_ids(problems),
                               max_new_tokens=ev.max_new_tokens, batch_size=ev.batch_size)
        result = score_completions(self.eval_gym, problems, completions, samples=0)
        watched = {}
        for condition in ev.stop_when:
            pairs = [(p, c) for p, c in zip(problems, completions) if _has_difficulty(p, condition.difficulty)]
            part = score_completions(self.eval_gym, [p for p, _ in pairs], [c for _, c in pairs], samples=0)
            watched[difficulty_key(condition.difficulty)] = part.accuracy
        return result.accuracy, watched, difficulty_fields(result.by_difficulty)

    def _prompt_ids(self, problems: list[dict[str, Any]]) -> list[list[int]]:
        """Held-out prompts as the model was trained on them: chat and system prompt from the eval gym."""
        return gym_prompt_ids(self.tokenizer, self.eval_gym, [p["prompt"] for p in problems])

    # -- report ------------------------------------------------------------------------------------

    def write_report(self, result: EvalResult | None) -> dict[str, Any]:
        plots = plot_run(self.run_dir)
        runtime = float(self.train_metrics.get("train_runtime", 0.0))
        # non-padding tokens (prompt and completion), as counted by TRL
        tokens = max(float(self.train_metrics.get("num_tokens") or 0), _logged_tokens(self.metrics))
        summary = {
            "model": self.resolved.used,
            "requested_model": self.resolved.spec,
            "fallback_used": self.resolved.is_fallback,
            "fallback_reason": self.resolved.fallback_reason,
            "weights_source": self.resolved.weights_source,
            "method": self.recipe.method,
            "eval_accuracy": result.accuracy if result else None,
            "eval_by_difficulty": result.by_difficulty if result else None,
            "eval_n": result.n if result else 0,
            "train_runtime_s": runtime,
            "train_tokens": tokens,
            "tokens_per_s": tokens / runtime if runtime else None,
            "train_loss": self.train_metrics.get("train_loss"),
            "steps": self.trainer.state.global_step,
            "parameters": self.params,
            "train_args": self.effective_train_args,
            "model_dir": str(self.model_dir),
            "plots": [str(p) for p in plots],
            "resumed": self.resume,
            "layout": self.layout,
            # eval.stop_when: the step and watched accuracy that ended training early (None: it ran out)
            "stopped_early": self.heldout_callback.stopped_at if self.heldout_callback else None,
        }
        write_json_atomic(self.run_dir / "summary.json", summary)
        self._print_summary(summary, result)
        page = refresh_report(self.run_dir, self.console)  # last: the page shows summary.json too
        if page:
            self.console.print(f"report: {page}  (open it in a browser; no network needed)")
        return summary

    def _print_summary(self, summary: dict[str, Any], result: EvalResult | None) -> None:
        c = self.console
        if result is not None:
            c.print(f"{self.accuracy_label}: [bold]{result.accuracy:.1%}[/] ({result.correct}/{result.n})")
            for key, g in result.by_difficulty.items():
                c.print(f"  {key:<24} {g['accuracy']:.1%} ({g['correct']}/{g['n']})")
        tps = summary["tokens_per_s"]
        c.print(f"trained {summary['steps']} steps in {summary['train_runtime_s']:.0f}s"
                + (f" ({tps:,.0f} tokens/s)" if tps else ""))
        c.print(f"model: {summary['model_dir']}   curves: {', '.join(summary['plots'])}")
        c.print(f"run folder: {self.run_dir}  (summary.json, metrics.jsonl, samples.md)")


# ---------------------------------------------------------------------------------------------------
# helpers


def _eval_task(recipe: Recipe, chat_data: bool = False) -> GymSpec | None:
    """The gym to score on: eval.gym, else the recipe's gym, else the gym a collected folder came from.

    Shown as the model was trained: eval.gym's chat and system prompt where it sets them, else the recipe
    gym's, else chat when the training data were conversations (`chat_data`).
    """
    gym, asked = recipe.gym, recipe.eval.gym
    chat, system = (gym.chat, gym.system_prompt) if gym else (chat_data, None)
    if asked is not None:
        if {"chat", "system_prompt"} & asked.model_fields_set:
            chat, system = asked.chat, asked.system_prompt
        return replace(asked.spec(), chat=chat, system_prompt=system if chat else None)
    if gym is not None:
        return gym.spec()
    path = recipe.data.path
    if path:
        from data_tools.store import is_collected, read_manifest

        if is_collected(path):  # `ftkit collect` recorded which gym (and settings) the rows came from
            manifest = read_manifest(path)
            if manifest.get("gym"):
                return GymSpec(manifest["gym"], manifest.get("gym_kwargs") or {}, chat=chat)
    return None


def _has_difficulty(problem: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether a held-out problem's difficulty includes every `key: value` of `wanted` ({} matches all)."""
    difficulty = problem.get("difficulty") or {}
    return all(str(difficulty.get(k)) == str(v) for k, v in wanted.items())


def split_global_batch(args: dict[str, Any], processes: int) -> dict[str, Any]:
    """Keep the recipe's global batch whatever the process count: divide the per-device batch (or else
    the gradient accumulation) by the number of processes, in place; returns the layout.

    The recipe's `per_device_train_batch_size x gradient_accumulation_steps` is the batch of one
    process, and so the global batch: 32 x 1 on one process is 16 x 1 on two and 4 x 1 on eight.
    """
    per_device = int(args.get("per_device_train_batch_size", 8))
    accumulation = int(args.get("gradient_accumulation_steps", 1))
    global_batch = per_device * accumulation
    if processes > 1:
        if per_device % processes == 0:
            per_device //= processes
        elif accumulation % processes == 0:
            accumulation //= processes
        else:
            raise ConfigError(f"the global batch of {global_batch} (train.per_device_train_batch_size {per_device} x "
                              f"gradient_accumulation_steps {accumulation}) cannot be split evenly over {processes} "
                              "processes: make one of them a multiple of the process count")
        args["per_device_train_batch_size"], args["gradient_accumulation_steps"] = per_device, accumulation
    return {"processes": processes, "per_device_batch": per_device, "gradient_accumulation": accumulation,
            "global_batch": global_batch}


def _move_contents(source, target) -> None:
    for item in source.iterdir():
        shutil.move(str(item), str(target / item.name))


def _logged_tokens(metrics: MetricsLog) -> float:
    counts = [r["num_tokens"] for r in metrics.read() if isinstance(r.get("num_tokens"), (int, float))]
    return float(max(counts)) if counts else 0.0
