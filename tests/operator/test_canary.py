"""Canary rollouts without a control plane: the pure parts (sizing, histogram quantiles, verdicts,
the state machine) and the reconcile against the in-memory Kube port with counters the test feeds.

What the API server and a kubelet decide (validation, real traffic, real pods) is tested in
test_crd_rollout.py, test_canary_analysis.py (real runtimes) and tests/node/test_canary.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from modeldeploy_operator.analysis import Figures, PodCounters, Verdict, delta, judge, quantile
from modeldeploy_operator.apis import APIAvailability
from modeldeploy_operator.builders.canary import build_http_route
from modeldeploy_operator.canary import CANARY, STABLE, Samples, achieved_weight, canary_replicas
from modeldeploy_operator.canary_metrics import pod_pattern, prometheus_queries
from modeldeploy_operator.config import OperatorConfig
from modeldeploy_operator.pacing import PodRecheck, StatusWritePacer
from modeldeploy_operator.reconcile import Reconciler
from modeldeploy_operator.resources import DEPLOYMENT, EVENT, MODEL_DEPLOYMENT
from modeldeploy_operator.rollout_spec import CanaryAnalysis, parse_duration
from modeldeploy_operator.status import condition_of
from modeldeploy_operator.store import Store
from tests.operator.factories import NOW, md, md_body
from tests.operator.memory_kube import MemoryKube

CONFIG = OperatorConfig(runtime_image="registry.example/model-runtime:test", status_debounce_seconds=2.0)
STEPS = [{"weight": 10, "pause": "30s"}, {"weight": 50, "pause": "30s"}]
ANALYSIS = {"interval": "10s", "minRequests": 50, "maxErrorRatio": 0.05, "maxLatencyRatio": 1.5}
CANARY_SPEC: dict[str, Any] = {"steps": STEPS, "analysis": ANALYSIS}
ROLLOUT = {"strategy": "Canary", "canary": CANARY_SPEC}
V4 = {"uri": "s3://models/iris/4/model.joblib", "version": "4", "sha256": "1" * 64}
BOUNDS = ("0.005", "0.01", "0.025", "0.05", "0.1", "+Inf")


def histogram(*per_bucket: float) -> dict[str, float]:
    """Cumulative buckets from per-bucket counts (one per BOUNDS entry)."""
    total, out = 0.0, {}
    for le, count in zip(BOUNDS, per_bucket, strict=True):
        total += count
        out[le] = total
    return out


# -- pure parts -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("weight", "stable", "replicas", "achieved"),
    [(10, 2, 1, 33), (10, 9, 1, 10), (50, 4, 4, 50), (20, 10, 3, 23), (25, 10, 3, 23), (30, 10, 4, 29), (99, 1, 99, 99),
     (10, 0, 1, 100), (1, 50, 1, 2)],
)  # fmt: skip
def test_the_canary_gets_the_pod_share_closest_to_the_weight_and_at_least_one_pod(
    weight: int, stable: int, replicas: int, achieved: int
) -> None:
    assert canary_replicas(weight, stable) == replicas
    assert achieved_weight(replicas, stable) == achieved


def test_durations_parse_like_the_crd_pattern() -> None:
    assert parse_duration("1m30s") == 90
    assert parse_duration("2h") == 7200
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("90")


def test_the_p99_interpolates_within_its_bucket_as_prometheus_does() -> None:
    # 100 requests: 98 under 5 ms, 2 between 50 and 100 ms -> rank 99 is halfway into that bucket.
    assert quantile(0.99, histogram(98, 0, 0, 0, 2, 0)) == pytest.approx(0.075)
    assert quantile(0.99, histogram(0, 0, 0, 0, 0, 0)) is None
    assert quantile(0.99, histogram(0, 0, 0, 0, 0, 10)) == pytest.approx(0.1)  # beyond: the last bound


def test_deltas_are_per_pod_and_survive_a_restarted_pod_and_a_new_one() -> None:
    baseline = {"a": PodCounters(100, 1, {"+Inf": 100}), "b": PodCounters(50, 0, {"+Inf": 50})}
    now = {
        "a": PodCounters(130, 4, {"+Inf": 130}),  # +30 requests, +3 errors
        "b": PodCounters(5, 0, {"+Inf": 5}),  # restarted: its counters began again, all 5 are new
        "c": PodCounters(7, 7, {"+Inf": 7}),  # a pod that came up during the step
    }  # pod "d" of the baseline is gone: it adds nothing
    total = delta(now, {**baseline, "d": PodCounters(9, 9, {})})
    assert (total.requests, total.errors, total.buckets) == (42, 10, {"+Inf": 42})


def test_the_verdict_waits_for_min_requests_then_judges_errors_and_latency() -> None:
    analysis = CanaryAnalysis.model_validate(ANALYSIS)
    few = Figures(requests=49, errors=49, stable_requests=400, canary_p99=0.02, stable_p99=0.02)
    assert judge(few, analysis)[0] is Verdict.WAIT
    failing = Figures(requests=60, errors=6, stable_requests=400, canary_p99=0.02, stable_p99=0.02)
    verdict, message = judge(failing, analysis)
    assert verdict is Verdict.FAIL
    assert "error ratio 0.100 (6/60 requests failed) against maxErrorRatio 0.05" in message
    slow = Figures(requests=60, errors=0, stable_requests=400, canary_p99=0.2, stable_p99=0.05)
    verdict, message = judge(slow, analysis)
    assert verdict is Verdict.FAIL
    assert "p99 latency ratio 4.00 (canary 200.0 ms, stable 50.0 ms) against maxLatencyRatio 1.5" in message
    # Two tails under the 10 ms floor compare equal: sub-bucket noise is no verdict.
    fast = Figures(requests=60, errors=0, stable_requests=400, canary_p99=0.004, stable_p99=0.001)
    assert judge(fast, analysis)[0] is Verdict.PASS


def test_the_prometheus_queries_select_each_side_by_pod_name() -> None:
    stable, canary = pod_pattern("iris", STABLE), pod_pattern("iris", CANARY)
    assert re.fullmatch(stable, "iris-7d4b9c8f5-x2x9k")
    assert not re.fullmatch(stable, "iris-canary-6c9f7d-abcde")
    assert re.fullmatch(canary, "iris-canary-6c9f7d-abcde")
    queries = prometheus_queries("ml", "iris", CANARY)
    assert queries["errors"] == (
        'sum by (pod) (modeldeploy_requests_total{namespace="ml",pod=~"iris-canary-[a-z0-9]+-[a-z0-9]+",'
        'protocol=~"v1|v2",code=~"5..|400"})'
    )


def test_the_http_route_weights_the_two_services() -> None:
    model = md(
        rollout={
            **ROLLOUT,
            "canary": {**CANARY_SPEC, "httpRoute": {"name": "r", "parentRefs": [{"name": "gw"}]}},
        }
    )
    route = model.spec.rollout.canary.http_route  # type: ignore[union-attr]
    assert route is not None
    body = build_http_route(model, route, 10)
    assert body["spec"]["rules"] == [
        {"backendRefs": [{"name": "iris", "port": 8080, "weight": 90}, {"name": "iris-canary", "port": 8080, "weight": 10}]}
    ]  # fmt: skip
    assert build_http_route(model, route, 0)["spec"]["rules"][0]["backendRefs"] == [
        {"name": "iris", "port": 8080, "weight": 100}
    ]


# -- the reconcile, with counters the test feeds ----------------------------------------------------
@dataclass
class FedCounters:
    """A CounterSource whose counters the test sets; it records how often it was read."""

    canary: dict[str, PodCounters] = field(default_factory=dict)
    stable: dict[str, PodCounters] = field(default_factory=dict)
    reads: int = 0

    def sample(self, namespace: str, name: str, pods: Sequence[Mapping[str, Any]]) -> Samples:
        self.reads += 1
        return {CANARY: dict(self.canary), STABLE: dict(self.stable)}

    def serve(
        self, canary_ok: int, canary_failed: int = 0, stable: int = 0, canary_slow: bool = False
    ) -> None:
        """Add requests: each side's one pod answers them (fast: under 5 ms; slow: 50-100 ms)."""
        old = self.canary.get("iris-canary-1", PodCounters())
        served = canary_ok + canary_failed
        buckets = histogram(0, 0, 0, 0, served, 0) if canary_slow else histogram(served, 0, 0, 0, 0, 0)
        self.canary["iris-canary-1"] = old.plus(PodCounters(served, canary_failed, buckets))
        old = self.stable.get("iris-1", PodCounters())
        self.stable["iris-1"] = old.plus(PodCounters(stable, 0, histogram(0, stable, 0, 0, 0, 0)))


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Rollout:
    kube: MemoryKube
    store: Store
    counters: FedCounters
    clock: Clock
    reconciler: Reconciler = field(init=False)

    def __post_init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        """A new operator process: a fresh reconciler over the same cluster (its cache re-listed)."""
        self.reconciler = Reconciler(
            self.kube, self.store, CONFIG,
            apis=APIAvailability(self.kube, 10.0), clock=self.clock,
            status_pacer=StatusWritePacer(0.0), pod_recheck=PodRecheck(5.0), counter_source=self.counters,
        )  # fmt: skip

    def reconcile(self) -> None:
        self.reconciler.reconcile("ml", "iris")

    def body(self) -> dict[str, Any]:
        body = self.kube.stored(MODEL_DEPLOYMENT, "ml", "iris")
        assert body is not None
        return body

    def rollout(self) -> dict[str, Any]:
        return dict(self.body()["status"].get("rollout") or {})

    def edit(self, patch: dict[str, Any]) -> None:
        body = self.kube.edit(MODEL_DEPLOYMENT, "ml", "iris", patch)
        if "spec" in patch:
            body = self.kube.edit(
                MODEL_DEPLOYMENT,
                "ml",
                "iris",
                {"metadata": {"generation": body["metadata"]["generation"] + 1}},
            )
        self.store.put(MODEL_DEPLOYMENT, body)

    def deployment(self, name: str) -> dict[str, Any] | None:
        return self.kube.stored(DEPLOYMENT, "ml", name)

    def rolled_out(self, name: str) -> None:
        """The Deployment controller finished the current template of ``name``."""
        deployment = self.deployment(name)
        assert deployment is not None
        replicas = deployment["spec"]["replicas"]
        counts = dict.fromkeys(
            ("replicas", "readyReplicas", "updatedReplicas", "availableReplicas"), replicas
        )
        status = {"observedGeneration": deployment["metadata"].get("generation", 1), **counts}
        self.store.put(DEPLOYMENT, self.kube.edit(DEPLOYMENT, "ml", name, {"status": status}))

    def version_of(self, name: str) -> str | None:
        deployment = self.deployment(name)
        if deployment is None:
            return None
        return str(deployment["spec"]["template"]["metadata"]["annotations"]["modeldeploy.io/model-version"])

    def events(self) -> list[tuple[str, str, str]]:
        return [
            (obj["type"], obj["reason"], obj["message"])
            for (kind, _, _), obj in sorted(self.kube.objects.items())
            if kind == EVENT.kind
        ]

    def condition(self, kind: str) -> dict[str, Any]:
        return dict(condition_of(self.body()["status"], kind) or {})


