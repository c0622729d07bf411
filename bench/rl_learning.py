"""Which RL objective teaches most on the same budget: held-out scores before and after, and steps done.

Each objective trains from the same model on the same budget, on arithmetic and on a multi-turn gym
(guess_number). The budget is either RL steps (`--steps N`: `train.max_steps=N` for every objective,
fair on a busy machine) or wall-clock minutes (`--minutes M`, the default: 20).

    python bench/rl_learning.py --steps 600 --threads 1 --skip-guess-number    # the README's arithmetic table
    python bench/rl_learning.py --steps 600 --guess-number-steps 200 --threads 1 --skip-arithmetic   # guess_number's
    python bench/rl_learning.py                       # 7 objectives x 2 gyms, 20 minutes of training each
    python bench/rl_learning.py --steps 5 --eval-n 50 --algos grpo ppo   # a smoke test
    python bench/rl_learning.py --jobs 2 --skip-guess-number

The objectives: grpo, dr_grpo (GRPO with `train.scale_rewards=none`: no division by the group's std,
Liu et al. 2025), rloo, ppo, dapo, gspo and reinforce_plus_plus (`--algos` also takes
reinforce_plus_plus_baseline).

1. The starting model (default `runs/gpt2_math_subtract/model`: the gpt2_math output trained on by
   `recipes/gpt2_math_subtract.yaml` until subtraction is inside its band) is scored greedily on
   addition, subtraction and their mix (the RL recipes' task), to show where the task sits: the target
   is a start between 20% and 70%, where groups of samples disagree and RL has room to gain.
2. Arithmetic: each objective runs its shipped recipe (`recipes/<algo>_arithmetic.yaml`, dr_grpo the
   GRPO one with its override) as shipped, on the mix of 3-digit reversed addition and subtraction;
   the run's own summary gives accuracy on the mix before and after (the same held-out problems), the
   steps done and the training loop's seconds. Each run's final model is then scored on addition and
   on subtraction alone, so that forgetting shows: the table marks whether addition stayed at 95% or more.
3. Multi-turn: `recipes/grpo_guess_number.yaml` (from runs/gpt2_math/model) with `algo=<objective>`;
   the summary gives the share of held-out episodes solved and the mean turns to solve, an unsolved
   episode counting as the turn limit.

Runs go to runs/bench_rl/<objective>_<gym> (each run's output in runs/bench_rl/<objective>_<gym>.log);
the tables are printed as markdown and written to runs/bench_rl/table.md. The figures are
measurements, not pass/fail checks.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "runs" / "bench_rl"
ARITHMETIC = {"digits": 3, "answer_format": "reversed"}
CANDIDATES = {
    "addition": {"ops": ["+"], **ARITHMETIC},
    "subtraction": {"ops": ["-"], **ARITHMETIC},
    "1 addition : 1 subtraction (the RL recipes' task)": {"ops": ["+", "-"], **ARITHMETIC},
}
EACH_OP = ("addition", "subtraction")
KEPT = 0.95  # addition "kept" if it stays at this accuracy or more (issue 15, item 5)
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
GUESS_RECIPE = "grpo_guess_number.yaml"


def greedy_accuracy(model: str, tasks: dict[str, dict], n: int) -> dict[str, float]:
    from ftkit.evaluate import EvalOptions, evaluate_on_gym, load_for_eval
    from gyms.spec import GymSpec

    policy, tokenizer = load_for_eval(model)
    options = EvalOptions(n=n, seed=1, max_new_tokens=6, samples=0)
    return {name: evaluate_on_gym(policy, tokenizer, GymSpec("arithmetic", kwargs), options).accuracy
            for name, kwargs in tasks.items()}


def recipe_revision(recipe: str) -> str:
    """The recipe's last commit, and whether it had uncommitted edits when its run started."""
    path = f"recipes/{recipe}"
    commit = subprocess.run(["git", "log", "-1", "--format=%h", "--", path], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip() or "uncommitted"
    edited = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", path], cwd=ROOT).returncode != 0
    return f"{recipe} at {commit}" + (" + uncommitted edits" if edited else "")


def budget(args: argparse.Namespace, gym: str) -> tuple[list[str], str]:
    """The overrides that set a run's budget, and how the table names it."""
    steps = args.guess_number_steps if gym == "guess_number" and args.guess_number_steps else args.steps
    if steps:
        return [f"train.max_steps={steps}"], f"{steps} RL steps each (`train.max_steps={steps}`, no time limit)"
    return ([f"train.time_limit_minutes={args.minutes}", "train.max_steps=100000"],
            f"{args.minutes:g} minutes of training each (`train.time_limit_minutes`)")


def run_recipe(job: dict, args: argparse.Namespace, threads: int) -> dict:
    """One training run as its own process, its output in <run>.log; its summary.json, or its last error line."""
    out = OUT / job["name"]
    cmd = [sys.executable, "-m", "ftkit", "rl", str(ROOT / "recipes" / job["recipe"]), *job["overrides"],
           *budget(args, job["gym"])[0], f"output_dir={out}", f"eval.n={args.eval_n}", "--overwrite"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    job = {**job, "revision": recipe_revision(job["recipe"])}
    log = OUT / f"{job['name']}.log"
    with log.open("w") as f:
        done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        return {**job, "error": (log.read_text().strip().splitlines() or ["?"])[-1]}
    return {**job, "run_dir": out, **json.loads((out / "summary.json").read_text())}


def jobs(args: argparse.Namespace) -> list[dict]:
    """The runs to make: each objective on arithmetic, then (unless skipped) on guess_number."""
    out = []
    for objective in [] if args.skip_arithmetic else args.algos:
        algo, recipe, extra = OBJECTIVES[objective]
        out.append({"objective": objective, "gym": "arithmetic", "name": f"{objective}_arithmetic",
                    "recipe": recipe, "overrides": [f"model.name={args.model}", f"algo={algo}", *extra]})
    if not args.skip_guess_number:
        for objective in args.guess_number_algos or args.algos:
            algo, _, extra = OBJECTIVES[objective]
            out.append({"objective": objective, "gym": "guess_number", "name": f"{objective}_guess_number",
                        "recipe": GUESS_RECIPE, "overrides": [f"algo={algo}", *extra]})
    return out


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def failed(r: dict, width: int) -> list[str]:
    return [r["objective"], f"failed: {r['error']}"] + [""] * (width - 2)


def arithmetic_table(rows: list[dict], start: dict[str, float], args: argparse.Namespace, threads: int) -> str:
    header = ["objective", "mix before → after", "gain", "addition after", f"addition ≥ {KEPT:.0%}",
              "subtraction after", "steps", "train s"]
    table = []
    for r in rows:
        if "error" in r:
            table.append(failed(r, len(header)))
            continue
        after = greedy_accuracy(str(r["run_dir"] / "model"), {k: CANDIDATES[k] for k in EACH_OP}, args.eval_n)
        before, end = r["heldout_accuracy_start"], r["heldout_accuracy_end"]
        table.append([r["objective"], f"{before:.1%} → {end:.1%}", f"{(end - before) * 100:+.1f}",
                      f"{after['addition']:.1%}", "yes" if after["addition"] >= KEPT else "**no**",
                      f"{after['subtraction']:.1%}", str(r["steps"]), f"{r['wall_time_s']:.0f}"])
    intro = (f"**arithmetic**: 3-digit reversed addition and subtraction mixed (the recipes as shipped), "
             f"from `{args.model}`; budget: {budget(args, 'arithmetic')[1]}; {threads} thread(s) per run, "
             f"{args.jobs} run(s) at a time; held-out accuracy on {args.eval_n} problems of the mix (the run's "
             f"own evaluation), then greedily on {args.eval_n} additions and {args.eval_n} subtractions alone. "
             f"Start: addition {start['addition']:.1%}, subtraction {start['subtraction']:.1%}. "
             "train s: the training loop's seconds (held-out evaluations during training included).")
    return intro + "\n\n" + markdown(header, table) + "\n\n" + revisions(rows)


def guess_number_table(rows: list[dict], args: argparse.Namespace, threads: int) -> str:
    header = ["objective", "solved before → after", "turns to solve before → after", "steps", "train s"]
    table = []
    for r in rows:
        if "error" in r:
            table.append(failed(r, len(header)))
            continue
        table.append([r["objective"], f"{r['heldout_accuracy_start']:.1%} → {r['heldout_accuracy_end']:.1%}",
                      f"{r['heldout_turns_to_solve_start']:.2f} → {r['heldout_turns_to_solve_end']:.2f}",
                      str(r["steps"]), f"{r['wall_time_s']:.0f}"])
    intro = (f"**multi-turn**: `recipes/{GUESS_RECIPE}` with `algo=<objective>` (from its own model); budget: "
             f"{budget(args, 'guess_number')[1]}; {threads} thread(s) per run, {args.jobs} run(s) at a time; "
             f"{args.eval_n} held-out episodes; an unsolved episode counts as the turn limit.")
    return intro + "\n\n" + markdown(header, table) + "\n\n" + revisions(rows)


def revisions(rows: list[dict]) -> str:
    """Which version of each recipe ran, as the run found it (another may have edited it meanwhile)."""
    return "Recipes: " + "; ".join(sorted({r["revision"] for r in rows})) + "."


def start_scores(args: argparse.Namespace) -> dict[str, float]:
    print(f"starting model {args.model}: greedy held-out accuracy (n={args.eval_n}, eval seed 1)")
    start = greedy_accuracy(args.model, CANDIDATES, args.eval_n)
    for name, accuracy in start.items():
        band = "in the 20-70% band" if 0.2 <= accuracy <= 0.7 else "outside the 20-70% band"
        print(f"  {name:<52} {accuracy:6.1%}  ({band})")
    return start


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/gpt2_math_subtract/model", help="arithmetic's starting model")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--minutes", type=float, help="wall-clock training budget per run (default 20)")
    when.add_argument("--steps", type=int, help="RL steps per run, the same for every objective, no time limit")
    parser.add_argument("--guess-number-steps", type=int, help="guess_number's steps (default: --steps)")
    parser.add_argument("--algos", nargs="+", default=DEFAULT_OBJECTIVES, choices=sorted(OBJECTIVES))
    parser.add_argument("--guess-number-algos", nargs="+", choices=sorted(OBJECTIVES),
                        help="the objectives run on guess_number (default: --algos)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eval-n", type=int, default=500, help="held-out problems (episodes) scored")
    parser.add_argument("--skip-guess-number", action="store_true")
    parser.add_argument("--skip-arithmetic", action="store_true", help="only guess_number's runs")
    parser.add_argument("--jobs", type=int, default=1,
                        help="run this many trainings at once, splitting --threads between them")
    args = parser.parse_args()
    if args.steps is None and args.minutes is None:
        args.minutes = 20.0
    if args.guess_number_steps and not args.steps:
        parser.error("--guess-number-steps goes with --steps (a step budget), not with --minutes")
    return args


def main() -> None:
    args = parse_args()
    from ftkit.cli import quiet_libraries
    from ftkit.runs import write_text_atomic

    quiet_libraries()  # the libraries' advisory chatter would bury the figures
    starts = {args.model: "`ftkit sft recipes/gpt2_math.yaml` then `ftkit sft recipes/gpt2_math_subtract.yaml`",
              "runs/gpt2_math/model": "`ftkit sft recipes/gpt2_math.yaml`"}
    for needed, command in starts.items():
        if not Path(needed).is_dir():
            sys.exit(f"no model at {needed}: run {command} first")

    import torch

    torch.set_num_threads(args.threads)
    start = start_scores(args)
    threads = max(1, args.threads // args.jobs)
    OUT.mkdir(parents=True, exist_ok=True)
    todo = jobs(args)
    print(f"\n{len(todo)} runs, {threads} thread(s) each, {args.jobs} at a time; logs in {OUT}/<run>.log")
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:  # each run is its own process
        results = list(pool.map(lambda job: run_recipe(job, args, threads), todo))
    arithmetic = [r for r in results if r["gym"] == "arithmetic"]
    tables = [arithmetic_table(arithmetic, start, args, threads)] if arithmetic else []
    guess = [r for r in results if r["gym"] == "guess_number"]
    if guess:
        tables.append(guess_number_table(guess, args, threads))
    text = "\n\n".join(tables) + "\n"
    write_text_atomic(OUT / "table.md", text)
    print("\n" + text + f"\n(written to {OUT / 'table.md'})")


if __name__ == "__main__":
    main()
