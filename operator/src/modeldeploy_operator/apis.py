"""Which optional APIs (CRDs a cluster may lack, e.g. the ServiceMonitor's) the API server serves,
asked through discovery at most once per ``ttl`` seconds and shared by the reconcile and the re-list.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from modeldeploy_operator.kube import KubeAPI
from modeldeploy_operator.resources import Resource


class APIAvailability:
    def __init__(self, kube: KubeAPI, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._kube, self._ttl, self._clock = kube, ttl, clock
        self._lock = threading.Lock()
        self._answers: dict[str, tuple[float, bool]] = {}  # kind -> (asked at, served)

    def available(self, resource: Resource) -> bool:
        """True for every built-in resource; for an optional one, whether discovery lists it."""
        if not resource.optional:
            return True
        with self._lock:
            answer = self._answers.get(resource.kind)
            if answer is not None and self._clock() - answer[0] < self._ttl:
                return answer[1]
        served = self._kube.serves(resource)
        with self._lock:
            self._answers[resource.kind] = (self._clock(), served)
        return served

    def forget(self, resource: Resource) -> None:
        """Ask again next time (the API went away between discovery and a write)."""
        with self._lock:
            self._answers.pop(resource.kind, None)
