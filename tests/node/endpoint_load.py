"""Continuous prediction load that follows a Service's EndpointSlices, as kube-proxy would.

No kube-proxy runs beside the local control plane, so the load sends each request straight to a
ready endpoint (a pod IP on the real node's bridge) taken from the Service's EndpointSlices, which
a thread re-reads every ``SLICE_POLL_SECONDS``. Bounded in time and count; it stops by itself.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

SLICE_POLL_SECONDS = 0.2
REQUEST_TIMEOUT_SECONDS = 10.0
MAX_SECONDS = 300.0
MAX_REQUESTS = 200_000
IRIS_ROW = [5.1, 3.5, 1.4, 0.2]


def infer_body(rows: int = 1) -> bytes:
    return json.dumps(
        {"inputs": [{"name": "input-0", "shape": [rows, 4], "datatype": "FP64", "data": IRIS_ROW * rows}]}
    ).encode()


def predict(address: str, model: str, key: str, body: bytes | None = None) -> tuple[int, dict[str, Any]]:
    """POST one V2 inference (one row unless ``body`` says otherwise) to ``address`` (host:port);
    return (status, JSON body or {})."""
    request = urllib.request.Request(
        f"http://{address}/v2/models/{model}/infer",
        data=body if body is not None else infer_body(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_SECONDS) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, {}


def ready_addresses(slices: list[dict[str, Any]], port: int) -> list[str]:
    """``ip:port`` of every ready endpoint of ``slices`` (kube-proxy's choice when any is ready)."""
    return sorted(
        f"{address}:{port}"
        for endpoint_slice in slices
        for endpoint in endpoint_slice.get("endpoints") or []
        if (endpoint.get("conditions") or {}).get("ready")
        for address in endpoint.get("addresses", [])
    )


@dataclass
class LoadReport:
    requests: int = 0
    failures: list[str] = field(default_factory=list)
    versions: Counter[str] = field(default_factory=Counter)
    per_address: Counter[str] = field(default_factory=Counter)
    answered_after: dict[str, float] = field(default_factory=dict)


class EndpointSliceLoad:
    """``with EndpointSliceLoad(list_slices, port, model, key) as load: ...``; ``load.report``.
    Each of ``workers`` threads keeps one request of ``rows`` rows in flight."""

    def __init__(
        self,
        list_slices: Callable[[], list[dict[str, Any]]],
        port: int,
        model: str,
        key: str,
        *,
        workers: int = 2,
        rows: int = 1,
    ) -> None:
        self._list_slices = list_slices
        self._port = port
        self._model = model
        self._key = key
        self._workers = workers
        self._body = infer_body(rows)
        self._addresses: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = 0.0
        self.report = LoadReport()

    def _follow_slices(self) -> None:
        while not self._stop.wait(SLICE_POLL_SECONDS):
            try:
                addresses = ready_addresses(self._list_slices(), self._port)
            except (RuntimeError, ValueError, OSError):  # a failed read keeps the last endpoints
                continue
            with self._lock:
                self._addresses = addresses

    def _send(self) -> None:
        for turn in itertools.count():
            if self._stop.is_set() or time.monotonic() - self._started > MAX_SECONDS:
                return
            with self._lock:
                if self.report.requests >= MAX_REQUESTS:
                    return
                addresses = list(self._addresses)
                self.report.requests += 1
            if not addresses:
                with self._lock:
                    self.report.failures.append("no ready endpoint")
                continue
            address = addresses[turn % len(addresses)]
            try:
                status, body = predict(address, self._model, self._key, self._body)
                outcome = None if status == 200 else f"{address}: HTTP {status}"
            except OSError as error:
                status, body, outcome = 0, {}, f"{address}: {error}"
            with self._lock:
                if outcome is not None:
                    self.report.failures.append(outcome)
                else:
                    self.report.versions[str(body.get("model_version"))] += 1
                    self.report.per_address[address] += 1
                    self.report.answered_after[address] = time.monotonic()

    def __enter__(self) -> EndpointSliceLoad:
        self._addresses = ready_addresses(self._list_slices(), self._port)
        if not self._addresses:
            raise AssertionError("the Service has no ready endpoint to load")
        self._started = time.monotonic()
        self._threads = [threading.Thread(target=self._follow_slices, daemon=True)]
        self._threads += [threading.Thread(target=self._send, daemon=True) for _ in range(self._workers)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=REQUEST_TIMEOUT_SECONDS + 5)
