"""Prometheus metrics, correct with several worker processes.

For ``serve``, import this module only after ``PROMETHEUS_MULTIPROC_DIR`` is set (the CLI does
that with ``metrics_dir.prepare_metrics_dir``): every process then writes its values to
memory-mapped files in that directory, and the supervisor's ``/metrics`` endpoint sums them. On
Lambda the variable stays unset and the values live in memory. Metrics live in a registry of their own, never
prometheus-client's global one.

Writing a multiprocess value costs a lock, a ``getpid`` and a write to the memory-mapped file: five of
them per request were about a tenth of a request's CPU time (bench/README.md). So the per-request and
per-batch metrics are counted in plain Python first and written by :meth:`RuntimeMetrics.flush`,
which the app calls every ``FLUSH_SECONDS``: a scrape sees them at most that late.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Sequence

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, start_http_server

from modeldeploy_runtime.serving.model import (
    MAX_CLASS_LABELS,
    PREDICT,
    PREDICT_PROBA,
    LoadedModel,
    installed_version,
)

PROTOCOL_V1 = "v1"
PROTOCOL_V2 = "v2"
PROTOCOL_NONE = "none"
FLUSH_SECONDS = 0.1
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _batch_buckets(batch_max_size: int) -> tuple[float, ...]:
    buckets, size = [], 1
    while size < batch_max_size:
        buckets.append(float(size))
        size *= 2
    buckets.append(float(batch_max_size))
    return tuple(buckets)


class _PendingHistogram:
    """Observations of one histogram series, counted here and added to it by :meth:`flush`."""

    def __init__(self, series: Histogram, buckets: Sequence[float]) -> None:
        self._series = series
        self._bounds = [*buckets, float("inf")]
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect_left(self._bounds, value)] += 1  # the first bucket with value <= bound
        self._sum += value

    def flush(self) -> None:
        if not any(self._counts):
            return
        # prometheus-client has no bulk observe. A series keeps one value per bucket (not cumulative)
        # and one for the sum, as observe() shows; tests/runtime/test_metrics.py checks that adding
        # counts here exposes exactly what one observe() per value would.
        for value, count in zip(self._series._buckets, self._counts, strict=True):
            if count:
                value.inc(count)
        self._series._sum.inc(self._sum)
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0


class RuntimeMetrics:
    """The runtime's metrics for one model, held in a registry of their own.

    ``record_request`` and ``record_batch`` only count; ``flush`` writes the counts (see the module doc).
    """

    def __init__(self, model: LoadedModel, *, batch_max_size: int) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._model = model
        self.requests = Counter(
            "modeldeploy_requests",
            "HTTP requests answered",
            ["model", "protocol", "code"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "modeldeploy_request_duration_seconds",
            "Time from request headers to the response being handed to the server",
            ["model", "protocol"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "modeldeploy_predictions",
            "Rows predicted, by predicted class for classifiers",
            ["model", "version", "class"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "modeldeploy_batch_size",
            "Rows per model call (micro-batches)",
            ["model"],
            buckets=_batch_buckets(batch_max_size),
            registry=self.registry,
        )
        self.inflight = Gauge(
            "modeldeploy_inflight_requests",
            "Inference requests holding a concurrency slot (their body has arrived)",
            ["model"],
            multiprocess_mode="livesum",
            registry=self.registry,
        )
        self.load_seconds = Gauge(
            "modeldeploy_model_load_seconds",
            "Time to read, verify and deserialise the model",
            ["model", "version"],
            multiprocess_mode="max",
            registry=self.registry,
        )
        self.info = Gauge(
            "modeldeploy_model_info",
            "The served model; version_mismatch is true when it was packaged with other library versions; "
            "engine is sklearn or onnxruntime, provider where predictions run (cpu or cuda)",
            [
                "model",
                "version",
                "sha256",
                "sklearn_version",
                "artifact_sklearn_version",
                "version_mismatch",
                "engine",
                "provider",
            ],
            multiprocess_mode="max",
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "modeldeploy_auth_failures",
            "Requests refused for a missing or wrong API key",
            ["model", "reason"],
            registry=self.registry,
        )
        self._lock = threading.Lock()  # record_batch may run on the predict thread, flush on the loop's
        self._durations = {
            protocol: _PendingHistogram(self.duration.labels(model.name, protocol), DURATION_BUCKETS)
            for protocol in (PROTOCOL_V1, PROTOCOL_V2, PROTOCOL_NONE)
        }
        self._batch_sizes = _PendingHistogram(
            self.batch_size.labels(model.name), _batch_buckets(batch_max_size)
        )
        self._inflight = self.inflight.labels(model.name)
        self._inflight_written = -1
        self._request_counts: dict[tuple[str, int], int] = {}
        self._request_series: dict[tuple[str, int], Counter] = {}
        classes = (
            model.classes if model.classes is not None and len(model.classes) <= MAX_CLASS_LABELS else None
        )
        self._class_index = (
            {label: index for index, label in enumerate(classes)} if classes is not None else None
        )
        self._classes = np.asarray(classes) if classes is not None else None
        self._class_series = [
            self.predictions.labels(model.name, model.version, str(c)) for c in classes or []
        ] or [self.predictions.labels(model.name, model.version, "")]
        self._class_counts = [0] * len(self._class_series)

    def record_model(self) -> None:
        model = self._model
        self.load_seconds.labels(model.name, model.version).set(model.load_seconds)
        mismatch = "true" if model.warnings else "false"
        self.info.labels(
            model.name,
            model.version,
            model.sha256,
            installed_version("scikit-learn"),
            model.artifact_sklearn_version,
            mismatch,
            model.engine,
            model.provider,
        ).set(1)

    def record_request(self, protocol: str, code: int, seconds: float) -> None:
        # No lock: requests are recorded and flushed on the event loop's thread only.
        key = (protocol, code)
        self._request_counts[key] = self._request_counts.get(key, 0) + 1
        self._durations[protocol].observe(seconds)

    def record_auth_failure(self, reason: str) -> None:
        self.auth_failures.labels(self._model.name, reason).inc()

    def record_batch(self, rows: int, results: dict[str, np.ndarray]) -> None:
        predicted = self._predicted_classes(results)
        with self._lock:
            self._batch_sizes.observe(rows)
            if predicted is None:
                self._class_counts[0] += rows  # the one unlabelled series
                return
            for label in predicted.tolist():
                index = self._class_index.get(label) if self._class_index is not None else None
                if index is not None:
                    self._class_counts[index] += 1

    def _predicted_classes(self, results: dict[str, np.ndarray]) -> np.ndarray | None:
        """The predicted labels, for classifiers whose classes are labelled; None when not counted by class."""
        if self._classes is None:
            return None
        if PREDICT in results:
            return results[PREDICT]
        if PREDICT_PROBA in results:
            labels: np.ndarray = self._classes[np.argmax(results[PREDICT_PROBA], axis=1)]
            return labels
        return np.empty(0)

    def flush(self, inflight: int) -> None:
        """Write what was counted since the last flush, and the number of requests in flight now."""
        with self._lock:
            counts, self._request_counts = self._request_counts, {}
            class_counts, self._class_counts = self._class_counts, [0] * len(self._class_series)
            for histogram in (*self._durations.values(), self._batch_sizes):
                histogram.flush()
        for key, count in counts.items():
            series = self._request_series.get(key)
            if series is None:
                protocol, code = key
                series = self._request_series[key] = self.requests.labels(
                    self._model.name, protocol, str(code)
                )
            series.inc(count)
        for series, count in zip(self._class_series, class_counts, strict=True):
            if count:
                series.inc(count)
        if inflight != self._inflight_written:
            self._inflight.set(inflight)
            self._inflight_written = inflight


def serve_metrics(port: int, host: str) -> None:
    """Serve the sum over all worker processes on ``port`` from a background thread."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    start_http_server(port, addr=host, registry=registry)


def forget_process(pid: int) -> None:
    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
