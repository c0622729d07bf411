"""`ftkit report` and the report.html that `ftkit rl` and `ftkit sft` rewrite during training (in a browser:
test_report_browser.py).

    python -m pytest tests/test_report.py -q
"""

from __future__ import annotations

import json
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_rl_trainer import FirstByteEnv

from ftkit.cli import main as cli
from ftkit.report import write_report
from ftkit.report.episodes import dataset_items, trajectory_items
from ftkit.report.folders import read_folder, recipe_diff


class LetterEnv(FirstByteEnv):
    """Reward 1 when the answer starts with a letter (test_rl_trainer's gym: a fresh tiny model does so about a
    fifth of the time, so a few RL steps log solved and unsolved episodes), with two difficulties to filter by."""

    def _reset(self, options):
        observation, info = super()._reset(options)  # "item 123:"
        odd = int(observation.split()[1].rstrip(":")) % 2
        return observation, {**info, "difficulty": {"parity": "odd" if odd else "even"}}


@contextmanager
def letter_gym():
    """The gym above, registered for the duration (as conftest's temporary_gym, usable from module fixtures)."""
    import gymnasium

    import gyms.registry

    gym_id = "ftkit/ReportLetterTest-v0"
    gyms.register_gym(gym_id, LetterEnv, short_name="report_letter_test", description="test gym")
    try:
        yield "report_letter_test"
    finally:
        gyms.registry._GYMS.pop(gym_id, None)
        gymnasium.registry.pop(gym_id, None)


def tiny_rl_run(folder: Path, resume: bool = False, **train) -> dict:
    """Four GRPO steps of scratch:tiny on the letter gym, evaluated at steps 0, 2 and 4 (a few seconds)."""
    from ftkit.rl import trainer
    from ftkit.rl.config import load_rl_recipe

    recipe = {
        "name": folder.name, "output_dir": str(folder), "algo": "grpo", "model": {"name": "scratch:tiny"},
        "gym": {"id": "report_letter_test"},
        "rollout": {"prompts_per_step": 4, "num_generations": 4, "max_completion_length": 3},
        "train": {"max_steps": 4, "learning_rate": 3e-3, "per_device_train_batch_size": 16, "save_steps": 100,
                  "samples_per_step": 8, **train},
        "eval": {"n": 8, "every_steps": 2, "max_new_tokens": 3, "samples": 4},
    }
    with letter_gym():
        return trainer.main(load_rl_recipe(None, base=recipe), resume=resume)


def page_data(path: Path) -> dict:
    """The JSON a report page embeds."""
    text = Path(path).read_text()
    match = re.search(r'<script type="application/json" id="ftkit-data">(.*?)</script>', text, re.S)
    return json.loads(match.group(1))


def recorded_refreshes(monkeypatch, module) -> list[dict]:
    """Each page that `module`'s refresh_report writes, read back as it was when written."""
    import ftkit.report

    pages = []

    def refresh(run_dir, console=None):
        path = ftkit.report.refresh(run_dir, console)
        pages.append(page_data(path)["runs"][0])
        return path

    monkeypatch.setattr(module, "refresh_report", refresh)
    return pages


def test_rl_rewrites_the_report_at_each_evaluation_and_at_the_end(tmp_path, monkeypatch):
    import ftkit.rl.report

    pages = recorded_refreshes(monkeypatch, ftkit.rl.report)
    summary = tiny_rl_run(tmp_path / "rl")
    assert summary["report"] == str(tmp_path / "rl" / "report.html")
    # evaluations at steps 0, 2 and 4 (the final one), then the end with summary.json
    assert [p["status"]["step"] for p in pages] == [0, 2, 4, 4]
    assert [p["status"]["finished"] for p in pages] == [False, False, False, True]
    assert len(pages[0]["items"]) == 0 and len(pages[1]["items"]) == 2 * 8
    last = pages[-1]
    assert last["kind"] == "rl" and last["summary"]["steps"] == 4 and len(last["items"]) == 4 * 8
    for key in ("reward_mean", "success_rate", "entropy", "identical_groups", "heldout_accuracy", "lr"):
        assert last["curves"][key]["x"], key
    points = last["by_difficulty"]["points"]
    assert [p["step"] for p in points] == [0, 4] and set(points[0]["accuracy"]) <= {"parity=odd", "parity=even"}
    assert sum(last["by_difficulty"]["n"].values()) == 8
    assert "ftkit" in last["env"]["packages"] and last["env"]["command"]


