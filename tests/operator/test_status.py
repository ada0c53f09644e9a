"""status.py: kstatus semantics from the spec and observed children (pure)."""

from __future__ import annotations

from typing import Any

from modeldeploy_operator.model import ModelDeployment
from modeldeploy_operator.status import (
    Monitoring,
    Observed,
    build_status,
    is_ready,
    is_rollout_in_progress,
    is_significant_change,
    should_inspect_pods,
)
from tests.operator.factories import NOW, crash_looping_pod, md_body

HASH = "abc"


def deployment(
    replicas: int,
    ready: int,
    updated: int,
    available: int,
    *,
    generation: int = 2,
    observed_generation: int = 2,
    desired_hash: str = HASH,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation, "annotations": {"modeldeploy.io/desired-hash": desired_hash}},
        "status": {
            "observedGeneration": observed_generation,
            "replicas": replicas,
            "readyReplicas": ready,
            "updatedReplicas": updated,
            "availableReplicas": available,
            "conditions": conditions or [],
        },
    }


def observed(
    dep: dict[str, Any] | None,
    pods: list[dict[str, Any]] | None = None,
    monitoring: Monitoring = Monitoring.APPLIED,
) -> Observed:
    return Observed(
        dep, HASH, pods or [], monitoring, ["iris-client-billing"], "http://iris.ml.svc:8080", "sel"
    )


def status_of(
    dep: dict[str, Any] | None, replicas: int = 2, previous: dict[str, Any] | None = None, **kw: Any
) -> dict[str, Any]:
    body = md_body(replicas=replicas)
    if previous:
        body["status"] = previous
    return build_status(ModelDeployment.from_body(body), observed(dep, **kw), NOW)


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_ready_only_when_every_replica_is_updated_ready_and_available() -> None:
    status = status_of(deployment(2, 2, 2, 2))
    assert conditions(status) == {
        "Ready": ("True", "RolledOut"), "Progressing": ("False", "RolledOut"),
        "Degraded": ("False", "AsExpected"), "Monitoring": ("True", "ServiceMonitorApplied"),
    }  # fmt: skip
    assert status["modelVersion"] == "3"
    assert status["replicasSummary"] == "2/2"
    assert all(
        c["observedGeneration"] == 1 and c["lastTransitionTime"] == "2026-01-01T12:00:00Z"
        for c in status["conditions"]
    )


def test_not_ready_during_a_rollout_or_before_the_template_is_observed() -> None:
    for dep in (
        None,
        deployment(3, 3, 1, 3),  # old pods still around
        deployment(2, 1, 2, 1),
        deployment(2, 2, 2, 2, observed_generation=1),
        deployment(2, 2, 2, 2, desired_hash="old"),
    ):
        status = status_of(dep)
        assert not is_ready(status), dep
        assert conditions(status)["Progressing"][0] == "True"
        assert "modelVersion" not in status


def test_served_version_stays_until_the_new_one_is_rolled_out() -> None:
    previous = status_of(deployment(2, 2, 2, 2))
    previous["modelVersion"] = "2"
    rolling = status_of(deployment(3, 3, 1, 3), previous=previous)
    assert rolling["modelVersion"] == "2"


def test_pods_are_inspected_only_while_an_observed_rollout_is_unfinished() -> None:
    md = ModelDeployment.from_body(md_body(replicas=2))
    assert should_inspect_pods(md, deployment(2, 1, 2, 1), HASH)  # a replica is not ready
    assert should_inspect_pods(md, deployment(3, 3, 1, 3), HASH)  # old pods still around
    assert should_inspect_pods(md, deployment(2, 2, 2, 2, desired_hash="old"), HASH)
    assert not should_inspect_pods(md, deployment(2, 2, 2, 2), HASH)  # complete: every pod is ready
    assert not should_inspect_pods(
        md, deployment(0, 0, 0, 0, observed_generation=1), HASH
    )  # not observed yet
    assert not should_inspect_pods(md, None, HASH)
    scaled_to_zero = ModelDeployment.from_body(md_body(replicas=0))
    assert not should_inspect_pods(scaled_to_zero, deployment(1, 0, 0, 0), HASH)