def serving(replicas: int = 2) -> Rollout:
    """A Canary ModelDeployment serving version 3 on ``replicas`` ready pods."""
    kube = MemoryKube()
    store = Store()
    store.put(MODEL_DEPLOYMENT, kube.seed(md_body(replicas=replicas, rollout=ROLLOUT)))
    world = Rollout(kube, store, FedCounters(), Clock())
    world.reconcile()
    world.rolled_out("iris")
    world.reconcile()
    assert world.rollout()["phase"] == "Idle"
    assert world.body()["status"]["modelVersion"] == "3"
    return world


def started(replicas: int = 2) -> Rollout:
    """``serving()`` with version 4 applied and the canary's pod ready: step 1's pause has begun."""
    world = serving(replicas)
    world.edit({"spec": {"model": V4}})
    world.reconcile()
    world.rolled_out("iris-canary")
    world.counters.serve(0, stable=0)
    world.reconcile()
    return world


def test_a_new_version_runs_as_a_canary_beside_the_stable_pods_which_keep_the_old_one() -> None:
    world = serving(replicas=2)
    world.edit({"spec": {"model": V4}})
    world.reconcile()
    canary = world.deployment("iris-canary")
    assert canary is not None
    assert canary["spec"]["replicas"] == 1  # 10% of 2 pods is not possible: one pod, reported as 33%
    assert world.version_of("iris-canary") == "4"
    assert world.version_of("iris") == "3"
    labels = canary["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "model-server"  # behind the Service <name>
    assert labels["modeldeploy.io/track"] == "canary"
    rollout = world.rollout()
    assert (rollout["phase"], rollout["step"], rollout["steps"]) == ("Progressing", 1, 2)
    assert (rollout["desiredWeight"], rollout["weight"], rollout["canaryReplicas"]) == (10, 33, 1)
    assert (rollout["stableVersion"], rollout["canaryVersion"]) == ("3", "4")
    status = world.body()["status"]
    assert status["modelVersion"] == "3"
    assert world.condition("Progressing")["status"] == "True"
    assert world.condition("Progressing")["reason"] == "CanaryInProgress"
    assert world.condition("Ready")["status"] == "True"  # what serves now: version 3, all ready
    assert world.counters.reads == 0  # no baseline before the canary's pods are ready


def test_a_good_canary_passes_every_step_and_is_promoted_then_removed() -> None:
    world = started()
    assert world.rollout()["phase"] == "Paused"
    assert world.rollout()["stepStartedAt"] == "2026-01-01T12:00:00Z"
    world.counters.serve(60, stable=300)
    world.clock.advance(31)
    world.reconcile()
    rollout = world.rollout()
    assert (rollout["phase"], rollout["step"]) == ("Progressing", 2)
    assert world.deployment("iris-canary")["spec"]["replicas"] == 2  # type: ignore[index]  # 50% of 2
    world.rolled_out("iris-canary")
    world.reconcile()
    assert world.rollout()["phase"] == "Paused"
    world.counters.serve(60, stable=100)
    world.clock.advance(31)
    world.reconcile()
    assert world.rollout()["phase"] == "Promoting"
    assert world.version_of("iris") == "4"  # the stable pods roll to the new version
    assert world.deployment("iris-canary") is not None  # and the canary serves until they are done
    assert world.body()["status"]["modelVersion"] == "3"
    world.rolled_out("iris")
    world.reconcile()
    assert world.rollout()["phase"] == "Idle"
    assert world.deployment("iris-canary") is None
    assert world.body()["status"]["modelVersion"] == "4"
    assert [reason for _, reason, _ in world.events()].count("CanaryPromoted") == 1


def test_a_failing_canary_is_aborted_with_the_figures_and_stays_aborted_until_the_spec_changes() -> None:
    world = started()
    world.counters.serve(10, canary_failed=50, stable=500)
    world.clock.advance(10)
    world.reconcile()
    rollout = world.rollout()
    assert rollout["phase"] == "Aborted"
    assert rollout["analysis"]["errorRatio"] == pytest.approx(50 / 60, abs=1e-3)
    assert world.deployment("iris-canary")["spec"]["replicas"] == 0  # type: ignore[index]
    assert world.version_of("iris") == "3"
    degraded = world.condition("Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "CanaryAborted")
    assert "error ratio 0.833 (50/60 requests failed) against maxErrorRatio 0.05" in degraded["message"]
    warnings = [message for kind, _, message in world.events() if kind == "Warning"]
    assert len(warnings) == 1
    assert "CanaryAborted" in warnings[0]
    assert "50/60 requests failed" in warnings[0]
    world.clock.advance(600)
    world.reconcile()
    assert world.rollout()["phase"] == "Aborted"  # no new attempt on its own
    world.edit({"spec": {"model": {**V4, "version": "5", "sha256": "2" * 64}}})
    world.reconcile()
    assert (world.rollout()["phase"], world.rollout()["canaryVersion"]) == ("Progressing", "5")
    assert world.condition("Degraded")["status"] == "False"


def test_a_slow_canary_is_aborted_on_the_latency_ratio() -> None:
    world = started()
    world.counters.serve(60, stable=300, canary_slow=True)  # canary 50-100 ms, stable 5-10 ms
    world.clock.advance(10)
    world.reconcile()
    assert world.rollout()["phase"] == "Aborted"
    assert "p99 latency ratio" in world.rollout()["message"]


def test_the_retry_annotation_starts_an_aborted_canary_again_and_is_removed() -> None:
    world = started()
    world.edit({"metadata": {"annotations": {"modeldeploy.io/abort": "now"}}})
    world.reconcile()
    assert world.rollout()["phase"] == "Aborted"
    assert "aborted by the modeldeploy.io/abort annotation" in world.rollout()["message"]
    assert "modeldeploy.io/abort" not in (world.body()["metadata"].get("annotations") or {})
    world.store.put(MODEL_DEPLOYMENT, world.body())
    world.edit({"metadata": {"annotations": {"modeldeploy.io/retry-rollout": "1"}}})
    world.reconcile()
    assert (world.rollout()["phase"], world.rollout()["step"]) == ("Progressing", 1)
    assert "modeldeploy.io/retry-rollout" not in (world.body()["metadata"].get("annotations") or {})


def test_the_promote_annotation_skips_the_remaining_steps() -> None:
    world = started()
    world.edit({"metadata": {"annotations": {"modeldeploy.io/promote": "now"}}})
    world.reconcile()
    assert world.rollout()["phase"] == "Promoting"
    assert world.version_of("iris") == "4"


def test_a_restarted_operator_resumes_the_same_step_with_the_same_baseline() -> None:
    world = started()
    world.counters.serve(30, stable=100)
    world.clock.advance(10)
    world.reconcile()  # an analysis: 30/50 requests, the step goes on
    before = world.rollout()
    assert before["phase"] == "Paused"
    assert before["analysis"]["requests"] == 30
    world.restart()
    world.store = Store()  # the new process' cache: re-listed from the cluster
    for resource in (MODEL_DEPLOYMENT, DEPLOYMENT):
        for obj in world.kube.list(resource, "ml").items:
            world.store.put(resource, obj)
    world.restart()
    world.counters.serve(30, stable=100)
    world.clock.advance(10)
    world.reconcile()
    after = world.rollout()
    assert (after["phase"], after["step"], after["stepStartedAt"]) == ("Paused", 1, before["stepStartedAt"])
    assert after["analysis"]["requests"] == 60  # counted from the same baseline, not from zero
    names = [obj["metadata"]["name"] for obj in world.kube.list(DEPLOYMENT, "ml").items]
    assert sorted(names) == ["iris", "iris-canary"]


def test_canary_sizing_follows_the_observed_stable_replicas_an_autoscaler_set() -> None:
    world = serving(replicas=2)
    world.kube.edit(DEPLOYMENT, "ml", "iris", {"spec": {"replicas": 9}})
    world.store.put(DEPLOYMENT, world.kube.stored(DEPLOYMENT, "ml", "iris"))  # type: ignore[arg-type]
    world.edit({"spec": {"model": V4}})
    world.reconcile()
    assert world.rollout()["canaryReplicas"] == 1
    assert world.rollout()["weight"] == 10


def test_the_rolling_update_strategy_writes_no_rollout_status() -> None:
    kube, store = MemoryKube(), Store()
    store.put(MODEL_DEPLOYMENT, kube.seed(md_body()))
    world = Rollout(kube, store, FedCounters(), Clock())
    world.reconcile()
    world.edit({"spec": {"model": V4}})
    world.reconcile()
    assert world.version_of("iris") == "4"
    assert world.deployment("iris-canary") is None
    assert "rollout" not in world.body()["status"]


def test_the_network_policy_admits_the_operator_to_the_metrics_port_only_when_it_scrapes() -> None:
    from modeldeploy_operator.builders import build_network_policy  # noqa: PLC0415

    canary = md(rollout=ROLLOUT, networkPolicy={"enabled": True})
    scraping = OperatorConfig(operator_namespace="modeldeploy-system", monitoring_namespace="")
    policy = build_network_policy(canary, scraping)["spec"]
    assert policy["podSelector"] == {
        "matchLabels": {"modeldeploy.io/model-deployment": "iris"}
    }  # canary pods too
    assert policy["ingress"] == [
        {
            "from": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "modeldeploy-system"}
                    },
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "modeldeploy-operator"}},
                }
            ],
            "ports": [{"port": "metrics", "protocol": "TCP"}],
        }
    ]
    querying = OperatorConfig(
        operator_namespace="modeldeploy-system",
        monitoring_namespace="",
        canary_prometheus_url="http://p:9090",
    )
    assert build_network_policy(canary, querying)["spec"]["ingress"] == []
    assert build_network_policy(md(networkPolicy={"enabled": True}), scraping)["spec"]["ingress"] == []


def test_a_step_without_enough_requests_waits_past_its_pause() -> None:
    world = started()
    world.counters.serve(10, stable=100)
    world.clock.advance(31)
    world.reconcile()
    rollout = world.rollout()
    assert (rollout["phase"], rollout["step"]) == ("Paused", 1)
    assert "waiting for requests; 10/50 canary requests so far" in rollout["message"]


def test_a_newer_version_mid_canary_starts_over_and_reverting_ends_the_canary() -> None:
    world = started()
    world.edit({"spec": {"model": {**V4, "version": "5", "sha256": "2" * 64}}})
    world.reconcile()
    assert (world.rollout()["phase"], world.rollout()["step"], world.rollout()["canaryVersion"]) == (
        "Progressing",
        1,
        "5",
    )
    assert world.version_of("iris-canary") == "5"
    world.edit({"spec": {"model": md_body()["spec"]["model"]}})
    world.reconcile()
    assert world.rollout()["phase"] == "Idle"
    assert world.deployment("iris-canary") is None
    assert world.version_of("iris") == "3"
