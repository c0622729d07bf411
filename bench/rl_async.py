"""Asynchronous rollouts against the synchronous loop: steps per second and held-out accuracy, same run otherwise.

    python bench/rl_async.py                           # recipes/grpo_arithmetic.yaml, 40 steps, async 0 vs 1, 1 and 2 threads
    python bench/rl_async.py --steps 20 --threads 1 --async-steps 0 1 2

Each run is `ftkit rl recipes/grpo_arithmetic.yaml train.max_steps=N rollout.async_steps=A` in a process of
its own with OMP_NUM_THREADS=T (the training thread's torch threads; the background sampler takes half of
them, at least one: `ftkit.rl.trainer.background_threads`). Runs of one thread count go in turn, so each has
the machine to itself, as far as other users allow: the load average before and after each run is
printed, and timings taken under load say little (accuracy per step does not depend on the load).

Printed per run: the process's CPU seconds (user + system, model loading and evaluations included: the
same in every run, so a difference is what asynchronous rollouts cost in CPU; unlike wall time, about the
same under load), seconds per step (mean of `step_s` over steps 3 to N: the first steps pay for warming up),
steps per second over the training loop (summary.json's wall_time_s), the mean rollout_s and update_s
(with asynchronous rollouts, step_s is about the larger of the two, plus rollout_wait_s), the mean
async_lag and sampler_kl, and held-out accuracy before and after (greedy, recipe's eval.n problems).
Then (`--breakdown`, Linux), in this process with one torch thread per thread: where a rollout's and an
update's time goes, each alone and the two side by side (the rollout in a background thread, as
`rollout.async_steps` plays it), from /proc/self/task/<id>/schedstat: on a CPU, waiting for a CPU (the
load of other processes), or asleep (waiting for Python's GIL, the only lock the two share). Time on a
CPU and asleep is what a thread needs when it has a core of its own, so it estimates the step on a quiet
machine even under load: the sum of the two alone (synchronous) against the larger of the two side by side.

Runs go to runs/bench_rl_async/. The figures are measurements, not pass/fail checks.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_one(args, threads: int, ahead: int) -> dict:
    out = ROOT / "runs" / "bench_rl_async" / f"t{threads}_async{ahead}"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1",
           "FTKIT_PROGRESS_SECONDS": "3600"}
    load_before = os.getloadavg()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    command = [sys.executable, "-m", "ftkit", "rl", args.recipe, f"train.max_steps={args.steps}",
               f"rollout.async_steps={ahead}", f"output_dir={out}", f"eval.n={args.eval_n}",
               f"eval.every_steps={args.steps + 1}", f"model.name={args.model}", "--overwrite"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    summary = json.loads((out / "summary.json").read_text())
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [s for s in steps if "reward_mean" in s]
    later = steps[2:] or steps

    def mean(key: str) -> float | None:
        values = [s[key] for s in later if key in s]
        return sum(values) / len(values) if values else None

    return {"threads": threads, "async_steps": ahead, "s_per_step": mean("step_s"),
            "steps_per_s": len(steps) / summary["wall_time_s"], "rollout_s": mean("rollout_s"),
            "update_s": mean("update_s"), "wait_s": mean("rollout_wait_s"), "lag": mean("async_lag"),
            "sampler_kl": mean("sampler_kl"), "start": summary["heldout_accuracy_start"],
            "end": summary["heldout_accuracy_end"], "load": (load_before[0], os.getloadavg()[0]), "cpu_s": cpu_s}


def schedstat(thread_id: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds waiting for one) of a thread of this process, so far."""
    ran, waited, _ = map(int, Path(f"/proc/self/task/{thread_id}/schedstat").read_text().split())
    return ran / 1e9, waited / 1e9


class Phases:
    """Seconds on a CPU / waiting for a CPU / asleep, summed per phase."""

    def __init__(self):
        self.sums: dict[str, list[float]] = {}

    def measure(self, name: str, work) -> None:
        import threading
        import time

        thread = threading.get_native_id()
        started, (ran, waited) = time.perf_counter(), schedstat(thread)
        work()
        wall, (ran2, waited2) = time.perf_counter() - started, schedstat(thread)
        sums = self.sums.setdefault(name, [0.0, 0.0, 0.0])
        for i, value in enumerate((ran2 - ran, waited2 - waited, wall - (ran2 - ran) - (waited2 - waited))):
            sums[i] += value


