"""Where the canary's counters come from: the pods' own ``/metrics`` (the default), or Prometheus.

Both give, per side (canary, stable), each pod's cumulative counters; ``canary.decide`` judges on
their deltas since the step began. This module does I/O (HTTP); the reducing is ``analysis``'s.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from modeldeploy_operator.analysis import (
    DURATION_METRIC,
    INFERENCE_PROTOCOLS,
    MODEL_REJECTED_CODE,
    REQUESTS_METRIC,
    PodCounters,
    counters_from_text,
)
from modeldeploy_operator.canary import CANARY, STABLE, Samples
from modeldeploy_operator.constants import (
    LABEL_TRACK,
    PORT_METRICS,
    PORT_METRICS_NAME,
    SUFFIX_CANARY,
    TRACK_CANARY,
)

logger = logging.getLogger(__name__)
MAX_METRICS_BYTES = 4 * 1024 * 1024
SCRAPE_WORKERS = 16


class SampleError(RuntimeError):
    """The counters could not be read; the step waits and tries again."""


class CounterSource(Protocol):
    def sample(self, namespace: str, name: str, pods: Sequence[Mapping[str, Any]]) -> Samples: ...


def _side(pod: Mapping[str, Any]) -> str:
    labels = pod.get("metadata", {}).get("labels") or {}
    return CANARY if labels.get(LABEL_TRACK) == TRACK_CANARY else STABLE


def _scrapable(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
    )
    return bool(status.get("podIP")) and ready and not pod.get("metadata", {}).get("deletionTimestamp")


class PodScraper:
    """GET ``http://<pod IP>:9090/metrics`` of every ready pod, concurrently."""

    def __init__(self, *, timeout: float = 2.0, port: int = PORT_METRICS) -> None:
        self.timeout, self.port = timeout, port

    def port_of(self, pod: Mapping[str, Any]) -> int:
        """The pod's container port named ``metrics`` (the runtime's contract), else the default."""
        for container in (pod.get("spec") or {}).get("containers") or []:
            for port in container.get("ports") or []:
                if port.get("name") == PORT_METRICS_NAME:
                    return int(port["containerPort"])
        return self.port

    def fetch(self, address: str, port: int) -> str:
        host = f"[{address}]" if ":" in address else address
        url = f"http://{host}:{port}/metrics"
        with urllib.request.urlopen(url, timeout=self.timeout) as response:
            return bytes(response.read(MAX_METRICS_BYTES)).decode()

    def _one(self, pod: Mapping[str, Any]) -> tuple[str, str, PodCounters | None]:
        name = pod["metadata"]["name"]
        try:
            return _side(pod), name, counters_from_text(self.fetch(pod["status"]["podIP"], self.port_of(pod)))
        except (OSError, ValueError) as error:
            logger.warning("canary analysis: cannot read the metrics of pod %s: %s", name, error)
            return _side(pod), name, None

    def sample(self, namespace: str, name: str, pods: Sequence[Mapping[str, Any]]) -> Samples:
        ready = [pod for pod in pods if _scrapable(pod)]
        with ThreadPoolExecutor(max_workers=min(SCRAPE_WORKERS, max(1, len(ready)))) as pool:
            results = list(pool.map(self._one, ready))
        samples: dict[str, dict[str, PodCounters]] = {CANARY: {}, STABLE: {}}
        for side, pod, counters in results:
            if counters is not None:
                samples[side][pod] = counters
        if not samples[CANARY]:
            raise SampleError(f"no canary pod of {namespace}/{name} answered on its metrics port {self.port}")
        return samples


def pod_pattern(name: str, side: str) -> str:
    """The pod names of one side as a regular expression (Deployment pods: <deployment>-<hash>-<id>)."""
    deployment = f"{name}{SUFFIX_CANARY}" if side == CANARY else name
    return f"{deployment}-[a-z0-9]+-[a-z0-9]+"


def prometheus_queries(namespace: str, name: str, side: str) -> dict[str, str]:
    """The instant queries giving each pod's cumulative counters (as a scrape would)."""
    protocols = "|".join(sorted(INFERENCE_PROTOCOLS))
    matchers = f'namespace="{namespace}",pod=~"{pod_pattern(name, side)}",protocol=~"{protocols}"'
    return {
        "requests": f"sum by (pod) ({REQUESTS_METRIC}_total{{{matchers}}})",
        "errors": f'sum by (pod) ({REQUESTS_METRIC}_total{{{matchers},code=~"5..|{MODEL_REJECTED_CODE}"}})',
        "buckets": f"sum by (pod, le) ({DURATION_METRIC}_bucket{{{matchers}}})",
    }


class PrometheusSource:
    """The same counters from Prometheus (which scrapes the pods through the ServiceMonitor)."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.url, self.timeout = url.rstrip("/"), timeout

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:  # noqa: S310 - configured URL
                body = json.loads(response.read(MAX_METRICS_BYTES))
        except (OSError, ValueError) as error:
            raise SampleError(f"Prometheus at {self.url} did not answer: {error}") from error
        if body.get("status") != "success":
            raise SampleError(f"Prometheus refused {promql!r}: {body.get('error', body)}")
        return list(body["data"]["result"])

    def sample(self, namespace: str, name: str, pods: Sequence[Mapping[str, Any]]) -> Samples:
        samples: dict[str, dict[str, PodCounters]] = {}
        for side in (CANARY, STABLE):
            queries = prometheus_queries(namespace, name, side)
            per_pod: dict[str, dict[str, Any]] = {}
            for kind, promql in queries.items():
                for series in self.query(promql):
                    pod = series["metric"].get("pod", "")
                    entry = per_pod.setdefault(pod, {"requests": 0.0, "errors": 0.0, "buckets": {}})
                    value = float(series["value"][1])
                    if kind == "buckets":
                        entry["buckets"][series["metric"]["le"]] = value
                    else:
                        entry[kind] = value
            samples[side] = {pod: PodCounters.from_json(entry) for pod, entry in per_pod.items()}
        if not samples[CANARY]:
            raise SampleError(f"Prometheus has no series of the canary pods of {namespace}/{name} yet")
        return samples
