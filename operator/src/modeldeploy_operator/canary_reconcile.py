"""The canary rollout's part of the reconcile: read what the state machine needs, ask it for a plan,
read the counters when it wants them, and write the canary's children.

``Reconciler.reconcile`` calls ``plan()`` before it builds the stable Deployment (from
``plan.stable_model``), ``apply()`` after the stable Deployment and Service, and ``decorate()`` on
the status it computed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from modeldeploy_operator.builders.canary import (
    build_canary_deployment,
    build_canary_service,
    build_http_route,
    canary_name,
    with_model,
)
from modeldeploy_operator.builders.deployment import build_deployment
from modeldeploy_operator.canary import (
    ABORTED,
    IDLE,
    Observed,
    Plan,
    RolloutState,
    canary_replicas,
    decide,
    rolling_update_plan,
    to_status,
)
from modeldeploy_operator.canary_metrics import CounterSource, PodScraper, PrometheusSource, SampleError
from modeldeploy_operator.config import OperatorConfig
from modeldeploy_operator.constants import (
    ANNOTATION_DESIRED_HASH,
    CONDITION_DEGRADED,
    CONDITION_PROGRESSING,
    LABEL_MODEL_DEPLOYMENT,
    REASON_CANARY_ABORTED,
    REASON_CANARY_IN_PROGRESS,
)
from modeldeploy_operator.kube import KubeAPI, KubeError
from modeldeploy_operator.model import ModelDeployment
from modeldeploy_operator.resources import DEPLOYMENT, HTTP_ROUTE, MODEL_DEPLOYMENT, POD, SERVICE
from modeldeploy_operator.status import MAX_MESSAGE, format_time

logger = logging.getLogger(__name__)


def counter_source(config: OperatorConfig) -> CounterSource:
    if config.canary_prometheus_url:
        return PrometheusSource(config.canary_prometheus_url)
    return PodScraper(timeout=config.canary_scrape_timeout_seconds)


def rolled_out(deployment: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> bool:
    """The Deployment carries ``desired``'s template (hash) and every replica is updated and ready."""
    if deployment is None:
        return False
    want = desired["metadata"]["annotations"][ANNOTATION_DESIRED_HASH]
    if (deployment.get("metadata", {}).get("annotations") or {}).get(ANNOTATION_DESIRED_HASH) != want:
        return False
    status = deployment.get("status") or {}
    if int(status.get("observedGeneration", 0)) < int(deployment["metadata"].get("generation", 0)):
        return False
    replicas = int(desired["spec"]["replicas"])
    counts = ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")
    return all(int(status.get(key, 0)) == replicas for key in counts)


def rollout_changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    """The rollout moved (phase or step): written at once, not debounced like replica counts."""
    old, new = before.get("rollout") or {}, after.get("rollout") or {}
    keys = ("phase", "step", "stepStartedAt", "canaryVersion")
    return any(old.get(key) != new.get(key) for key in keys)


