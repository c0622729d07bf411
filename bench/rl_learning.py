"""Does RL teach? GRPO, RLOO and PPO each train from the SFT model; held-out accuracy before and after.

    python bench/rl_learning.py                       # 20 minutes per algorithm, then guess_number
    python bench/rl_learning.py --minutes 5 --algos grpo --skip-guess-number

1. The starting model (default `runs/gpt2_math_subtract/model`: the gpt2_math output trained on by
   `recipes/gpt2_math_subtract.yaml` until subtraction is inside its band) is scored greedily on the candidate arithmetic tasks, to
   show where the RL recipes' task sits: the target is a start between 20% and 70%, where groups of
   samples disagree and RL has room to gain. The gpt2_math output alone scores 100% on addition and 0%
   on subtraction, with all 16 samples of a subtraction identical: no task of it is in the band.
2. Each algorithm runs its shipped recipe (`recipes/<algo>_arithmetic.yaml`) from that model with a
   wall-clock budget (`train.time_limit_minutes`); the run's own summary gives accuracy before and
   after on the same 500 held-out problems, and the wall time.
3. `recipes/grpo_guess_number.yaml` runs the same way; its summary gives the mean turns to solve a
   held-out episode before and after, an unsolved episode counting as the turn limit (so an episode
   cut short, by the model's context or by an invalid answer, cannot pass for a quick solve).

Runs go to runs/bench_rl/<name>. The printed figures are measurements, not pass/fail checks; the
issue's targets (a gain of at least 15 points per algorithm within 20 minutes; fewer turns) are
printed beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ADDITION = {"ops": ["+"], "digits": 3, "answer_format": "reversed"}
CANDIDATES = {
    "addition": ADDITION,
    "subtraction (the RL recipes' task)": {"ops": ["-"], "digits": 3, "answer_format": "reversed"},
    "1 addition : 1 subtraction": {"ops": ["+", "-"], "digits": 3, "answer_format": "reversed"},
}


def greedy_accuracy(model: str, tasks: dict[str, dict], n: int) -> dict[str, float]:
    from ftkit.evaluate import EvalOptions, evaluate_on_gym, load_for_eval
    from gyms.spec import GymSpec

    policy, tokenizer = load_for_eval(model)
    options = EvalOptions(n=n, seed=1, max_new_tokens=6, samples=0)
    return {name: evaluate_on_gym(policy, tokenizer, GymSpec("arithmetic", kwargs), options).accuracy
            for name, kwargs in tasks.items()}


def run_recipe(recipe: str, model: str | None, minutes: float, threads: int, extra: list[str]) -> dict:
    name = Path(recipe).stem
    out = ROOT / "runs" / "bench_rl" / name
    model_override = [f"model.name={model}"] if model else []  # None: the recipe's own start model
    cmd = [sys.executable, "-m", "ftkit", "rl", str(ROOT / "recipes" / recipe), *model_override,
           f"output_dir={out}", f"train.time_limit_minutes={minutes}", "train.max_steps=100000", "--overwrite", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        return {"name": name, "error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    summary = json.loads((out / "summary.json").read_text())
    return {"name": name, "wall_s": wall, "run_dir": out, **summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/gpt2_math_subtract/model")
    parser.add_argument("--minutes", type=float, default=20.0, help="training budget per algorithm")
    parser.add_argument("--algos", nargs="+", default=["grpo", "rloo", "ppo"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eval-n", type=int, default=500)
    parser.add_argument("--skip-guess-number", action="store_true")
    parser.add_argument("--jobs", type=int, default=1,
                        help="run this many recipes at once, splitting --threads between them")
    args = parser.parse_args()
    from ftkit.cli import quiet_libraries

    quiet_libraries()  # the libraries' advisory chatter would bury the figures
    if not Path(args.model).is_dir():
        sys.exit(f"no model at {args.model}: run `ftkit sft recipes/gpt2_math.yaml` then "
                 "`ftkit sft recipes/gpt2_math_subtract.yaml` first")

    import torch

    torch.set_num_threads(args.threads)
    print(f"starting model {args.model}: greedy held-out accuracy (n={args.eval_n}, eval seed 1)")
    start = greedy_accuracy(args.model, CANDIDATES, args.eval_n)
    for name, accuracy in start.items():
        band = "in the 20-70% band" if 0.2 <= accuracy <= 0.7 else "outside the 20-70% band"
        print(f"  {name:<52} {accuracy:6.1%}  ({band})")

    from concurrent.futures import ThreadPoolExecutor

    threads = max(1, args.threads // args.jobs)
    recipes = [f"{algo}_arithmetic.yaml" for algo in args.algos]
    if not args.skip_guess_number:
        recipes.append("grpo_guess_number.yaml")
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:  # each run is its own process
        results = list(pool.map(lambda recipe: run_recipe(
            recipe, args.model if "arithmetic" in recipe else None, args.minutes, threads, []), recipes))
    rows, guess = results[: len(args.algos)], results[len(args.algos) :]
    print(f"\nRL on the recipes' task, {args.minutes:g} minutes of training each, "
          f"{threads} thread(s) each, {args.jobs} run(s) at a time; then each operation alone")
    print(f"{'recipe':<18} {'before':>8} {'after':>8} {'gain':>8} {'steps':>7} {'wall':>8} {'subtraction':>17} "
          f"{'addition':>17}   target: gain >= 15 points")
    for r in rows:
        if "error" in r:
            print(f"{r['name']:<18} failed: {r['error']}")
            continue
        gain = (r["heldout_accuracy_end"] - r["heldout_accuracy_start"]) * 100
        ops = {name: CANDIDATES[name] for name in ("subtraction (the RL recipes' task)", "addition")}
        after = greedy_accuracy(str(r["run_dir"] / "model"), ops, args.eval_n)
        each = " ".join(f"{start[name]:8.1%} -> {after[name]:5.1%}" for name in ops)
        print(f"{r['name']:<18} {r['heldout_accuracy_start']:8.1%} {r['heldout_accuracy_end']:8.1%} "
              f"{gain:+7.1f}p {r['steps']:7d} {r['wall_s'] / 60:7.1f}m {each}   {'met' if gain >= 15 else 'not met'}")

    for g in guess:
        print("\nmulti-turn: guess_number (1 to 16, at most 7 guesses), held-out episodes")
        if "error" in g:
            print(f"  failed: {g['error']}")
        else:
            print(f"  turns to solve {g['heldout_turns_to_solve_start']:.2f} -> {g['heldout_turns_to_solve_end']:.2f} "
                  f"(an unsolved episode counts as the turn limit; target: fewer); mean turns played "
                  f"{g['heldout_mean_turns_start']:.2f} -> {g['heldout_mean_turns_end']:.2f}; solved {g['heldout_accuracy_start']:.1%} -> {g['heldout_accuracy_end']:.1%}; "
                  f"{g['steps']} steps in {g['wall_s'] / 60:.1f} min")


if __name__ == "__main__":
    main()
