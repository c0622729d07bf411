"""ftkit GRPO against TRL's GRPOTrainer: time per step, rollout tokens/s and held-out accuracy, in one run.

    python bench/rl_vs_trl.py                                    # 100 steps each side, about 2.5 minutes
    python bench/rl_vs_trl.py --steps 3 --eval-n 50 --threads 1  # a quick check that both sides train

Both sides start from the same model folder and train on the same gym problems, in the same order
(TRL's dataset is the list of problems ftkit's seed stream draws, step by step, skipping held-out
prompts), with the same number of prompts per step and num_generations, the same completion limit,
temperature, learning rate and its warm-up, clipping and number of steps: one rollout batch and one
AdamW update per step, no KL term, group advantages scaled by the group's std, the loss averaged over every completion
token of the batch. TRL's reward function steps the gym itself, so both are scored by the same code.

Measured per side, the first step left out as warm-up: time per training step (rollout and update;
evaluation and model loading excluded), rollout tokens/s (completion tokens sampled per second of
rollout, where a rollout is tokenising, sampling, decoding and scoring by the gym on both sides), and
the greedy held-out accuracy of each final model, both scored by `ftkit.evaluate.evaluate_on_gym` on
the same problems.

Target (issue): ftkit/TRL time per step >= 1.0 (ftkit at least as fast) at equal or better accuracy.
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
from typing import Any, NamedTuple

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

GYM = "arithmetic"
RECIPE = Path("recipes/grpo_arithmetic.yaml")  # the task `ftkit rl --gym arithmetic` runs, when it exists
FALLBACK_GYM_KWARGS = {"ops": ["+", "-"], "digits": 3, "answer_format": "reversed"}
FALLBACK_LR = 1e-4
FALLBACK_MODEL = "runs/gpt2_math/model"
TRAIN_SEED, EVAL_SEED, SEED = 0, 1, 0
CLIP_EPS, MAX_GRAD_NORM, TEMPERATURE = 0.2, 1.0, 1.0


class TaskDefaults(NamedTuple):
    gym_kwargs: dict[str, Any]
    lr: float
    warmup: int
    model: str
    source: str  # where the values came from, for the printout


def task_defaults() -> TaskDefaults:
    """Gym kwargs, learning rate, warm-up steps and start model of the shipped GRPO arithmetic recipe."""
    if not RECIPE.is_file():
        return TaskDefaults(FALLBACK_GYM_KWARGS, FALLBACK_LR, 0, FALLBACK_MODEL,
                            f"built-in defaults ({RECIPE} not found)")
    import yaml

    raw = yaml.safe_load(RECIPE.read_text()) or {}
    train = raw.get("train") or {}
    return TaskDefaults(gym_kwargs=(raw.get("gym") or {}).get("kwargs") or FALLBACK_GYM_KWARGS,
                        lr=float(train.get("learning_rate") or FALLBACK_LR),
                        warmup=int(train.get("warmup_steps") or 0),
                        model=(raw.get("model") or {}).get("name") or FALLBACK_MODEL,
                        source=str(RECIPE))


def ftkit_recipe(args, out: Path):
    from ftkit.rl.config import load_rl_recipe

    batch = args.prompts * args.group_size
    return load_rl_recipe(None, base={
        "name": "bench_rl_vs_trl", "output_dir": str(out), "algo": "grpo", "method": "full", "seed": SEED,
        "model": {"name": args.model, "fallback": None},
        "gym": {"id": GYM, "kwargs": args.gym_kwargs, "train_seed": TRAIN_SEED},
        "rollout": {"prompts_per_step": args.prompts, "num_generations": args.group_size,
                    "max_completion_length": args.max_tokens, "temperature": TEMPERATURE, "top_p": 1.0,
                    "batch_size": batch},  # every completion of a step in one generate() call, as TRL does
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
    })


def training_problems(recipe) -> list[dict[str, Any]]:
    """The problems ftkit will train on, step by step and in order, from ftkit's own seed stream."""
    import gyms
    from ftkit.rl.task import Task

    task = Task(recipe)  # the held-out prompts that the stream skips
    env = gyms.make(GYM, **recipe.gym.kwargs)
    rows = []
    for step in range(recipe.train.max_steps):
        for seed in task.training_seeds(step):
            prompt, _ = env.reset(seed=seed)
            rows.append({"prompt": prompt, "seed": seed, "step": step})
    return rows


