"""Experiment trackers (`report_to`, `--report-to`): what a run logs is read back from the tracker's own files.

    python -m pytest tests/test_trackers.py -q

TensorBoard's reader (and trackio's storage, where trackio is installed) must return the numbers that
metrics.jsonl holds, at the same steps, with the recipe as the run's config; bad names and missing
libraries are one line and exit code 2 before any run folder is made; without report_to nothing changes.
"""

from __future__ import annotations

import json
import math

import pytest
import yaml

from ftkit import trackers
from ftkit.cli import main
from ftkit.config import validate_recipe
from ftkit.rl.config import load_rl_recipe


def _write(tmp_path, raw, name="recipe.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def _sft_recipe(tiny_recipe) -> dict:
    return tiny_recipe(train={"max_steps": 3, "save_steps": 100}, eval={"n": 4, "samples": 0, "every_steps": 2})


def _rl_recipe(tmp_path) -> dict:
    return {"name": "rl_tiny", "output_dir": str(tmp_path / "run"), "model": {"name": "scratch:tiny"},
            "gym": {"id": "arithmetic", "kwargs": {"digits": 1}},
            "rollout": {"prompts_per_step": 2, "num_generations": 4, "max_completion_length": 3},
            "train": {"max_steps": 2, "save_steps": 100, "per_device_train_batch_size": 8},
            "eval": {"n": 4, "every_steps": 1, "max_new_tokens": 3, "samples": 0}}


def _metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _scalars(folder) -> dict[str, dict[int, float]]:
    """Every scalar TensorBoard's own reader finds in `folder`: tag -> {step: value}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]}


def _hparams(folder) -> dict:
    """The config Accelerate's TensorBoard tracker stored beside the scalars (hparams.yml)."""
    found = list(folder.glob("*/hparams.yml"))
    assert len(found) == 1, found
    return yaml.safe_load(found[0].read_text())


def test_sft_logs_to_tensorboard_in_the_run_folder(tiny_recipe, tmp_path):
    assert main(["sft", _write(tmp_path, _sft_recipe(tiny_recipe)), "--report-to", "tensorboard"]) == 0
    run_dir = tmp_path / "run"
    scalars = _scalars(run_dir / "tensorboard")
    losses = {r["step"]: r["loss"] for r in _metrics(run_dir) if "loss" in r}
    assert sorted(losses) == [1, 2, 3]
    assert scalars["train/loss"].keys() == losses.keys()  # TRL's names: train/loss is metrics.jsonl's loss
    for step, loss in losses.items():
        assert math.isclose(scalars["train/loss"][step], loss, rel_tol=1e-6), (step, loss)
    # ftkit's held-out evaluation during training (step 2) goes to the same run, under eval/
    heldout = {r["step"]: r["heldout_accuracy"] for r in _metrics(run_dir) if "heldout_accuracy" in r}
    assert 2 in heldout
    assert scalars["eval/heldout_accuracy"] == pytest.approx({2: heldout[2]})
    config = _hparams(run_dir / "tensorboard")
    assert config["recipe.name"] == "tiny" and config["recipe.report_to"] == '["tensorboard"]'
    assert config["recipe.train.max_steps"] == 3 and config["recipe.gym.kwargs.digits"] == 2
    assert not (run_dir / "checkpoints" / "runs").exists()  # not transformers' default place


def test_rl_logs_every_metric_to_tensorboard_at_its_step(tmp_path):
    assert main(["rl", _write(tmp_path, _rl_recipe(tmp_path)), "--report-to", "tensorboard"]) == 0
    run_dir = tmp_path / "run"
    scalars = _scalars(run_dir / "tensorboard")
    logged = 0
    for record in _metrics(run_dir):
        for key, value in trackers.numeric(record).items():
            assert math.isclose(scalars[key][record["step"]], value, rel_tol=1e-6, abs_tol=1e-9), (key, record)
            logged += 1
    assert {"reward_mean", "success_rate", "loss", "heldout_accuracy"} <= scalars.keys()
    assert sorted(scalars["heldout_accuracy"]) == [0, 1, 2] and sorted(scalars["reward_mean"]) == [1, 2]
    assert logged == sum(len(v) for v in scalars.values())  # and nothing else
    config = _hparams(run_dir / "tensorboard")
    assert config["recipe.name"] == "rl_tiny" and config["recipe.rollout.num_generations"] == 4


def test_a_resumed_run_hides_the_steps_the_killed_run_logged_after_its_checkpoint(tmp_path):
    """Killed at step 3 with checkpoint-2 the last: the resumed run logs step 3 again, and TensorBoard's
    reader must return the new value only (SummaryWriter's purge_step), not two values at one step."""
    from accelerate import Accelerator

    recipe = load_rl_recipe(None, base={**_rl_recipe(tmp_path), "report_to": ["tensorboard"]})
    recipe.run_dir.mkdir(parents=True)
    killed = Accelerator(cpu=True, log_with=trackers.accelerate_trackers(recipe))
    trackers.start(killed, recipe)
    for step in (1, 2, 3):
        trackers.log(killed, {"step": step, "loss": float(step)})
    killed.end_training()
    resumed = Accelerator(cpu=True, log_with=trackers.accelerate_trackers(recipe))
    trackers.start(resumed, recipe, resumed_at=2)
    for step in (3, 4):
        trackers.log(resumed, {"step": step, "loss": 10.0 * step})
    resumed.end_training()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(recipe.run_dir / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(1, 1.0), (2, 2.0), (3, 30.0), (4, 40.0)]
    assert trackers.purge_after(0) == {}  # a fresh run purges nothing


@pytest.mark.parametrize("command", ["sft", "rl"])
def test_unknown_tracker_is_one_line_with_a_suggestion(command, tiny_recipe, tmp_path, capsys):
    raw = _sft_recipe(tiny_recipe) if command == "sft" else _rl_recipe(tmp_path)
    assert main([command, _write(tmp_path, raw), "--report-to", "tensorbord"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert 'unknown tracker "tensorbord" (did you mean "tensorboard"?)' in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["sft", "dpo", "rl"])
def test_missing_tracker_library_names_the_install(command, tiny_recipe, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(trackers, "installed", lambda module: module != "wandb")
    raw = _rl_recipe(tmp_path) if command == "rl" else {**_sft_recipe(tiny_recipe), "kind": command}
    if command == "dpo":
        raw.update(gym=None, data={"path": str(tmp_path / "pairs")})  # the check comes before the data is read
    assert main([command, _write(tmp_path, raw), "--report-to", "tensorboard,wandb"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert "report_to wandb: the wandb package is not installed; pip install wandb" in err
    assert not (tmp_path / "run").exists()


def test_no_tracker_unless_asked(tiny_recipe, tmp_path):
    """The default stays local files: TRL gets report_to "none" and Accelerate no trackers."""
    sft = validate_recipe(tiny_recipe())
    rl = load_rl_recipe(None, base=_rl_recipe(tmp_path))
    assert sft.report_to == [] and rl.report_to == []
    assert trackers.trl_settings(sft) == {"report_to": "none"}
    assert trackers.accelerate_trackers(rl) is None
    # the flag overrides the recipe, and "none" turns a recipe's trackers off
    raw = tiny_recipe(report_to=["tensorboard"])
    from ftkit.cli.sft import with_report_to
    from ftkit.config import load_recipe

    assert load_recipe(_write(tmp_path, raw), with_report_to([], "none")).report_to == []
    assert load_recipe(_write(tmp_path, raw), with_report_to([], "trackio,tensorboard")).report_to == [
        "trackio", "tensorboard"]
    assert trackers.trl_settings(load_recipe(_write(tmp_path, raw)))["run_name"] == "tiny"



# Runs in a process of its own: trackio reads TRACKIO_DIR once, when first imported (TRL imports it as soon
# as it is installed), and this test must not write into the user's own trackio store.
TRACKIO_SCRIPT = """
import json, sys
from ftkit.cli import main
from trackio.sqlite_storage import SQLiteStorage
runs = {}
for argv in json.loads(sys.argv[1]):
    assert main(argv) == 0, argv
for name in SQLiteStorage.get_runs("ftkit"):
    runs[name] = {"logs": SQLiteStorage.get_logs("ftkit", name), "config": SQLiteStorage.get_run_config("ftkit", name)}
print("RUNS " + json.dumps(runs))
"""


def test_sft_and_rl_log_to_trackio(tiny_recipe, tmp_path):
    import os
    import subprocess
    import sys

    if not trackers.installed("trackio"):
        pytest.skip("trackio is not installed (pip install trackio)")
    sft = _write(tmp_path, {**_sft_recipe(tiny_recipe), "name": "sft_trackio", "output_dir": str(tmp_path / "sft")},
                 "sft.yaml")
    rl = _write(tmp_path, {**_rl_recipe(tmp_path), "name": "rl_trackio", "report_to": ["trackio"]}, "rl.yaml")
    argv = [["sft", sft, "--report-to", "trackio"], ["rl", rl]]
    env = {**os.environ, "TRACKIO_DIR": str(tmp_path / "trackio"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", TRACKIO_SCRIPT, json.dumps(argv)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = json.loads(done.stdout.split("RUNS ", 1)[1].splitlines()[0])
    assert sorted(runs) == ["rl_trackio", "sft_trackio"] and (tmp_path / "trackio" / "ftkit.db").is_file()
    # ftkit rl: every number of metrics.jsonl, at its step
    logs, config = runs["rl_trackio"]["logs"], runs["rl_trackio"]["config"]
    expected = [(r["step"], trackers.numeric(r)) for r in _metrics(tmp_path / "run")]
    assert [(log["step"], {k: log.get(k) for k in values}) for (_, values), log in zip(expected, logs)] == expected
    assert len(logs) == len(expected)
    assert config["recipe.name"] == "rl_trackio" and config["recipe.train.max_steps"] == 2
    # ftkit sft: TRL's logs (transformers' callback logs the trainer's step as train/global_step)
    logs, config = runs["sft_trackio"]["logs"], runs["sft_trackio"]["config"]
    losses = {r["step"]: r["loss"] for r in _metrics(tmp_path / "sft") if "loss" in r}
    assert {log["train/global_step"]: log["train/loss"] for log in logs if "train/loss" in log} == losses
    assert config["recipe.name"] == "sft_trackio" and config["recipe.report_to"] == '["trackio"]'
    assert config["learning_rate"] == 1e-3  # and TRL's own arguments, as transformers logs them
