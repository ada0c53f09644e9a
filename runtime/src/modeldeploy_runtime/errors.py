"""Errors a user can cause, and how a command reports one: a single line on stderr, no traceback."""

from __future__ import annotations

import sys

PROG = "modeldeploy-runtime"
EXIT_FAILED = 1
EXIT_USAGE = 2


class RequestError(Exception):
    """A client error: ``status`` is the HTTP code, the message says what was wrong and expected."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class StartupError(Exception):
    """Serving cannot start; the message is one line for the operator to read."""


def report_error(message: str, code: int = EXIT_FAILED) -> int:
    """Print ``modeldeploy-runtime: error: <message>`` on one line of stderr; returns ``code``."""
    one_line = " ".join(line.strip() for line in message.splitlines() if line.strip())
    print(f"{PROG}: error: {one_line}", file=sys.stderr)
    return code