def test_only_a_rollout_without_failure_counts_as_in_progress() -> None:
    assert is_rollout_in_progress(status_of(deployment(2, 1, 2, 1)))  # may wait for the debounce
    assert not is_rollout_in_progress(status_of(deployment(2, 2, 2, 2)))  # Ready: written at once
    assert not is_rollout_in_progress(
        status_of(deployment(2, 1, 2, 1), pods=[crash_looping_pod()])
    )  # Degraded


def test_crash_looping_pods_are_degraded_and_never_ready() -> None:
    status = status_of(deployment(2, 2, 2, 2), pods=[crash_looping_pod()])
    assert conditions(status)["Degraded"] == ("True", "CrashLoopBackOff")
    assert conditions(status)["Ready"] == ("False", "CrashLoopBackOff")
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert "model failed to load" in degraded["message"]
    assert "iris-1" in degraded["message"]


def test_failing_init_container_and_image_pull_are_degraded() -> None:
    init = {
        "metadata": {"name": "p"},
        "status": {
            "initContainerStatuses": [
                {
                    "name": "fetch-model",
                    "restartCount": 0,
                    "state": {"terminated": {"exitCode": 2, "message": "403 Forbidden"}},
                }
            ]
        },
    }
    assert conditions(status_of(deployment(2, 0, 2, 0), pods=[init]))["Degraded"] == (
        "True",
        "ContainerFailing",
    )
    pull = {
        "metadata": {"name": "p"},
        "status": {
            "containerStatuses": [
                {"name": "runtime", "restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff"}}}
            ]
        },
    }
    assert conditions(status_of(deployment(2, 0, 2, 0), pods=[pull]))["Degraded"] == (
        "True",
        "ImagePullFailed",
    )


def test_progress_deadline_and_replica_failure_are_degraded() -> None:
    deadline = [
        {
            "type": "Progressing",
            "status": "False",
            "reason": "ProgressDeadlineExceeded",
            "message": "too slow",
        }
    ]
    status = status_of(deployment(2, 1, 2, 1, conditions=deadline))
    assert conditions(status)["Degraded"] == ("True", "ProgressDeadlineExceeded")
    assert conditions(status)["Progressing"][0] == "False"
    failure = [
        {
            "type": "ReplicaFailure",
            "status": "True",
            "reason": "FailedCreate",
            "message": "forbidden: PodSecurity",
        }
    ]
    assert conditions(status_of(deployment(0, 0, 0, 0, conditions=failure)))["Degraded"] == (
        "True",
        "ReplicaFailure",
    )


def test_monitoring_skipped_is_a_condition_not_an_obstacle_to_ready() -> None:
    status = status_of(deployment(2, 2, 2, 2), monitoring=Monitoring.CRD_MISSING)
    assert is_ready(status)
    assert conditions(status)["Monitoring"] == ("False", "ServiceMonitorCRDMissing")


def test_scaled_to_zero_is_ready() -> None:
    assert conditions(status_of(deployment(0, 0, 0, 0), replicas=0))["Ready"] == ("True", "ScaledToZero")


def test_transition_times_are_kept_while_a_condition_holds_and_counts_are_not_significant() -> None:
    earlier = status_of(deployment(2, 1, 2, 1))
    for condition in earlier["conditions"]:
        condition["lastTransitionTime"] = "2025-01-01T00:00:00Z"
    later = status_of(deployment(3, 2, 1, 2), previous=earlier)
    assert all(c["lastTransitionTime"] == "2025-01-01T00:00:00Z" for c in later["conditions"])
    assert not is_significant_change(earlier, later)
    ready = status_of(deployment(2, 2, 2, 2), previous=earlier)
    assert is_significant_change(earlier, ready)
    assert (
        next(c for c in ready["conditions"] if c["type"] == "Ready")["lastTransitionTime"]
        == "2026-01-01T12:00:00Z"
    )
