"""The ftkit command: bad input is one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from ftkit.cli import main


def _write(tmp_path, raw, name="recipe.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, f"expected one line, got:\n{err}"
    assert "Traceback" not in err
    assert err.startswith("error: ")
    return err


@pytest.mark.parametrize(
    ("argv_tail", "expected"),
    [
        (["train.learning_rat=1e-3"], 'did you mean "learning_rate"'),
        (["method=lorra"], 'recipe key "method"'),
        (["train.num_train_epochs=many"], "train.num_train_epochs"),
        (["data.train_size=-5"], "data.train_size"),
        (["model.name=./no/such/folder"], "no such model folder"),
        (["model.name=scratch:huge"], 'unknown scratch preset "scratch:huge"'),
        (["gym.id=arithmetc"], 'unknown gym "arithmetc" (did you mean "arithmetic"?)'),
        (["gym.kwargs.digits=0"], "digits"),
        (["gym=null", "data.path=missing.jsonl"], "no such file: missing.jsonl"),
        (["data.gym=arithmetic"], 'recipe key "data.gym" is now "gym.id" (one gym section for every recipe kind)'),
        (["data.gym=null", "data.path=x.jsonl"], 'recipe key "data.gym" is now "gym.id"'),
        (["eval.gym=arithmetic"], 'recipe key "eval.gym" is now "eval.gym.id"'),
        (["lora"], 'is not key=value'),
    ],
)
def test_sft_bad_input_is_one_line_and_exit_2(tiny_recipe, tmp_path, capsys, argv_tail, expected):
    code = main(["sft", _write(tmp_path, tiny_recipe()), *argv_tail])
    assert code == 2
    assert expected in _error_line(capsys)


def test_malformed_dataset_line_names_file_and_line(tiny_recipe, tmp_path, capsys):
    data = tmp_path / "train.jsonl"
    data.write_text('{"prompt": "1+1=", "completion": "2"}\n{"prompt": "2+2=", "completion": \n')
    raw = tiny_recipe(data={"path": str(data)}, gym=None)
    raw["eval"] = {"n": 0}
    assert main(["sft", _write(tmp_path, raw)]) == 2
    assert f"{data}:2: not valid JSON" in _error_line(capsys)


def test_empty_dataset_file(tiny_recipe, tmp_path, capsys):
    data = tmp_path / "empty.jsonl"
    data.write_text("\n")
    raw = tiny_recipe(data={"path": str(data)}, gym=None)
    assert main(["sft", _write(tmp_path, raw)]) == 2
    assert "empty dataset" in _error_line(capsys)


def test_missing_recipe_and_unknown_command(capsys):
    assert main(["sft", "recipes/nope.yaml"]) == 2
    assert "no such recipe file: recipes/nope.yaml" in _error_line(capsys)
    with pytest.raises(SystemExit) as info:
        main(["fly"])
    assert info.value.code == 2
    _error_line(capsys)


def test_resume_without_a_run(tiny_recipe, tmp_path, capsys):
    assert main(["sft", _write(tmp_path, tiny_recipe()), "--resume"]) == 2
    assert "holds no run to resume" in _error_line(capsys)


def test_eval_unknown_gym_and_missing_model(tmp_path, capsys):
    assert main(["eval", "--gym", "arithmetik", "--model", str(tmp_path)]) == 2
    assert 'did you mean "arithmetic"' in _error_line(capsys)
    assert main(["eval", "--gym", "arithmetic", "--model", str(tmp_path / "none")]) == 2
    assert "no such model folder" in _error_line(capsys)


def test_console_script_exits_2_without_traceback(tmp_path):
    """The real process, end to end: `python -m ftkit` as `accelerate launch -m ftkit` would run it."""
    done = subprocess.run([sys.executable, "-m", "ftkit", "sft", str(tmp_path / "missing.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: no such recipe file: {tmp_path / 'missing.yaml'}"
