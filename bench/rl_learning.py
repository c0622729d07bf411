"""Which RL objective teaches most in the same time: held-out scores before and after, and steps done.

Each objective trains from the same model for the same wall-clock budget, on arithmetic and on a
multi-turn gym (guess_number).

    python bench/rl_learning.py                       # 7 objectives x 2 gyms, 20 minutes of training each
    python bench/rl_learning.py --minutes 0.5 --eval-n 50 --algos grpo dapo   # a smoke test
    python bench/rl_learning.py --jobs 2 --skip-guess-number

The objectives: grpo, dr_grpo (GRPO with `train.scale_rewards=none`: no division by the group's std,
Liu et al. 2025), rloo, ppo, dapo, gspo and reinforce_plus_plus (`--algos` also takes
reinforce_plus_plus_baseline).

1. The starting model (default `runs/gpt2_math_subtract/model`: the gpt2_math output trained on by
   `recipes/gpt2_math_subtract.yaml` until subtraction is inside its band) is scored greedily on the
   candidate arithmetic tasks, to show where the RL recipes' task sits: the target is a start between
   20% and 70%, where groups of samples disagree and RL has room to gain.
2. Arithmetic: each objective runs its shipped recipe (`recipes/<algo>_arithmetic.yaml`, dr_grpo the
   GRPO one with its override) from that model with a wall-clock budget (`train.time_limit_minutes`);
   the run's own summary gives accuracy before and after on the same held-out problems, and the steps
   done. Each run's final model is then scored on subtraction and on addition alone (forgetting shows).
3. Multi-turn: `recipes/grpo_guess_number.yaml` (1 to 16, at most 7 guesses, from runs/gpt2_math/model)
   with `algo=<objective>`, the same budget; the summary gives the share of held-out episodes solved
   and the mean turns to solve, an unsolved episode counting as the turn limit.

Runs go to runs/bench_rl/<objective>_<gym>. The printed figures are measurements, not pass/fail checks.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ADDITION = {"ops": ["+"], "digits": 3, "answer_format": "reversed"}
CANDIDATES = {
    "addition": ADDITION,
    "subtraction (the RL recipes' task)": {"ops": ["-"], "digits": 3, "answer_format": "reversed"},
    "1 addition : 1 subtraction": {"ops": ["+", "-"], "digits": 3, "answer_format": "reversed"},
}
# objective -> (its `algo`, its arithmetic recipe, overrides that make it that objective)
OBJECTIVES = {
    "grpo": ("grpo", "grpo_arithmetic.yaml", []),
    "dr_grpo": ("grpo", "grpo_arithmetic.yaml", ["train.scale_rewards=none"]),
    "rloo": ("rloo", "rloo_arithmetic.yaml", []),
    "ppo": ("ppo", "ppo_arithmetic.yaml", []),
    "dapo": ("dapo", "dapo_arithmetic.yaml", []),
    "gspo": ("gspo", "gspo_arithmetic.yaml", []),
    "reinforce_plus_plus": ("reinforce_plus_plus", "reinforce_plus_plus_arithmetic.yaml", []),
    "reinforce_plus_plus_baseline": ("reinforce_plus_plus_baseline", "reinforce_plus_plus_arithmetic.yaml", []),
}
DEFAULT_OBJECTIVES = ["grpo", "dr_grpo", "rloo", "ppo", "dapo", "gspo", "reinforce_plus_plus"]


def greedy_accuracy(model: str, tasks: dict[str, dict], n: int) -> dict[str, float]:
    from ftkit.evaluate import EvalOptions, evaluate_on_gym, load_for_eval
    from gyms.spec import GymSpec

    policy, tokenizer = load_for_eval(model)
    options = EvalOptions(n=n, seed=1, max_new_tokens=6, samples=0)
    return {name: evaluate_on_gym(policy, tokenizer, GymSpec("arithmetic", kwargs), options).accuracy
            for name, kwargs in tasks.items()}


def run_recipe(job: dict, args: argparse.Namespace, threads: int) -> dict:
    """One training run as its own process; its summary.json, with the wall time, or its last error line."""
    out = ROOT / "runs" / "bench_rl" / job["name"]
    cmd = [sys.executable, "-m", "ftkit", "rl", str(ROOT / "recipes" / job["recipe"]), *job["overrides"],
           f"output_dir={out}", f"train.time_limit_minutes={args.minutes}", "train.max_steps=100000",
           f"eval.n={args.eval_n}", "--overwrite"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        return {**job, "error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    summary = json.loads((out / "summary.json").read_text())
    return {**job, "wall_s": wall, "run_dir": out, **summary}


def jobs(args: argparse.Namespace) -> list[dict]:
    """The runs to make: each objective on arithmetic, then (unless skipped) on guess_number."""
    out = []
    for gym in ("arithmetic",) + (() if args.skip_guess_number else ("guess_number",)):
        for objective in args.algos:
            algo, recipe, extra = OBJECTIVES[objective]
            # Every objective on subtraction alone (recipes/grpo_arithmetic.yaml now trains the mix), so that
            # the table compares like with like; guess_number starts from its recipe's model.
            start = [f"model.name={args.model}", "gym.kwargs.ops=[-]"] if gym == "arithmetic" else []
            out.append({"objective": objective, "gym": gym, "name": f"{objective}_{gym}",
                        "recipe": recipe if gym == "arithmetic" else "grpo_guess_number.yaml",
                        "overrides": [*start, f"algo={algo}", *extra]})
    return out


def print_arithmetic(rows: list[dict], start: dict[str, float], args: argparse.Namespace) -> None:
    ops = {name: CANDIDATES[name] for name in ("subtraction (the RL recipes' task)", "addition")}
    print(f"\narithmetic (3-digit subtraction, from {args.model}): {args.minutes:g} minutes of training each; "
          f"held-out accuracy on {args.eval_n} problems; then each operation alone")
    print(f"{'objective':<30} {'before':>7} {'after':>7} {'gain':>8} {'steps':>6} {'wall':>7} "
          f"{'subtraction':>17} {'addition':>17}")
    for r in rows:
        if "error" in r:
            print(f"{r['objective']:<30} failed: {r['error']}")
            continue
        gain = (r["heldout_accuracy_end"] - r["heldout_accuracy_start"]) * 100
        after = greedy_accuracy(str(r["run_dir"] / "model"), ops, args.eval_n)
        each = " ".join(f"{start[name]:8.1%} -> {after[name]:5.1%}" for name in ops)
        print(f"{r['objective']:<30} {r['heldout_accuracy_start']:7.1%} {r['heldout_accuracy_end']:7.1%} "
              f"{gain:+7.1f}p {r['steps']:6d} {r['wall_s'] / 60:6.1f}m {each}")


def print_guess_number(rows: list[dict], args: argparse.Namespace) -> None:
    print(f"\nmulti-turn: guess_number (1 to 16, at most 7 guesses, from runs/gpt2_math/model), {args.minutes:g} "
          f"minutes each; {args.eval_n} held-out episodes; an unsolved one counts as the turn limit")
    print(f"{'objective':<30} {'solved before':>13} {'after':>7} {'turns to solve':>15} {'after':>6} {'steps':>6} "
          f"{'wall':>7}")
    for r in rows:
        if "error" in r:
            print(f"{r['objective']:<30} failed: {r['error']}")
            continue
        print(f"{r['objective']:<30} {r['heldout_accuracy_start']:13.1%} {r['heldout_accuracy_end']:7.1%} "
              f"{r['heldout_turns_to_solve_start']:15.2f} {r['heldout_turns_to_solve_end']:6.2f} {r['steps']:6d} "
              f"{r['wall_s'] / 60:6.1f}m")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/gpt2_math_subtract/model", help="arithmetic's starting model")
    parser.add_argument("--minutes", type=float, default=20.0, help="training budget per objective and gym")
    parser.add_argument("--algos", nargs="+", default=DEFAULT_OBJECTIVES, choices=sorted(OBJECTIVES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eval-n", type=int, default=500, help="held-out problems (episodes) scored")
    parser.add_argument("--skip-guess-number", action="store_true")
    parser.add_argument("--jobs", type=int, default=1,
                        help="run this many trainings at once, splitting --threads between them")
    args = parser.parse_args()
    from ftkit.cli import quiet_libraries

    quiet_libraries()  # the libraries' advisory chatter would bury the figures
    starts = {args.model: "`ftkit sft recipes/gpt2_math.yaml` then `ftkit sft recipes/gpt2_math_subtract.yaml`",
              "runs/gpt2_math/model": "`ftkit sft recipes/gpt2_math.yaml`"}
    for needed, command in starts.items():
        if not Path(needed).is_dir():
            sys.exit(f"no model at {needed}: run {command} first")

    import torch

    torch.set_num_threads(args.threads)
    print(f"starting model {args.model}: greedy held-out accuracy (n={args.eval_n}, eval seed 1)")
    start = greedy_accuracy(args.model, CANDIDATES, args.eval_n)
    for name, accuracy in start.items():
        band = "in the 20-70% band" if 0.2 <= accuracy <= 0.7 else "outside the 20-70% band"
        print(f"  {name:<52} {accuracy:6.1%}  ({band})")

    threads = max(1, args.threads // args.jobs)
    print(f"\n{len(jobs(args))} runs of {args.minutes:g} minutes, {threads} thread(s) each, {args.jobs} at a time")
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:  # each run is its own process
        results = list(pool.map(lambda job: run_recipe(job, args, threads), jobs(args)))
    print_arithmetic([r for r in results if r["gym"] == "arithmetic"], start, args)
    guess = [r for r in results if r["gym"] == "guess_number"]
    if guess:
        print_guess_number(guess, args)


if __name__ == "__main__":
    main()
