"""Errors that ftkit reports to the user as one line and exit code 2.

Every message says the bad value, what was expected, and how to fix it. The command-line entry point
(`ftkit/cli/__init__.py`) catches `FtkitError` and prints `error: <message>`; anything else is a bug and
keeps its traceback.

The root class and the errors of the lower floors are defined in `gyms/errors.py` (`UserError`,
`GymError`) and `data_tools/errors.py` (`DataError`) and re-exported here, so that ftkit
code names them all from one place: `FtkitError` is `gyms.errors.UserError`, `GymError` is the gyms'
own and `DataError` is data_tools'. A `GymError` raised by a gym is therefore an `FtkitError` too.
"""

from __future__ import annotations

from data_tools.errors import DataError
from gyms.errors import GymError, did_you_mean
from gyms.errors import UserError as FtkitError

__all__ = ["ConfigError", "DataError", "EngineError", "FtkitError", "GymError", "ModelError", "TrainingError",
           "did_you_mean"]


class ConfigError(FtkitError):
    """A recipe or command-line override is unknown, mistyped or out of range."""


class ModelError(FtkitError):
    """A model spec cannot be resolved or loaded."""


class TrainingError(FtkitError):
    """Training cannot go on: a NaN loss, nothing to resume from, and the like."""


class EngineError(FtkitError):
    """A generation engine was asked for where it cannot run (e.g. vLLM without a GPU)."""
