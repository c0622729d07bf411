"""`eval.stop_when`: SFT ends at the first held-out evaluation where every accuracy condition holds."""

from __future__ import annotations

import json

import pytest
from rich.console import Console
from transformers import TrainerControl, TrainerState, TrainingArguments

from ftkit import sft
from ftkit.callbacks import HeldoutAccuracyCallback
from ftkit.config import StopCondition, validate_recipe
from ftkit.errors import ConfigError
from ftkit.runs import MetricsLog


def _eval_section(**stop):
    return {"n": 16, "seed": 1, "max_new_tokens": 4, "every_steps": 2, "during_training_n": 16, **stop}


def test_one_condition_may_be_written_as_a_mapping(tiny_recipe):
    recipe = validate_recipe(tiny_recipe(eval=_eval_section(stop_when={"min_accuracy": 0.3})))
    assert [c.min_accuracy for c in recipe.eval.stop_when] == [0.3]
    assert recipe.eval.stop_when[0].difficulty == {} and recipe.eval.stop_when[0].max_accuracy == 1.0


@pytest.mark.parametrize(("stop_when", "every_steps", "message"), [
    ({"min_accuracy": 0.3}, None, "needs eval.every_steps"),
    ({"min_accuracy": 0.7, "max_accuracy": 0.5}, 2, "is above max_accuracy"),
    ([{"min_accuracy": 0.2, "difficulty": {"op": "-"}}, {"min_accuracy": 0.5, "difficulty": {"op": "-"}}], 2,
     "watch the same difficulty"),
    ({"min_accuracy": 1.5}, 2, "less than or equal to 1"),
    ({"min_acuracy": 0.5}, 2, 'did you mean "min_accuracy"'),
])
def test_bad_stop_conditions_are_one_line_errors(tiny_recipe, stop_when, every_steps, message):
    raw = tiny_recipe(eval={**_eval_section(stop_when=stop_when), "every_steps": every_steps})
    with pytest.raises(ConfigError, match=message) as info:
        validate_recipe(raw)
    assert "\n" not in str(info.value)


def _state(step: int, max_steps: int = 100) -> TrainerState:
    state = TrainerState()
    state.global_step, state.max_steps, state.epoch = step, max_steps, 0.0
    return state


def _callback(tmp_path, accuracies, conditions):
    """A callback whose evaluations return the next (overall, {label: watched}) from `accuracies`."""
    scores = iter(accuracies)
    log = MetricsLog(tmp_path / "metrics.jsonl")
    console = Console(file=open(tmp_path / "console.txt", "w"), width=200)  # noqa: SIM115 (closed with the test)
    return HeldoutAccuracyCallback(10, lambda model: next(scores), log, stop_when=conditions, console=console), log


def test_training_stops_at_the_first_evaluation_where_every_condition_holds(tmp_path):
    conditions = [StopCondition(min_accuracy=0.25, max_accuracy=0.6, difficulty={"op": "-"}),
                  StopCondition(min_accuracy=0.95, difficulty={"op": "+"})]
    callback, log = _callback(tmp_path, [
        (0.5, {"op=-": 0.1, "op=+": 0.99}),   # subtraction too low
        (0.6, {"op=-": 0.3, "op=+": 0.90}),   # addition too low
        (0.7, {"op=-": 0.4, "op=+": 0.96}),   # both hold: stop here
    ], conditions)
    args, control = TrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True), TrainerControl()
    for step in (5, 10, 20):  # step 5 is not an evaluation step
        callback.on_step_end(args, _state(step), control)
        assert not control.should_training_stop
    callback.on_step_end(args, _state(30), control)
    assert control.should_training_stop
    assert callback.stopped_at == {"step": 30, "accuracy": {"op=-": 0.4, "op=+": 0.96}}
    records = log.read()
    assert [r["step"] for r in records] == [10, 20, 30]
    assert records[-1]["heldout_accuracy op=-"] == 0.4 and records[-1]["heldout_accuracy"] == 0.7


def test_overshooting_the_band_stops_and_warns(tmp_path):
    conditions = [StopCondition(min_accuracy=0.25, max_accuracy=0.6)]
    callback, _ = _callback(tmp_path, [(0.9, {"all": 0.9})], conditions)
    control = TrainerControl()
    callback.on_step_end(TrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True), _state(10), control)
    callback.console.file.close()
    assert control.should_training_stop
    assert "overshot" in (tmp_path / "console.txt").read_text()


def test_without_conditions_training_runs_on(tmp_path):
    callback, log = _callback(tmp_path, [(1.0, {})], [])
    control = TrainerControl()
    callback.on_step_end(TrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True), _state(10), control)
    assert not control.should_training_stop and callback.stopped_at is None
    assert log.read()[0]["heldout_accuracy"] == 1.0


def test_an_sft_run_stops_early_and_says_so_in_its_summary(tiny_recipe):
    raw = tiny_recipe(train={"max_steps": 8}, eval=_eval_section(stop_when={"min_accuracy": 0.0}))
    summary = sft.main(validate_recipe(raw))
    assert summary["steps"] == 2  # the first evaluation (every 2 steps) meets a 0% bar
    assert summary["stopped_early"]["step"] == 2
    run_dir = validate_recipe(raw).run_dir
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("heldout_accuracy all" in r for r in records)
    assert (run_dir / "model" / "model.safetensors").is_file()


def test_a_condition_on_a_difficulty_no_problem_has_is_an_error(tiny_recipe):
    raw = tiny_recipe(eval=_eval_section(stop_when={"min_accuracy": 0.5, "difficulty": {"op": "*"}}))
    with pytest.raises(ConfigError, match="matches none of the held-out problems"):
        sft.main(validate_recipe(raw))
    assert not validate_recipe(raw).run_dir.exists()


def test_stop_when_without_held_out_problems_is_an_error(tiny_recipe):
    raw = tiny_recipe(eval={**_eval_section(stop_when={"min_accuracy": 0.5}), "n": 0})
    with pytest.raises(ConfigError, match="needs held-out problems"):
        sft.main(validate_recipe(raw))


def test_conditions_on_the_same_difficulty_written_two_ways_are_one_error(tiny_recipe):
    same = [{"min_accuracy": 0.2, "difficulty": {"digits": 2}}, {"min_accuracy": 0.5, "difficulty": {"digits": "2"}}]
    with pytest.raises(ConfigError, match="watch the same difficulty"):
        validate_recipe(tiny_recipe(eval=_eval_section(stop_when=same)))


def test_a_dotted_key_into_the_list_of_conditions_is_a_one_line_error(capsys):
    from ftkit.cli import main

    assert main(["sft", "recipes/gpt2_math_subtract.yaml", "eval.stop_when.0.min_accuracy=0.4"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach inside a list" in err and len(err.strip().splitlines()) == 1