# ---------------------------------------------------------------------------------------------------
# the two sides


def run_ftkit(recipe) -> dict[str, Any]:
    from rich.console import Console

    from ftkit.rl.trainer import RLRun

    summary = RLRun(recipe, overwrite=True, console=Console(stderr=True, quiet=True)).run()
    records = [json.loads(line) for line in (recipe.run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "step_s" in r]
    return {
        "step_s": [r["step_s"] for r in steps],
        "rollout_s": [r["rollout_s"] for r in steps],
        # rollout_tokens_per_s is the step's generated tokens / rollout seconds
        "rollout_tokens": [r["rollout_tokens_per_s"] * r["rollout_s"] for r in steps],
        "reward": [r["reward_mean"] for r in steps],
        "completion_length": [r["response_length"] for r in steps],
        "model_dir": summary["model_dir"],
    }


def trl_config(args, out: Path):
    """GRPOConfig with ftkit's settings, each line saying which ftkit recipe key it matches."""
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
        use_cpu=True, bf16=False,  # TRL defaults to bf16; ftkit trains in float32 on the CPU
        report_to="none", save_strategy="no", logging_steps=1, disable_tqdm=True,
    )


def gym_reward(gym_kwargs: dict[str, Any]):
    """TRL's reward function: the gym's own reward, replaying each problem from its seed."""
    import gyms

    env = gyms.make(GYM, **gym_kwargs)

    def gym_score(prompts, completions, seed, **_):
        rewards = []
        for prompt, completion, problem_seed in zip(prompts, completions, seed):
            observation, _ = env.reset(seed=problem_seed)
            if observation != prompt:
                raise RuntimeError(f"seed {problem_seed} replays {observation!r}, not {prompt!r}")
            rewards.append(float(env.step(completion)[1]))
        return rewards

    return gym_score


def step_timer():
    """A TrainerCallback timing each optimizer step: from on_step_begin (before the rollout) to on_step_end."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.started, self.seconds = 0.0, []

        def on_step_begin(self, *_, **__):
            self.started = time.perf_counter()

        def on_step_end(self, *_, **__):
            self.seconds.append(time.perf_counter() - self.started)

    return StepTimer()


def time_rollouts(trainer) -> tuple[list[float], list[int]]:
    """Time TRL's rollout the way ftkit's is timed: `_generate` (tokenise, sample, decode) plus
    `_calculate_rewards`. Returns the lists (seconds, completion tokens) that fill as it trains."""
    rollout_s: list[float] = []
    rollout_tokens: list[int] = []
    generate, score = trainer._generate, trainer._calculate_rewards

    def timed_generate(prompts):
        started = time.perf_counter()
        result = generate(prompts)
        rollout_s.append(time.perf_counter() - started)
        rollout_tokens.append(sum(len(ids) for ids in result[1]))  # completion ids up to and with the eos
        return result

    def timed_score(*a, **kw):
        started = time.perf_counter()
        result = score(*a, **kw)
        rollout_s[-1] += time.perf_counter() - started
        return result

    trainer._generate, trainer._calculate_rewards = timed_generate, timed_score
    return rollout_s, rollout_tokens


def run_trl(args, rows: list[dict[str, Any]], out: Path) -> dict[str, Any]:
    """What a TRL user writes: a dataset, a reward function, GRPOConfig for the CPU, GRPOTrainer, train()."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
    from trl import GRPOTrainer

    timer = step_timer()
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(args.model),
                          reward_funcs=gym_reward(args.gym_kwargs), args=trl_config(args, out),
                          train_dataset=Dataset.from_list(rows),
                          processing_class=AutoTokenizer.from_pretrained(args.model), callbacks=[timer])
    trainer.remove_callback(PrinterCallback)  # it would print every step's log dict
    rollout_s, rollout_tokens = time_rollouts(trainer)
    trainer.train()
    model_dir = out / "model"
    trainer.save_model(str(model_dir))
    logs = [h for h in trainer.state.log_history if "reward" in h]
    return {
        "step_s": timer.seconds,
        "rollout_s": rollout_s,
        "rollout_tokens": rollout_tokens,
        "reward": [h["reward"] for h in logs],
        "completion_length": [h["completions/mean_length"] for h in logs],
        "model_dir": str(model_dir),
    }


