"""Progress that suits where it is shown: a live bar on a terminal, a plain line every N seconds in a log.

    FTKIT_PROGRESS_SECONDS=5 ftkit rl --gym arithmetic 2>&1 | tee rl.log   # a progress line at most every 5 s

A log (CI, a pipe, `nohup`, a job scheduler) cannot redraw a bar, so off a terminal progress is printed
as lines. One line per item floods it (a 96,000-row `ftkit collect rollouts`, thousands of SFT steps), so
the lines are paced by the clock instead: the first at once, then at most one every
`FTKIT_PROGRESS_SECONDS` (default 30; 0 prints every update), and the last one always. SFT, RL and
`ftkit collect rollouts` all report through `StepProgress`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ftkit.errors import ConfigError

PROGRESS_SECONDS_ENV = "FTKIT_PROGRESS_SECONDS"
DEFAULT_PROGRESS_SECONDS = 30.0


def progress_seconds() -> float:
    """The least time between two progress lines off a terminal: $FTKIT_PROGRESS_SECONDS, or 30."""
    raw = os.environ.get(PROGRESS_SECONDS_ENV, "").strip()
    if not raw:
        return DEFAULT_PROGRESS_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # also catches nan
        raise ConfigError(f"{PROGRESS_SECONDS_ENV}={raw!r}: expected a number of seconds >= 0 (e.g. 30; 0 prints "
                          "every update); fix or unset it")
    return seconds


def progress_bar(console: Console, label: str) -> Progress:
    """The bar every long loop shares: items done, a `stats` text field, time spent and left.

    Disabled when the console is not a terminal; `StepProgress` prints paced lines there instead.
    """
    return Progress(
        TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
        console=console, transient=False, disable=not console.is_terminal,
    )


class PacedLines:
    """Prints lines at most once every `seconds`: the first at once, the ones in between held back.

        lines = PacedLines(console, seconds=10)
        for i in range(1000): lines.update(f"{i}/1000")   # prints "0/1000", then one line per 10 s
        lines.close()                                      # prints "999/1000" if it was held back

    `update(text, last=True)` prints at once: the final state is never lost. `clock` is for tests.
    """

    def __init__(self, console: Console, seconds: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.console = console
        self.seconds = progress_seconds() if seconds is None else seconds
        self.clock = clock
        self.printed_at: float | None = None  # clock time of the last printed line
        self.pending: str | None = None  # the newest line not printed yet

    def update(self, text: str, *, last: bool = False) -> None:
        now = self.clock()
        if last or self.printed_at is None or now - self.printed_at >= self.seconds:
            self._print(text, now)
        else:
            self.pending = text

    def close(self) -> None:
        """Print the newest line if it was held back, so a log always ends on the final state."""
        if self.pending is not None:
            self._print(self.pending, self.clock())

    def _print(self, text: str, now: float) -> None:
        self.console.print(text, highlight=False, markup=False)
        self.printed_at, self.pending = now, None


class StepProgress:
    """A rich bar on a terminal; off one, `line` printed through `PacedLines` (`update` with stats only).

        with StepProgress(console, "rl", total=40) as progress:
            progress.update(12, "reward 0.41")   # the bar moves; off a terminal maybe "step 12/40  reward 0.41"
            progress.update(13)                  # the bar only: no stats, no line

    `line` is a format string over `done`, `total` and `stats`.
    """

    def __init__(self, console: Console, label: str, total: int | None, done: int = 0, *,
                 line: str = "step {done}/{total}  {stats}", seconds: float | None = None):
        self.console = console
        self.total = total
        self.line = line
        self.bar = progress_bar(console, label)
        self.task = self.bar.add_task(label, total=total, completed=done, stats="")
        self.lines = None if console.is_terminal else PacedLines(console, seconds)

    def __enter__(self) -> StepProgress:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self.bar.start()

    def stop(self) -> None:
        self.bar.stop()
        if self.lines is not None:
            self.lines.close()

    def update(self, done: int, stats: str | None = None) -> None:
        if stats is None:
            self.bar.update(self.task, completed=done)
            return
        self.bar.update(self.task, completed=done, stats=stats)
        if self.lines is not None:
            last = self.total is not None and done >= self.total
            self.lines.update(self.line.format(done=done, total=self.total, stats=stats).rstrip(), last=last)
