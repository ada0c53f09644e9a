"""Canary rollouts on the real node, under real traffic that follows the Service's EndpointSlices.

The operator (installed by the chart, on real-0) reads the canary's and the stable pods' own
``/metrics`` over the pod network and decides each step. The versions are real models from the
tier's S3 store: iris v1 (LogisticRegression) serves as stable; v2 (a decision tree) is a good
canary; ``wide`` (trained on 5 features) rejects the 4-feature rows every caller sends; ``forest``
(300 trees) answers correctly but really slower.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from modeldeploy_devenv.sample_models import upload_models
from modeldeploy_operator.constants import PORT_HTTP
from tests.node.conftest import (
    STORE_SECRET,
    RealNode,
    client_key,
    condition,
    endpoint_slices,
    model_deployment,
    report_figure,
    server_pods,
)
from tests.node.endpoint_load import EndpointSliceLoad, predict
from tests.support import wait_until

READY_TIMEOUT_SECONDS = 240.0
ROLLOUT_TIMEOUT_SECONDS = 300.0


@pytest.fixture(scope="module")
def versions(
    real_node: RealNode,
    node_namespace: str,
    model_store: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, str]:
    """{version: sha256} of v1, v2 and the canary test models, all in the tier's store."""
    import numpy as np  # noqa: PLC0415
    from sklearn.datasets import load_iris  # noqa: PLC0415
    from sklearn.ensemble import RandomForestClassifier  # noqa: PLC0415
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415

    secret = real_node.cluster.get_json("secret", STORE_SECRET, "-n", node_namespace)
    endpoint = base64.b64decode(secret["data"]["AWS_ENDPOINT_URL"]).decode()
    features, labels = load_iris(return_X_y=True)
    wide = np.hstack([features, features[:, :1]])
    estimators = {
        "wide": LogisticRegression(max_iter=500).fit(wide, labels),
        "forest": RandomForestClassifier(n_estimators=300, random_state=0).fit(features, labels),
    }
    return {**model_store, **upload_models(endpoint, tmp_path_factory.mktemp("canary-models"), estimators)}


@dataclass
class Canary:
    node: RealNode
    namespace: str
    name: str
    versions: dict[str, str]
    release_namespace: str

    @property
    def cluster(self) -> Any:
        return self.node.cluster

    def manifest(self, version: str, replicas: int, canary: dict[str, Any]) -> dict[str, Any]:
        body = model_deployment(self.name, self.namespace, version, self.versions[version], replicas)
        body["spec"]["rollout"] = {"strategy": "Canary", "canary": canary}
        return body

    def body(self) -> dict[str, Any]:
        return dict(self.cluster.get_json("mdep", self.name, "-n", self.namespace))

    def rollout(self) -> dict[str, Any]:
        return dict(self.body().get("status", {}).get("rollout") or {})

    def ready(self) -> bool:
        return condition(self.cluster, self.namespace, self.name, "Ready").get("status") == "True"

    def load(self) -> EndpointSliceLoad:
        key = client_key(self.cluster, self.namespace, self.name)
        return EndpointSliceLoad(
            lambda: endpoint_slices(self.cluster, self.namespace, self.name),
            PORT_HTTP,
            self.name,
            key,
            workers=2,
        )

    def deployments(self) -> list[str]:
        listed = self.cluster.get_json(
            "deployments", "-n", self.namespace, "-l", f"modeldeploy.io/model-deployment={self.name}"
        )
        return sorted(d["metadata"]["name"] for d in listed["items"])

    def versions_answering(self) -> set[str]:
        key = client_key(self.cluster, self.namespace, self.name)
        pods = [p for p in server_pods(self.cluster, self.namespace, self.name)
                if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]  # fmt: skip
        return {
            str(predict(f"{p['status']['podIP']}:{PORT_HTTP}", self.name, key)[1].get("model_version"))
            for p in pods
        }

    def events(self) -> list[dict[str, Any]]:
        listed = self.cluster.get_json(
            "events", "-n", self.namespace, "--field-selector", f"involvedObject.name={self.name}"
        )
        return list(listed["items"])

    def wait_phase(self, phase: str, timeout: float = ROLLOUT_TIMEOUT_SECONDS) -> dict[str, Any]:
        return wait_until(  # type: ignore[no-any-return]
            f"{self.name}'s rollout {phase}",
            lambda: (r := self.rollout()).get("phase") == phase and r,
            timeout,
            interval=0.5,
        )


