"""In-flight scale-out on the real node, through a real custom-metrics adapter.

Prometheus (built from its module) scrapes the runtime pods' ``/metrics`` on real-0; prometheus-
adapter (built from its module) serves them as ``custom.metrics.k8s.io`` with exactly the rules file
the chart ships; an ``autoscaling/v2`` HPA with a Pods metric on the in-flight gauge scales a
ModelDeployment out under concurrent, slow-ish prediction load, and back in when the load stops. The
HPA is the operator's, from ``spec.autoscaling.target.inFlightRequestsPerPod``.
The controller-manager runs with its default HPA sync period (15 s); the HPA's own ``behavior``
sets scale-down stabilisation to 0, so scale-in needs no controller-manager flag either.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from modeldeploy_devenv.custom_metrics import CUSTOM_METRICS_GROUP, CustomMetrics, custom_metrics
from modeldeploy_devenv.node import REAL_NODE_NAME
from modeldeploy_operator.constants import (
    KIND,
    LABEL_INSTANCE,
    METRIC_INFLIGHT_REQUESTS,
    PORT_HTTP,
    PORT_METRICS_NAME,
)
from tests.conftest import REPO_ROOT, Cluster
from tests.node.conftest import (
    RealNode,
    client_key,
    condition,
    endpoint_slices,
    model_deployment,
    report_figure,
)
from tests.node.endpoint_load import EndpointSliceLoad
from tests.support import WaitTimeoutError, wait_until

RULES_FILE = REPO_ROOT / "charts" / "modeldeploy" / "autoscaling" / "prometheus-adapter-rules.yaml"
NAME = "iris-inflight"
TARGET_IN_FLIGHT_PER_POD = 2
MAX_REPLICAS = 3
# Load: each worker keeps one request of LOAD_ROWS rows in flight (tens of milliseconds each on one
# worker process), so one pod sees far more than TARGET_IN_FLIGHT_PER_POD requests in flight.
LOAD_WORKERS = 16
LOAD_ROWS = 2000
READY_TIMEOUT_SECONDS = 240.0
METRIC_TIMEOUT_SECONDS = 120.0
SCALE_TIMEOUT_SECONDS = 240.0


AUTOSCALING = {
    "minReplicas": 1,
    "maxReplicas": MAX_REPLICAS,
    "target": {"inFlightRequestsPerPod": TARGET_IN_FLIGHT_PER_POD},
    "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}},
}


def quantity(value: str) -> float:
    """A Kubernetes quantity as the custom-metrics API and HPA status write it ("7", "1500m")."""
    return float(value[:-1]) / 1000 if value.endswith("m") else float(value)


def pod_metrics(cluster: Cluster, namespace: str) -> dict[str, float]:
    """{pod: in-flight} as the aggregated custom-metrics API serves it for NAME's pods."""
    path = (
        f"/apis/{CUSTOM_METRICS_GROUP}/v1beta2/namespaces/{namespace}/pods/*/{METRIC_INFLIGHT_REQUESTS}"
        f"?labelSelector={LABEL_INSTANCE}%3D{NAME}"
    )
    answer = cluster.kubectl("get", "--raw", path, check=False)
    if answer.returncode != 0:  # NotFound until Prometheus has scraped the pods and the adapter re-listed
        return {}
    items = json.loads(answer.stdout)["items"]
    return {item["describedObject"]["name"]: quantity(item["value"]) for item in items}


def scrape_targets(metrics: CustomMetrics) -> list[tuple[str, str, str]]:
    """(address, health, last error) of each target Prometheus scrapes, for a failure message."""
    with urllib.request.urlopen(f"{metrics.prometheus_url}/api/v1/targets", timeout=5) as response:
        active = json.loads(response.read())["data"]["activeTargets"]
    return [(t["scrapeUrl"], t["health"], t["lastError"]) for t in active]


@dataclass
class Sample:
    seconds: float
    in_flight_per_pod: float | None
    desired: int
    replicas: int
    ready: int

    def __str__(self) -> str:
        metric = "-" if self.in_flight_per_pod is None else f"{self.in_flight_per_pod:.1f}"
        return f"t={self.seconds:.0f}s in-flight/pod={metric} desired={self.desired} ready={self.ready}/{self.replicas}"


@dataclass
class Timeline:
    cluster: Cluster
    namespace: str
    started: float
    samples: list[Sample]

    def sample(self) -> Sample:
        hpa = self.cluster.get_json("hpa", NAME, "-n", self.namespace).get("status") or {}
        deployment = self.cluster.get_json("deployment", NAME, "-n", self.namespace).get("status") or {}
        metrics = hpa.get("currentMetrics") or []
        current = (metrics[0].get("pods") or {}).get("current", {}).get("averageValue") if metrics else None
        sample = Sample(
            seconds=time.monotonic() - self.started,
            in_flight_per_pod=quantity(current) if current else None,
            desired=int(hpa.get("desiredReplicas", 0)),
            replicas=int(deployment.get("replicas", 0)),
            ready=int(deployment.get("readyReplicas", 0)),
        )
        self.samples.append(sample)
        return sample

    def until(
        self, what: str, reached: Callable[[Sample], bool], timeout: float = SCALE_TIMEOUT_SECONDS
    ) -> Sample:
        """Sample every second until ``reached``; the first sample that reached it."""

        def probe() -> Sample | None:
            sample = self.sample()
            return sample if reached(sample) else None

        return wait_until(what, probe, timeout, interval=1.0)

    def changes(self) -> str:
        """The samples where the replica counts changed, and the last one."""
        kept = [s for i, s in enumerate(self.samples) if i == 0 or (s.desired, s.replicas, s.ready) != (
            self.samples[i - 1].desired, self.samples[i - 1].replicas, self.samples[i - 1].ready)]  # fmt: skip
        if self.samples and kept[-1] is not self.samples[-1]:
            kept.append(self.samples[-1])
        return "; ".join(str(s) for s in kept)


