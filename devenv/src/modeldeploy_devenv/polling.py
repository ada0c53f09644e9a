"""Waiting with a deadline: poll, and say what was awaited when the deadline passes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeoutError(TimeoutError):
    """A condition was still unmet at its deadline; the message names it and the last value seen."""


def wait_until(
    what: str,
    probe: Callable[[], T | None],
    *,
    timeout: float = 30.0,
    interval: float = 0.2,
    retrying: tuple[type[Exception], ...] = (),
) -> T:
    """Call ``probe`` until it returns a truthy value, which is returned; raise after ``timeout``.

    ``what`` completes the sentence "timed out waiting for ...". Exceptions of the ``retrying``
    types count as "not yet" (a server that does not listen yet); any other propagates at once.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = probe()
        except retrying as error:
            last = error
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise WaitTimeoutError(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})")
        time.sleep(interval)
