"""ftkit GRPO against TRL's GRPOTrainer: time per step and where it goes, rollout tokens/s and held-out accuracy.

    python bench/rl_vs_trl.py --prompts 16                       # the tiny arithmetic model, 100 steps
    python bench/rl_vs_trl.py --recipe recipes/grpo_smollm2_math.yaml --steps 20   # SmolLM2-135M, LoRA, chat
    python bench/rl_vs_trl.py --steps 3 --eval-n 50 --threads 1  # a quick check that both sides train

Both sides start from the same model (the recipe's, resolved once: SmolLM2 comes from the offline
package) and train on the same gym problems in the same order (TRL's dataset is the list of problems
ftkit's seed stream draws, step by step, skipping held-out prompts), with the same number of prompts
per step and num_generations, the same completion limit, temperature, learning rate and its warm-up,
clipping and number of steps: one rollout batch and one AdamW update per step, no KL term, group
advantages scaled by the group's std, the loss averaged over every completion token of the batch.
With a LoRA recipe both sides train the recipe's adapter (the same peft LoraConfig); with a chat gym
both show the model the same conversation (TRL's conversational format: the messages ftkit's Formatter
builds, system prompt included, through the same chat template). TRL's reward function steps the gym
itself, so both are scored by the same code.

Measured per side, the first step left out as warm-up, each as a mean with its standard error over steps:
time per training step (evaluation and model loading excluded) and its phases, the same on both sides:

- rollout: sampling (ftkit's engine, TRL's `_generate`: tokenising, sampling, decoding), then scoring
  and bookkeeping (the gym's reward; ftkit's episode records, TRL's reward call, advantages and tensors);
- update: forward (with the loss, and any pass without gradient before it), backward, optimizer
  (gradient clipping and the AdamW step);
- other: the rest of the step (ftkit: logging; TRL: the Trainer's loop and logging).

Also rollout tokens/s (completion tokens sampled per second of rollout) and the greedy held-out
accuracy of each final model, both scored by `ftkit.evaluate.evaluate_on_gym` on the same problems.

Target (issue "RL second generation", item 4): ftkit/TRL time per step >= 2 at equal held-out accuracy.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

RECIPE = "recipes/grpo_arithmetic.yaml"
TRAIN_SEED, EVAL_SEED, SEED = 0, 1, 0
CLIP_EPS, MAX_GRAD_NORM, TEMPERATURE = 0.2, 1.0, 1.0
TARGET = 2.0  # ftkit at least twice as fast per step
# The rows of the timing table: (label, key); sub-phases are indented under their phase.
PHASES = [("time per step (s)", "step"), ("  rollout", "rollout"), ("    sampling", "sampling"),
          ("    scoring, bookkeeping", "scoring"), ("  update", "update"), ("    forward", "forward"),
          ("    backward", "backward"), ("    optimizer", "optimizer"), ("  other", "other")]


def bench_recipe(args, out: Path):
    """The recipe's task with the bench's settings: what ftkit runs, and what TRL's side mirrors."""
    import yaml

    from ftkit.rl.config import load_rl_recipe

    raw = yaml.safe_load(Path(args.recipe).read_text()) or {}
    batch = args.prompts * args.group_size
    gym = {**(raw.get("gym") or {}), "train_seed": TRAIN_SEED}
    if args.gym_kwargs is not None:
        gym["kwargs"] = args.gym_kwargs
    base = {
        "name": "bench_rl_vs_trl", "output_dir": str(out), "algo": "grpo", "seed": SEED,
        "method": raw.get("method", "full"), "lora": raw.get("lora"),
        "model": {"name": args.model_path, "fallback": None}, "gym": gym,
        "rollout": {"prompts_per_step": args.prompts, "num_generations": args.group_size,
                    "max_completion_length": args.max_tokens, "temperature": TEMPERATURE, "top_p": 1.0,
                    "batch_size": batch},  # every completion of a step in one engine call, as TRL does
        "train": {"max_steps": args.steps, "learning_rate": args.lr,
                  "lr_scheduler_type": "constant_with_warmup", "warmup_steps": args.warmup,  # as TRL's below
                  "weight_decay": 0.0, "num_iterations": 1, "minibatch_size": None,  # one update per rollout batch
                  "per_device_train_batch_size": batch,  # one forward/backward over the batch, as TRL's below
                  "max_grad_norm": MAX_GRAD_NORM, "epsilon": CLIP_EPS, "loss_type": "dapo",
                  "scale_rewards": "group", "beta": 0.0,
                  "save_steps": args.steps, "samples_per_step": 0},  # no checkpoint nor samples mid-run
        # eval.n also keeps the held-out prompts out of training; no evaluation between the first and last step
        "eval": {"n": args.eval_n, "seed": EVAL_SEED, "every_steps": args.steps, "max_new_tokens": args.max_tokens,
                 "samples": 0},
    }
    return load_rl_recipe(None, base={k: v for k, v in base.items() if v is not None})