# ---------------------------------------------------------------------------------------------------
# measuring


def timed(result: dict[str, Any]) -> dict[str, float]:
    """Mean step time and rollout tokens/s over the steps after the first (the warm-up)."""
    skip = 1 if len(result["step_s"]) > 1 else 0
    steps, roll_s, tokens = (result[k][skip:] for k in ("step_s", "rollout_s", "rollout_tokens"))
    return {"step_s": statistics.mean(steps), "rollout_s": statistics.mean(roll_s),
            "rollout_tok_s": sum(tokens) / sum(roll_s), "steps_timed": len(steps)}


def heldout_accuracy(args, model_dir: str):
    from ftkit.evaluate import EvalOptions, evaluate_on_gym, load_for_eval
    from gyms.spec import GymSpec

    model, tokenizer = load_for_eval(model_dir)
    options = EvalOptions(n=args.eval_n, seed=EVAL_SEED, batch_size=256, max_new_tokens=args.max_tokens, samples=0)
    result = evaluate_on_gym(model, tokenizer, GymSpec(GYM, args.gym_kwargs), options)
    return result, model


def weight_change(start, end) -> float:
    """L2 distance between two models' weights: > 0 shows that a side trained."""
    import torch

    a, b = start.state_dict(), end.state_dict()
    return math.sqrt(sum(float(torch.sum((a[k].float() - b[k].float()) ** 2)) for k in a if k in b))


def parse_args(defaults: TaskDefaults) -> argparse.Namespace:
    source = defaults.source
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=defaults.model,
                        help=f"model folder both sides start from (default from {source})")
    parser.add_argument("--gym-kwargs", type=str, default=None,
                        help=f"arithmetic gym arguments as YAML/JSON (default from {source}: {defaults.gym_kwargs})")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--prompts", type=int, default=16, help="prompts per step (P)")
    parser.add_argument("--group-size", type=int, default=16, help="completions per prompt (G: num_generations)")
    parser.add_argument("--max-tokens", type=int, default=6, help="max completion tokens (answer + eos)")
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--warmup", type=int, default=defaults.warmup, help="linear warm-up steps, both sides")
    parser.add_argument("--eval-n", type=int, default=500, help="held-out problems (eval seed 1)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, both sides")
    parser.add_argument("--output-dir", default=None,
                        help="keep both runs here (default: a temporary folder, deleted afterwards)")
    args = parser.parse_args()
    if args.gym_kwargs is None:
        args.gym_kwargs = defaults.gym_kwargs
    else:
        import yaml

        args.gym_kwargs = yaml.safe_load(args.gym_kwargs)
    return args


def run_both(args, work: Path):
    """Train each side from the same model on the same problems; the start's and each side's figures."""
    recipe = ftkit_recipe(args, work / "ftkit")
    rows = training_problems(recipe)
    start, start_model = heldout_accuracy(args, args.model)
    started = time.perf_counter()
    sides = {"ftkit": run_ftkit(recipe)}
    print(f"ftkit: {args.steps} steps done ({time.perf_counter() - started:.0f}s with setup and evaluation)",
          flush=True)
    started = time.perf_counter()
    sides["trl"] = run_trl(args, rows, work / "trl")
    print(f"TRL:   {args.steps} steps done ({time.perf_counter() - started:.0f}s with setup)", flush=True)
    results = {}
    for name, result in sides.items():
        end, end_model = heldout_accuracy(args, result["model_dir"])
        results[name] = {**timed(result), "accuracy": end.accuracy, "correct": end.correct,
                         "weight_change": weight_change(start_model, end_model)}
    return start, sides, results


