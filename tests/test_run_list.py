"""`ftkit runs`: real tiny SFT and RL runs, a collected dataset, a run still going, junk; table, JSON, order, errors."""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime

import pytest
from conftest import tiny_recipe_dict

from data_tools.store import write_dataset
from ftkit import run_list
from ftkit.cli import main
from ftkit.run_list import list_runs


def _touch(path, when: float) -> None:
    os.utime(path, (when, when))


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    """A runs folder: a finished SFT run, a finished RL run (both real, a few steps of scratch:tiny), a
    collected dataset, a copy of the RL run as it looks before its summary is written, and junk."""
    from ftkit import sft
    from ftkit.config import validate_recipe
    from ftkit.rl import trainer
    from ftkit.rl.config import load_rl_recipe

    root = tmp_path_factory.mktemp("runs")
    sft.main(validate_recipe({**tiny_recipe_dict(root), "name": "sft_tiny", "output_dir": str(root / "sft_tiny")}))
    trainer.main(load_rl_recipe(None, base={
        "name": "rl_tiny", "output_dir": str(root / "rl_tiny"), "algo": "grpo", "model": {"name": "scratch:tiny"},
        "gym": {"id": "arithmetic", "kwargs": {"digits": 1}},
        "rollout": {"prompts_per_step": 2, "num_generations": 4, "max_completion_length": 2},
        "train": {"max_steps": 3, "per_device_train_batch_size": 8, "save_steps": 100},
        "eval": {"n": 8, "every_steps": 2, "max_new_tokens": 2, "samples": 2}}))
    write_dataset(root / "demos_tiny", {"train": [{"prompt": "1+1=", "completion": "2"}] * 3},
                  {"kind": "demos", "command": "ftkit collect demos --gym arithmetic --n 3 --out demos_tiny"})
    # A run still going: what an RL run folder holds before its end (no summary.json), cut after step 2.
    shutil.copytree(root / "rl_tiny", root / "rl_going")
    (root / "rl_going" / "summary.json").unlink()
    records = [json.loads(line) for line in (root / "rl_going" / "metrics.jsonl").read_text().splitlines()]
    kept = "".join(json.dumps(r) + "\n" for r in records if r["step"] <= 2)
    (root / "rl_going" / "metrics.jsonl").write_text(kept + '{"step": 3, "reward_me')  # a line being written
    (root / "junk").mkdir()
    (root / "junk" / "notes.txt").write_text("not a run")
    (root / "broken").mkdir()
    (root / "broken" / "recipe.yaml").write_text("model: [unclosed\n")
    (root / "stray.txt").write_text("a file")
    for offset, (folder, file) in enumerate([("sft_tiny", "summary.json"), ("demos_tiny", "collect.json"),
                                             ("rl_tiny", "summary.json"), ("rl_going", "metrics.jsonl")]):
        _touch(root / folder / file, 1_700_000_000 + 3600 * offset)
    _touch(root / "rl_going" / "recipe.yaml", 1_700_000_000 + 3600 * 3 - 90)
    return root


def _summary(root, name) -> dict:
    return json.loads((root / name / "summary.json").read_text())


