"""The one reconcile: read the ModelDeployment and its children from the cache, compute the desired
state with the pure builders, and write only what differs (then the status, only if it differs).

It runs the same way for a create, an update, a resume after restart, a child's drift and the
periodic resync; running it twice in a row writes nothing the second time.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from modeldeploy_operator.apis import APIAvailability
from modeldeploy_operator.builders import (
    build_certificate,
    build_deployment,
    build_horizontal_pod_autoscaler,
    build_network_policy,
    build_scaled_object,
    build_service,
    build_service_monitor,
)
from modeldeploy_operator.builders.canary import with_model
from modeldeploy_operator.builders.meta import client_secret_name, selector_string
from modeldeploy_operator.builders.service import service_url
from modeldeploy_operator.canary import Plan as CanaryPlan
from modeldeploy_operator.canary_metrics import CounterSource
from modeldeploy_operator.canary_reconcile import CanaryRollout, decorate, rollout_changed
from modeldeploy_operator.children import Children, Outcome, needs_apply
from modeldeploy_operator.config import OperatorConfig
from modeldeploy_operator.constants import (
    ANNOTATION_DESIRED_HASH,
    ANNOTATION_ROTATE,
    REASON_IMAGE_NOT_ALLOWED,
    REASON_NAME_CONFLICT,
    REPLICAS_HANDOVER_FIELD_MANAGER,
)
from modeldeploy_operator.drift import contains
from modeldeploy_operator.events import Note, build_event, transition_notes
from modeldeploy_operator.image_policy import disallowed_image_message
from modeldeploy_operator.key_reconcile import reconcile_keys
from modeldeploy_operator.kube import KubeAPI, KubeError
from modeldeploy_operator.model import ModelDeployment
from modeldeploy_operator.ownership import conflict_message
from modeldeploy_operator.pacing import PodRecheck, StatusWritePacer
from modeldeploy_operator.replicas import applies_replicas, replicas_handover
from modeldeploy_operator.resources import (
    CERTIFICATE,
    DEPLOYMENT,
    HORIZONTAL_POD_AUTOSCALER,
    MODEL_DEPLOYMENT,
    NETWORK_POLICY,
    POD,
    SCALED_OBJECT,
    SECRET,
    SERVICE,
    SERVICE_MONITOR,
)
from modeldeploy_operator.status import (
    Autoscaler,
    Monitoring,
    Observed,
    build_status,
    is_urgent_change,
    should_inspect_pods,
)
from modeldeploy_operator.store import Store
from modeldeploy_runtime.apikeys import MintedKey, mint_key

logger = logging.getLogger(__name__)


def _summary(status: Mapping[str, Any]) -> str:
    conditions = " ".join(f"{c['type']}={c['status']}/{c['reason']}" for c in status.get("conditions") or [])
    return f"gen={status.get('observedGeneration')} ready={status.get('readyReplicas')} {conditions}"


def _blocked(conflicts: list[tuple[str, str]], image_refused: str | None) -> tuple[str, str] | None:
    """Why the children are not (all) written: a name conflict first, then a refused image."""
    if conflicts:
        return REASON_NAME_CONFLICT, conflict_message(conflicts)
    if image_refused is not None:
        return REASON_IMAGE_NOT_ALLOWED, image_refused
    return None


def post_event(kube: KubeAPI, involved: Mapping[str, Any], note: Note, now: datetime) -> None:
    """Create the Event ``note`` about the ModelDeployment ``involved``."""
    kube.create(build_event(involved, note, now, name_suffix=secrets.token_hex(8)))


class Reconciler:
    def __init__(
        self,
        kube: KubeAPI,
        store: Store,
        config: OperatorConfig,
        *,
        apis: APIAvailability | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        mint: Callable[[str], MintedKey] = mint_key,
        status_pacer: StatusWritePacer | None = None,
        pod_recheck: PodRecheck | None = None,
        counter_source: CounterSource | None = None,
    ) -> None:
        self.kube, self.store, self.config = kube, store, config
        self.clock, self.mint = clock, mint
        self.apis = apis or APIAvailability(kube, config.monitoring_api_cache_seconds)
        self.status_pacer = status_pacer or StatusWritePacer(config.status_debounce_seconds)
        self.pod_recheck = pod_recheck or PodRecheck(config.pod_recheck_seconds)
        self.children = Children(kube, store, self.apis)
        self.canary = CanaryRollout(kube, config, source=counter_source, observe=self.children.observe)

    # -- the reconcile ----------------------------------------------------------------------------
    def reconcile(self, namespace: str, name: str) -> Outcome:
        key = (namespace, name)
        body = self.store.get(MODEL_DEPLOYMENT, namespace, name)
        if body is None or body.get("metadata", {}).get("deletionTimestamp"):
            self.status_pacer.forget(key)
            self.pod_recheck.forget(key)
            return Outcome()
        md = ModelDeployment.from_body(body)
        now = self.clock()
        outcome = Outcome()
        plan = reconcile_keys(
            self.children,
            md,
            now,
            outcome,
            grace=timedelta(seconds=self.config.key_rotation_grace_seconds),
            mint=self.mint,
        )
        writable, observed_deployment = self.children.child(md, DEPLOYMENT, name, outcome)
        rollout = self.canary.plan(md, observed_deployment, now)
        serving = with_model(md, rollout.stable_model)  # the stable pods' model (spec.model unless canarying)
        deployment = build_deployment(serving, self.config)
        image_refused = disallowed_image_message(md, self.config.allowed_images)
        autoscaler = self._reconcile_autoscaler(
            md, deployment, observed_deployment if writable else None, outcome
        )
        if writable and image_refused is not None:  # the image may not run: no Deployment at all
            self.children.delete_if_ours(md, DEPLOYMENT, name, outcome)
            observed_deployment = None
        elif writable and needs_apply(deployment, observed_deployment):
            observed_deployment = self.children.apply(deployment, outcome)
        self.children.ensure(md, SERVICE, name, build_service(md), outcome)
        self._reconcile_canary_children(md, rollout, outcome)
        self._reconcile_network_policy(md, outcome)
        self._reconcile_certificate(md, outcome)
        monitoring = self._reconcile_service_monitor(md, outcome)
        keys_blocked = any(kind == SECRET.kind for kind, _ in outcome.conflicts)
        if md.rotate_clients and not keys_blocked:  # else the request waits until keys can be issued
            body = self._clear_rotate_annotation(body, outcome)
        desired_hash = deployment["metadata"]["annotations"][ANNOTATION_DESIRED_HASH]
        observed = Observed(
            deployment=observed_deployment,
            desired_deployment_hash=desired_hash,
            pods=self._pods_of_unfinished_rollout(md, observed_deployment, desired_hash, outcome),
            monitoring=monitoring,
            client_secrets=[client_secret_name(md.name, client) for client in plan.plaintexts],
            url=service_url(md),
            selector=selector_string(md),
            blocked=_blocked(outcome.conflicts, image_refused),
            autoscaler=autoscaler,
        )
        status = decorate(build_status(serving, observed, now), md, rollout, now)
        if not contains(dict(md.status), status) and self._status_write_due(md, status, outcome):
            outcome.notes += transition_notes(md.status, status, monitoring)  # posted with the status
            logger.debug("%s/%s: status %s -> %s", namespace, name, _summary(md.status), _summary(status))
            status_body = {
                "apiVersion": MODEL_DEPLOYMENT.api_version,
                "kind": MODEL_DEPLOYMENT.kind,
                "metadata": {"name": name, "namespace": namespace},
                "status": status,
            }
            self.store.put(MODEL_DEPLOYMENT, self.kube.apply(status_body, status=True))
            outcome.writes += 1
        for note in outcome.notes:
            post_event(self.kube, body, note, now)
        self._clear_canary_annotations(md, body, rollout, outcome)
        if plan.next_expiry is not None:
            outcome.requeue(max((plan.next_expiry - now).total_seconds(), 0.0) + 0.5)
        if outcome.conflicts:  # nothing tells us when the foreign object goes: look again
            outcome.requeue(self.config.conflict_recheck_seconds)
        return outcome

    def _clear_rotate_annotation(self, body: dict[str, Any], outcome: Outcome) -> dict[str, Any]:
        """Remove the rotate annotation, on the condition that the ModelDeployment is still the one
        read (its resourceVersion): a rotation requested in the meantime is then not lost. On a
        conflict, the removal is retried on the live object only while it asks for the same rotation.
        """
        metadata = body["metadata"]
        handled = (metadata.get("annotations") or {}).get(ANNOTATION_ROTATE)
        for _ in range(3):
            patch = {
                "metadata": {
                    "annotations": {ANNOTATION_ROTATE: None},
                    "resourceVersion": metadata["resourceVersion"],
                }
            }
            try:
                body = self.kube.merge_patch(MODEL_DEPLOYMENT, metadata["namespace"], metadata["name"], patch)
            except KubeError as error:
                if error.status != 409:
                    raise
                live = self.kube.get(MODEL_DEPLOYMENT, metadata["namespace"], metadata["name"])
                if (
                    live is None
                    or (live["metadata"].get("annotations") or {}).get(ANNOTATION_ROTATE) != handled
                ):
                    outcome.requeue(0.0)  # a new request: the next reconcile handles it
                    return body
                metadata = live["metadata"]
                continue
            self.store.put(MODEL_DEPLOYMENT, body)
            outcome.writes += 1
            return body
        outcome.requeue(0.0)
        return body

    def _pods_of_unfinished_rollout(
        self, md: ModelDeployment, deployment: Mapping[str, Any] | None, desired_hash: str, outcome: Outcome
    ) -> list[dict[str, Any]]:
        """The pods, read only while the rollout is unfinished, and looked at again as
        ``PodRecheck`` paces it."""
        key = (md.namespace, md.name)
        if not should_inspect_pods(md, deployment, desired_hash):
            self.pod_recheck.forget(key)
            return []
        outcome.requeue(self.pod_recheck.next_check_after(key))
        return self.kube.list(POD, md.namespace, selector_string(md)).items

    def _status_write_due(self, md: ModelDeployment, status: dict[str, Any], outcome: Outcome) -> bool:
        wait = self.status_pacer.wait_before_write(
            (md.namespace, md.name),
            urgent=is_urgent_change(md.status, status) or rollout_changed(md.status, status),
        )
        if wait > 0:
            outcome.requeue(wait)
        return wait == 0

    def _reconcile_canary_children(self, md: ModelDeployment, rollout: CanaryPlan, outcome: Outcome) -> None:
        """The canary Deployment, Service and HTTPRoute (canary_reconcile.py says which)."""
        outcome.notes += [Note(*note) for note in rollout.notes]  # posted with the status
        if rollout.requeue_after is not None:
            outcome.requeue(rollout.requeue_after)
        for resource, name, desired in self.canary.desired_children(md, rollout):
            if desired is None:
                self.children.delete_if_ours(md, resource, name, outcome)
                continue
            if resource.optional and not self.apis.available(resource):
                continue
            self.children.ensure(md, resource, name, desired, outcome)

    def _clear_canary_annotations(
        self, md: ModelDeployment, body: dict[str, Any], rollout: CanaryPlan, outcome: Outcome
    ) -> None:
        """Remove the promote/abort/retry annotations this reconcile acted on (from the object as
        the status write left it)."""
        latest = self.store.get(MODEL_DEPLOYMENT, md.namespace, md.name) or body
        cleared, patched = self.canary.clear_annotations(md, latest, rollout.handled_annotations)
        if patched is not None:
            self.store.put(MODEL_DEPLOYMENT, patched)
            outcome.writes += 1
        if not cleared:
            outcome.requeue(0.0)

    def _reconcile_network_policy(self, md: ModelDeployment, outcome: Outcome) -> None:
        if not md.spec.network_policy.enabled:
            self.children.delete_if_ours(md, NETWORK_POLICY, md.name, outcome)
            return
        self.children.ensure(md, NETWORK_POLICY, md.name, build_network_policy(md, self.config), outcome)

    def _reconcile_autoscaler(
        self,
        md: ModelDeployment,
        desired_deployment: dict[str, Any],
        deployment: dict[str, Any] | None,
        outcome: Outcome,
    ) -> Autoscaler:
        """Before the Deployment's apply: the unwanted autoscaler goes first (turning autoscaling off,
        the apply that follows takes spec.replicas back); turning it on, the replica count is handed
        over (replicas.py) before the apply that omits it, then the HPA or ScaledObject is applied.

        The cache drops managedFields, so who owns the count is read from the server, and only when
        the Deployment is about to be applied."""
        hpa, scaled_object = build_horizontal_pod_autoscaler(md), build_scaled_object(md, self.config)
        if hpa is None:
            self.children.delete_if_ours(md, HORIZONTAL_POD_AUTOSCALER, md.name, outcome)
        if scaled_object is None:
            self.children.delete_if_ours(md, SCALED_OBJECT, md.name, outcome)
        if not md.spec.autoscaled:
            return Autoscaler.OFF
        if deployment is not None and needs_apply(desired_deployment, deployment):
            live = self.kube.get(DEPLOYMENT, md.namespace, md.name)
            if live is not None and applies_replicas(live):
                handover = replicas_handover(live)
                self.children.apply(handover, outcome, field_manager=REPLICAS_HANDOVER_FIELD_MANAGER)
        resource, desired = (
            (HORIZONTAL_POD_AUTOSCALER, hpa) if hpa is not None else (SCALED_OBJECT, scaled_object)
        )
        if desired is None or not self.apis.available(resource):
            return Autoscaler.UNAVAILABLE
        writable, observed = self.children.child(md, resource, md.name, outcome)
        if not writable:
            return Autoscaler.NAME_CONFLICT
        if needs_apply(desired, observed) and not self.children.apply_optional(resource, desired, outcome):
            return Autoscaler.UNAVAILABLE
        return Autoscaler.APPLIED

    def _reconcile_certificate(self, md: ModelDeployment, outcome: Outcome) -> None:
        """cert-manager's Certificate with spec.tls.issuerRef; without its API, the pods wait for the
        Secret that someone else has to provide."""
        desired = build_certificate(md)
        if desired is None:
            self.children.delete_if_ours(md, CERTIFICATE, md.name, outcome)
            return
        if not self.apis.available(CERTIFICATE):
            return
        writable, observed = self.children.child(md, CERTIFICATE, md.name, outcome)
        if writable and needs_apply(desired, observed):
            self.children.apply_optional(CERTIFICATE, desired, outcome)

    def _reconcile_service_monitor(self, md: ModelDeployment, outcome: Outcome) -> Monitoring:
        enabled = md.spec.monitoring.service_monitor.enabled
        if not self.apis.available(SERVICE_MONITOR):
            return Monitoring.CRD_MISSING if enabled else Monitoring.DISABLED
        if not enabled:
            self.children.delete_if_ours(md, SERVICE_MONITOR, md.name, outcome)
            return Monitoring.DISABLED
        desired = build_service_monitor(md)
        writable, observed = self.children.child(md, SERVICE_MONITOR, md.name, outcome)
        if not writable:
            return Monitoring.NAME_CONFLICT
        if needs_apply(desired, observed) and not self.children.apply_optional(
            SERVICE_MONITOR, desired, outcome
        ):
            return Monitoring.CRD_MISSING
        return Monitoring.APPLIED
