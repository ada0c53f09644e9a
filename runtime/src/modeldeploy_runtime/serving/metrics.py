"""Prometheus metrics, correct with several worker processes.

For ``serve``, import this module only after ``PROMETHEUS_MULTIPROC_DIR`` is set (the CLI does
that with ``metrics_dir.prepare_metrics_dir``): every process then writes its values to
memory-mapped files in that directory, and the supervisor's ``/metrics`` endpoint sums them. On
Lambda the variable stays unset and the values live in memory. Metrics live in a registry of their own, never
prometheus-client's global one.
"""

from __future__ import annotations

from collections.abc import Iterable

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
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _batch_buckets(batch_max_size: int) -> tuple[float, ...]:
    buckets, size = [], 1
    while size < batch_max_size:
        buckets.append(float(size))
        size *= 2
    buckets.append(float(batch_max_size))
    return tuple(buckets)


class RuntimeMetrics:
    """The runtime's metrics for one model, held in a registry of their own."""

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
        self._duration_by_protocol = {
            protocol: self.duration.labels(model.name, protocol)
            for protocol in (PROTOCOL_V1, PROTOCOL_V2, PROTOCOL_NONE)
        }
        self._batch = self.batch_size.labels(model.name)
        self.inflight_now = self.inflight.labels(model.name)
        self._request_children: dict[tuple[str, int], Counter] = {}
        classes = (
            model.classes if model.classes is not None and len(model.classes) <= MAX_CLASS_LABELS else None
        )
        self._classes = np.asarray(classes) if classes is not None else None
        self._class_counters = [
            self.predictions.labels(model.name, model.version, str(c)) for c in classes or []
        ]
        self._unlabelled = (
            None if self._classes is not None else self.predictions.labels(model.name, model.version, "")
        )

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
        key = (protocol, code)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(self._model.name, protocol, str(code))
        child.inc()
        self._duration_by_protocol[protocol].observe(seconds)

    def record_auth_failure(self, reason: str) -> None:
        self.auth_failures.labels(self._model.name, reason).inc()

    def record_batch(self, rows: int, results: dict[str, np.ndarray]) -> None:
        self._batch.observe(rows)
        if self._classes is None:
            if self._unlabelled is not None:
                self._unlabelled.inc(rows)
            return
        if PREDICT in results:
            predicted = results[PREDICT]
        elif PREDICT_PROBA in results:
            predicted = self._classes[np.argmax(results[PREDICT_PROBA], axis=1)]
        else:
            return
        for index, count in _count_matches(self._classes, predicted):
            self._class_counters[index].inc(count)


def _count_matches(classes: np.ndarray, predicted: np.ndarray) -> Iterable[tuple[int, int]]:
    for index, label in enumerate(classes):
        count = int(np.count_nonzero(predicted == label))
        if count:
            yield index, count


def serve_metrics(port: int, host: str) -> None:
    """Serve the sum over all worker processes on ``port`` from a background thread."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    start_http_server(port, addr=host, registry=registry)


def forget_process(pid: int) -> None:
    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