@pytest.fixture
def make(
    real_node: RealNode, node_namespace: str, versions: dict[str, str], operator_release: str
) -> Iterator[Any]:
    made: list[Canary] = []

    def create(name: str, replicas: int, canary: dict[str, Any]) -> Canary:
        """``name`` serving v1 on ``replicas`` ready pods, with a Canary rollout configured."""
        subject = Canary(real_node, node_namespace, name, versions, operator_release)
        made.append(subject)
        real_node.cluster.apply(subject.manifest("1", replicas, canary))
        wait_until(f"{name} Ready on version 1", subject.ready, READY_TIMEOUT_SECONDS)
        subject.wait_phase("Idle", 60)
        return subject

    yield create
    for subject in made:
        real_node.cluster.kubectl(
            "delete", "mdep", subject.name, "-n", node_namespace, "--wait=false", check=False
        )


def _phases(subject: Canary, until: set[str], timeout: float) -> list[tuple[float, str, int]]:
    """(seconds since the call, phase, step) at each change, until a phase of ``until`` that follows
    another phase (the Idle before the operator saw the change does not count)."""
    started = time.monotonic()
    seen: list[tuple[float, str, int]] = []
    deadline = started + timeout
    while time.monotonic() < deadline:
        rollout = subject.rollout()
        entry = (rollout.get("phase", ""), int(rollout.get("step", 0)))
        if not seen or seen[-1][1:] != entry:
            seen.append((round(time.monotonic() - started, 1), *entry))
        if entry[0] in until and any(phase not in until for _, phase, _ in seen):
            return seen
        time.sleep(0.5)
    raise AssertionError(f"timed out: rollout phases so far {seen}")


def test_a_version_rejecting_stable_inputs_is_aborted_at_the_first_step(make: Any) -> None:
    canary = {
        "steps": [{"weight": 10, "pause": "60s"}, {"weight": 50, "pause": "60s"}],
        "analysis": {"interval": "2s", "minRequests": 20, "maxErrorRatio": 0.05},
    }
    subject = make("canary-bad", 4, canary)
    with subject.load() as load:
        time.sleep(2)
        subject.cluster.apply(subject.manifest("wide", 4, canary))
        phases = _phases(subject, {"Aborted", "Idle"}, ROLLOUT_TIMEOUT_SECONDS)
        aborted_at = load.report.requests
        time.sleep(5)  # stable keeps serving after the abort
    report = load.report
    failed_ratio = len(report.failures) / report.requests
    rollout = subject.rollout()
    report_figure("canary bad version: phases (s, phase, step)", str(phases))
    report_figure(
        "canary bad version: load",
        f"{report.requests} requests, {len(report.failures)} failed ({failed_ratio:.1%})",
    )
    assert (rollout["phase"], rollout["step"]) == ("Aborted", 1), rollout
    assert failed_ratio < 0.15
    assert report.requests > aborted_at
    assert all("HTTP 400" in failure for failure in report.failures), report.failures[:5]
    assert subject.versions_answering() == {"1"}
    assert rollout["analysis"]["errors"] > 0
    degraded = condition(subject.cluster, subject.namespace, subject.name, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "CanaryAborted")
    assert "requests failed) against maxErrorRatio 0.05" in degraded["message"]
    warnings = [e["message"] for e in subject.events() if e["type"] == "Warning"]
    assert any("CanaryAborted" in m and "requests failed" in m for m in warnings), warnings
    assert subject.body()["status"]["modelVersion"] == "1"


def test_a_good_version_is_promoted_through_every_step_without_a_failed_request(make: Any) -> None:
    canary = {
        "steps": [{"weight": 25, "pause": "10s"}, {"weight": 50, "pause": "10s"}],
        "analysis": {"interval": "2s", "minRequests": 20, "maxErrorRatio": 0.01, "maxLatencyRatio": 3},
    }
    subject = make("canary-good", 2, canary)
    with subject.load() as load:
        time.sleep(2)
        subject.cluster.apply(subject.manifest("2", 2, canary))
        phases = _phases(subject, {"Idle", "Aborted"}, ROLLOUT_TIMEOUT_SECONDS)
        wait_until(
            "version 2 fully rolled out",
            lambda: subject.body()["status"].get("modelVersion") == "2" and subject.ready(),
            READY_TIMEOUT_SECONDS,
        )
    report = load.report
    steps = [p for p in phases if p[1] in ("Progressing", "Paused")]
    report_figure("canary good version: phases (s, phase, step)", str(phases))
    report_figure(
        "canary good version: load",
        f"{report.requests} requests, {len(report.failures)} failed, {dict(report.versions)}",
    )
    assert phases[-1][1] == "Idle", phases
    assert {step for _, phase, step in steps if phase == "Paused"} == {1, 2}, phases
    assert report.failures == [], report.failures[:10]
    assert report.versions["1"] > 0
    assert report.versions["2"] > 0
    assert subject.deployments() == [subject.name]  # the canary Deployment is removed
    assert subject.versions_answering() == {"2"}


