"""Recipes: loading, dotted overrides, and one-line errors for unknown keys, wrong types and ranges."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ftkit.config import load_recipe, parse_key_values, recipe_to_yaml, validate_recipe
from ftkit.errors import ConfigError

# SFT recipes only: tests/test_rl_cli.py checks the RL ones (those with an `algo:` key).
RECIPES = sorted(p for p in Path(__file__).resolve().parents[1].joinpath("recipes").glob("*.yaml")
                 if "\nalgo:" not in p.read_text())


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_shipped_recipe_loads_and_opens_with_its_command(path):
    kind = yaml.safe_load(path.read_text()).get("kind", "sft")  # sft, dpo or rm: the command that runs it
    recipe = load_recipe(path, kind=kind)
    first_line = path.read_text().splitlines()[0]
    assert first_line == f"# ftkit {kind} recipes/{path.name}"
    assert recipe.name
    assert "example override" in path.read_text().splitlines()[1]


def test_overrides_are_typed_and_merged(tiny_recipe, tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe()))
    recipe = load_recipe(path, ["method=lora", "train.learning_rate=1e-4", "output_dir=/tmp/x",
                                "gym.kwargs.ops=[+,-]", "lora.r=4"])
    assert recipe.method == "lora"
    assert recipe.train["learning_rate"] == pytest.approx(1e-4)
    assert isinstance(recipe.train["learning_rate"], float)
    assert recipe.run_dir == Path("/tmp/x")
    assert recipe.gym.kwargs["ops"] == ["+", "-"]
    assert recipe.lora.r == 4
    assert recipe.train["max_steps"] == 4  # untouched keys survive the merge


def test_resolved_recipe_round_trips(tiny_recipe):
    recipe = validate_recipe(tiny_recipe())
    again = validate_recipe(yaml.safe_load(recipe_to_yaml(recipe)))
    assert again == recipe


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"trian": {}}, 'unknown recipe key "trian" (did you mean "train"?)'),
        ({"train": {"learning_rat": 1e-3}}, 'unknown recipe key "train.learning_rat" (did you mean "learning_rate"?)'),
        ({"lora": {"rank": 8}}, 'unknown recipe key "lora.rank"'),
        ({"model": {"nmae": "gpt2"}}, 'unknown recipe key "model.nmae" (did you mean "name"?)'),
        ({"train": {"learning_rate": "fast"}}, 'recipe key "train.learning_rate": expected float'),
        ({"train": {"learning_rate": -1}}, 'recipe key "train.learning_rate": must be > 0'),
        ({"train": {"per_device_train_batch_size": 0}}, '"train.per_device_train_batch_size": must be > 0'),
        ({"method": "lorra"}, 'recipe key "method"'),
        ({"data": {"train_size": 0}}, 'recipe key "data.train_size"'),
        ({"gym": None}, "set gym (examples from its oracle) or data.path (a dataset file)"),
        ({"kind": "dpo", "gym": {"id": "arithmetic", "chat": True}},
         "gym.chat: ftkit dpo trains and scores on the gym's plain text"),
        ({"eval": {"gym": {"id": "arithmetic", "max_turns": 3}}}, "eval.gym.max_turns: ftkit sft"),
        ({"eval": {"gym": {"id": "arithmetic", "train_seed": 3}}}, "eval.gym.train_seed: held-out problems"),
        ({"eval": {"gym": {"kwargs": {}}}}, 'missing recipe key "eval.gym.id"'),
        ({"lora": {"dropout": 1.5}}, 'recipe key "lora.dropout"'),
        ({"train": {"output_dir": "x"}}, "set the top-level output_dir instead"),
        ({"eval": {"n": "many"}}, 'recipe key "eval.n"'),
    ],
)
def test_bad_recipes_get_one_line_naming_the_key(tiny_recipe, change, expected):
    raw = tiny_recipe()
    for key, value in change.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) and key in raw and key != "lora" else value
    with pytest.raises(ConfigError) as info:
        validate_recipe(raw)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_fallback_train_section_is_checked_too(tiny_recipe):
    raw = tiny_recipe(model={"name": "gpt2", "fallback": {"name": "scratch:tiny", "train": {"num_epochs": 3}}})
    with pytest.raises(ConfigError, match=r'model\.fallback\.train\.num_epochs.*did you mean "num_train_epochs"'):
        validate_recipe(raw)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="no such recipe file"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodel: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+: not valid YAML"):
        load_recipe(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="YAML mapping"):
        load_recipe(listy)


def test_overrides_must_be_key_value(tiny_recipe, tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(tiny_recipe()))
    with pytest.raises(ConfigError, match='"lora" is not key=value'):
        load_recipe(path, ["lora"])


def test_parse_key_values_types_values():
    assert parse_key_values(["digits=4", "ops=[+,-]", "answer_format=reversed"]) == {
        "digits": 4, "ops": ["+", "-"], "answer_format": "reversed"}


@pytest.mark.parametrize(
    ("section", "old", "new"),
    [
        ("data", {"gym": "arithmetic"}, "gym.id"),
        ("data", {"gym": None, "path": "x.jsonl"}, "gym.id"),
        ("data", {"gym_kwargs": {"digits": 2}}, "gym.kwargs"),
        ("data", {"train_seed": 3}, "gym.train_seed"),
        ("eval", {"gym": "arithmetic"}, "eval.gym.id"),
        ("eval", {"gym_kwargs": {"digits": 2}}, "eval.gym.kwargs"),
    ],
)
def test_old_gym_keys_name_their_new_key(tiny_recipe, section, old, new):
    raw = tiny_recipe(**{section: old})
    with pytest.raises(ConfigError) as info:
        validate_recipe(raw)
    key = f"{section}.{next(iter(old))}"
    assert str(info.value) == f'recipe key "{key}" is now "{new}" (one gym section for every recipe kind)'


def test_the_gym_section_becomes_a_gym_spec(tiny_recipe):
    from ftkit.config import GymSection
    from ftkit.rl.config import RLRecipe
    from ftkit.sft import _eval_task
    from gyms.spec import GymSpec

    recipe = validate_recipe(tiny_recipe(gym={"id": "arithmetic", "kwargs": {"digits": 2}, "train_seed": 4}))
    assert recipe.gym.spec() == GymSpec("arithmetic", {"digits": 2})
    assert _eval_task(recipe) == recipe.gym.spec()  # scored on the recipe's gym by default
    other = validate_recipe(tiny_recipe(eval={"gym": {"id": "arithmetic", "kwargs": {"digits": 3}}}))
    assert _eval_task(other) == GymSpec("arithmetic", {"digits": 3})
    assert RLRecipe.model_fields["gym"].annotation is GymSection  # one section class for every recipe kind


def test_a_recipe_may_train_on_a_file_and_score_on_its_gym(tiny_recipe):
    from ftkit.sft import _eval_task

    recipe = validate_recipe(tiny_recipe(data={"path": "train.jsonl"}))
    assert not recipe.from_gym and _eval_task(recipe).id == "arithmetic"
    assert validate_recipe(tiny_recipe(data={"path": "train.jsonl"}, gym=None)).gym is None
