"""The ModelDeployment status from its spec and observed children (pure; ``now`` is passed in).

kstatus semantics: ``Ready=True`` only when the Deployment has observed the current template
(our desired-hash annotation, its own generation) and every desired replica is updated, ready and
available with no old pods left; ``Progressing=True`` while that is not yet the case;
``Degraded=True`` when pods fail (crash loops, image pulls, failing init containers, progress
deadline, replica failures) -- and then never Ready.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from modeldeploy_operator.constants import (
    ANNOTATION_DESIRED_HASH,
    CONDITION_AUTOSCALING,
    CONDITION_DEGRADED,
    CONDITION_MONITORING,
    CONDITION_PROGRESSING,
    CONDITION_READY,
    REASON_AS_EXPECTED,
    REASON_AUTOSCALER_APPLIED,
    REASON_AUTOSCALER_UNAVAILABLE,
    REASON_CONTAINER_FAILING,
    REASON_CRASH_LOOP,
    REASON_DEPLOYMENT_PENDING,
    REASON_IMAGE_PULL,
    REASON_MONITORING_DISABLED,
    REASON_NAME_CONFLICT,
    REASON_PROGRESS_DEADLINE,
    REASON_REPLICA_FAILURE,
    REASON_ROLLED_OUT,
    REASON_ROLLING_OUT,
    REASON_SCALED_TO_ZERO,
    REASON_SERVICE_MONITOR_APPLIED,
    REASON_SERVICE_MONITOR_CRD_MISSING,
)
from modeldeploy_operator.model import ModelDeployment
from modeldeploy_operator.replicas import desired_replicas
from modeldeploy_operator.resources import HORIZONTAL_POD_AUTOSCALER, SCALED_OBJECT, SERVICE_MONITOR

IMAGE_PULL_REASONS = frozenset({"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"})
CONFIG_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError", "RunContainerError"})
MAX_MESSAGE = 1024
# The Deployment's own condition types (apps/v1), read to explain a stuck rollout.
DEPLOYMENT_PROGRESSING = "Progressing"
DEPLOYMENT_REPLICA_FAILURE = "ReplicaFailure"


class Monitoring(Enum):
    APPLIED = "applied"
    CRD_MISSING = "crd-missing"
    DISABLED = "disabled"
    NAME_CONFLICT = "name-conflict"  # a same-named ServiceMonitor is someone else's


class Autoscaler(Enum):
    OFF = "off"  # no spec.autoscaling, or enabled: false
    APPLIED = "applied"
    UNAVAILABLE = "unavailable"  # engine keda without KEDA's ScaledObject API
    NAME_CONFLICT = "name-conflict"  # a same-named HPA/ScaledObject is someone else's


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str


@dataclass(frozen=True)
class Observed:
    """What the status is computed from."""

    deployment: Mapping[str, Any] | None
    desired_deployment_hash: str
    pods: Sequence[Mapping[str, Any]]
    monitoring: Monitoring
    client_secrets: Sequence[str]
    url: str
    selector: str
    # Why the operator would not write the children (ImageNotAllowed, NameConflict), with a message.
    blocked: tuple[str, str] | None = None
    autoscaler: Autoscaler = Autoscaler.OFF


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _container_problem(pod: Mapping[str, Any]) -> tuple[str, str] | None:
    status = pod.get("status") or {}
    pod_name = pod.get("metadata", {}).get("name", "?")
    for kind in ("initContainerStatuses", "containerStatuses"):
        for container in status.get(kind) or []:
            state = container.get("state") or {}
            waiting = state.get("waiting") or {}
            reason = waiting.get("reason", "")
            restarts = int(container.get("restartCount", 0))
            last = (container.get("lastState") or {}).get("terminated") or {}
            detail = last.get("message") or last.get("reason") or waiting.get("message") or ""
            where = f"pod {pod_name} container {container.get('name', '?')}"
            if reason == "CrashLoopBackOff":
                return REASON_CRASH_LOOP, f"{where} is crash-looping ({restarts} restarts): {detail}".rstrip(
                    ": "
                )
            if reason in IMAGE_PULL_REASONS:
                return REASON_IMAGE_PULL, f"{where}: {reason}: {waiting.get('message', '')}".rstrip(": ")
            if reason in CONFIG_REASONS:
                return REASON_CONTAINER_FAILING, f"{where}: {reason}: {waiting.get('message', '')}".rstrip(
                    ": "
                )
            terminated = state.get("terminated") or {}
            if kind == "initContainerStatuses" and terminated and int(terminated.get("exitCode", 0)) != 0:
                message = terminated.get("message") or terminated.get("reason") or ""
                return (
                    REASON_CONTAINER_FAILING,
                    f"{where} failed with exit code {terminated['exitCode']}: {message}".rstrip(": "),
                )
            if restarts > 0 and not container.get("ready") and last and int(last.get("exitCode", 0)) != 0:
                return REASON_CONTAINER_FAILING, f"{where} restarted {restarts} times: {detail}".rstrip(": ")
    return None


def _degradation(
    deployment: Mapping[str, Any] | None, pods: Iterable[Mapping[str, Any]]
) -> tuple[str, str] | None:
    for pod in sorted(pods, key=lambda p: p.get("metadata", {}).get("name", "")):
        if pod.get("metadata", {}).get("deletionTimestamp"):
            continue
        problem = _container_problem(pod)
        if problem is not None:
            return problem
    if deployment is None:
        return None
    deployment_status = deployment.get("status") or {}
    progressing = condition_of(deployment_status, DEPLOYMENT_PROGRESSING)
    if (
        progressing
        and progressing.get("status") == "False"
        and progressing.get("reason") == REASON_PROGRESS_DEADLINE
    ):
        return REASON_PROGRESS_DEADLINE, progressing.get("message", "the rollout did not progress in time")
    failure = condition_of(deployment_status, DEPLOYMENT_REPLICA_FAILURE)
    if failure and failure.get("status") == "True":
        return REASON_REPLICA_FAILURE, failure.get("message", "pods could not be created")
    return None


def _rollout(
    md: ModelDeployment, deployment: Mapping[str, Any] | None, desired_hash: str
) -> tuple[bool, str, str, int, int]:
    """(complete, reason, message, replicas, readyReplicas)."""
    desired = desired_replicas(md, deployment)
    if deployment is None:
        return False, REASON_DEPLOYMENT_PENDING, "the Deployment does not exist yet", 0, 0
    status = deployment.get("status") or {}
    total = int(status.get("replicas", 0))
    ready = int(status.get("readyReplicas", 0))
    updated = int(status.get("updatedReplicas", 0))
    available = int(status.get("availableReplicas", 0))
    annotations = deployment.get("metadata", {}).get("annotations") or {}
    if annotations.get(ANNOTATION_DESIRED_HASH) != desired_hash:
        return (
            False,
            REASON_ROLLING_OUT,
            "the Deployment does not have the current template yet",
            total,
            ready,
        )
    generation = int(deployment.get("metadata", {}).get("generation", 0))
    if int(status.get("observedGeneration", 0)) < generation:
        return (
            False,
            REASON_ROLLING_OUT,
            "the Deployment controller has not observed the current template",
            total,
            ready,
        )
    if updated == desired and ready == desired and available == desired and total == desired:
        if desired == 0:
            return True, REASON_SCALED_TO_ZERO, "scaled to zero replicas", total, ready
        return (
            True,
            REASON_ROLLED_OUT,
            f"{ready}/{desired} replicas of version {md.spec.model.version} ready",
            total,
            ready,
        )
    message = f"{updated}/{desired} replicas updated, {ready}/{desired} ready, {total} total"
    return False, REASON_ROLLING_OUT, message, total, ready


def should_inspect_pods(md: ModelDeployment, deployment: Mapping[str, Any] | None, desired_hash: str) -> bool:
    """Whether the pods may explain a rollout that is not complete (the operator reads them only then).

    A Deployment the controller has not observed yet has no pods of its template to look at; a
    complete one has every replica ready, so no pod of it can be failing.
    """
    if deployment is None or desired_replicas(md, deployment) == 0:
        return False
    status = deployment.get("status") or {}
    if int(status.get("observedGeneration", 0)) < int(deployment.get("metadata", {}).get("generation", 0)):
        return False
    complete, *_ = _rollout(md, deployment, desired_hash)
    return not complete


def _monitoring_condition(monitoring: Monitoring) -> Condition:
    if monitoring is Monitoring.APPLIED:
        return Condition(
            CONDITION_MONITORING,
            True,
            REASON_SERVICE_MONITOR_APPLIED,
            f"the {SERVICE_MONITOR.kind} is applied",
        )
    if monitoring is Monitoring.NAME_CONFLICT:
        message = f"the {SERVICE_MONITOR.kind} is not applied: a same-named one is not owned by this ModelDeployment"
        return Condition(CONDITION_MONITORING, False, REASON_NAME_CONFLICT, message)
    if monitoring is Monitoring.CRD_MISSING:
        api = f"{SERVICE_MONITOR.api_version} {SERVICE_MONITOR.kind}"
        message = f"monitoring skipped: the {api} API is not installed"
        return Condition(CONDITION_MONITORING, False, REASON_SERVICE_MONITOR_CRD_MISSING, message)
    return Condition(
        CONDITION_MONITORING,
        False,
        REASON_MONITORING_DISABLED,
        "spec.monitoring.serviceMonitor.enabled is false",
    )


def _autoscaling_condition(md: ModelDeployment, observed: Observed) -> Condition | None:
    """Present only while spec.autoscaling.enabled: says that spec.replicas is ignored, and by whom."""
    scaling = md.spec.autoscaling
    if observed.autoscaler is Autoscaler.OFF or scaling is None:
        return None
    resource = HORIZONTAL_POD_AUTOSCALER if scaling.engine == "hpa" else SCALED_OBJECT
    if observed.autoscaler is Autoscaler.UNAVAILABLE:
        current = desired_replicas(md, observed.deployment)
        message = (
            f"spec.autoscaling.engine is {scaling.engine} but the {resource.api_version} {resource.kind} API is "
            f"not installed: the Deployment keeps its current {current} replicas"
        )
        return Condition(CONDITION_AUTOSCALING, False, REASON_AUTOSCALER_UNAVAILABLE, message)
    if observed.autoscaler is Autoscaler.NAME_CONFLICT:
        message = f"the {resource.kind} {md.name} is not applied: a same-named one is not owned by this ModelDeployment"
        return Condition(CONDITION_AUTOSCALING, False, REASON_NAME_CONFLICT, message)
    message = (
        f"spec.replicas ({md.spec.replicas}) is ignored: the {resource.kind} {md.name} scales the Deployment "
        f"between {scaling.min_replicas} and {scaling.max_replicas} replicas"
    )
    return Condition(CONDITION_AUTOSCALING, True, REASON_AUTOSCALER_APPLIED, message)


def compute_conditions(md: ModelDeployment, observed: Observed) -> tuple[list[Condition], int, int]:
    conditions, replicas, ready = _core_conditions(md, observed)
    autoscaling = _autoscaling_condition(md, observed)
    if autoscaling is None:
        return conditions, replicas, ready
    if observed.autoscaler is Autoscaler.UNAVAILABLE and conditions[0].status:
        conditions[0] = Condition(CONDITION_READY, False, autoscaling.reason, autoscaling.message)
    return [*conditions, autoscaling], replicas, ready


def _core_conditions(md: ModelDeployment, observed: Observed) -> tuple[list[Condition], int, int]:
    complete, reason, message, replicas, ready = _rollout(
        md, observed.deployment, observed.desired_deployment_hash
    )
    if observed.blocked is not None:
        # Nothing progresses until the user acts: not Ready, not Progressing, Degraded (a Warning Event).
        blocked_reason, blocked_message = observed.blocked
        return (
            [
                Condition(CONDITION_READY, False, blocked_reason, blocked_message),
                Condition(CONDITION_PROGRESSING, False, blocked_reason, blocked_message),
                Condition(CONDITION_DEGRADED, True, blocked_reason, blocked_message),
                _monitoring_condition(observed.monitoring),
            ],
            replicas,
            ready,
        )
    degradation = _degradation(observed.deployment, observed.pods)
    deadline = degradation is not None and degradation[0] == REASON_PROGRESS_DEADLINE
    ready_reason, ready_message = degradation or (reason, message)
    degraded_reason, degraded_message = degradation or (REASON_AS_EXPECTED, "no failing pods")
    conditions = [
        Condition(CONDITION_READY, complete and degradation is None, ready_reason, ready_message),
        Condition(CONDITION_PROGRESSING, not complete and not deadline, reason, message),
        Condition(CONDITION_DEGRADED, degradation is not None, degraded_reason, degraded_message),
        _monitoring_condition(observed.monitoring),
    ]
    return conditions, replicas, ready


def _metav1(
    condition: Condition, previous: Mapping[str, Mapping[str, Any]], generation: int, now: datetime
) -> dict[str, Any]:
    status = "True" if condition.status else "False"
    before = previous.get(condition.type)
    unchanged = before is not None and before.get("status") == status and before.get("lastTransitionTime")
    return {
        "type": condition.type,
        "status": status,
        "reason": condition.reason,
        "message": condition.message[:MAX_MESSAGE],
        "observedGeneration": generation,
        "lastTransitionTime": before["lastTransitionTime"] if unchanged and before else format_time(now),
    }


def build_status(md: ModelDeployment, observed: Observed, now: datetime) -> dict[str, Any]:
    """The full desired ``status``; compare it with ``md.status`` and write only when it differs."""
    conditions, replicas, ready = compute_conditions(md, observed)
    previous = {c.get("type", ""): c for c in md.status.get("conditions") or []}
    rendered = [_metav1(condition, previous, md.generation, now) for condition in conditions]
    status: dict[str, Any] = {
        "observedGeneration": md.generation,
        "conditions": rendered,
        "replicas": replicas,
        "readyReplicas": ready,
        "replicasSummary": f"{ready}/{desired_replicas(md, observed.deployment)}",
        "url": observed.url,
        "selector": observed.selector,
        "clientSecrets": sorted(observed.client_secrets),
    }
    if conditions[0].status:
        status["modelVersion"] = md.spec.model.version
    elif md.status.get("modelVersion"):
        status["modelVersion"] = md.status["modelVersion"]
    return status


def condition_of(status: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    """The condition of type ``kind`` in an object's ``status`` (ours or a Deployment's), if any."""
    for condition in status.get("conditions") or []:
        if condition.get("type") == kind:
            return condition  # type: ignore[no-any-return]
    return None


def is_ready(status: Mapping[str, Any]) -> bool:
    return (condition_of(status, CONDITION_READY) or {}).get("status") == "True"


def _essence(status: Mapping[str, Any]) -> tuple[object, ...]:
    conditions = tuple(
        sorted(
            (c.get("type"), c.get("status"), c.get("reason"), c.get("observedGeneration"))
            for c in status.get("conditions") or []
        )
    )
    return (
        status.get("observedGeneration"),
        conditions,
        status.get("modelVersion"),
        status.get("url"),
        status.get("selector"),
        tuple(status.get("clientSecrets") or ()),
    )


def is_rollout_in_progress(status: Mapping[str, Any]) -> bool:
    """The status reports a rollout that is neither finished nor failing: Progressing only."""
    states = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    return (
        states.get(CONDITION_PROGRESSING) == "True"
        and states.get(CONDITION_READY) == "False"
        and states.get(CONDITION_DEGRADED) == "False"
    )


def is_significant_change(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    """False when only replica counts or condition messages moved (a rollout in progress)."""
    return _essence(before) != _essence(after)


def is_urgent_change(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    """Write at once: a condition changed, and the new status is not just a rollout in progress."""
    return is_significant_change(before, after) and not is_rollout_in_progress(after)
