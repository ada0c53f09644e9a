"""When to write a progress-only status, and when to look at an unfinished rollout's pods again.

Both keep a start time per ModelDeployment on a monotonic clock; the reconcile asks and obeys.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

Key = tuple[str, str]  # (namespace, name)

MAX_POD_RECHECK_SECONDS = 60.0


class StatusWritePacer:
    """Write Ready, Degraded and other condition changes at once (``urgent``). Batch for
    ``debounce_seconds`` what only reports a rollout in progress (a new generation rolling out,
    replica counts, messages): a rollout is then not one status write per pod, and one that
    finishes within the window needs no Progressing write at all. Until the write,
    ``observedGeneration`` lags, which kstatus readers take as "in progress"."""

    def __init__(self, debounce_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.debounce_seconds, self._clock = debounce_seconds, clock
        self._lock = threading.Lock()
        self._pending_since: dict[Key, float] = {}

    def wait_before_write(self, key: Key, *, urgent: bool) -> float:
        """0 when the status may be written now, else the seconds left in the batching window."""
        with self._lock:
            if urgent or self.debounce_seconds <= 0:
                self._pending_since.pop(key, None)
                return 0.0
            waited = self._clock() - self._pending_since.setdefault(key, self._clock())
            if waited >= self.debounce_seconds:
                self._pending_since.pop(key, None)
                return 0.0
            return self.debounce_seconds - waited

    def forget(self, key: Key) -> None:
        with self._lock:
            self._pending_since.pop(key, None)


class PodRecheck:
    """Pods are not watched (at scale their events would cost more than these reads), and a crash
    loop changes nothing on the Deployment, so an unfinished rollout is looked at again: every
    ``first_seconds`` at first, then as far apart as it has lasted (at most ``max_seconds``)."""

    def __init__(
        self,
        first_seconds: float,
        max_seconds: float = MAX_POD_RECHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.first_seconds, self.max_seconds, self._clock = first_seconds, max_seconds, clock
        self._lock = threading.Lock()
        self._unfinished_since: dict[Key, float] = {}

    def next_check_after(self, key: Key) -> float:
        """The rollout of ``key`` is unfinished: seconds until its pods are looked at again."""
        with self._lock:
            lasted = self._clock() - self._unfinished_since.setdefault(key, self._clock())
        return min(max(lasted, self.first_seconds), self.max_seconds)

    def forget(self, key: Key) -> None:
        """The rollout of ``key`` finished (or the object is gone)."""
        with self._lock:
            self._unfinished_since.pop(key, None)
