"""The one exception type a user sees: bad input, said in one line, exit status 2."""

from __future__ import annotations


class UsageError(Exception):
    """Bad input from the user (a file, a line, an option). The CLI prints it as one line and exits with status 2."""
