"""The one reconcile: read the ModelDeployment and its children from the cache, compute the desired
state with the pure builders, and write only what differs (then the status, only if it differs).

It runs the same way for a create, an update, a resume after restart, a child's drift and the
periodic resync; running it twice in a row writes nothing the second time.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from modeldeploy_operator.builders import (
    build_client_secret,
    build_deployment,
    build_hashes_secret,
    build_service,
    build_service_monitor,
)
from modeldeploy_operator.builders.meta import client_secret_name, hashes_secret_name, selector_string
from modeldeploy_operator.builders.service import service_url
from modeldeploy_operator.config import OperatorConfig
from modeldeploy_operator.constants import (
    ANNOTATION_DESIRED_HASH,
    ANNOTATION_ROTATE,
    API_VERSION,
    APIKEYS_FILE_KEY,
    CLIENT_KEY_DATA_KEY,
    COMPONENT_CLIENT_KEY,
    CONDITION_DEGRADED,
    CONDITION_MONITORING,
    EVENT_DEGRADED,
    EVENT_KEY_EXPIRED,
    EVENT_KEY_ROTATED,
    EVENT_MONITORING_SKIPPED,
    KIND,
    LABEL_CLIENT,
    LABEL_COMPONENT,
)
from modeldeploy_operator.drift import contains
from modeldeploy_operator.keyring import KeyPlan, plan_keys
from modeldeploy_operator.kube import Kube, KubeError
from modeldeploy_operator.model import ModelDeployment
from modeldeploy_operator.status import (
    Monitoring,
    Observed,
    build_status,
    condition_of,
    is_rollout_in_progress,
    is_significant_change,
    should_inspect_pods,
)
from modeldeploy_operator.store import Store
from modeldeploy_runtime.apikeys import HashedKey, KeysFileError, MintedKey, mint_key, parse_keys_file

logger = logging.getLogger(__name__)

MAX_POD_RECHECK_SECONDS = 60.0


@dataclass
class Outcome:
    """What one reconcile did."""

    writes: int = 0
    requeue_after: float | None = None
    found: bool = True
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)

    def requeue(self, delay: float) -> None:
        """Ask to run again within ``delay`` seconds (the earliest of all such asks wins)."""
        self.requeue_after = delay if self.requeue_after is None else min(self.requeue_after, delay)


def needs_apply(desired: dict[str, Any], observed: dict[str, Any] | None) -> bool:
    if observed is None:
        return True
    wanted_hash = desired["metadata"].get("annotations", {}).get(ANNOTATION_DESIRED_HASH)
    if wanted_hash is not None:
        observed_hash = (observed.get("metadata", {}).get("annotations") or {}).get(ANNOTATION_DESIRED_HASH)
        if observed_hash != wanted_hash:
            return True
    return not contains(observed, desired)


def _secret_text(secret: dict[str, Any] | None, key: str) -> str | None:
    if secret is None:
        return None
    raw = (secret.get("data") or {}).get(key)
    if not raw:
        return None
    try:
        return base64.b64decode(raw).decode()
    except (ValueError, UnicodeDecodeError):
        return None


def _summary(status: Mapping[str, Any]) -> str:
    conditions = " ".join(f"{c['type']}={c['status']}/{c['reason']}" for c in status.get("conditions") or [])
    return f"gen={status.get('observedGeneration')} ready={status.get('readyReplicas')} {conditions}"


class MonitoringAPI:
    """Whether the ServiceMonitor API exists, asked at most once per ``ttl`` seconds."""

    def __init__(self, kube: Kube, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._kube, self._ttl, self._clock = kube, ttl, clock
        self._lock = threading.Lock()
        self._answer: tuple[float, bool] | None = None

    def available(self) -> bool:
        with self._lock:
            if self._answer is not None and self._clock() - self._answer[0] < self._ttl:
                return self._answer[1]
        answer = self._kube.has_group_resource("monitoring.coreos.com/v1", "servicemonitors")
        with self._lock:
            self._answer = (self._clock(), answer)
        return answer

    def forget(self) -> None:
        with self._lock:
            self._answer = None


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        store: Store,
        config: OperatorConfig,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        mint: Callable[[str], MintedKey] = mint_key,
    ) -> None:
        self.kube, self.store, self.config = kube, store, config
        self.clock, self.mint = clock, mint
        self.monitoring_api = MonitoringAPI(kube, config.monitoring_api_cache_seconds)
        self.monotonic = time.monotonic
        self._progress_since: dict[tuple[str, str], float] = {}
        self._unfinished_since: dict[tuple[str, str], float] = {}

    # -- writes, each followed by updating the cache with the server's answer ----------------------
    def _apply(self, obj: dict[str, Any], outcome: Outcome) -> dict[str, Any]:
        stored = self.kube.apply(obj)
        self.store.put(str(obj["kind"]), stored)
        outcome.writes += 1
        return stored

    def _delete(self, kind: str, namespace: str, name: str, outcome: Outcome) -> None:
        self.kube.delete(kind, namespace, name)
        self.store.remove(kind, namespace, name)
        outcome.writes += 1

    def _observed_secret(self, md: ModelDeployment, name: str) -> dict[str, Any] | None:
        """A Secret from the cache; when the cache has none, ask the server before acting on absence
        (a missing key Secret mints a new key, so a cache that lags must not cause a rotation).

        A ModelDeployment without a status has never been reconciled: the status is written after
        the Secrets, and the cache holds everything that existed when the operator started, so
        there is nothing the cache could have missed and no need to ask.
        """
        namespace = md.namespace
        cached = self.store.get("Secret", namespace, name)
        if cached is not None or "observedGeneration" not in md.status:
            return cached
        live = self.kube.get("Secret", namespace, name)
        if live is not None:
            self.store.put("Secret", live)
        return live

    # -- the reconcile ----------------------------------------------------------------------------
    def reconcile(self, namespace: str, name: str) -> Outcome:
        body = self.store.get(KIND, namespace, name)
        if body is None or body.get("metadata", {}).get("deletionTimestamp"):
            self._progress_since.pop((namespace, name), None)
            self._unfinished_since.pop((namespace, name), None)
            return Outcome(found=False)
        md = ModelDeployment.from_body(body)
        now = self.clock()
        outcome = Outcome()
        plan = self._reconcile_keys(md, now, outcome)
        deployment = build_deployment(md, self.config)
        observed_deployment = self.store.get("Deployment", namespace, name)
        if needs_apply(deployment, observed_deployment):
            observed_deployment = self._apply(deployment, outcome)
        service = build_service(md)
        if needs_apply(service, self.store.get("Service", namespace, name)):
            self._apply(service, outcome)
        monitoring = self._reconcile_service_monitor(md, outcome)
        if md.rotate_clients:
            patch = {"metadata": {"annotations": {ANNOTATION_ROTATE: None}}}
            body = self.kube.merge_patch(KIND, namespace, name, patch)
            self.store.put(KIND, body)
            outcome.writes += 1
        desired_hash = deployment["metadata"]["annotations"][ANNOTATION_DESIRED_HASH]
        observed = Observed(
            deployment=observed_deployment,
            desired_deployment_hash=desired_hash,
            pods=self._pods_of_unfinished_rollout(md, observed_deployment, desired_hash, outcome),
            monitoring=monitoring,
            client_secrets=[client_secret_name(md.name, client) for client in plan.plaintexts],
            url=service_url(md),
            selector=selector_string(md),
        )
        status = build_status(md, observed, now)
        if not contains(dict(md.status), status) and self._status_write_due(md, status, outcome):
            self._collect_transition_events(md, status, monitoring, outcome)  # posted with the status
            logger.debug("%s/%s: status %s -> %s", namespace, name, _summary(md.status), _summary(status))
            applied = self.kube.apply({"apiVersion": API_VERSION, "kind": KIND,
                                       "metadata": {"name": name, "namespace": namespace}, "status": status},
                                      status=True)  # fmt: skip
            self.store.put(KIND, applied)
            outcome.writes += 1
        for event_type, reason, message in outcome.events:
            self.kube.post_event(body, event_type=event_type, reason=reason, message=message, now=now)
        if plan.next_expiry is not None:
            outcome.requeue(max((plan.next_expiry - now).total_seconds(), 0.0) + 0.5)
        return outcome

    def _pods_of_unfinished_rollout(
        self, md: ModelDeployment, deployment: Mapping[str, Any] | None, desired_hash: str, outcome: Outcome
    ) -> list[dict[str, Any]]:
        """The pods, read only while the rollout is unfinished (Pods are not watched: at scale their
        events would cost more than these reads). A crash loop changes nothing on the Deployment,
        so an unfinished rollout is looked at again, every ``pod_recheck_seconds`` at first, then
        as far apart as it has lasted (at most ``MAX_POD_RECHECK_SECONDS``)."""
        key = (md.namespace, md.name)
        if not should_inspect_pods(md, deployment, desired_hash):
            self._unfinished_since.pop(key, None)
            return []
        lasted = self.monotonic() - self._unfinished_since.setdefault(key, self.monotonic())
        outcome.requeue(min(max(lasted, self.config.pod_recheck_seconds), MAX_POD_RECHECK_SECONDS))
        return self.kube.list("Pod", md.namespace, selector_string(md)).items

    def _status_write_due(self, md: ModelDeployment, status: dict[str, Any], outcome: Outcome) -> bool:
        """Write Ready, Degraded and other condition changes at once. Batch for
        ``status_debounce_seconds`` what only reports a rollout in progress (a new generation
        rolling out, replica counts, messages): a rollout is then not one status write per pod,
        and one that finishes within the window needs no Progressing write at all. Until the
        write, ``observedGeneration`` lags, which kstatus readers take as "in progress"."""
        key = (md.namespace, md.name)
        urgent = is_significant_change(md.status, status) and not is_rollout_in_progress(status)
        if urgent or self.config.status_debounce_seconds <= 0:
            self._progress_since.pop(key, None)
            return True
        since = self._progress_since.setdefault(key, self.monotonic())
        waited = self.monotonic() - since
        if waited >= self.config.status_debounce_seconds:
            self._progress_since.pop(key, None)
            return True
        outcome.requeue(self.config.status_debounce_seconds - waited)
        return False

    def _reconcile_keys(self, md: ModelDeployment, now: datetime, outcome: Outcome) -> KeyPlan:
        wanted = md.client_names
        stale_clients = [
            secret
            for secret in self.store.owned("Secret", md.namespace, md.name)
            if (secret["metadata"].get("labels") or {}).get(LABEL_COMPONENT) == COMPONENT_CLIENT_KEY
            and (secret["metadata"].get("labels") or {}).get(LABEL_CLIENT) not in wanted
        ]
        for secret in stale_clients:
            self._delete("Secret", md.namespace, secret["metadata"]["name"], outcome)
        if not md.spec.auth.enabled:
            if self.store.get("Secret", md.namespace, hashes_secret_name(md.name)) is not None:
                self._delete("Secret", md.namespace, hashes_secret_name(md.name), outcome)
            return KeyPlan(hashes=(), plaintexts={})
        hashes_secret = self._observed_secret(md, hashes_secret_name(md.name))
        observed_hashes: list[HashedKey] = []
        text = _secret_text(hashes_secret, APIKEYS_FILE_KEY)
        if text is not None:
            try:
                observed_hashes = parse_keys_file(text)
            except KeysFileError as error:
                logger.warning(
                    "%s/%s: the hashes Secret is unreadable (%s); rebuilding it", md.namespace, md.name, error
                )
        plaintexts = {
            client: _secret_text(
                self._observed_secret(md, client_secret_name(md.name, client)), CLIENT_KEY_DATA_KEY
            )
            for client in wanted
        }
        plan = plan_keys(
            wanted,
            plaintexts,
            observed_hashes,
            rotate=md.rotate_clients,
            now=now,
            grace=timedelta(seconds=self.config.key_rotation_grace_seconds),
            mint=self.mint,
        )
        # The hashes first: a new key must be accepted before any client can hold it.
        desired_hashes = build_hashes_secret(md, plan.hashes)
        if needs_apply(desired_hashes, hashes_secret):
            self._apply(desired_hashes, outcome)
        for client, plaintext in plan.plaintexts.items():
            desired = build_client_secret(md, client, plaintext)
            if needs_apply(
                desired, self.store.get("Secret", md.namespace, client_secret_name(md.name, client))
            ):
                self._apply(desired, outcome)
        previous_clients = {entry.client for entry in observed_hashes}
        for client in plan.minted:
            if client in previous_clients:
                until = (now + timedelta(seconds=self.config.key_rotation_grace_seconds)).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                )
                message = (
                    f"issued a new API key for client {client}; the previous key stays valid until {until}"
                )
                outcome.events.append(("Normal", EVENT_KEY_ROTATED, message))
        if plan.retired:
            message = f"retired {len(plan.retired)} API key(s) whose grace period ended (key ids {', '.join(plan.retired)})"
            outcome.events.append(("Normal", EVENT_KEY_EXPIRED, message))
        return plan

    def _reconcile_service_monitor(self, md: ModelDeployment, outcome: Outcome) -> Monitoring:
        enabled = md.spec.monitoring.service_monitor.enabled
        if not self.monitoring_api.available():
            return Monitoring.CRD_MISSING if enabled else Monitoring.DISABLED
        observed = self.store.get("ServiceMonitor", md.namespace, md.name)
        if not enabled:
            if observed is not None:
                self._delete("ServiceMonitor", md.namespace, md.name, outcome)
            return Monitoring.DISABLED
        desired = build_service_monitor(md)
        if needs_apply(desired, observed):
            try:
                self._apply(desired, outcome)
            except KubeError as error:
                if error.status != 404:
                    raise
                self.monitoring_api.forget()  # the CRD went away between discovery and apply
                return Monitoring.CRD_MISSING
        return Monitoring.APPLIED

    def _collect_transition_events(
        self, md: ModelDeployment, status: dict[str, Any], monitoring: Monitoring, outcome: Outcome
    ) -> None:
        """Events for meaningful transitions only: monitoring skipped, degraded."""
        before_monitoring = condition_of(md.status, CONDITION_MONITORING)
        after_monitoring = condition_of(status, CONDITION_MONITORING)
        if (
            monitoring is Monitoring.CRD_MISSING
            and after_monitoring is not None
            and (
                before_monitoring is None or before_monitoring.get("reason") != after_monitoring.get("reason")
            )
        ):
            outcome.events.append(("Normal", EVENT_MONITORING_SKIPPED, after_monitoring["message"]))
        before = condition_of(md.status, CONDITION_DEGRADED)
        after = condition_of(status, CONDITION_DEGRADED)
        if (
            after is not None
            and after["status"] == "True"
            and (before is None or before.get("status") != "True" or before.get("reason") != after["reason"])
        ):
            outcome.events.append(("Warning", EVENT_DEGRADED, f"{after['reason']}: {after['message']}"))
