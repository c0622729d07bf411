"""Progress off a terminal: a line every N seconds (FTKIT_PROGRESS_SECONDS), not one per item; the last always."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from rich.console import Console

from ftkit.callbacks import ProgressCallback
from ftkit.errors import ConfigError
from ftkit.progress import PROGRESS_SECONDS_ENV, PacedLines, StepProgress, progress_seconds
from ftkit.rl.report import Progress as RLProgress


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def log_console() -> tuple[Console, io.StringIO]:
    """A console writing to a string: not a terminal, as in CI logs and pipes."""
    out = io.StringIO()
    console = Console(file=out, width=200)
    assert not console.is_terminal
    return console, out


def lines_of(out: io.StringIO) -> list[str]:
    return out.getvalue().splitlines()


def test_updates_within_the_interval_print_one_line_and_the_last_is_kept():
    console, out = log_console()
    clock = FakeClock()
    lines = PacedLines(console, seconds=10, clock=clock)
    for i in range(50):  # 50 updates in 4.9 s
        clock.now = i * 0.1
        lines.update(f"item {i}")
    assert lines_of(out) == ["item 0"]
    lines.close()
    assert lines_of(out) == ["item 0", "item 49"]
    lines.close()  # nothing held back any more: nothing printed twice
    assert lines_of(out) == ["item 0", "item 49"]


def test_lines_follow_the_clock_not_the_items():
    console, out = log_console()
    clock = FakeClock()
    lines = PacedLines(console, seconds=10, clock=clock)
    for i in range(1001):  # an update every 0.1 s for 100 s
        clock.now = i * 0.1
        lines.update(f"item {i}", last=i == 1000)
    printed = lines_of(out)
    assert len(printed) == 11, printed  # t = 0, 10, ..., 100: one per 10 s
    assert printed[-1] == "item 1000"
    assert all(float(b.split()[1]) - float(a.split()[1]) >= 100 for a, b in zip(printed, printed[1:]))


def test_a_last_update_prints_at_once():
    console, out = log_console()
    clock = FakeClock()
    lines = PacedLines(console, seconds=10, clock=clock)
    lines.update("first")
    clock.now = 1.0
    lines.update("done", last=True)
    assert lines_of(out) == ["first", "done"]


@pytest.mark.parametrize(("raw", "expected"), [("", 30.0), ("5", 5.0), (" 0.5 ", 0.5), ("0", 0.0)])
def test_the_interval_comes_from_the_environment(monkeypatch, raw, expected):
    monkeypatch.setenv(PROGRESS_SECONDS_ENV, raw)
    assert progress_seconds() == expected


@pytest.mark.parametrize("raw", ["soon", "-1", "nan"])
def test_a_bad_interval_names_the_variable_and_the_fix(monkeypatch, raw):
    monkeypatch.setenv(PROGRESS_SECONDS_ENV, raw)
    with pytest.raises(ConfigError, match=f"{PROGRESS_SECONDS_ENV}=.*seconds >= 0.*unset it"):
        progress_seconds()


def test_zero_seconds_prints_every_update(monkeypatch):
    monkeypatch.setenv(PROGRESS_SECONDS_ENV, "0")
    console, out = log_console()
    with StepProgress(console, "x", total=5) as progress:
        for i in range(1, 6):
            progress.update(i, f"s{i}")
    assert lines_of(out) == [f"step {i}/5  s{i}" for i in range(1, 6)]


def test_step_progress_without_stats_moves_only_the_bar(monkeypatch):
    monkeypatch.setenv(PROGRESS_SECONDS_ENV, "0")
    console, out = log_console()
    with StepProgress(console, "x", total=3) as progress:
        progress.update(1)
        progress.update(2)
    assert out.getvalue() == ""


def test_sft_callback_logs_first_and_last_lines_only(monkeypatch):
    """2,000 logging steps within an hour's interval: the log holds the first and the final line."""
    monkeypatch.setenv(PROGRESS_SECONDS_ENV, "3600")
    console, out = log_console()
    callback = ProgressCallback(console)
    state = SimpleNamespace(is_world_process_zero=True, max_steps=2000, global_step=0)
    callback.on_train_begin(None, state, None)
    for step in range(1, 2001):
        state.global_step = step
        callback.on_step_end(None, state, None)
        callback.on_log(None, state, None, logs={"loss": 1.0 / step, "num_tokens": 10.0 * step})
    callback.on_train_end(None, state, None)
    printed = lines_of(out)
    assert len(printed) == 2 and printed[0].startswith("step 1/2000  loss 1.0000"), printed
    assert printed[1].startswith("step 2000/2000  loss 0.0005")


def test_rl_progress_logs_first_and_last_steps_only(monkeypatch):
    monkeypatch.setenv(PROGRESS_SECONDS_ENV, "3600")
    console, out = log_console()
    with RLProgress(console, total=300, done=0) as progress:
        for step in range(1, 301):
            progress.update(step, {"reward_mean": step / 300, "success_rate": 0.5, "rollout_tokens_per_s": 1000.0})
    printed = lines_of(out)
    assert printed == ["step 1/300  reward 0.003  solved 50%  1,000 rollout tok/s",
                       "step 300/300  reward 1.000  solved 50%  1,000 rollout tok/s"]



@pytest.mark.parametrize(("seconds", "expected_lines"), [("3600", 2), ("0", 12)])
def test_collect_rollouts_off_a_terminal_prints_lines_by_time_not_by_chunk(tiny_model, tmp_path, monkeypatch, capsys,
                                                                          seconds, expected_lines):
    """12 chunks of one problem: an hour's interval gives the first and last lines, 0 s one per chunk."""
    from ftkit import collect as model_collect
    from ftkit.cli import main

    monkeypatch.setattr(model_collect, "ROLLOUT_CHUNK", 1)
    monkeypatch.setenv(PROGRESS_SECONDS_ENV, seconds)
    monkeypatch.chdir(tmp_path)
    assert main(["collect", "rollouts", "--gym", "arithmetic", "digits=1", "--model", tiny_model, "--n", "12",
                 "--k", "2", "--max-new-tokens", "2", "--out", "r"]) == 0
    progress = [line for line in capsys.readouterr().err.splitlines() if "problems played" in line]
    assert len(progress) == expected_lines, progress
    assert progress[0].strip().startswith("1/12 problems played") and progress[-1].strip().startswith("12/12 ")