def test_a_slower_version_is_aborted_on_its_latency(make: Any) -> None:
    canary = {
        "steps": [{"weight": 34, "pause": "60s"}],
        "analysis": {"interval": "2s", "minRequests": 20, "maxLatencyRatio": 1.5},
    }
    subject = make("canary-slow", 2, canary)
    with subject.load() as load:
        time.sleep(2)
        subject.cluster.apply(subject.manifest("forest", 2, canary))
        phases = _phases(subject, {"Aborted", "Idle"}, ROLLOUT_TIMEOUT_SECONDS)
    report = load.report
    rollout = subject.rollout()
    report_figure("canary slow version: phases (s, phase, step)", str(phases))
    report_figure("canary slow version: analysis", str(rollout.get("analysis")))
    report_figure("canary slow version: load", f"{report.requests} requests, {len(report.failures)} failed")
    assert rollout["phase"] == "Aborted", rollout
    assert "p99 latency ratio" in rollout["message"]
    assert rollout["analysis"]["latencyRatio"] > 1.5
    assert subject.versions_answering() == {"1"}


def test_a_restarted_operator_resumes_the_step_and_a_manual_promote_finishes_it(make: Any) -> None:
    canary = {
        "steps": [{"weight": 34, "pause": "10m"}, {"weight": 50, "pause": "10m"}],
        "analysis": {"interval": "2s", "minRequests": 1000000},
    }
    subject = make("canary-restart", 2, canary)
    with subject.load() as load:
        subject.cluster.apply(subject.manifest("2", 2, canary))
        before = wait_until(
            "an analysis of step 1", lambda: (r := subject.wait_phase("Paused")).get("analysis") and r, 120
        )
        operators = (
            "pods",
            "-n",
            subject.release_namespace,
            "-l",
            "app.kubernetes.io/name=modeldeploy-operator",
        )
        old = {p["metadata"]["name"] for p in subject.cluster.get_json(*operators)["items"]}
        subject.cluster.kubectl("delete", *operators, "--wait=false")
        restarted = time.monotonic()
        wait_until(
            "the old operator pods gone",
            lambda: not old & {p["metadata"]["name"] for p in subject.cluster.get_json(*operators)["items"]},
            180,
            interval=1.0,
        )
        mark = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        after = wait_until(
            "an analysis by the new operator",
            lambda: (r := subject.rollout()).get("analysis", {}).get("lastAnalysisAt", "") >= mark and r,
            180,
            interval=1.0,
        )
        report_figure(
            "canary operator restart: seconds to the next analysis", f"{time.monotonic() - restarted:.1f}"
        )
        assert (after["phase"], after["step"], after["stepStartedAt"]) == (
            "Paused",
            1,
            before["stepStartedAt"],
        )
        assert after["baseline"] == before["baseline"]
        assert after["analysis"]["requests"] >= before["analysis"]["requests"]  # not counted from zero
        assert subject.deployments() == [subject.name, f"{subject.name}-canary"]
        subject.cluster.kubectl(
            "annotate", f"mdep/{subject.name}", "-n", subject.namespace, "modeldeploy.io/promote=now"
        )
        wait_until(
            "version 2 promoted and rolled out",
            lambda: (
                subject.body()["status"].get("modelVersion") == "2"
                and subject.rollout().get("phase") == "Idle"
            ),
            READY_TIMEOUT_SECONDS,
        )
    report_figure(
        "canary restart + manual promote: load",
        f"{load.report.requests} requests, {len(load.report.failures)} failed",
    )
    assert load.report.failures == []
    assert subject.versions_answering() == {"2"}
    assert "modeldeploy.io/promote" not in (subject.body()["metadata"].get("annotations") or {})


def test_a_manual_abort_takes_the_canary_out_and_stable_keeps_serving(make: Any) -> None:
    canary = {"steps": [{"weight": 34, "pause": "10m"}], "analysis": {"interval": "2s"}}
    subject = make("canary-abort", 2, canary)
    with subject.load() as load:
        subject.cluster.apply(subject.manifest("2", 2, canary))
        subject.wait_phase("Paused")
        subject.cluster.kubectl(
            "annotate", f"mdep/{subject.name}", "-n", subject.namespace, "modeldeploy.io/abort=now"
        )
        rollout = subject.wait_phase("Aborted", 60)
        wait_until(
            "the canary pods gone",
            lambda: all(
                p["metadata"]["labels"].get("modeldeploy.io/track") != "canary"
                for p in server_pods(subject.cluster, subject.namespace, subject.name)
            ),
            120,
        )
    report_figure(
        "canary manual abort: load", f"{load.report.requests} requests, {len(load.report.failures)} failed"
    )
    assert "aborted by the modeldeploy.io/abort annotation" in rollout["message"]
    assert load.report.failures == []
    assert subject.versions_answering() == {"1"}