@pytest.fixture(scope="module")
def metrics_path(real_node: RealNode, node_namespace: str) -> Iterator[CustomMetrics]:
    """Prometheus scraping the tier's namespace, and the adapter with the chart's rules file."""
    with custom_metrics(
        real_node.directory, [node_namespace], PORT_METRICS_NAME, RULES_FILE, REAL_NODE_NAME
    ) as running:
        yield running


@pytest.fixture
def model(
    real_node: RealNode, operator_release: str, node_namespace: str, model_store: dict[str, str]
) -> Iterator[str]:
    cluster = real_node.cluster
    cluster.apply(
        model_deployment(NAME, node_namespace, "1", model_store["1"], replicas=1, autoscaling=AUTOSCALING)
    )
    wait_until(
        f"ModelDeployment {NAME} Ready",
        lambda: condition(cluster, node_namespace, NAME, "Ready").get("status") == "True",
        READY_TIMEOUT_SECONDS,
    )
    yield NAME
    cluster.kubectl("delete", "mdep", NAME, "-n", node_namespace, "--wait=false", check=False)


def test_in_flight_requests_scale_a_model_out_and_back_in(
    real_node: RealNode, node_namespace: str, metrics_path: CustomMetrics, model: str
) -> None:
    cluster = real_node.cluster
    # The adapter serves the idle pod's gauge (scraped from the pod on real-0, through the API server).
    try:
        idle = wait_until(
            f"{METRIC_INFLIGHT_REQUESTS} of {model}'s pod in {CUSTOM_METRICS_GROUP}",
            lambda: pod_metrics(cluster, node_namespace) or None,
            METRIC_TIMEOUT_SECONDS,
            interval=1.0,
        )
    except WaitTimeoutError as error:
        raise AssertionError(f"{error}; Prometheus's targets: {scrape_targets(metrics_path)}") from None
    assert len(idle) == 1, idle
    assert next(iter(idle.values())) < TARGET_IN_FLIGHT_PER_POD, idle

    # The operator's HPA: a Pods metric on the runtime's in-flight gauge, owned by the ModelDeployment.
    hpa = cluster.get_json("hpa", model, "-n", node_namespace)
    assert [ref["kind"] for ref in hpa["metadata"]["ownerReferences"]] == [KIND]
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == METRIC_INFLIGHT_REQUESTS
    wait_until(
        "the HPA to read a valid in-flight metric (ScalingActive=True)",
        lambda: any(
            c["type"] == "ScalingActive" and c["status"] == "True"
            for c in (cluster.get_json("hpa", model, "-n", node_namespace).get("status") or {}).get(
                "conditions", []
            )
        ),
        METRIC_TIMEOUT_SECONDS,
        interval=1.0,
    )
    timeline = Timeline(cluster, node_namespace, time.monotonic(), [])
    assert timeline.sample().replicas == 1

    key = client_key(cluster, node_namespace, model)
    slices = lambda: endpoint_slices(cluster, node_namespace, model)  # noqa: E731
    with EndpointSliceLoad(slices, PORT_HTTP, model, key, workers=LOAD_WORKERS, rows=LOAD_ROWS) as load:
        decided = timeline.until("the HPA to ask for more replicas", lambda s: s.desired > 1)
        scaled = timeline.until("a second replica Ready", lambda s: s.ready >= 2)
        wait_until(
            "the load to reach the new pods",
            lambda: len(load.report.per_address) >= scaled.ready,
            60,
            interval=1.0,
        )
        served_by = dict(load.report.per_address)
        peak = pod_metrics(cluster, node_namespace)
    load_stopped = time.monotonic()
    assert not load.report.failures, load.report.failures[:5]
    # The HPA decided on the metric the adapter served, above the target.
    assert decided.in_flight_per_pod is not None
    assert decided.in_flight_per_pod > TARGET_IN_FLIGHT_PER_POD

    back = timeline.until(
        "the HPA to scale back to one replica", lambda s: s.replicas == 1 and s.desired == 1
    )
    report_figure(
        "in-flight HPA (prometheus-adapter): load -> HPA decision / 2nd replica Ready",
        f"{decided.seconds:.0f}s / {scaled.seconds:.0f}s ({LOAD_WORKERS} clients x {LOAD_ROWS} rows, "
        f"target {TARGET_IN_FLIGHT_PER_POD}/pod; {load.report.requests} requests over {len(served_by)} pods)",
    )
    report_figure(
        "in-flight HPA (prometheus-adapter): load stopped -> back to 1 replica",
        f"{back.seconds - (load_stopped - timeline.started):.0f}s",
    )
    report_figure("in-flight HPA (prometheus-adapter): replicas over time", timeline.changes())
    report_figure("in-flight HPA (prometheus-adapter): per-pod in-flight at peak", json.dumps(peak))
