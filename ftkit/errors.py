"""Errors that ftkit reports to the user as one line and exit code 2.

Every message says the bad value, what was expected, and how to fix it. The command-line entry point
(`ftkit/cli.py`) catches `FtkitError` and prints `error: <message>`; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FtkitError(Exception):
    """Base class: a problem with the user's input or environment, not a bug in ftkit."""


class ConfigError(FtkitError):
    """A recipe or command-line override is unknown, mistyped or out of range."""


class DataError(FtkitError):
    """A dataset file is missing, empty or malformed (messages name the file and line)."""


class ModelError(FtkitError):
    """A model spec cannot be resolved or loaded."""


class GymError(FtkitError):
    """A gym id is unknown or a gym was used against its contract."""


class TrainingError(FtkitError):
    """Training cannot go on: a NaN loss, nothing to resume from, and the like."""


class EngineError(FtkitError):
    """A generation engine was asked for where it cannot run (e.g. vLLM without a GPU)."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean "x"?)' for the closest choice, or '' when nothing is close.

    >>> did_you_mean("learning_rat", ["learning_rate", "seed"])
    ' (did you mean "learning_rate"?)'
    """
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""
