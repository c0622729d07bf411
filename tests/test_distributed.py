"""Multi-process and DeepSpeed runs on a CPU: each must match a one-process run with the same global batch.

Two processes come from `accelerate launch --multi_gpu --num_processes 2` (on a CPU they form a gloo
group); DeepSpeed ZeRO-2 and ZeRO-3 run in one process with the CPU launch configs shipped in
recipes/accelerate/. Tolerances: the same examples reach the same optimizer steps in every layout, so
losses and gradient norms agree to float32 reduction-order error (1e-4 relative) and weights to 1e-4.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import tiny_recipe_dict
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("accelerate")


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    # processes end cleanly: no abort at exit, no dangling process group
    for sign in ("Abort", "terminate called", "Traceback"):
        assert sign not in done.stderr, done.stderr[-3000:]
    return done


def _launch(*args: str) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--mixed_precision", "no",
            "--dynamo_backend", "no", *args]


def _losses(run: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def _assert_same_weights(a: Path, b: Path, atol: float = 1e-4) -> None:
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert set(wa) <= set(wb)
    for key in wa:
        assert (wa[key] - wb[key]).abs().max().item() < atol, key


@pytest.fixture(scope="module")
def sft_runs(tmp_path_factory):
    """One tiny SFT recipe (global batch 8, 6 steps) run in one process: the reference."""
    tmp = tmp_path_factory.mktemp("dist")
    recipe = tiny_recipe_dict(tmp)
    recipe["train"]["max_steps"] = 6
    (tmp / "r.yaml").write_text(yaml.safe_dump(recipe))
    _run([sys.executable, "-m", "ftkit", "sft", "r.yaml", "output_dir=one"], tmp)
    return tmp


def test_two_process_sft_matches_one_process(sft_runs):
    tmp = sft_runs
    _run(_launch("--multi_gpu", "--num_processes", "2", "-m", "ftkit", "sft", "r.yaml", "output_dir=two"), tmp)
    layout = json.loads((tmp / "two" / "summary.json").read_text())["layout"]
    assert layout == {"processes": 2, "per_device_batch": 4, "gradient_accumulation": 1, "global_batch": 8,
                      "distributed_type": "MULTI_CPU"}
    assert _losses(tmp / "two") == pytest.approx(_losses(tmp / "one"), rel=1e-4)
    _assert_same_weights(tmp / "one" / "model", tmp / "two" / "model")
    # only the main process wrote: one line per logging step, not two
    assert len(_losses(tmp / "two")) == len(_losses(tmp / "one"))


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_zero_sft_in_one_process_matches_plain(sft_runs, stage):
    pytest.importorskip("deepspeed")
    tmp = sft_runs
    config = ROOT / "recipes" / "accelerate" / f"zero{stage}_cpu_1proc.yaml"
    _run(_launch("--config_file", str(config), "-m", "ftkit", "sft", "r.yaml", f"output_dir=z{stage}"), tmp)
    summary = json.loads((tmp / f"z{stage}" / "summary.json").read_text())
    assert summary["layout"]["distributed_type"] == "DEEPSPEED"
    assert _losses(tmp / f"z{stage}") == pytest.approx(_losses(tmp / "one"), rel=1e-4)
    # ZeRO-3 gathers the shards into full weights when saving: the folder loads like any other
    _assert_same_weights(tmp / "one" / "model", tmp / f"z{stage}" / "model")


def test_two_process_grpo_matches_one_process(tmp_path):
    script = str(ROOT / "tests" / "distributed" / "grpo_run.py")
    _run([sys.executable, script, "one"], tmp_path)
    _run(_launch("--multi_gpu", "--num_processes", "2", script, "two"), tmp_path)

    def steps(run):
        return [r for r in map(json.loads, (tmp_path / run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]

    one, two = steps("one"), steps("two")
    assert len(one) == len(two) == 3
    for a, b in zip(one, two):
        assert b["reward_mean"] == a["reward_mean"]  # the same episodes, split over two processes
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
    base = load_file(tmp_path / "one" / "base_model" / "model.safetensors")
    moved = max((w - base[k]).abs().max().item() for k, w in load_file(tmp_path / "one" / "model" / "model.safetensors").items())
    assert moved > 1e-3  # training moved the weights far more than the tolerance below
    _assert_same_weights(tmp_path / "one" / "model", tmp_path / "two" / "model")


def test_global_batch_is_split_over_processes():
    from ftkit.errors import ConfigError
    from ftkit.sft import split_global_batch

    args = {"per_device_train_batch_size": 32}
    assert split_global_batch(args, 1)["global_batch"] == 32 and args["per_device_train_batch_size"] == 32
    assert split_global_batch(args, 4) == {"processes": 4, "per_device_batch": 8, "gradient_accumulation": 1,
                                           "global_batch": 32}
    args = {"per_device_train_batch_size": 3, "gradient_accumulation_steps": 4}
    assert split_global_batch(args, 2)["gradient_accumulation"] == 2 and args["per_device_train_batch_size"] == 3
    with pytest.raises(ConfigError, match="cannot be split evenly over 2 processes"):
        split_global_batch({"per_device_train_batch_size": 3}, 2)
