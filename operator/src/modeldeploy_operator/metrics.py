"""The operator's own Prometheus metrics, on its own registry (never the global one)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from modeldeploy_operator.status import is_ready


class ReadinessCollector(Collector):
    """``modeldeploy_operator_modeldeployment_ready{namespace,name}``, read from the cached
    ModelDeployments' Ready condition at scrape time (so alerts can name the one not Ready)."""

    def __init__(self, model_deployments: Callable[[], Iterable[Mapping[str, Any]]]) -> None:
        self._model_deployments = model_deployments

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "modeldeploy_operator_modeldeployment_ready",
            "1 when the ModelDeployment's Ready condition is True, else 0.",
            labels=["namespace", "name"],
        )
        for body in self._model_deployments():
            ready = is_ready(body.get("status") or {})
            metadata = body.get("metadata", {})
            family.add_metric(
                [metadata.get("namespace", ""), metadata.get("name", "")], 1.0 if ready else 0.0
            )
        yield family


@dataclass
class OperatorMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.reconciles = Counter(
            "modeldeploy_operator_reconciles_total",
            "Reconciles of ModelDeployments by result (success, error).",
            ["result"],
            registry=self.registry,
        )
        self.reconcile_duration = Histogram(
            "modeldeploy_operator_reconcile_duration_seconds",
            "Time one reconcile took, API calls included.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.managed = Gauge(
            "modeldeploy_operator_managed_modeldeployments",
            "ModelDeployments the operator currently manages.",
            registry=self.registry,
        )
        self.api_writes = Counter(
            "modeldeploy_operator_api_writes_total",
            "Write requests the operator sent to the API server, by verb and kind.",
            ["verb", "kind"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "modeldeploy_operator_work_queue_depth",
            "ModelDeployments waiting to be reconciled.",
            registry=self.registry,
        )

    def watch_readiness(self, model_deployments: Callable[[], Iterable[Mapping[str, Any]]]) -> None:
        self.registry.register(ReadinessCollector(model_deployments))

    def record_write(self, verb: str, kind: str) -> None:
        self.api_writes.labels(verb=verb, kind=kind).inc()

    def serve(self, port: int, address: str = "0.0.0.0") -> None:  # noqa: S104 - scraped from the pod network
        """Expose ``/metrics`` on ``port`` (0 disables it)."""
        if port:
            start_http_server(port, addr=address, registry=self.registry)
