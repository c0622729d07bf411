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
import torch
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


GRPO_SCRIPT = str(ROOT / "tests" / "distributed" / "grpo_run.py")


@pytest.fixture(scope="module")
def grpo_runs(tmp_path_factory):
    """The GRPO script run in one process ("one") and in two ("two"), 3 steps, checkpoint-2 kept."""
    tmp = tmp_path_factory.mktemp("rl_dist")
    _run([sys.executable, GRPO_SCRIPT, "one"], tmp)
    _run(_launch("--multi_gpu", "--num_processes", "2", GRPO_SCRIPT, "two"), tmp)
    return tmp


def _rl_steps(run: Path) -> list[dict]:
    """The logged RL steps, without their timings (the only entries two equal runs may differ in)."""
    records = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    return [{k: v for k, v in r.items() if not k.endswith(("_s", "_per_s"))} for r in records]


def test_two_process_grpo_matches_one_process(grpo_runs):
    tmp_path = grpo_runs
    one, two = _rl_steps(tmp_path / "one"), _rl_steps(tmp_path / "two")
    assert len(one) == len(two) == 3
    for a, b in zip(one, two):
        assert b["reward_mean"] == a["reward_mean"]  # the same episodes, split over two processes
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
        assert b["lr"] == pytest.approx(a["lr"], rel=1e-6)  # one schedule step per optimizer step, not per process
    base = load_file(tmp_path / "one" / "base_model" / "model.safetensors")
    moved = max((w - base[k]).abs().max().item() for k, w in load_file(tmp_path / "one" / "model" / "model.safetensors").items())
    assert moved > 1e-3  # training moved the weights far more than the tolerance below
    _assert_same_weights(tmp_path / "one" / "model", tmp_path / "two" / "model")


def test_two_processes_killed_with_sigkill_resume_to_the_same_weights(grpo_runs):
    """Both processes die by SIGKILL right after step 3's optimizer step (checkpoint-2 the last saved);
    `--resume` in two fresh processes must end bit for bit where the uninterrupted run "two" did."""
    tmp = grpo_runs
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    killed = subprocess.run(_launch("--multi_gpu", "--num_processes", "2", GRPO_SCRIPT, "killed", "--kill-in-step", "3"),
                            cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode != 0 and "SIGKILL" in killed.stderr, killed.stderr[-3000:]
    assert [r["step"] for r in _rl_steps(tmp / "killed")] == [1, 2]
    assert not (tmp / "killed" / "model").exists()
    rng = torch.load(tmp / "killed" / "checkpoints" / "checkpoint-2" / "rng.pt", weights_only=True)
    assert len(rng) == 2 and not torch.equal(rng[0]["torch"], rng[1]["torch"])  # each process's own generators
    _run(_launch("--multi_gpu", "--num_processes", "2", GRPO_SCRIPT, "killed", "--resume"), tmp)
    assert _rl_steps(tmp / "killed") == _rl_steps(tmp / "two")
    wa, wb = load_file(tmp / "two" / "model" / "model.safetensors"), load_file(tmp / "killed" / "model" / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


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
