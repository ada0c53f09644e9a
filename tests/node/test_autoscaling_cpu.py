"""CPU autoscaling on the real node: metrics-server (built from sigs.k8s.io/metrics-server) scrapes the
real kubelet, the HorizontalPodAutoscaler the operator wrote scales the Deployment out under real
prediction traffic and back in once it stops, and the ModelDeployment's status follows the truth."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from modeldeploy_devenv.metrics_server import MetricsServer, start_metrics_server
from modeldeploy_operator.constants import PORT_HTTP
from tests.node.conftest import (
    RealNode,
    client_key,
    condition,
    endpoint_slices,
    model_deployment,
    report_figure,
)
from tests.node.endpoint_load import EndpointSliceLoad
from tests.support import wait_until

NAME = "iris-cpu"
MAX_REPLICAS = 3
TARGET_UTILIZATION = 50  # percent of the 50m CPU request: an idle runtime stays well below 25m
LOAD_WORKERS = 4
SCALE_OUT_TIMEOUT = 240.0
SCALE_IN_TIMEOUT = 240.0
SAMPLE_SECONDS = 2.0
# Fast and symmetric, so the test measures the metrics pipeline rather than the default 5 minute
# scale-down window (cluster.py also runs the HPA controller every 5 s instead of 15 s).
BEHAVIOR = {
    "scaleUp": {
        "stabilizationWindowSeconds": 0,
        "policies": [{"type": "Pods", "value": 2, "periodSeconds": 5}],
    },
    "scaleDown": {
        "stabilizationWindowSeconds": 15,
        "policies": [{"type": "Pods", "value": 2, "periodSeconds": 5}],
    },
}


@pytest.fixture(scope="module")
def metrics_server(real_node: RealNode) -> Iterator[MetricsServer]:
    server = start_metrics_server(real_node.directory, real_node.cluster.kubeconfig)
    yield server
    server.stop()


@dataclass
class ReplicaTimeline:
    """(seconds since start, Deployment spec.replicas, ModelDeployment status.replicas, readyReplicas)."""

    node: RealNode
    namespace: str
    started: float = field(default_factory=time.monotonic)
    samples: list[tuple[float, int, int, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def sample(self) -> tuple[float, int, int, int]:
        cluster = self.node.cluster
        deployment = cluster.get_json("deployment", NAME, "-n", self.namespace)
        status = cluster.get_json("mdep", NAME, "-n", self.namespace).get("status") or {}
        row = (
            round(time.monotonic() - self.started, 1),
            int(deployment["spec"].get("replicas", 0)),
            int(status.get("replicas", 0)),
            int(status.get("readyReplicas", 0)),
        )
        self.samples.append(row)
        return row

    def run(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            try:
                self.sample()
            except (RuntimeError, ValueError, KeyError):  # a failed read skips one sample
                continue

    def __enter__(self) -> ReplicaTimeline:
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def changes(self) -> str:
        """Only the samples where a count changed: 't=..s spec/status/ready'."""
        shown, last = [], None
        for at, spec, replicas, ready in self.samples:
            if (spec, replicas, ready) != last:
                shown.append(f"t={at:.0f}s {spec}/{replicas}/{ready}")
                last = (spec, replicas, ready)
        return ", ".join(shown)


def test_cpu_load_scales_out_and_back_in(
    real_node: RealNode,
    operator_release: str,
    node_namespace: str,
    model_store: dict[str, str],
    metrics_server: MetricsServer,
) -> None:
    cluster = real_node.cluster
    body = model_deployment(NAME, node_namespace, "1", model_store["1"], replicas=1)
    body["spec"]["autoscaling"] = {
        "minReplicas": 1,
        "maxReplicas": MAX_REPLICAS,
        "target": {"cpuUtilization": TARGET_UTILIZATION},
        "behavior": BEHAVIOR,
    }
    cluster.apply(body)
    try:
        wait_until(
            f"{NAME} Ready with its HPA reading CPU",
            lambda: (
                condition(cluster, node_namespace, NAME, "Ready").get("status") == "True"
                and any(
                    m.get("resource", {}).get("current", {}).get("averageUtilization") is not None
                    for m in cluster.get_json("hpa", NAME, "-n", node_namespace)
                    .get("status", {})
                    .get("currentMetrics")
                    or []
                )
            ),
            timeout=300,
        )
        autoscaling = condition(cluster, node_namespace, NAME, "Autoscaling")
        assert autoscaling.get("reason") == "AutoscalerApplied", autoscaling
        key = client_key(cluster, node_namespace, NAME)
        with ReplicaTimeline(real_node, node_namespace) as timeline:
            assert timeline.sample()[1] == 1, "it should start from one replica"
            load_started = time.monotonic()
            with EndpointSliceLoad(
                lambda: endpoint_slices(cluster, node_namespace, NAME),
                PORT_HTTP,
                NAME,
                key,
                workers=LOAD_WORKERS,
            ) as load:
                wait_until(
                    "the HPA to scale out under CPU load",
                    lambda: timeline.sample()[1] > 1,
                    timeout=SCALE_OUT_TIMEOUT,
                    interval=1.0,
                )
                scaled_out = time.monotonic() - load_started
                wait_until(
                    "a second ready replica serving the load (status.readyReplicas >= 2)",
                    lambda: timeline.sample()[3] >= 2,
                    timeout=SCALE_OUT_TIMEOUT,
                    interval=1.0,
                )
                second_ready = time.monotonic() - load_started
                peak = max(spec for _, spec, _, _ in timeline.samples)
            load_stopped = time.monotonic()
            wait_until(
                "the HPA to scale back in to 1 after the load stopped",
                lambda: timeline.sample()[1] == 1 and timeline.samples[-1][3] == 1,
                timeout=SCALE_IN_TIMEOUT,
                interval=1.0,
            )
            scaled_in = time.monotonic() - load_stopped
        served = sum(load.report.per_address.values())
        assert served > 0
        assert len(load.report.per_address) >= 2, "the load never reached a second replica"
        # The status reports the truth: the ModelDeployment's counts followed the Deployment's.
        assert any(replicas >= 2 for _, _, replicas, _ in timeline.samples)
        report_figure(
            "CPU autoscaling: load start -> HPA scales out / 2nd replica ready",
            f"{scaled_out:.0f}s / {second_ready:.0f}s (peak {peak} replicas, max {MAX_REPLICAS})",
        )
        report_figure("CPU autoscaling: load stop -> back to 1 replica", f"{scaled_in:.0f}s")
        report_figure(
            "CPU autoscaling: replicas over time (Deployment spec / status.replicas / ready)",
            timeline.changes(),
        )
        report_figure(
            "CPU autoscaling: requests served / failed",
            f"{served} / {len(load.report.failures)} across {len(load.report.per_address)} pods",
        )
    finally:
        cluster.kubectl("delete", "mdep", NAME, "-n", node_namespace, "--wait=false", check=False)
