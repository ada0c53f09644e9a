"""Waiting in tests: poll with a deadline and say what was awaited when it runs out."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeoutError(AssertionError):
    """Raised when a condition is still unmet at its deadline."""


def wait_until(what: str, probe: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.2) -> T:
    """Call ``probe`` until it returns a truthy value, which is returned; fail after ``timeout``.

    ``what`` completes the sentence "timed out waiting for ...", and the last value seen is
    included, so a failure explains itself.
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise WaitTimeoutError(
                f"timed out after {timeout:.0f}s waiting for {what} (last value: {last!r})"
            )
        time.sleep(interval)