def print_settings(args, source: str, start, f: dict[str, Any]) -> None:
    batch = args.prompts * args.group_size
    timed_steps = ("steps 2-" if f["steps_timed"] < args.steps else "steps 1-") + str(args.steps)
    print(f"\nmodel {args.model}, gym {GYM} {json.dumps(args.gym_kwargs)} ({source})")
    print(f"{args.steps} steps of {args.prompts} prompts x {args.group_size} completions = {batch} per step, "
          f"<= {args.max_tokens} completion tokens, temperature {TEMPERATURE}, "
          f"lr {args.lr:g} constant after {args.warmup} warm-up steps, "
          f"clip {CLIP_EPS}, grad norm {MAX_GRAD_NORM}, no KL, std-scaled group advantages, token-mean loss")
    print(f"both sides: per_device_train_batch_size={batch}, num_generations={args.group_size}, num_iterations=1, "
          "loss_type=dapo, scale_rewards=group, beta=0; TRL: gradient_accumulation_steps=1, shuffle_dataset=False")
    print(f"torch threads {args.threads}, {os.cpu_count()} CPU cores; timings are means over {timed_steps} "
          "(step 1 is warm-up)")
    print(f"held-out accuracy at the start: {start.accuracy:.1%} ({start.correct}/{start.n}, eval seed {EVAL_SEED})\n")


def print_comparison(args, sides: dict[str, dict[str, Any]], results: dict[str, dict[str, Any]]) -> None:
    f, t = results["ftkit"], results["trl"]
    ftkit, trl = sides["ftkit"], sides["trl"]
    speed = t["step_s"] / f["step_s"]
    diff = f["accuracy"] - t["accuracy"]
    # One standard error of the difference of two accuracies measured on n problems each.
    se = math.sqrt((f["accuracy"] * (1 - f["accuracy"]) + t["accuracy"] * (1 - t["accuracy"])) / args.eval_n)
    print(f"{'':34}{'ftkit':>10}{'TRL':>10}   ftkit vs TRL")
    print(f"{'time per step (s)':34}{f['step_s']:>10.3f}{t['step_s']:>10.3f}   "
          f"{speed:.2f}x (TRL time / ftkit time; > 1: ftkit faster)")
    print(f"{'  of which rollout (s)':34}{f['rollout_s']:>10.3f}{t['rollout_s']:>10.3f}")
    print(f"{'rollout tokens/s':34}{f['rollout_tok_s']:>10,.0f}{t['rollout_tok_s']:>10,.0f}   "
          f"{f['rollout_tok_s'] / t['rollout_tok_s']:.2f}x (ftkit / TRL)")
    print(f"{'held-out accuracy after training':34}{f['accuracy']:>10.1%}{t['accuracy']:>10.1%}   "
          f"{diff * 100:+.1f} points (one standard error: {se * 100:.1f}, n={args.eval_n})")
    print(f"{'mean reward, first step':34}{ftkit['reward'][0]:>10.3f}{trl['reward'][0]:>10.3f}")
    print(f"{'mean reward, all steps':34}{statistics.mean(ftkit['reward']):>10.3f}"
          f"{statistics.mean(trl['reward']):>10.3f}")
    print(f"{'mean completion tokens':34}{statistics.mean(ftkit['completion_length']):>10.2f}"
          f"{statistics.mean(trl['completion_length']):>10.2f}")
    print(f"{'weight change from start (L2)':34}{f['weight_change']:>10.4f}{t['weight_change']:>10.4f}")
    if diff >= 0:
        accuracy = "better" if diff > 0 else "equal"
    else:  # RL is noisy: a gap smaller than one standard error does not tell the two apart
        accuracy = "equal within one standard error" if -diff <= se else "lower"
    met = speed >= 1.0 and accuracy != "lower"
    print(f"\ntarget (ftkit at least as fast per step at equal or better accuracy): {'met' if met else 'NOT met'} "
          f"(speed {speed:.2f}x, accuracy {accuracy})")
    print("rollout = tokenising, sampling, decoding and scoring by the gym, on both sides; the rest of a step "
          "is advantages, the forward/backward pass and the AdamW update")


def main() -> None:
    from ftkit.cli import quiet_libraries

    quiet_libraries()  # the libraries' advisory chatter would bury the figures
    defaults = task_defaults()
    args = parse_args(defaults)
    import torch

    torch.set_num_threads(args.threads)
    work = Path(args.output_dir) if args.output_dir else Path(tempfile.mkdtemp(prefix="bench_rl_vs_trl_"))
    try:
        start, sides, results = run_both(args, work)
    finally:
        if not args.output_dir:
            shutil.rmtree(work, ignore_errors=True)
    print_settings(args, defaults.source, start, results["ftkit"])
    print_comparison(args, sides, results)


if __name__ == "__main__":
    main()