def test_rl_warnings_are_kept_for_the_report(tmp_path, monkeypatch):
    """A warning printed on the console lands in warnings.jsonl and in the page; a resume cuts it back to
    its checkpoint, so what the steps after it warn is not written twice."""
    from ftkit.rl import report as rl_report

    monkeypatch.setattr(rl_report, "advise", lambda stats, groups: [("kl", f"advice at reward {stats['reward_mean']}")])
    tiny_rl_run(tmp_path / "rl", save_steps=2)
    warnings = tmp_path / "rl" / "warnings.jsonl"
    lines = [json.loads(line) for line in warnings.read_text().splitlines()]
    assert [w["step"] for w in lines if w["key"] == "kl"] == [1]  # then quiet for REPEAT_EVERY steps
    shown = page_data(tmp_path / "rl" / "report.html")["runs"][0]["warnings"]
    assert shown == lines and shown[0]["message"].startswith("advice at reward")
    monkeypatch.setattr(rl_report, "advise", lambda stats, groups: [("clip", f"at step {stats['reward_mean']}")])
    tiny_rl_run(tmp_path / "rl", resume=True, save_steps=2)  # from checkpoint-2: steps 3 and 4 again
    again = [json.loads(line) for line in warnings.read_text().splitlines()]
    assert again[: len([w for w in lines if w["step"] <= 2])] == [w for w in lines if w["step"] <= 2]
    assert [w["step"] for w in again if w["key"] == "clip"] == [3] and [w for w in again if w["step"] > 2 and
                                                                       w["key"] == "kl"] == []


def test_sft_rewrites_the_report_at_each_evaluation_and_at_the_end(tiny_recipe, monkeypatch):
    import ftkit.sft
    from ftkit.config import validate_recipe

    pages = recorded_refreshes(monkeypatch, ftkit.sft)
    recipe = validate_recipe(tiny_recipe(eval={"n": 16, "seed": 1, "max_new_tokens": 4, "samples": 4,
                                               "every_steps": 2, "during_training_n": 8},
                                         gym={"id": "arithmetic", "kwargs": {"digits": 2, "ops": ["+", "-"]}}))
    ftkit.sft.main(recipe)
    assert [p["status"]["step"] for p in pages] == [2, 4] and [p["status"]["finished"] for p in pages] == [False, True]
    end = pages[-1]
    assert end["kind"] == "sft" and end["curves"]["loss"]["x"] == [1, 2, 3, 4]
    assert end["curves"]["learning_rate"]["x"] and end["curves"]["tokens_per_s"]["x"]
    points = end["by_difficulty"]["points"]
    assert [p["step"] for p in points] == [2, 4]
    assert set(points[-1]["accuracy"]) == {"digits=2 op=+", "digits=2 op=-"} == set(end["by_difficulty"]["n"])
    assert len(end["items"]) == 4 and "final held-out evaluation" in end["items_note"]  # eval.json's samples


def test_report_command_writes_one_page_per_run_or_one_for_several(tmp_path, monkeypatch, capsys):
    run = tmp_path / "a"
    tiny_rl_run(run)
    (run / "report.html").unlink()
    assert cli(["report", str(run)]) == 0
    assert str(run / "report.html") in capsys.readouterr().out and (run / "report.html").is_file()
    other = tmp_path / "b"
    shutil.copytree(run, other)
    (other / "recipe.yaml").write_text((run / "recipe.yaml").read_text().replace("learning_rate: 0.003",
                                                                                  "learning_rate: 0.001"))
    monkeypatch.chdir(tmp_path)
    assert cli(["report", str(run), str(other)]) == 0
    data = page_data(tmp_path / "report.html")
    assert [r["path"] for r in data["runs"]] == [str(run), str(other)]
    assert data["diff"] == [{"key": "train.learning_rate", "values": [0.003, 0.001]}]
    assert cli(["report", str(run), str(other), "--out", str(tmp_path / "both.html")]) == 0
    assert (tmp_path / "both.html").is_file()


