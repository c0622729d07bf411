"""Errors that the gyms raise for a user's mistake (an unknown gym id, a bad argument), and the did-you-mean.

    >>> from gyms.errors import GymError, did_you_mean
    >>> str(GymError('unknown gym "arithmetc"' + did_you_mean("arithmetc", ["arithmetic", "wordle"])))
    'unknown gym "arithmetc" (did you mean "arithmetic"?)'

`UserError` is the root of every such error in the tree: it lives here, on the lowest floor, so that the
errors of `gyms`, `data_tools` and `ftkit` share it. `ftkit.errors` names it `FtkitError`, and the `ftkit`
command prints any of them as one line with exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """Base class: a problem with the user's input or environment, not a bug in ftkit."""


class GymError(UserError):
    """A gym id is unknown or a gym was used against its contract."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean "x"?)' for the closest choice, or '' when nothing is close.

    >>> did_you_mean("learning_rat", ["learning_rate", "seed"])
    ' (did you mean "learning_rate"?)'
    """
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""