class CanaryRollout:
    """The canary part of one reconcile (its I/O goes through the reconciler's callbacks)."""

    def __init__(
        self,
        kube: KubeAPI,
        config: OperatorConfig,
        *,
        source: CounterSource | None = None,
        observe: Callable[[ModelDeployment, Any, str], dict[str, Any] | None],
    ) -> None:
        self.kube, self.config = kube, config
        self.source = source or counter_source(config)
        self.observe = observe  # (md, resource, name) -> the observed child, if ours

    def plan(self, md: ModelDeployment, stable_deployment: Mapping[str, Any] | None, now: datetime) -> Plan:
        if not md.spec.rollout.is_canary:
            return rolling_update_plan(md)
        state = RolloutState.from_status(md.status)
        spec_replicas = (stable_deployment or {}).get("spec", {}).get("replicas")
        stable_replicas = int(spec_replicas if spec_replicas is not None else md.spec.replicas)
        canary = md.spec.rollout.canary
        if canary is None:  # is_canary says it is not
            return rolling_update_plan(md)
        stable_model = state.stable_model or md.spec.model
        step = min(max(state.step, 1), len(canary.steps))
        expected_canary = build_canary_deployment(
            md,
            state.canary_model or md.spec.model,
            canary_replicas(canary.steps[step - 1].weight, stable_replicas),
            self.config,
        )
        observed = Observed(
            stable_replicas=stable_replicas,
            stable_rolled_out=rolled_out(
                stable_deployment, build_deployment(with_model(md, stable_model), self.config)
            ),
            canary_ready=rolled_out(self.observe(md, DEPLOYMENT, canary_name(md)), expected_canary),
        )
        result = decide(md, state, observed, now)
        if result.wants_samples:
            pods = self.kube.list(POD, md.namespace, f"{LABEL_MODEL_DEPLOYMENT}={md.name}").items
            try:
                samples = self.source.sample(md.namespace, md.name, pods)
            except SampleError as error:
                logger.warning("%s/%s: %s", md.namespace, md.name, error)
                return result
            result = decide(md, state, observed, now, samples)
        return result

    def desired_children(
        self, md: ModelDeployment, plan: Plan
    ) -> list[tuple[Any, str, dict[str, Any] | None]]:
        """(resource, name, desired body or None to delete) for the canary Deployment, Service and route."""
        canary = md.spec.rollout.canary if md.spec.rollout.is_canary else None
        route = canary.http_route if canary is not None else None
        running = plan.canary_model is not None
        replicas = 0 if plan.aborted else plan.canary_replicas
        deployment = (
            build_canary_deployment(md, plan.canary_model, replicas, self.config)
            if plan.canary_model is not None
            else None
        )
        service = build_canary_service(md) if running and route is not None else None
        children: list[tuple[Any, str, dict[str, Any] | None]] = [
            (DEPLOYMENT, canary_name(md), deployment),
            (SERVICE, canary_name(md), service),
        ]
        if route is not None:
            weight = plan.weight if running and not plan.aborted else 0
            children.append((HTTP_ROUTE, route.name, build_http_route(md, route, weight)))
        return children

    def clear_annotations(
        self, md: ModelDeployment, latest: Mapping[str, Any], keys: tuple[str, ...]
    ) -> tuple[bool, dict[str, Any] | None]:
        """Remove the handled request annotations from ``latest`` (the object after this reconcile's
        writes), on the condition that it is still that object and each still holds the value acted
        on: a request made in the meantime is then left for the next reconcile.

        (done, the patched object if one was written); not done on a conflict."""
        metadata = latest["metadata"]
        current = metadata.get("annotations") or {}
        handled = [key for key in keys if key in current and current[key] == md.annotations.get(key)]
        if not handled:
            return True, None
        patch = {
            "metadata": {
                "annotations": dict.fromkeys(handled),
                "resourceVersion": metadata["resourceVersion"],
            }
        }
        try:
            patched = self.kube.merge_patch(MODEL_DEPLOYMENT, metadata["namespace"], metadata["name"], patch)
        except KubeError as error:
            if error.status != 409:
                raise
            return False, None
        return True, patched


def decorate(status: dict[str, Any], md: ModelDeployment, plan: Plan, now: datetime) -> dict[str, Any]:
    """``status`` with ``status.rollout`` and, during a canary, Progressing (and Degraded when aborted)."""
    if not md.spec.rollout.is_canary:
        return status
    canary = md.spec.rollout.canary
    state = plan.state
    status = {**status, "rollout": to_status(plan, canary, len(canary.steps) if canary else 0)}
    overrides: dict[str, tuple[str, str, str]] = {}
    if state.phase == ABORTED:
        overrides[CONDITION_DEGRADED] = ("True", REASON_CANARY_ABORTED, state.message)
    elif state.phase != IDLE:
        overrides[CONDITION_PROGRESSING] = ("True", REASON_CANARY_IN_PROGRESS, state.message)
    previous = {c.get("type"): c for c in md.status.get("conditions") or []}
    conditions = []
    for computed in status.get("conditions") or []:
        condition = computed
        override = overrides.get(condition["type"])
        if override is not None:
            value, reason, message = override
            before = previous.get(condition["type"]) or {}
            if before.get("status") == value and before.get("lastTransitionTime"):
                since = before["lastTransitionTime"]
            elif condition["status"] == value:
                since = condition["lastTransitionTime"]
            else:
                since = format_time(now)
            condition = {
                **condition,
                "status": value,
                "reason": reason,
                "message": message[:MAX_MESSAGE],
                "lastTransitionTime": since,
            }
        conditions.append(condition)
    status["conditions"] = conditions
    return status
