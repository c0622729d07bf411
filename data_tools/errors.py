"""The error `data_tools` raises for a dataset file that is missing, empty or malformed.

    >>> from data_tools.errors import DataError
    >>> raise DataError("data/x.jsonl:3: not valid JSON")  # doctest: +SKIP

`DataError` is a `gyms.errors.UserError` (which `ftkit.errors` names `FtkitError`), so the `ftkit` command
prints it as one line with exit code 2.
"""

from __future__ import annotations

from gyms.errors import UserError


class DataError(UserError):
    """A dataset file is missing, empty or malformed (messages name the file and line)."""