def training_problems(recipe, tokenizer) -> list[dict[str, Any]]:
    """The problems ftkit will train on, step by step and in order, from ftkit's own seed stream, as TRL
    rows: the prompt as ftkit shows it (text, or the conversation with its system prompt) and the seed."""
    import gyms
    from ftkit.chat import Formatter
    from ftkit.rl.task import Task

    task = Task(recipe)  # the held-out prompts that the stream skips
    spec = recipe.gym.spec()
    env = gyms.make(spec.id, **spec.kwargs)
    formatter = Formatter(tokenizer, chat=True, system_prompt=spec.system_prompt) if spec.chat else None
    rows = []
    for step in range(recipe.train.max_steps):
        for seed in task.training_seeds(step):
            observation, _ = env.reset(seed=seed)
            prompt = formatter.messages(observation) if formatter else observation
            rows.append({"prompt": prompt, "seed": seed, "step": step})
    return rows


# ---------------------------------------------------------------------------------------------------
# ftkit


def run_ftkit(recipe) -> dict[str, Any]:
    """Train with ftkit; per step, the phases from its metrics.jsonl."""
    from rich.console import Console

    from ftkit.rl.trainer import RLRun

    summary = RLRun(recipe, overwrite=True, console=Console(stderr=True, quiet=True)).run()
    records = [json.loads(line) for line in (recipe.run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "step_s" in r]
    phases = [{"step": r["step_s"], "rollout": r["rollout_s"], "sampling": r["generate_s"],
               "update": r["update_s"], "forward": r["score_s"] + r["forward_s"], "backward": r["backward_s"],
               "optimizer": r["optimizer_s"]} for r in steps]
    return {
        "phases": phases,
        "rollout_tokens": [r["rollout_tokens_per_s"] * r["rollout_s"] for r in steps],  # tokens / rollout s
        "reward": [r["reward_mean"] for r in steps],
        "completion_length": [r["response_length"] for r in steps],
        "model_dir": summary["model_dir"],
    }


# ---------------------------------------------------------------------------------------------------
# TRL


def trl_config(args, out: Path):
    """GRPOConfig with ftkit's settings, each line saying which ftkit recipe key it matches."""
    import torch
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=str(out), max_steps=args.steps, seed=SEED,
        # TRL 1.16: per_device_train_batch_size counts completions (rows), not prompts. With one process and
        # gradient_accumulation_steps=1, steps_per_generation defaults to 1 and generation_batch_size to
        # P*G: each optimizer step samples its own P prompts x G completions and makes one update on them.
        per_device_train_batch_size=args.prompts * args.group_size, gradient_accumulation_steps=1,
        num_generations=args.group_size,
        num_iterations=1,  # one pass over each rollout batch (ftkit: the same key, one minibatch)
        shuffle_dataset=False,  # walk the dataset in order: step s gets exactly ftkit's problems of step s
        max_completion_length=args.max_tokens, temperature=TEMPERATURE, top_p=1.0, top_k=0,  # plain sampling
        beta=0.0,  # no KL term, no reference model (ftkit: the same key)
        scale_rewards="group",  # (r - group mean) / (group std + 1e-4), unbiased std: ftkit's too
        loss_type="dapo",  # sum of per-token losses / completion tokens in the whole batch: ftkit's too
        epsilon=CLIP_EPS,  # PPO clip range; epsilon_high defaults to it (symmetric, as ftkit's epsilon)
        mask_truncated_completions=False,  # ftkit trains on completions cut by the length limit too
        disable_dropout=True,  # ftkit sets every dropout to 0 (the model's config already has 0)
        learning_rate=args.lr, weight_decay=0.0,
        lr_scheduler_type="constant_with_warmup", warmup_steps=args.warmup,  # as ftkit's; 0 is plain constant
        max_grad_norm=MAX_GRAD_NORM,  # AdamW with the Trainer's default betas/eps (torch's defaults, as ftkit)
        gradient_checkpointing=False,  # TRL turns it on by default; ftkit does not checkpoint
        # ftkit trains in float32 on a CPU and in bf16 on a GPU with full fine-tuning (fp32 with LoRA)
        use_cpu=not torch.cuda.is_available(), bf16=torch.cuda.is_available() and args.method == "full",
        report_to="none", save_strategy="no", logging_steps=1, disable_tqdm=True,
    )


