"""Evaluation: the gym's own reward scores answers, per difficulty, on problems never trained on."""

from __future__ import annotations

import json

from data_tools.gym_data import gym_examples
from ftkit.cli import main
from ftkit.evaluate import difficulty_key, heldout_problems, samples_markdown, score_completions

KWARGS = {"ops": ["+", "-"], "digits": [1, 2], "answer_format": "reversed"}


def test_scores_come_from_the_gym_and_split_by_difficulty():
    problems = heldout_problems("arithmetic", KWARGS, 40, seed=3)
    answers = [p["answer"] if i % 2 == 0 else p["answer"] + "0" for i, p in enumerate(problems)]
    result = score_completions("arithmetic", KWARGS, problems, answers, samples=5)
    assert result.correct == 20 and result.accuracy == 0.5
    assert sum(g["n"] for g in result.by_difficulty.values()) == 40
    assert all(key.startswith("digits=") and " op=" in key for key in result.by_difficulty)
    assert len(result.samples) == 5 and result.samples[0]["solved"] and not result.samples[1]["solved"]
    assert "| `" in samples_markdown(result)


def test_heldout_problems_exclude_training_prompts():
    train = {r["prompt"] for r in gym_examples("arithmetic", 60, 0, env_kwargs={"digits": 1})}
    heldout = heldout_problems("arithmetic", {"digits": 1}, 20, seed=1, exclude_prompts=train)
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
