"""Does collected data teach? One round of rejection-sampling fine-tuning and one DPO run, from rollouts.

    python bench/collect_improve.py                                   # from runs/gpt2_math_subtract/model
    python bench/collect_improve.py --model runs/other/model --n 2000 --k 8

Every step is the README's command, run as a user would run it:

1. `ftkit eval`: the start model's greedy held-out accuracy on the task, the RL recipes' (3-digit
   reversed subtraction). The start is the gpt2_math output trained on by
   `recipes/gpt2_math_subtract.yaml` until it solves 25% or more of subtractions (the RL start inside 20-70%).
   (The gpt2_math output alone solves none, and its 16 samples of a problem are all the same wrong
   answer: rollouts would hold nothing to keep and no pairs.)
2. `ftkit collect rollouts`: the model plays n problems k times at temperature 1; the bench prints
   the trajectories per second of the CPU engine.
3. `ftkit collect filter --min-reward 1` then `ftkit sft recipes/expert_iteration_arithmetic.yaml`:
   one round of rejection-sampling fine-tuning (expert iteration).
4. `ftkit collect pairs` then `ftkit dpo recipes/dpo_arithmetic.yaml`.

Each trained model is scored on the same 500 held-out problems (seed 1; the rollouts use seed 0 and
the SFT/DPO runs exclude their training prompts). Figures are printed, not asserted; the issue's
target (a gain of at least 10 points each) is printed beside them.
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
TASK = ["ops=[-]", "digits=3", "answer_format=reversed"]
ADDITION = ["ops=[+]", "digits=3", "answer_format=reversed"]
TARGET_POINTS = 10.0


def ftkit(*args: str, threads: int) -> tuple[float, str]:
    """Run one ftkit command; returns its wall time and output, or stops the bench with its error."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ftkit", *args], capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"`ftkit {' '.join(args)}` failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return time.perf_counter() - started, done.stdout + done.stderr


def accuracy(model: str, out: Path, threads: int, task: list[str] = TASK) -> float:
    which = "addition" if task is ADDITION else "task"
    result = out / f"eval_{Path(model).parent.name}_{which}.json"
    ftkit("eval", "--gym", "arithmetic", "--model", model, *task, "--n", "500", "--seed", "1",
          "--max-new-tokens", "8", "--output", str(result), threads=threads)
    return json.loads(result.read_text())["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/gpt2_math_subtract/model")
    parser.add_argument("--n", type=int, default=6000, help="problems played")
    parser.add_argument("--k", type=int, default=16, help="episodes per problem")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="runs/bench_collect")
    args = parser.parse_args()
    out = ROOT / args.out
    data = out / "data"
    out.mkdir(parents=True, exist_ok=True)
    t = args.threads

    if not Path(args.model).is_dir():
        sys.exit(f"no model at {args.model}: run `ftkit sft recipes/gpt2_math.yaml` then "
                 "`ftkit sft recipes/gpt2_math_subtract.yaml` first")
    start, start_addition = accuracy(args.model, out, t), accuracy(args.model, out, t, ADDITION)
    print(f"start model {args.model}: held-out accuracy {start:.1%} on 3-digit reversed subtraction "
          f"(addition: {start_addition:.1%})")

    rollouts = data / "rollouts"
    wall, _ = ftkit("collect", "rollouts", "--gym", "arithmetic", *TASK, "--model", args.model, "--n", str(args.n),
                    "--k", str(args.k), "--max-new-tokens", "6", "--out", str(rollouts), "--overwrite", threads=t)
    manifest = json.loads((rollouts / "collect.json").read_text())
    trajectories = manifest["counts"]["train"]
    print(f"rollouts: {trajectories:,} trajectories in {wall:.1f}s (command wall time, model load included): "
          f"{trajectories / wall:.1f} trajectories/s; solved {manifest['solved_rate']:.1%}")

    rows = []
    ftkit("collect", "filter", str(rollouts), "--min-reward", "1", "--out", str(data / "rft"), "--overwrite", threads=t)
    kept = json.loads((data / "rft" / "collect.json").read_text())["counts"]["train"]
    wall, _ = ftkit("sft", "recipes/expert_iteration_arithmetic.yaml", f"model.name={args.model}",
                    f"data.path={data / 'rft'}", f"output_dir={out / 'rft'}", "--overwrite", threads=t)
    rows.append(("rejection sampling + SFT", f"{kept:,} kept answers", wall, str(out / "rft" / "model")))

    try:
        ftkit("collect", "pairs", str(rollouts), "--out", str(data / "pairs"), "--overwrite", threads=t)
    except SystemExit as exc:
        print(f"DPO skipped: {exc}")
    else:
        pairs = json.loads((data / "pairs" / "collect.json").read_text())["counts"]["train"]
        wall, _ = ftkit("dpo", "recipes/dpo_arithmetic.yaml", f"model.name={args.model}",
                        f"data.path={data / 'pairs'}", f"output_dir={out / 'dpo'}", "--overwrite", threads=t)
        rows.append(("DPO", f"{pairs:,} pairs", wall, str(out / "dpo" / "model")))

    print(f"\n{'method':<26} {'data':>18} {'train wall':>11} {'before':>8} {'after':>8} {'gain':>8}  "
          f"{'addition after':>15}  target")
    for name, what, wall, model in rows:
        after, addition = accuracy(model, out, t), accuracy(model, out, t, ADDITION)
        gain = 100 * (after - start)
        print(f"{name:<26} {what:>18} {wall:>10.0f}s {start:>8.1%} {after:>8.1%} {gain:>+7.1f}p  "
              f"{start_addition:6.1%} -> {addition:5.1%}  "
              f">= +{TARGET_POINTS:g}p {'met' if gain >= TARGET_POINTS else 'NOT met'}")


if __name__ == "__main__":
    main()