def gym_reward(spec):
    """TRL's reward function: the gym's own reward, replaying each problem from its seed. Chat prompts and
    completions are message lists: the question is the last user message, the answer the assistant's."""
    import gyms

    env = gyms.make(spec.id, **spec.kwargs)

    def gym_score(prompts, completions, seed, **_):
        rewards = []
        for prompt, completion, problem_seed in zip(prompts, completions, seed):
            question = prompt if isinstance(prompt, str) else prompt[-1]["content"]
            answer = completion if isinstance(completion, str) else completion[-1]["content"]
            observation, _ = env.reset(seed=problem_seed)
            if observation != question:
                raise RuntimeError(f"seed {problem_seed} replays {observation!r}, not {question!r}")
            rewards.append(float(env.step(answer)[1]))
        return rewards

    return gym_score


class PhaseClock:
    """Per-step phase times of a TRL run, from callbacks (step, optimizer step) and wrapped methods."""

    def __init__(self):
        self.steps: list[dict[str, float]] = []
        self.tokens: list[int] = []  # completion tokens sampled, per step
        self.current: dict[str, float] = {}

    def add(self, key: str, seconds: float) -> None:
        self.current[key] = self.current.get(key, 0.0) + seconds

    def timed(self, key: str, function, on_result=None):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            result = function(*args, **kwargs)
            self.add(key, time.perf_counter() - started)
            if on_result is not None:
                on_result(result)
            return result

        return wrapper

    def callback(self):
        """A TrainerCallback: each step from on_step_begin (before the rollout) to on_step_end, and the
        optimizer step between on_pre_optimizer_step and on_optimizer_step."""
        from transformers import TrainerCallback

        clock = self

        class Callback(TrainerCallback):
            def on_step_begin(self, *_, **__):
                clock.current = {"_started": time.perf_counter()}

            def on_pre_optimizer_step(self, *_, **__):
                clock.current["_optimizer_started"] = time.perf_counter()

            def on_optimizer_step(self, *_, **__):
                clock.add("optimizer", time.perf_counter() - clock.current.pop("_optimizer_started"))

            def on_step_end(self, *_, **__):
                clock.current["step"] = time.perf_counter() - clock.current.pop("_started")
                clock.steps.append(clock.current)

        return Callback()

    def instrument(self, trainer) -> None:
        """Wrap the trainer's phases (TRL 1.16's method names)."""
        trainer._generate_and_score_completions = self.timed("rollout", trainer._generate_and_score_completions)
        trainer._generate = self.timed("sampling", trainer._generate, self._count_tokens)
        trainer.compute_loss = self.timed("forward", trainer.compute_loss)
        trainer.accelerator.backward = self.timed("backward", trainer.accelerator.backward)
        trainer._clip_grad_norm = self.timed("optimizer", trainer._clip_grad_norm)

    def _count_tokens(self, result) -> None:
        self.tokens.append(sum(len(ids) for ids in result[1]))  # completion ids up to and with the eos


