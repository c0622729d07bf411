"""Learning curves as PNG, drawn from a run's metrics.jsonl.

    python -c "from ftkit.plots import plot_run; plot_run('runs/gpt2_math')"
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftkit.runs import MetricsLog


def _series(records: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    points = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
    return [p[0] for p in points], [p[1] for p in points]


def _plot(path: Path, title: str, ylabel: str, curves: dict[str, tuple[list[float], list[float]]],
          logy: bool = False) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    curves = {label: xy for label, xy in curves.items() if xy[0]}
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, (x, y) in curves.items():
        ax.plot(x, y, marker="o" if len(x) < 30 else None, markersize=3, label=label)
    ax.set(title=title, xlabel="step", ylabel=ylabel)
    if logy and all(v > 0 for _, ys in curves.values() for v in ys):
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_run(run_dir: str | Path) -> list[Path]:
    """Write loss.png and accuracy.png into the run folder; returns the files written."""
    run_dir = Path(run_dir)
    records = MetricsLog(run_dir / "metrics.jsonl").read()
    written = [
        _plot(run_dir / "loss.png", "Training loss", "loss (nats/token)",
              {"train": _series(records, "loss"), "held-out": _series(records, "eval_loss")}, logy=True),
        _plot(run_dir / "accuracy.png", "Accuracy", "accuracy",
              {"next-token accuracy (train batches)": _series(records, "mean_token_accuracy"),
               "held-out exact match": _series(records, "heldout_accuracy")}),
    ]
    return [p for p in written if p is not None]


def plot_rl_run(run_dir: str | Path) -> list[Path]:
    """Write reward.png, accuracy.png and policy.png for an RL run; returns the files written."""
    run_dir = Path(run_dir)
    records = MetricsLog(run_dir / "metrics.jsonl").read()
    written = [
        _plot(run_dir / "reward.png", "Rollout reward", "per episode",
              {"reward (mean)": _series(records, "reward_mean"), "success rate": _series(records, "success_rate"),
               "groups with identical rewards": _series(records, "identical_groups")}),
        _plot(run_dir / "accuracy.png", "Held-out accuracy (greedy)", "accuracy",
              {"held-out": _series(records, "heldout_accuracy")}),
        _plot(run_dir / "policy.png", "Policy", "value",
              {"entropy (nats/token)": _series(records, "entropy"), "KL to reference": _series(records, "kl"),
               "clip fraction": _series(records, "clip_fraction")}),
    ]
    turns = _series(records, "heldout_mean_turns")
    if turns[0]:
        written.append(_plot(run_dir / "turns.png", "Turns per held-out episode", "turns",
                             {"held-out": turns, "rollouts": _series(records, "turns_mean")}))
    return [p for p in written if p is not None]
