"""Evaluation: the gym's own reward scores answers, per difficulty, on problems never trained on."""

from __future__ import annotations

import json

import pytest

from data_tools.gym_data import gym_examples
from ftkit.cli import main
from ftkit.evaluate import difficulty_key, heldout_problems, samples_markdown, score_completions
from gyms.spec import GymSpec

GYM = GymSpec("arithmetic", {"ops": ["+", "-"], "digits": [1, 2], "answer_format": "reversed"})


def test_scores_come_from_the_gym_and_split_by_difficulty():
    problems = heldout_problems(GYM, 40, seed=3)
    answers = [p["answer"] if i % 2 == 0 else p["answer"] + "0" for i, p in enumerate(problems)]
    result = score_completions(GYM, problems, answers, samples=5)
    assert result.correct == 20 and result.accuracy == 0.5
    assert sum(g["n"] for g in result.by_difficulty.values()) == 40
    assert all(key.startswith("digits=") and " op=" in key for key in result.by_difficulty)
    assert len(result.samples) == 5 and result.samples[0]["solved"] and not result.samples[1]["solved"]
    assert "| `" in samples_markdown(result)


def test_heldout_problems_exclude_training_prompts():
    one_digit = GymSpec("arithmetic", {"digits": 1})
    train = {r["prompt"] for r in gym_examples(one_digit, 60, 0)}
    heldout = heldout_problems(one_digit, 20, seed=1, exclude_prompts=train)
    assert not train & {p["prompt"] for p in heldout}


def test_difficulty_key_is_stable():
    assert difficulty_key({"op": "+", "digits": 3}) == difficulty_key({"digits": 3, "op": "+"}) == "digits=3 op=+"
    assert difficulty_key({}) == "all"


def test_eval_command_on_a_trained_model(tiny_recipe, tmp_path, capsys):
    import yaml

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe()))
    assert main(["sft", str(recipe)]) == 0
    run_dir = tmp_path / "run"
    out = tmp_path / "eval.json"
    code = main(["eval", "--gym", "arithmetic", "--model", str(run_dir / "model"), "--n", "12",
                 "--output", str(out), "digits=1"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "held-out accuracy" in printed and "digits=1 op=+" in printed
    result = json.loads(out.read_text())
    assert result["n"] == 12 and 0.0 <= result["accuracy"] <= 1.0
    assert list(result["by_difficulty"]) == ["digits=1 op=+"]


def _write_json(folder, record):
    from ftkit.runs import TRAINING_DATA_FILE

    folder.mkdir(exist_ok=True)
    (folder / TRAINING_DATA_FILE).write_text(json.dumps(record))
    return folder


def test_a_model_folder_remembers_its_task_and_earlier_folders_are_still_read(tmp_path):
    from ftkit.runs import TrainingData

    task = GymSpec("arithmetic", {"digits": 2})
    new = TrainingData(gym=task, train_seed=0, train_size=64, eval_seed=1, trained_with="ftkit sft")
    new.save(tmp_path)
    assert TrainingData.read(tmp_path) == new
    assert json.loads((tmp_path / "ftkit_training_data.json").read_text())["gym"]["kwargs"] == {"digits": 2}
    old_sft = _write_json(tmp_path / "old_sft", {"gym": "arithmetic", "gym_kwargs": {"digits": 2}, "train_seed": 0,
                                                 "train_size": 64, "path": None, "eval_seed": 1})
    assert TrainingData.read(old_sft) == TrainingData(gym=task, train_seed=0, train_size=64, eval_seed=1)
    old_rl = _write_json(tmp_path / "old_rl", {"gym": "guess_number", "gym_kwargs": {"max_number": 16}, "eval_seed": 2,
                                               "train_size": None, "chat": True, "system_prompt": "Be brief.",
                                               "max_turns": 8, "trained_with": "ftkit rl (grpo)"})
    assert TrainingData.read(old_rl).gym == GymSpec("guess_number", {"max_number": 16}, chat=True,
                                                    system_prompt="Be brief.", max_turns=8)
    old_file = _write_json(tmp_path / "old_file", {"gym": None, "gym_kwargs": {}, "train_seed": 0,
                                                   "train_size": 10000, "path": "x.jsonl", "eval_seed": 1})
    assert TrainingData.read(old_file).gym is None and TrainingData.read(tmp_path / "none") is None


def test_eval_defaults_to_the_task_a_run_trained_on_and_skips_its_problems():
    from ftkit.evaluate import defaults_from_training
    from ftkit.runs import TrainingData

    task = GymSpec("arithmetic", {"digits": 1, "ops": ["+"]})
    trained = TrainingData(gym=task, train_seed=0, train_size=30, eval_seed=5)
    spec, seed, exclude = defaults_from_training(GymSpec("arithmetic"), trained, None)
    assert (spec, seed) == (task, 5)
    assert exclude == {r["prompt"] for r in gym_examples(task, 30, 0)}
    spec, seed, _ = defaults_from_training(GymSpec("ftkit/Arithmetic-v0", {"digits": 2}), trained, 9)
    assert spec.kwargs == {"digits": 2, "ops": ["+"]} and seed == 9  # what is asked wins
    other = GymSpec("countdown")
    assert defaults_from_training(other, trained, None) == (other, 5, frozenset())
    chat = TrainingData(gym=GymSpec("guess_number", chat=True, max_turns=6), eval_seed=2)
    spec, _, exclude = defaults_from_training(GymSpec("guess_number", {"max_number": 16}), chat, None)
    assert spec == GymSpec("guess_number", {"max_number": 16}, chat=True, max_turns=6) and not exclude
    assert defaults_from_training(GymSpec("arithmetic"), None, None) == (GymSpec("arithmetic"), 1, frozenset())


def test_a_corrupt_training_record_is_a_one_line_error(tmp_path):
    from ftkit.errors import ModelError
    from ftkit.runs import TRAINING_DATA_FILE, TrainingData

    (tmp_path / TRAINING_DATA_FILE).write_text('{"gym": ')
    with pytest.raises(ModelError, match="not valid JSON"):
        TrainingData.read(tmp_path)