def run_trl(args, recipe, rows: list[dict[str, Any]], out: Path) -> dict[str, Any]:
    """What a TRL user writes: a dataset, a reward function, GRPOConfig, GRPOTrainer (with the recipe's
    LoRA adapter, if any), train()."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
    from trl import GRPOTrainer

    from ftkit.models import lora_config

    clock = PhaseClock()
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(args.model_path),
                          reward_funcs=gym_reward(recipe.gym.spec()), args=trl_config(args, out),
                          train_dataset=Dataset.from_list(rows),
                          processing_class=AutoTokenizer.from_pretrained(args.model_path),
                          peft_config=lora_config(recipe.lora) if recipe.method == "lora" else None,
                          callbacks=[clock.callback()])
    trainer.remove_callback(PrinterCallback)  # it would print every step's log dict
    clock.instrument(trainer)
    trainer.train()
    model_dir = out / "model"
    trainer.save_model(str(model_dir))
    logs = [h for h in trainer.state.log_history if "reward" in h]
    for phases in clock.steps:
        phases["update"] = sum(phases.get(k, 0.0) for k in ("forward", "backward", "optimizer"))
    return {
        "phases": clock.steps,
        "rollout_tokens": clock.tokens,
        "reward": [h["reward"] for h in logs],
        "completion_length": [h["completions/mean_length"] for h in logs],
        "model_dir": str(model_dir),
    }


# ---------------------------------------------------------------------------------------------------
# measuring


def timed(result: dict[str, Any]) -> dict[str, Any]:
    """Each phase's (mean, standard error) over the steps after the first (the warm-up), and tokens/s."""
    skip = 1 if len(result["phases"]) > 1 else 0
    steps = result["phases"][skip:]
    for phases in steps:
        phases["scoring"] = phases["rollout"] - phases["sampling"]
        phases["other"] = phases["step"] - phases["rollout"] - phases["update"]
    stats = {key: mean_se([phases[key] for phases in steps]) for _, key in PHASES}
    rollout_s = sum(phases["rollout"] for phases in steps)
    stats["rollout_tok_s"] = sum(result["rollout_tokens"][skip:]) / rollout_s if rollout_s else 0.0
    stats["steps_timed"] = len(steps)
    return stats


def mean_se(values: list[float]) -> tuple[float, float]:
    mean = statistics.mean(values)
    return mean, statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0


def heldout_accuracy(args, spec, model_dir: str):
    from ftkit.evaluate import EvalOptions, evaluate_on_gym, load_for_eval

    model, tokenizer = load_for_eval(model_dir)
    options = EvalOptions(n=args.eval_n, seed=EVAL_SEED, batch_size=256, max_new_tokens=args.max_tokens, samples=0)
    return evaluate_on_gym(model, tokenizer, spec, options), model


def weight_change(start, end) -> float:
    """L2 distance between two models' weights (a LoRA model's merged into its base): > 0 shows a side trained."""
    import torch

    if hasattr(end, "merge_and_unload"):
        end = end.merge_and_unload()
    a, b = start.state_dict(), end.state_dict()
    return math.sqrt(sum(float(torch.sum((a[k].float() - b[k].float()) ** 2)) for k in a if k in b))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=RECIPE, help=f"the GRPO recipe whose task both sides train (default {RECIPE})")
    parser.add_argument("--model", default=None, help="start model for both sides (default: the recipe's)")
    parser.add_argument("--gym-kwargs", type=str, default=None,
                        help="gym arguments as YAML/JSON (default: the recipe's)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--prompts", type=int, default=None, help="prompts per step (default: the recipe's)")
    parser.add_argument("--group-size", type=int, default=None,
                        help="completions per prompt, num_generations (default: the recipe's)")
    parser.add_argument("--max-tokens", type=int, default=None, help="max completion tokens (default: the recipe's)")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: the recipe's)")
    parser.add_argument("--warmup", type=int, default=None, help="linear warm-up steps, both sides (default: the recipe's)")
    parser.add_argument("--eval-n", type=int, default=None, help="held-out problems, eval seed 1 (default: the recipe's)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, both sides")
    parser.add_argument("--output-dir", default=None,
                        help="keep both runs here (default: a temporary folder, deleted afterwards)")
    args = parser.parse_args()
    if args.gym_kwargs is not None:
        import yaml

        args.gym_kwargs = yaml.safe_load(args.gym_kwargs)
    return args


