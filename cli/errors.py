"""Errors that end the program with one line on stderr and an exit status."""

from __future__ import annotations

USAGE = 2
RUNTIME = 1


class UserError(Exception):
    """Bad input: printed as one line, exit status 2."""

    status = USAGE


class RuntimeFailure(Exception):
    """Something outside the user's input failed: one line, exit status 1."""

    status = RUNTIME
