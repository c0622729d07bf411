"""Multi-process and DeepSpeed runs on a CPU: each must match a one-process run with the same global batch.

Two processes come from `accelerate launch --multi_gpu --num_processes 2` (on a CPU they form a gloo
group); DeepSpeed ZeRO-2 and ZeRO-3 run in one process with the CPU launch configs shipped in
recipes/accelerate/. Tolerances: the same examples reach the same optimizer steps in every layout, so
losses and gradient norms agree to float32 reduction-order error (1e-4 relative) and weights to 1e-4.
"""

from __future__ import annotations

import json
import os
import shutil
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


# The GRPO script's settings under DeepSpeed, beside the two-process run's: two optimizer steps per RL step
# of two micro-batches each (the second minibatch is scored before the update, so its loss is not a
# constant), a KL to the reference model (under ZeRO-3 an engine of its own), and greedy held-out
# evaluation after every step, sampled for real from the bare policy.
DEEPSPEED_RL = ["train.minibatch_size=8", "train.per_device_train_batch_size=4", "train.beta=0.1", "eval.n=4"]


def _zero_launch(stage: int, *args: str) -> list[str]:
    return _launch("--config_file", str(ROOT / "recipes" / "accelerate" / f"zero{stage}_cpu_1proc.yaml"), *args)


@pytest.fixture(scope="module")
def grpo_deepspeed(tmp_path_factory):
    """The GRPO script with DEEPSPEED_RL in one plain process ("one"), and under ZeRO-2 ("z2") and ZeRO-3
    ("z3") in one process, with the launch configs as shipped (their "auto" values filled by ftkit)."""
    pytest.importorskip("deepspeed")
    tmp = tmp_path_factory.mktemp("rl_deepspeed")
    _run([sys.executable, GRPO_SCRIPT, "one", *DEEPSPEED_RL], tmp)
    for stage in (2, 3):
        _run(_zero_launch(stage, GRPO_SCRIPT, f"z{stage}", *DEEPSPEED_RL), tmp)
    return tmp


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_zero_grpo_in_one_process_matches_plain(grpo_deepspeed, stage):
    """ftkit's own RL loop under DeepSpeed steps where it steps in a plain run (the engine's accumulation
    boundary is the update's last micro-batch, its clipping the recipe's max_grad_norm). Every logged value
    agrees to float32 reduction-order error: the engine sums the same gradients in other buffers, and takes
    the plain forward pass where a plain run shares each prompt's."""
    tmp = grpo_deepspeed
    run = tmp / f"z{stage}"
    assert json.loads((run / "summary.json").read_text())["distributed_type"] == "DEEPSPEED"
    plain, zero = _rl_steps(tmp / "one"), _rl_steps(run)
    assert len(plain) == len(zero) == 3
    for a, b in zip(plain, zero):
        assert b["reward_mean"] == a["reward_mean"]  # the same episodes
        assert b.keys() == a.keys()
        assert b == pytest.approx(a, rel=1e-4, abs=1e-6)  # loss, policy_loss, kl, grad_norm, lr, entropy...
    # Evaluation and saving see whole weights (under ZeRO-3 gathered from the shards): the same greedy
    # answers, and a model folder that loads like any other.
    assert json.loads((run / "eval.json").read_text()) == json.loads((tmp / "one" / "eval.json").read_text())
    _assert_same_weights(tmp / "one" / "model", run / "model")


def test_deepspeed_zero3_run_resumes_to_the_same_weights(grpo_deepspeed):
    """Under DeepSpeed a checkpoint holds the optimizer's shards as the engine wrote them (deepspeed/, not
    optimizer.pt). A copy of the ZeRO-3 run, resumed from its checkpoint-2 with the same launch config,
    trains step 3 again and ends bit for bit where the run did."""
    tmp = grpo_deepspeed
    shutil.copytree(tmp / "z3", tmp / "z3_resumed")
    checkpoint = tmp / "z3_resumed" / "checkpoints" / "checkpoint-2"
    assert (checkpoint / "deepspeed").is_dir() and not (checkpoint / "optimizer.pt").exists()
    shutil.rmtree(tmp / "z3_resumed" / "model")
    _run(_zero_launch(3, GRPO_SCRIPT, "z3_resumed", "--resume", *DEEPSPEED_RL), tmp)
    assert _rl_steps(tmp / "z3_resumed") == _rl_steps(tmp / "z3")
    wa = load_file(tmp / "z3" / "model" / "model.safetensors")
    wb = load_file(tmp / "z3_resumed" / "model" / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_deepspeed_auto_values_come_from_the_rl_recipe():
    """What ftkit's RL update does, in DeepSpeed's words; a config that says otherwise, or that asks DeepSpeed
    for an optimizer or a value head, is a one-line error naming the fix."""
    from types import SimpleNamespace

    from ftkit.errors import ConfigError, TrainingError
    from ftkit.rl.config import load_rl_recipe
    from ftkit.rl.distributed import deepspeed_values, fill_auto, refuse_value_head

    recipe = load_rl_recipe(None, base={
        "name": "ds", "output_dir": "unused", "algo": "grpo", "model": {"name": "scratch:tiny"},
        "gym": {"id": "arithmetic"},
        "rollout": {"prompts_per_step": 4, "num_generations": 4},
        "train": {"minibatch_size": 8, "per_device_train_batch_size": 3, "max_grad_norm": 0.5}})
    values = deepspeed_values(recipe, world=2)  # 8 episodes per process: one minibatch of 3 + 3 + 2
    assert values == {"train_micro_batch_size_per_gpu": 3, "gradient_accumulation_steps": 3,
                      "train_batch_size": 18, "gradient_clipping": 0.5}
    config = {"train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto",
              "gradient_accumulation_steps": "auto", "gradient_clipping": "auto", "zero_optimization": {"stage": 3}}
    fill_auto(config, values)
    assert config == {**values, "zero_optimization": {"stage": 3}}
    fill_auto({"gradient_clipping": 0.5, "gradient_accumulation_steps": 3}, values)  # agreeing values are fine
    with pytest.raises(ConfigError, match=r"sets gradient_clipping: 1.0, .* \(from train.max_grad_norm\): set "
                                          r"gradient_clipping: auto"):
        fill_auto({"gradient_clipping": 1.0}, values)
    with pytest.raises(ConfigError, match="remove 'optimizer' from the DeepSpeed config"):
        fill_auto({"optimizer": {"type": "AdamW"}}, values)
    zero2 = SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=SimpleNamespace(zero_stage=2)))
    with pytest.raises(TrainingError, match="algo ppo under DeepSpeed"):
        refuse_value_head(zero2)
    refuse_value_head(SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=None)))


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