@pytest.mark.parametrize("make, expected", [
    (lambda tmp: tmp / "missing", "no such folder"),
    (lambda tmp: tmp, "is not a run folder"),
])
def test_a_folder_that_is_not_a_run_is_one_line(tmp_path, capsys, make, expected):
    (tmp_path / "notes.txt").write_text("not a run")
    assert cli(["report", str(make(tmp_path))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err and len(err.strip().splitlines()) == 1


def test_large_trajectory_files_keep_whole_evenly_spaced_steps(tmp_path):
    path = tmp_path / "trajectories.jsonl"
    with path.open("w") as f:
        for step in range(1, 101):
            for group in range(10):
                f.write(json.dumps({"step": step, "group": group, "total_reward": group / 10, "solved": group > 5,
                                    "reset_info": {"difficulty": {"digits": 2}},
                                    "turns": [{"observation": "1+1=", "action": str(group), "reward": group / 10}],
                                    "final_observation": ""}) + "\n")
    items, note = trajectory_items(path, limit=200)
    steps = sorted({i["step"] for i in items})
    assert len(items) == 200 and len(steps) == 20 and steps[0] == 1 and steps[-1] == 100
    assert all(sum(i["step"] == s for i in items) == 10 for s in steps)  # every episode of a kept step
    assert note == "200 of 1,000 logged episodes: every episode of 20 of the 100 steps, evenly spaced"
    assert items[0]["difficulty"] == "digits=2" and items[0]["turns"] == [["0", "", 0.0]]


def test_large_datasets_are_sampled_but_their_figures_count_every_row(tmp_path):
    from data_tools.store import write_dataset

    rows = [{"index": i // 4, "sample": i % 4, "prompt": f"{i}+1=", "completion": str(i + 1), "reward": float(i % 3 == 0),
             "solved": i % 3 == 0, "difficulty": json.dumps({"digits": 1 + i % 2})} for i in range(300)]
    write_dataset(tmp_path / "d", {"train": rows}, {"kind": "rollouts", "command": "ftkit collect rollouts ..."})
    items, note, figures = dataset_items(tmp_path / "d", limit=100)
    assert len(items) == 100 and note == "100 of 300 rows: a uniform random sample (seed 0)"
    assert {b["label"]: b["count"] for b in figures["rewards"]} == {"0": 200, "1": 100}
    assert figures["by_difficulty"]["n"] == {"digits=1": 150, "digits=2": 150}
    assert figures["summary"]["solved_rate"] == pytest.approx(100 / 300)
    page = read_folder(tmp_path / "d")
    assert page["kind"] == "dataset" and page["summary"]["rows"] == 300 and "ftkit collect" in page["env"]["command"]


def test_text_from_a_model_cannot_break_out_of_the_page(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "recipe.yaml").write_text("name: run\nalgo: grpo\n")
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "reward_mean": float("nan"), "loss": 1.0}) + "\n")
    evil = "</script><script>alert(1)</script>"
    (run / "trajectories.jsonl").write_text(json.dumps(
        {"step": 1, "group": 0, "total_reward": 0.0, "solved": False,
         "turns": [{"observation": "q", "action": evil, "reward": 0.0}], "final_observation": ""}) + "\n")
    page = write_report([run]).read_text()
    assert evil not in page and page.count("</script>") == 3  # the data, uPlot and the page's own script
    data = page_data(run / "report.html")["runs"][0]
    assert data["items"][0]["turns"][0][0] == evil and "reward_mean" not in data["curves"]


def test_recipe_diff_names_only_the_keys_that_differ():
    runs = [{"recipe": {"name": "a", "train.learning_rate": 1e-4, "train.beta": 0.0}},
            {"recipe": {"name": "b", "train.learning_rate": 5e-5, "train.beta": 0.0, "curriculum.option": "digits"}}]
    assert recipe_diff(runs) == [{"key": "curriculum.option", "values": [None, "digits"]},
                                 {"key": "train.learning_rate", "values": [1e-4, 5e-5]}]