def breakdown(args, repeats: int = 6) -> None:
    import threading

    import torch

    from ftkit.rl.async_rollout import CopiedPolicyEngine
    from ftkit.rl.config import load_rl_recipe
    from ftkit.rl.trainer import RLRun

    torch.set_num_threads(1)
    recipe = load_rl_recipe(ROOT / args.recipe, [f"model.name={args.model}", "eval.n=0",
                                                 f"output_dir={ROOT / 'runs' / 'bench_rl_async' / 'breakdown'}"])
    run = RLRun(recipe, overwrite=True)
    run.setup()
    run.engine = CopiedPolicyEngine(run.policy, run.tokenizer, batch_size=recipe.rollout.batch_size)

    def rollout(step: int):
        return run.play_step(step, None, torch.Generator().manual_seed(step))

    batches = [rollout(step) for step in range(2)]

    def one_round(measuring: Phases, i: int) -> None:
        update = partial(run.update, batches[i % 2].episodes, i)
        measuring.measure("rollout alone", partial(rollout, 10 + i))
        measuring.measure("update alone", update)

        def background():
            torch.set_num_threads(1)
            measuring.measure("rollout beside", partial(rollout, 20 + i))

        thread = threading.Thread(target=background)
        thread.start()
        measuring.measure("update beside", update)
        thread.join()

    phases = Phases()
    for i in range(repeats + 1):
        one_round(phases if i else Phases(), i)  # the first round warms up
    print(f"\nwhere the time goes, seconds per step, 1 thread each (load average {os.getloadavg()[0]:.2f}):")
    print("phase            on a CPU  waiting for a CPU  asleep (GIL)")
    need = {}
    for name, (ran, waited, asleep) in phases.sums.items():
        ran, waited, asleep = ran / repeats, waited / repeats, asleep / repeats
        need[name] = ran + max(asleep, 0.0)
        print(f"{name:15s}  {ran:8.3f}  {waited:17.3f}  {asleep:12.3f}")
    sync = need["rollout alone"] + need["update alone"]
    overlapped = max(need["rollout beside"], need["update beside"])
    print(f"estimated on a quiet machine: synchronous {sync:.3f} s per step, asynchronous {overlapped:.3f} "
          f"({sync / overlapped:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/grpo_arithmetic.yaml")
    parser.add_argument("--model", default="runs/gpt2_math_subtract/model", help="the recipe's start")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--eval-n", type=int, default=500)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--async-steps", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--breakdown", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure where a step's time goes, alone and side by side (Linux)")
    parser.add_argument("--runs", action=argparse.BooleanOptionalAction, default=True,
                        help="the ftkit rl runs (--no-runs: the breakdown only)")
    args = parser.parse_args()
    print(f"{args.recipe}, {args.steps} steps, model {args.model}, {os.cpu_count()} CPUs")
    header = ("threads async  cpu_s  s/step  steps/s  rollout_s  update_s  wait_s  lag  sampler_kl  "
              "held-out before -> after  load avg before/after")
    if args.runs:
        print(header)
    for threads in args.threads if args.runs else []:
        for ahead in args.async_steps:
            r = run_one(args, threads, ahead)
            kl = f"{r['sampler_kl']:.2e}" if r["sampler_kl"] is not None else "-"
            print(f"{r['threads']:>7} {r['async_steps']:>5}  {r['cpu_s']:>5.0f}  {r['s_per_step']:.3f}  {r['steps_per_s']:>7.2f}  "
                  f"{r['rollout_s']:>9.3f}  {r['update_s']:>8.3f}  {r['wait_s'] or 0:>6.3f}  {r['lag'] or 0:>3.1f}  "
                  f"{kl:>10}  {r['start']:>14.1%} -> {r['end']:.1%}  {r['load'][0]:.2f}/{r['load'][1]:.2f}",
                  flush=True)

    if args.breakdown:
        breakdown(args)


if __name__ == "__main__":
    main()