def fill_from_recipe(args, work: Path) -> None:
    """Every setting the command line left out, from the recipe; the start model resolved once, for both."""
    from ftkit.models import resolve_model
    from ftkit.rl.config import load_rl_recipe

    recipe = load_rl_recipe(args.recipe)
    ro, train = recipe.rollout, recipe.train
    for name, value in (("prompts", ro.prompts_per_step), ("group_size", ro.num_generations),
                        ("max_tokens", ro.max_completion_length), ("lr", train.learning_rate),
                        ("warmup", train.warmup_steps), ("eval_n", recipe.eval.n)):
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.method = recipe.method
    args.model_path = resolve_model(args.model or recipe.model, work / "start", seed=SEED).path


def run_both(args, work: Path):
    """Train each side from the same model on the same problems; the start's and each side's figures."""
    from ftkit.models import load_tokenizer

    recipe = bench_recipe(args, work / "ftkit")
    spec = recipe.gym.spec()
    rows = training_problems(recipe, load_tokenizer(args.model_path, recipe.model))
    start, start_model = heldout_accuracy(args, spec, args.model_path)
    started = time.perf_counter()
    sides = {"ftkit": run_ftkit(recipe)}
    print(f"ftkit: {args.steps} steps done ({time.perf_counter() - started:.0f}s with setup and evaluation)",
          flush=True)
    started = time.perf_counter()
    sides["trl"] = run_trl(args, recipe, rows, work / "trl")
    print(f"TRL:   {args.steps} steps done ({time.perf_counter() - started:.0f}s with setup)", flush=True)
    results = {}
    for name, result in sides.items():
        end, end_model = heldout_accuracy(args, spec, result["model_dir"])
        results[name] = {**timed(result), "accuracy": end.accuracy, "correct": end.correct,
                         "weight_change": weight_change(start_model, end_model)}
    return recipe, start, sides, results


def print_settings(args, recipe, start, f: dict[str, Any]) -> None:
    import torch

    batch = args.prompts * args.group_size
    spec = recipe.gym.spec()
    timed_steps = ("steps 2-" if f["steps_timed"] < args.steps else "steps 1-") + str(args.steps)
    lora = f", LoRA r={recipe.lora.r} alpha={recipe.lora.alpha} on {recipe.lora.target_modules}" \
        if recipe.method == "lora" else ", full fine-tuning"
    chat = f", chat (system prompt: {spec.system_prompt or 'the template default'})" if spec.chat else ""
    print(f"\nrecipe {args.recipe}: model {args.model_path}{lora}")
    print(f"gym {spec.id} {json.dumps(spec.kwargs)}{chat}")
    print(f"{args.steps} steps of {args.prompts} prompts x {args.group_size} completions = {batch} per step, "
          f"<= {args.max_tokens} completion tokens, temperature {TEMPERATURE}, "
          f"lr {args.lr:g} constant after {args.warmup} warm-up steps, "
          f"clip {CLIP_EPS}, grad norm {MAX_GRAD_NORM}, no KL, std-scaled group advantages, token-mean loss")
    print(f"both sides: per_device_train_batch_size={batch}, num_generations={args.group_size}, num_iterations=1, "
          "loss_type=dapo, scale_rewards=group, beta=0; TRL: gradient_accumulation_steps=1, shuffle_dataset=False")
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, torch threads {args.threads}"
    print(f"{device}, {os.cpu_count()} CPU cores; timings are mean ± standard error over {timed_steps} "
          "(step 1 is warm-up)")
    if args.load_start is not None:  # timings mean little unless the machine had nothing else to do
        print("load average (1, 5, 15 min) at the start: {:.2f} {:.2f} {:.2f}, at the end: {:.2f} {:.2f} {:.2f}"
              .format(*args.load_start, *os.getloadavg()))
    print(f"held-out accuracy at the start: {start.accuracy:.1%} ({start.correct}/{start.n}, eval seed {EVAL_SEED})\n")