def test_json_lists_every_kind_newest_first_with_numbers_and_iso_dates(runs_root, capsys):
    assert main(["runs", str(runs_root), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in listed] == ["rl_going", "rl_tiny", "demos_tiny", "sft_tiny"]  # junk skipped
    dates = [datetime.fromisoformat(r["date"]) for r in listed]
    assert dates == sorted(dates, reverse=True) and dates[0].timestamp() == 1_700_000_000 + 3600 * 3
    going, rl, demos, sft = listed
    rl_summary, sft_summary = _summary(runs_root, "rl_tiny"), _summary(runs_root, "sft_tiny")
    assert (rl["kind"], rl["status"], rl["method"], rl["algo"], rl["steps"], rl["max_steps"]) == (
        "rl", "finished", "full", "grpo", 3, 3)
    assert rl["heldout_accuracy_start"] == rl_summary["heldout_accuracy_start"] and rl["heldout_accuracy_start_step"] == 0
    assert rl["heldout_accuracy_end"] == rl_summary["heldout_accuracy_end"] and rl["heldout_accuracy_end_step"] == 3
    assert rl["wall_time_s"] == rl_summary["wall_time_s"] > 0 and rl["model"] == "scratch:tiny"
    assert (sft["kind"], sft["method"], sft["algo"], sft["steps"]) == ("sft", "full", None, 4)
    assert sft["heldout_accuracy_end"] == sft_summary["eval_accuracy"] and sft["wall_time_s"] == sft_summary["train_runtime_s"]
    assert (demos["kind"], demos["method"], demos["rows"], demos["steps"]) == ("dataset", "demos", 3, None)
    assert (going["status"], going["steps"], going["max_steps"], going["heldout_accuracy_end_step"]) == ("running", 2, 3, 2)
    evals = {r["step"]: r["heldout_accuracy"] for r in _metrics(runs_root / "rl_tiny") if "heldout_accuracy" in r}
    assert going["heldout_accuracy_start"] == evals[0] and going["heldout_accuracy_end"] == evals[2]
    assert going["wall_time_s"] == 90.0
    assert all(isinstance(r["steps"], int) for r in (going, rl, sft))


def _metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_table_shows_each_run_on_one_line(runs_root, capsys):
    assert main(["runs", str(runs_root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["name", "kind", "model", "method"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert list(rows) == ["rl_going", "rl_tiny", "demos_tiny", "sft_tiny"]
    assert "2/3 running" in rows["rl_going"] and "full grpo" in rows["rl_tiny"] and "3 rows" in rows["demos_tiny"]
    start, end = _summary(runs_root, "rl_tiny")["heldout_accuracy_start"], _summary(runs_root, "rl_tiny")["heldout_accuracy_end"]
    assert f"{start:.1%} -> {end:.1%}" in rows["rl_tiny"]
    assert "2023-11-14" in rows["sft_tiny"] or "2023-11-15" in rows["sft_tiny"]  # 1_700_000_000 in any time zone


@pytest.mark.parametrize("case", ["missing", "empty", "junk only"])
def test_a_folder_without_runs_is_one_line_and_exit_2(tmp_path, capsys, case):
    folder = tmp_path / "runs"
    if case != "missing":
        folder.mkdir()
    if case == "junk only":
        (folder / "plots").mkdir()
        (folder / "plots" / "a.png").write_bytes(b"")
    assert main(["runs", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ") and str(folder) in err
    assert ("no such folder" if case == "missing" else "holds no run folders") in err


def test_only_the_ends_of_a_large_metrics_file_are_read(tmp_path, monkeypatch):
    """A running run's last step and latest evaluation come from its tail, within READ_BUDGET bytes."""
    run = tmp_path / "runs" / "big"
    run.mkdir(parents=True)
    (run / "recipe.yaml").write_text("name: big\nalgo: grpo\nmethod: lora\nmodel: {name: m}\ntrain: {max_steps: 5000}\n")
    with open(run / "metrics.jsonl", "w") as f:
        for step in range(5000):
            if step % 1000 == 0:
                f.write(json.dumps({"step": step, "heldout_accuracy": step / 10_000}) + "\n")
            f.write(json.dumps({"step": step, "reward_mean": 0.5, "padding": "x" * 100}) + "\n")
    monkeypatch.setattr(run_list, "_BLOCK", 1000)  # many blocks: lines cross their edges
    info = list_runs(tmp_path / "runs")[0]
    assert (info.steps, info.heldout_accuracy_end_step, info.heldout_accuracy_end) == (4999, 4000, 0.4)
    assert (info.heldout_accuracy_start_step, info.heldout_accuracy_start) == (0, 0.0)
    # With a budget smaller than the distance to the latest evaluation, it is not found rather than read for.
    monkeypatch.setattr(run_list, "READ_BUDGET", 50_000)
    info = list_runs(tmp_path / "runs")[0]
    assert info.steps == 4999 and info.heldout_accuracy_end is None


def test_a_reward_model_run_shows_its_pairwise_accuracy(tmp_path):
    """As `ftkit rm` writes it (ftkit/preference.py): one pairwise_accuracy record, at the end."""
    run = tmp_path / "runs" / "rm_tiny"
    run.mkdir(parents=True)
    (run / "recipe.yaml").write_text("name: rm_tiny\nkind: rm\nmethod: lora\nmodel: {name: scratch:tiny}\ntrain: {}\n")
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 0.7}\n{"step": 2, "pairwise_accuracy": 0.75}\n')
    (run / "summary.json").write_text(json.dumps({"model": "scratch:tiny", "method": "lora", "eval_accuracy": 0.75,
                                                  "steps": 2, "train_runtime_s": 1.5}))
    info = list_runs(tmp_path / "runs")[0]
    assert (info.kind, info.method, info.steps, info.max_steps, info.wall_time_s) == ("rm", "lora", 2, None, 1.5)
    assert (info.heldout_accuracy_start, info.heldout_accuracy_end, info.heldout_accuracy_end_step) == (None, 0.75, 2)
