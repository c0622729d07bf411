"""`ftkit gym list|play|new|check` and the checks behind them: `python -m pytest tests/test_gym_cli.py -q`."""

from __future__ import annotations

import doctest
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import gyms
from ftkit.cli import main
from gyms.checks import FAIL, PASS, check_gym, full_width, hostile_actions

REPO = Path(__file__).resolve().parents[1]


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, f"expected one line, got:\n{err}"
    assert err.startswith("error: ") and "Traceback" not in err
    return err


class ContainsAnswerEnv(gyms.TextEnv):
    """A deliberately hackable gym: any action that *contains* the answer wins."""

    has_oracle = True

    def _reset(self, options):
        self._answer = str(int(self.np_random.integers(10, 100)))
        return f"Say {self._answer}.", {"answer": self._answer, "difficulty": {}}

    def _step(self, action):
        solved = self._answer in action
        return "", float(solved), True, False, {"answer": self._answer, "difficulty": {}, "solved": solved}

    def oracle(self):
        return self._answer


class CrashOnLongEnv(ContainsAnswerEnv):
    """Fair scoring, but a long action crashes it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Gymnasium's checker steps with `action_space.sample()`, whose length is random: seed the
        # space so that the sample (and with it whether the checker sees the crash) is always the same.
        self.action_space.seed(0)

    def _step(self, action):
        if len(action) > 1000:
            raise ValueError("too long")
        solved = action.strip() == self._answer
        return "", float(solved), True, False, {"answer": self._answer, "difficulty": {}, "solved": solved}


class UnseededEnv(ContainsAnswerEnv):
    """Draws from a generator that ignores the seed, so episodes cannot be replayed."""

    _counter = 0

    def _reset(self, options):
        UnseededEnv._counter += 1
        self._answer = str(10 + UnseededEnv._counter % 90)
        return f"Say {self._answer}.", {"answer": self._answer, "difficulty": {}}


# -- gym list ------------------------------------------------------------------------------------------------


def test_list_shows_the_gyms_and_the_adapters(capsys):
    assert main(["gym", "list"]) == 0
    out = capsys.readouterr().out
    assert "arithmetic" in out and "ftkit/Arithmetic-v0" in out and "single" in out
    assert "rg:<task>" in out and "ta:<task>" in out


def test_list_names_the_extra_when_an_adapter_is_missing(capsys, monkeypatch):
    from gyms import adapters

    monkeypatch.setattr(adapters, "is_installed", lambda adapter: False)
    assert main(["gym", "list"]) == 0
    out = "".join(capsys.readouterr().out.replace("│", " ").split())  # the table wraps long cells
    assert "pipinstall'ftkit[reasoning-gym]'" in out and "pipinstall'ftkit[textarena]'" in out


def test_list_of_an_unknown_adapter_is_one_line(capsys):
    assert main(["gym", "list", "xx"]) == 2
    assert 'unknown adapter "xx"' in _error_line(capsys)


# -- gym play ------------------------------------------------------------------------------------------------


def test_play_arithmetic_from_piped_stdin(capsys, monkeypatch):
    env = gyms.make("arithmetic")
    observation, info = env.reset(seed=4)
    monkeypatch.setattr(sys, "stdin", io.StringIO(info["answer"] + "\n"))
    assert main(["gym", "play", "arithmetic", "--seed", "4"]) == 0
    out = capsys.readouterr().out
    assert f"\n{observation}\n" in out  # verbatim, on its own line
    assert f"> {info['answer']}" in out and "episode over: solved" in out and "total reward 1" in out


def test_play_with_gym_arguments_and_a_wrong_answer(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("-1\n"))
    assert main(["gym", "play", "arithmetic", "digits=1", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert "episode over: not solved" in out and "answer: " in out


def test_play_ends_cleanly_at_end_of_input(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["gym", "play", "arithmetic", "--seed", "0"]) == 0
    assert "input ended" in capsys.readouterr().out


def test_play_unknown_gym_and_bad_argument_are_one_line(capsys):
    assert main(["gym", "play", "arithmatic"]) == 2
    assert 'did you mean "arithmetic"' in _error_line(capsys)
    assert main(["gym", "play", "arithmetic", "digits=0"]) == 2
    assert "digits" in _error_line(capsys)
    assert main(["gym", "play", "arithmetic", "--seed", "-1"]) == 2
    assert "--seed must be a non-negative int" in _error_line(capsys)


@pytest.mark.skipif(
    "guess_number" not in [g.short_name for g in gyms.list_gyms()], reason="needs guess_number"
)
def test_play_guess_number_to_the_end_through_the_real_command():
    """The console command as a person uses it, fed by a pipe: binary search until "correct"."""
    env = gyms.make("guess_number")
    _, info = env.reset(seed=3)
    secret, low, high, guesses = int(info["answer"]), 1, 100, []
    while True:
        guesses.append((low + high) // 2)
        if guesses[-1] == secret:
            break
        low, high = (guesses[-1] + 1, high) if guesses[-1] < secret else (low, guesses[-1] - 1)
    stdin = "".join(f"{g}\n" for g in guesses)
    done = subprocess.run(
        [sys.executable, "-m", "ftkit", "gym", "play", "guess_number", "--seed", "3"],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "episode over: solved" in done.stdout and f"answer: {secret}" in done.stdout
    assert done.stdout.count("\n> ") == len(guesses)


# -- gym check -----------------------------------------------------------------------------------------------


def test_check_passes_on_arithmetic(capsys):
    assert main(["gym", "check", "arithmetic", "digits=2", "--episodes", "20"]) == 0
    out = capsys.readouterr().out
    for name in (
        "env_checker",
        "replay",
        "oracle",
        "random policy",
        "hack: answer twice",
        "hack: full-width answer",
    ):
        assert name in out
    assert "FAIL" not in out and "all 17 checks passed" in out


def test_check_fails_on_a_hackable_gym_with_exit_2(temporary_gym, capsys):
    name = temporary_gym("ftkit/TestContainsAnswer-v0", ContainsAnswerEnv, "test_contains_answer")
    assert main(["gym", "check", name, "--episodes", "10"]) == 2
    captured = capsys.readouterr()
    assert "FAIL hack: answer twice" in captured.out
    err = captured.err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ftkit/TestContainsAnswer-v0 failed")
    assert "hack: answer twice" in err and "hack: several answers" in err


def test_check_results_are_structured(temporary_gym):
    report = check_gym("arithmetic", random_episodes=10)
    assert report.passed and {r.status for r in report.results} <= {PASS, "info"}
    random_result = next(r for r in report.results if r.name == "random policy")
    assert random_result.data["episodes"] == 10 and random_result.data["mean"] == 0.0

    hackable = check_gym(temporary_gym("ftkit/TestContainsAnswer-v0", ContainsAnswerEnv, "test_hackable"))
    failed = {r.name for r in hackable.failures}
    assert {"hack: answer twice", "hack: answer twice, spaced", "hack: several answers"} <= failed
    assert "hack: empty" not in failed and "oracle" not in failed and "replay" not in failed


def test_check_reports_a_crash_and_a_replay_that_differs(temporary_gym):
    crashing = check_gym(temporary_gym("ftkit/TestCrash-v0", CrashOnLongEnv, "test_crash"), random_episodes=5)
    (long_probe,) = [r for r in crashing.results if r.name == "hack: very long"]
    assert long_probe.status == FAIL and "ValueError: too long" in long_probe.detail
    # Gymnasium's checker steps with a random action of up to 4096 characters, so it crashes too.
    assert {r.name for r in crashing.failures} == {"env_checker", "hack: very long", "hack: number spray"}

    unseeded = check_gym(
        temporary_gym("ftkit/TestUnseeded-v0", UnseededEnv, "test_unseeded"), random_episodes=5
    )
    assert "replay" in {r.name for r in unseeded.failures}


def test_hostile_actions():
    actions = hostile_actions("579", ["12", "579", "33"])
    assert actions["answer twice"] == "579579" and actions["full-width answer"] == "５７９"
    assert actions["several answers"] == "12, 33, 579" and "" in actions.values()
    assert full_width("a-1") == "ａ－１"
    assert "answer twice" not in hostile_actions("", [])


def test_check_of_an_unknown_gym_is_one_line(capsys):
    assert main(["gym", "check", "nope"]) == 2
    assert 'unknown gym "nope"' in _error_line(capsys)


# -- gym new -------------------------------------------------------------------------------------------------


def _copy_gyms_package(tmp_path: Path) -> Path:
    target = tmp_path / "gyms"
    shutil.copytree(REPO / "gyms", target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def _run(args, cwd, pythonpath):
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_new_scaffolds_a_gym_that_passes_check_and_its_tests_unedited(tmp_path, capsys):
    gyms_dir = _copy_gyms_package(tmp_path)
    assert main(["gym", "new", "reverse_word", "--dir", str(gyms_dir)]) == 0
    out = capsys.readouterr().out
    test_file = tmp_path / "tests" / "test_gym_reverse_word.py"
    assert (gyms_dir / "reverse_word.py").is_file() and test_file.is_file()
    assert f"wrote {test_file}" in out and "ftkit gym check reverse_word" in out
    assert 'short_name="reverse_word"' in (gyms_dir / "__init__.py").read_text()

    checked = _run(["-m", "ftkit", "gym", "check", "reverse_word"], tmp_path, tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "ftkit/ReverseWord-v0: all 17 checks passed" in checked.stdout
    tested = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)], tmp_path, tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    written = [str(gyms_dir / "reverse_word.py"), str(test_file)]
    config = ["--config", str(REPO / "pyproject.toml")]
    for lint in (["check", *config, *written], ["format", "--check", *config, *written]):
        linted = _run(["-m", "ruff", *lint], tmp_path, tmp_path)
        assert linted.returncode == 0, linted.stdout + linted.stderr


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("arithmetic", "already exists"),  # registered
        ("base", "already exists"),  # gyms/base.py
        ("adapters", "already exists"),  # a package folder
        ("Reverse", "lowercase Python identifier"),
        ("reverse-word", "lowercase Python identifier"),
        ("9lives", "lowercase Python identifier"),
        ("class", "lowercase Python identifier"),
    ],
)
def test_new_refuses_taken_and_invalid_names(tmp_path, capsys, name, message):
    gyms_dir = _copy_gyms_package(tmp_path)
    before = (gyms_dir / "__init__.py").read_text()
    assert main(["gym", "new", name, "--dir", str(gyms_dir)]) == 2
    assert message in _error_line(capsys)
    assert (gyms_dir / "__init__.py").read_text() == before


def test_new_refuses_twice_and_a_folder_that_is_not_gyms(tmp_path, capsys):
    gyms_dir = _copy_gyms_package(tmp_path)
    assert main(["gym", "new", "spell_it", "--dir", str(gyms_dir)]) == 0
    capsys.readouterr()
    assert main(["gym", "new", "spell_it", "--dir", str(gyms_dir)]) == 2
    assert "already exists" in _error_line(capsys)
    assert main(["gym", "new", "spell_it", "--dir", str(tmp_path)]) == 2
    assert "is not a gyms package folder" in _error_line(capsys)


def test_docstring_examples_run():
    import gyms.checks

    assert doctest.testmod(gyms.checks).failed == 0