def print_timings(f: dict[str, Any], t: dict[str, Any]) -> float:
    """The phase table; returns the speed-up (TRL time / ftkit time per step)."""
    print(f"{'':30}{'ftkit':>17}{'TRL':>17}   TRL / ftkit")
    for label, key in PHASES:
        (fm, fs), (tm, ts) = f[key], t[key]
        ratio = f"{tm / fm:.2f}x" if fm > 0 else ""
        print(f"{label:30}{fm:>9.4f} ± {fs:.4f}{tm:>9.4f} ± {ts:.4f}   {ratio}")
    (fm, fs), (tm, ts) = f["step"], t["step"]
    speed = tm / fm
    speed_se = speed * math.sqrt((fs / fm) ** 2 + (ts / tm) ** 2)
    print(f"\nspeed-up per step: {speed:.2f}x ± {speed_se:.2f} (TRL time / ftkit time; > 1: ftkit faster)")
    print(f"{'rollout tokens/s':30}{f['rollout_tok_s']:>17,.0f}{t['rollout_tok_s']:>17,.0f}   "
          f"{f['rollout_tok_s'] / t['rollout_tok_s']:.2f}x (ftkit / TRL)")
    return speed


def print_comparison(args, sides: dict[str, dict[str, Any]], results: dict[str, dict[str, Any]]) -> None:
    f, t = results["ftkit"], results["trl"]
    ftkit, trl = sides["ftkit"], sides["trl"]
    speed = print_timings(f, t)
    diff = f["accuracy"] - t["accuracy"]
    # One standard error of the difference of two accuracies measured on n problems each.
    se = math.sqrt((f["accuracy"] * (1 - f["accuracy"]) + t["accuracy"] * (1 - t["accuracy"])) / args.eval_n)
    print(f"{'held-out accuracy after training':30}{f['accuracy']:>17.1%}{t['accuracy']:>17.1%}   "
          f"{diff * 100:+.1f} points (one standard error: {se * 100:.1f}, n={args.eval_n})")
    print(f"{'mean reward, first step':30}{ftkit['reward'][0]:>17.3f}{trl['reward'][0]:>17.3f}")
    print(f"{'mean reward, all steps':30}{statistics.mean(ftkit['reward']):>17.3f}"
          f"{statistics.mean(trl['reward']):>17.3f}")
    print(f"{'mean completion tokens':30}{statistics.mean(ftkit['completion_length']):>17.2f}"
          f"{statistics.mean(trl['completion_length']):>17.2f}")
    print(f"{'weight change from start (L2)':30}{f['weight_change']:>17.4f}{t['weight_change']:>17.4f}")
    if diff >= 0:
        accuracy = "better" if diff > 0 else "equal"
    else:  # RL is noisy: a gap smaller than one standard error does not tell the two apart
        accuracy = "equal within one standard error" if -diff <= se else "lower"
    met = speed >= TARGET and accuracy != "lower"
    print(f"\ntarget (ftkit at least {TARGET:g}x as fast per step at equal held-out accuracy): "
          f"{'met' if met else 'NOT met'} (speed {speed:.2f}x, accuracy {accuracy})")
    print("rollout = sampling (tokenising, sampling, decoding) + scoring and bookkeeping (the gym's reward; ftkit's "
          "episode records, TRL's reward call, advantages and tensors); update = forward (with the loss) + backward "
          "+ optimizer (clipping, AdamW); other = the rest of the step")


def main() -> None:
    from ftkit.cli import quiet_libraries

    quiet_libraries()  # the libraries' advisory chatter would bury the figures
    args = parse_args()
    import torch

    torch.set_num_threads(args.threads)
    args.load_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    work = Path(args.output_dir) if args.output_dir else Path(tempfile.mkdtemp(prefix="bench_rl_vs_trl_"))
    try:
        fill_from_recipe(args, work)
        recipe, start, sides, results = run_both(args, work)
    finally:
        if not args.output_dir:
            shutil.rmtree(work, ignore_errors=True)
    print_settings(args, recipe, start, results["ftkit"])
    print_comparison(args, sides, results)


if __name__ == "__main__":
    main()
