"""Unit tests of the reconcile against an in-memory fake of our Kube port (no control plane).

What they pin: which writes one reconcile makes (and in which order), that a reconcile of an
object as desired writes nothing, drift repair, failure behaviour, and the pacing of status
writes and pod reads. What the API server decides is tested against the real one elsewhere.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from modeldeploy_operator.apis import APIAvailability
from modeldeploy_operator.children import Outcome
from modeldeploy_operator.config import OperatorConfig
from modeldeploy_operator.kube import KubeError
from modeldeploy_operator.pacing import MAX_POD_RECHECK_SECONDS, PodRecheck, StatusWritePacer
from modeldeploy_operator.reconcile import Reconciler
from modeldeploy_operator.resources import (
    CERTIFICATE,
    DEPLOYMENT,
    EVENT,
    MODEL_DEPLOYMENT,
    NETWORK_POLICY,
    SECRET,
    SERVICE,
    SERVICE_MONITOR,
    Resource,
)
from modeldeploy_operator.status import condition_of
from modeldeploy_operator.store import Store
from modeldeploy_runtime.apikeys import KeyVerifier, parse_keys_file
from tests.operator.factories import NOW, crash_looping_pod, md_body
from tests.operator.memory_kube import MemoryKube, Write

CONFIG = OperatorConfig(
    runtime_image="registry.example/model-runtime:test",
    status_debounce_seconds=2.0,
    pod_recheck_seconds=5.0,
    key_rotation_grace_seconds=300,
    monitoring_api_cache_seconds=10.0,
)
CHILD_WRITES = [
    Write("apply", "Secret", "iris-apikeys"),  # the hashes before any client can hold a new key
    Write("apply", "Secret", "iris-client-billing"),
    Write("apply", "Deployment", "iris"),
    Write("apply", "Service", "iris"),
]
STATUS_WRITES = [
    Write("apply-status", "ModelDeployment", "iris"),
    Write("create", "Event", "iris"),  # MonitoringSkipped: no ServiceMonitor API here
]


class ManualClock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class World:
    kube: MemoryKube
    store: Store
    reconciler: Reconciler
    ticks: ManualClock

    def reconcile(self) -> Outcome:
        return self.reconciler.reconcile("ml", "iris")

    def settle(self) -> None:
        """Reconcile, and again once a batched status is due."""
        self.reconcile()
        self.ticks.advance(self.reconciler.status_pacer.debounce_seconds)
        self.reconcile()

    def someone_edits(self, resource: Resource, name: str, patch: dict[str, Any]) -> None:
        """Another client changes an object; the watch event reaches the cache."""
        self.store.put(resource, self.kube.edit(resource, "ml", name, patch))

    def someone_deletes(self, resource: Resource, name: str) -> None:
        self.kube.remove(resource, "ml", name)
        self.store.remove(resource, "ml", name)

    def status(self) -> dict[str, Any]:
        body = self.kube.stored(MODEL_DEPLOYMENT, "ml", "iris")
        assert body is not None
        return dict(body.get("status") or {})

    def deployment_rolled_out(self, replicas: int = 1) -> None:
        """The Deployment controller finished the rollout of the current template."""
        deployment = self.kube.stored(DEPLOYMENT, "ml", "iris")
        assert deployment is not None
        self.someone_edits(
            DEPLOYMENT,
            "iris",
            {
                "status": {
                    "observedGeneration": deployment["metadata"]["generation"],
                    "replicas": replicas,
                    "readyReplicas": replicas,
                    "updatedReplicas": replicas,
                    "availableReplicas": replicas,
                }
            },
        )


def world(*, served: tuple[Resource, ...] = (), config: OperatorConfig = CONFIG, **spec: Any) -> World:
    kube = MemoryKube(served=served)
    store = Store()
    store.put(MODEL_DEPLOYMENT, kube.seed(md_body(**spec)))
    ticks = ManualClock()
    reconciler = Reconciler(
        kube,
        store,
        config,
        apis=APIAvailability(kube, config.monitoring_api_cache_seconds, clock=ticks),
        clock=lambda: NOW,
        status_pacer=StatusWritePacer(config.status_debounce_seconds, clock=ticks),
        pod_recheck=PodRecheck(config.pod_recheck_seconds, clock=ticks),
    )
    return World(kube, store, reconciler, ticks)


def created(spec: dict[str, Any] | None = None, **options: Any) -> World:
    """A ModelDeployment after its first reconciles (children, then the status once the debounce
    window passed), with the writes forgotten."""
    result = world(**options, **(spec or {}))
    result.settle()
    result.kube.writes.clear()
    result.kube.reads.clear()
    return result


def _secret_text(kube: MemoryKube, name: str, key: str) -> str:
    secret = kube.stored(SECRET, "ml", name)
    assert secret is not None
    return base64.b64decode(secret["data"][key]).decode()


def _events(kube: MemoryKube) -> list[tuple[str, str]]:
    return [
        (obj["type"], obj["reason"])
        for (kind, _, _), obj in sorted(kube.objects.items())
        if kind == EVENT.kind
    ]


# -- create ----------------------------------------------------------------------------------------
def test_the_first_reconcile_creates_every_child_then_the_status_after_the_debounce() -> None:
    w = world()
    outcome = w.reconcile()
    assert w.kube.writes == CHILD_WRITES
    assert outcome.writes == len(CHILD_WRITES)
    # A fresh object reports only a rollout in progress: its first status waits for the window.
    assert outcome.requeue_after == pytest.approx(CONFIG.status_debounce_seconds)
    for resource, name in ((DEPLOYMENT, "iris"), (SERVICE, "iris"), (SECRET, "iris-apikeys")):
        assert w.store.get(resource, "ml", name) == w.kube.stored(
            resource, "ml", name
        )  # the answer is cached
    w.ticks.advance(CONFIG.status_debounce_seconds)
    outcome = w.reconcile()
    assert [
        Write(x.verb, x.kind, x.name.split(".")[0]) for x in w.kube.writes
    ] == CHILD_WRITES + STATUS_WRITES
    assert outcome.writes == 1  # the Event is not desired state
    status = w.status()
    assert status["observedGeneration"] == 1
    assert status["clientSecrets"] == ["iris-client-billing"]
    assert (condition_of(status, "Progressing") or {}).get("status") == "True"
    assert (condition_of(status, "Monitoring") or {}).get("reason") == "ServiceMonitorCRDMissing"
    assert _events(w.kube) == [("Normal", "MonitoringSkipped")]
    key = _secret_text(w.kube, "iris-client-billing", "api-key")
    hashes = parse_keys_file(_secret_text(w.kube, "iris-apikeys", "keys.json"))
    assert KeyVerifier(hashes).verify(key, NOW) == "billing"
    assert all(key not in str(entry) for entry in hashes)


def test_a_child_the_cache_lacks_is_asked_for_once_before_it_is_created_then_never() -> None:
    w = world()
    w.reconcile()  # the cache holds only our labelled objects: a same-named foreign one must be seen
    assert sorted(read for read in w.kube.reads if read[0] == "get") == [
        ("get", "Deployment"), ("get", "Secret"), ("get", "Secret"), ("get", "Service"),
    ]  # fmt: skip
    w.kube.reads.clear()
    w.reconcile()
    assert [read for read in w.kube.reads if read[0] == "get"] == []


# -- no-op -----------------------------------------------------------------------------------------
def test_a_second_reconcile_writes_nothing() -> None:
    w = created()
    outcome = w.reconcile()
    assert (outcome.writes, w.kube.writes) == (0, [])
    assert outcome.notes == []


def test_a_ready_object_reconciled_again_writes_nothing_and_asks_for_no_pods() -> None:
    w = created()
    w.deployment_rolled_out()
    w.reconcile()
    assert (condition_of(w.status(), "Ready") or {}).get("status") == "True"
    w.kube.writes.clear()
    w.kube.reads.clear()
    for _ in range(3):
        assert w.reconcile() == Outcome()
    assert w.kube.writes == []
    assert ("list", "Pod") not in w.kube.reads


# -- readiness and status pacing -------------------------------------------------------------------
def test_ready_is_written_at_once() -> None:
    w = created()
    w.deployment_rolled_out()
    outcome = w.reconcile()
    assert w.kube.writes == [Write("apply-status", "ModelDeployment", "iris")]
    status = w.status()
    assert (condition_of(status, "Ready") or {}).get("status") == "True"
    assert status["modelVersion"] == "3"
    assert outcome.requeue_after is None


def test_a_rollout_in_progress_is_batched_for_the_debounce_window() -> None:
    w = created()
    w.deployment_rolled_out()
    w.reconcile()
    w.kube.writes.clear()
    w.someone_edits(MODEL_DEPLOYMENT, "iris", {"spec": {"replicas": 2}, "metadata": {"generation": 2}})
    outcome = w.reconcile()
    assert w.kube.writes == [Write("apply", "Deployment", "iris")]  # the status waits
    assert outcome.requeue_after == pytest.approx(CONFIG.status_debounce_seconds)
    w.ticks.advance(CONFIG.status_debounce_seconds / 2)
    assert w.reconcile().requeue_after == pytest.approx(CONFIG.status_debounce_seconds / 2)
    assert w.kube.writes == [Write("apply", "Deployment", "iris")]
    w.ticks.advance(CONFIG.status_debounce_seconds / 2)
    w.reconcile()
    assert w.kube.writes[-1] == Write("apply-status", "ModelDeployment", "iris")
    status = w.status()
    assert status["observedGeneration"] == 2
    assert (condition_of(status, "Progressing") or {}).get("status") == "True"
    assert status["replicasSummary"] == "1/2"


def test_no_debounce_writes_a_rollout_in_progress_at_once() -> None:
    w = created(config=OperatorConfig(status_debounce_seconds=0.0))
    w.deployment_rolled_out()
    w.reconcile()
    w.kube.writes.clear()
    w.someone_edits(MODEL_DEPLOYMENT, "iris", {"spec": {"replicas": 2}, "metadata": {"generation": 2}})
    w.reconcile()
    assert Write("apply-status", "ModelDeployment", "iris") in w.kube.writes


def test_an_unfinished_rollout_has_its_pods_looked_at_ever_less_often() -> None:
    w = created(config=OperatorConfig(status_debounce_seconds=0.0, pod_recheck_seconds=5.0))
    deployment = w.kube.stored(DEPLOYMENT, "ml", "iris")
    assert deployment is not None
    generation = deployment["metadata"]["generation"]
    w.someone_edits(DEPLOYMENT, "iris", {"status": {"observedGeneration": generation, "replicas": 1}})
    delays = []
    for step in (0.0, 20.0, 100.0):
        w.ticks.advance(step)
        w.kube.reads.clear()
        delays.append(w.reconcile().requeue_after)
        assert ("list", "Pod") in w.kube.reads
    assert delays == [5.0, 20.0, MAX_POD_RECHECK_SECONDS]
    w.deployment_rolled_out()
    w.kube.reads.clear()
    assert w.reconcile().requeue_after is None
    assert ("list", "Pod") not in w.kube.reads


def test_a_crash_looping_pod_makes_it_degraded_with_one_warning() -> None:
    w = created()
    deployment = w.kube.stored(DEPLOYMENT, "ml", "iris")
    assert deployment is not None
    w.someone_edits(
        DEPLOYMENT, "iris", {"status": {"observedGeneration": deployment["metadata"]["generation"]}}
    )
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    w.kube.seed(crash_looping_pod(labels=pod_labels))
    w.reconcile()
    w.reconcile()
    degraded = condition_of(w.status(), "Degraded") or {}
    assert (degraded.get("status"), degraded.get("reason")) == ("True", "CrashLoopBackOff")
    assert "model failed to load" in degraded.get("message", "")
    assert (condition_of(w.status(), "Ready") or {}).get("status") == "False"
    assert _events(w.kube).count(("Warning", "Degraded")) == 1


# -- drift -----------------------------------------------------------------------------------------
def test_an_edited_deployment_is_put_back_with_one_write() -> None:
    w = created()
    w.someone_edits(
        DEPLOYMENT,
        "iris",
        {"spec": {"template": {"spec": {"containers": [{"name": "runtime", "image": "evil"}]}}}},
    )
    assert w.reconcile().writes == 1
    assert w.kube.writes == [Write("apply", "Deployment", "iris")]
    restored = w.kube.stored(DEPLOYMENT, "ml", "iris")
    assert restored is not None
    assert restored["spec"]["template"]["spec"]["containers"][0]["image"] == CONFIG.runtime_image


def test_a_removed_annotation_or_label_counts_as_drift() -> None:
    w = created()
    w.someone_edits(SERVICE, "iris", {"metadata": {"annotations": {"modeldeploy.io/desired-hash": None}}})
    w.someone_edits(
        SECRET, "iris-client-billing", {"metadata": {"labels": {"app.kubernetes.io/part-of": "other"}}}
    )
    w.reconcile()
    assert sorted(w.kube.writes, key=str) == sorted(
        [Write("apply", "Service", "iris"), Write("apply", "Secret", "iris-client-billing")], key=str
    )


def test_a_deleted_service_is_recreated() -> None:
    w = created()
    w.someone_deletes(SERVICE, "iris")
    w.reconcile()
    assert w.kube.writes == [Write("apply", "Service", "iris")]


def test_a_deleted_hashes_secret_is_rebuilt_from_the_client_key_without_a_rotation() -> None:
    w = created()
    key = _secret_text(w.kube, "iris-client-billing", "api-key")
    w.someone_deletes(SECRET, "iris-apikeys")
    w.reconcile()
    assert w.kube.writes == [Write("apply", "Secret", "iris-apikeys")]
    assert _secret_text(w.kube, "iris-client-billing", "api-key") == key
    hashes = parse_keys_file(_secret_text(w.kube, "iris-apikeys", "keys.json"))
    assert KeyVerifier(hashes).verify(key, NOW) == "billing"


def test_a_secret_the_cache_lacks_is_asked_for_before_a_new_key_is_minted() -> None:
    w = created()
    w.store.remove(SECRET, "ml", "iris-client-billing")  # a lagging cache; the Secret still exists
    w.reconcile()
    assert ("get", "Secret") in w.kube.reads
    assert w.kube.writes == []
    assert w.store.get(SECRET, "ml", "iris-client-billing") is not None


# -- keys ------------------------------------------------------------------------------------------
def test_a_rotation_request_issues_a_new_key_keeps_the_old_one_for_the_grace_and_clears_the_request() -> None:
    w = created()
    old_key = _secret_text(w.kube, "iris-client-billing", "api-key")
    w.someone_edits(
        MODEL_DEPLOYMENT, "iris", {"metadata": {"annotations": {"modeldeploy.io/rotate": "billing"}}}
    )
    outcome = w.reconcile()
    new_key = _secret_text(w.kube, "iris-client-billing", "api-key")
    assert new_key != old_key
    verifier = KeyVerifier(parse_keys_file(_secret_text(w.kube, "iris-apikeys", "keys.json")))
    grace = timedelta(seconds=CONFIG.key_rotation_grace_seconds)
    assert verifier.verify(old_key, NOW + grace - timedelta(seconds=1)) == "billing"
    assert verifier.verify(old_key, NOW + grace) is None
    assert verifier.verify(new_key, NOW + grace) == "billing"
    body = w.kube.stored(MODEL_DEPLOYMENT, "ml", "iris")
    assert body is not None
    assert "modeldeploy.io/rotate" not in (body["metadata"].get("annotations") or {})
    assert Write("patch", "ModelDeployment", "iris") in w.kube.writes
    assert ("Normal", "APIKeyRotated") in _events(w.kube)
    assert outcome.requeue_after == pytest.approx(grace.total_seconds() + 0.5)


def test_removing_a_client_deletes_its_secret_and_disabling_auth_deletes_all() -> None:
    w = created({"auth": {"clients": [{"name": "billing"}, {"name": "search"}]}})
    w.someone_edits(MODEL_DEPLOYMENT, "iris", {"spec": {"auth": {"clients": [{"name": "billing"}]}}})
    w.reconcile()
    assert Write("delete", "Secret", "iris-client-search") in w.kube.writes
    assert w.kube.stored(SECRET, "ml", "iris-client-search") is None
    w.someone_edits(MODEL_DEPLOYMENT, "iris", {"spec": {"auth": {"enabled": False}}})
    w.settle()
    assert {name for (kind, _, name) in w.kube.objects if kind == "Secret"} == set()
    assert w.status()["clientSecrets"] == []


# -- the optional ServiceMonitor API ---------------------------------------------------------------
def test_with_the_servicemonitor_api_the_monitor_is_applied_and_removed_when_disabled() -> None:
    w = world(served=(SERVICE_MONITOR,))
    w.settle()
    assert Write("apply", "ServiceMonitor", "iris") in w.kube.writes
    assert (condition_of(w.status(), "Monitoring") or {}).get("reason") == "ServiceMonitorApplied"
    assert _events(w.kube) == []
    w.someone_edits(
        MODEL_DEPLOYMENT, "iris", {"spec": {"monitoring": {"serviceMonitor": {"enabled": False}}}}
    )
    w.settle()
    assert w.kube.stored(SERVICE_MONITOR, "ml", "iris") is None
    assert (condition_of(w.status(), "Monitoring") or {}).get("reason") == "Disabled"


def test_the_servicemonitor_api_is_asked_at_most_once_per_cache_period() -> None:
    w = created()
    for _ in range(3):
        w.reconcile()
    assert w.kube.reads.count(("discovery", "ServiceMonitor")) == 0  # answered within the period
    w.ticks.advance(CONFIG.monitoring_api_cache_seconds)
    w.reconcile()
    assert w.kube.reads.count(("discovery", "ServiceMonitor")) == 1


def test_a_crd_removed_between_discovery_and_apply_reads_as_missing_and_is_asked_again() -> None:
    w = world(served=(SERVICE_MONITOR,), config=OperatorConfig(status_debounce_seconds=0.0))
    w.kube.fail("apply", "ServiceMonitor", 404)
    w.reconcile()
    assert (condition_of(w.status(), "Monitoring") or {}).get("reason") == "ServiceMonitorCRDMissing"
    w.kube.reads.clear()
    w.reconcile()  # the answer was forgotten: discovery again, and now the apply works
    assert ("discovery", "ServiceMonitor") in w.kube.reads
    assert w.kube.stored(SERVICE_MONITOR, "ml", "iris") is not None


# -- failures --------------------------------------------------------------------------------------
def test_a_conflict_stops_the_reconcile_and_the_next_one_finishes_the_work() -> None:
    w = world()
    w.kube.fail("apply", "Deployment", 409, "Apply failed with 1 conflict")
    with pytest.raises(KubeError) as failure:
        w.reconcile()
    assert failure.value.status == 409
    assert [x.kind for x in w.kube.writes] == ["Secret", "Secret"]  # the keys went first; no status
    w.settle()
    assert w.kube.stored(DEPLOYMENT, "ml", "iris") is not None
    assert w.status()["observedGeneration"] == 1
    assert _secret_text(w.kube, "iris-client-billing", "api-key")  # the key minted once is kept
    assert [x.name for x in w.kube.writes_of("apply", "Secret")] == ["iris-apikeys", "iris-client-billing"]


def test_a_deleted_or_deleting_object_is_left_alone() -> None:
    w = created()
    w.store.put(
        MODEL_DEPLOYMENT,
        w.kube.edit(
            MODEL_DEPLOYMENT, "ml", "iris", {"metadata": {"deletionTimestamp": "2026-01-01T12:00:00Z"}}
        ),
    )
    assert w.reconcile() == Outcome()
    w.store.remove(MODEL_DEPLOYMENT, "ml", "iris")
    assert w.reconcile() == Outcome()
    assert w.kube.writes == []


def test_a_rotation_requested_while_one_is_handled_is_not_lost() -> None:
    w = created()
    w.someone_edits(
        MODEL_DEPLOYMENT, "iris", {"metadata": {"annotations": {"modeldeploy.io/rotate": "billing"}}}
    )
    # A second request lands on the server after the reconcile read the first (the cache lags).
    w.kube.edit(
        MODEL_DEPLOYMENT, "ml", "iris", {"metadata": {"annotations": {"modeldeploy.io/rotate": "search"}}}
    )
    outcome = w.reconcile()
    body = w.kube.stored(MODEL_DEPLOYMENT, "ml", "iris")
    assert body is not None
    assert body["metadata"]["annotations"]["modeldeploy.io/rotate"] == "search"
    assert Write("patch", "ModelDeployment", "iris") not in w.kube.writes
    assert outcome.requeue_after == 0.0


def test_a_rotation_annotation_is_removed_even_when_something_else_changed_meanwhile() -> None:
    w = created()
    w.someone_edits(
        MODEL_DEPLOYMENT, "iris", {"metadata": {"annotations": {"modeldeploy.io/rotate": "billing"}}}
    )
    w.kube.edit(MODEL_DEPLOYMENT, "ml", "iris", {"metadata": {"labels": {"team": "ml"}}})
    w.reconcile()
    body = w.kube.stored(MODEL_DEPLOYMENT, "ml", "iris")
    assert body is not None
    assert "modeldeploy.io/rotate" not in (body["metadata"].get("annotations") or {})
    assert body["metadata"]["labels"] == {"team": "ml"}


# -- allowedImages ---------------------------------------------------------------------------------
ALLOWED = OperatorConfig(allowed_images=("registry.example/models/*",), status_debounce_seconds=0.0)


def test_an_image_outside_allowed_images_gets_no_deployment_and_says_why() -> None:
    w = world(config=ALLOWED, runtime={"image": "evil.example/miner:1"})
    w.settle()
    assert w.kube.stored(DEPLOYMENT, "ml", "iris") is None
    assert not w.kube.writes_of(kind="Deployment")
    ready = condition_of(w.status(), "Ready") or {}
    assert (ready.get("status"), ready.get("reason")) == ("False", "ImageNotAllowed")
    assert "spec.runtime.image 'evil.example/miner:1' is not allowed" in ready["message"]
    assert "registry.example/models/*" in ready["message"]
    assert ("Warning", "Degraded") in _events(w.kube)


def test_an_allowed_image_is_deployed_and_a_disallowed_edit_removes_the_deployment() -> None:
    w = world(config=ALLOWED, runtime={"image": "registry.example/models/runtime:2"})
    w.settle()
    assert w.kube.stored(DEPLOYMENT, "ml", "iris") is not None
    w.someone_edits(MODEL_DEPLOYMENT, "iris", {"spec": {"runtime": {"image": "registry.example/other:1"}}})
    w.settle()
    assert w.kube.stored(DEPLOYMENT, "ml", "iris") is None
    assert (condition_of(w.status(), "Ready") or {}).get("reason") == "ImageNotAllowed"


def test_without_allowed_images_every_image_runs() -> None:
    w = world(runtime={"image": "anything.example/x:1"})
    w.settle()
    assert w.kube.stored(DEPLOYMENT, "ml", "iris") is not None


# -- NetworkPolicy ---------------------------------------------------------------------------------
def test_a_network_policy_is_applied_when_enabled_and_deleted_when_disabled() -> None:
    w = world(
        networkPolicy={"enabled": True, "allowFrom": [{"podSelector": {"matchLabels": {"app": "web"}}}]}
    )
    w.settle()
    assert Write("apply", "NetworkPolicy", "iris") in w.kube.writes
    w.kube.writes.clear()
    w.reconcile()
    assert w.kube.writes_of("apply") == []  # as desired: nothing written
    w.someone_edits(MODEL_DEPLOYMENT, "iris", {"spec": {"networkPolicy": {"enabled": False}}})
    w.settle()
    assert w.kube.stored(NETWORK_POLICY, "ml", "iris") is None
    assert Write("delete", "NetworkPolicy", "iris") in w.kube.writes


def test_no_network_policy_by_default() -> None:
    w = world()
    w.settle()
    assert w.kube.stored(NETWORK_POLICY, "ml", "iris") is None
    assert not w.kube.writes_of(kind="NetworkPolicy")


# -- cert-manager ----------------------------------------------------------------------------------
ISSUED = {"secretName": "iris-tls", "issuerRef": {"name": "ca"}}


def test_an_issuer_ref_applies_a_certificate_where_cert_manager_is_installed() -> None:
    w = world(served=(CERTIFICATE,), tls=ISSUED)
    w.settle()
    assert Write("apply", "Certificate", "iris") in w.kube.writes
    w.someone_edits(MODEL_DEPLOYMENT, "iris", {"spec": {"tls": {"issuerRef": None}}})
    w.settle()
    assert w.kube.stored(CERTIFICATE, "ml", "iris") is None


def test_without_cert_manager_or_an_issuer_ref_no_certificate_is_written_nor_asked_about() -> None:
    w = world(tls=ISSUED)
    w.settle()
    assert not w.kube.writes_of(kind="Certificate")
    plain = world()
    plain.settle()
    assert ("discovery", "Certificate") not in plain.kube.reads


# -- never adopt -----------------------------------------------------------------------------------
def _foreign(resource: Resource, name: str, **extra: Any) -> dict[str, Any]:
    """Someone else's object: no owner reference to the ModelDeployment (maybe even our labels)."""
    return {"apiVersion": resource.api_version, "kind": resource.kind,
            "metadata": {"name": name, "namespace": "ml", **extra}, "data": {"api-key": "dGhlaXJz"}}  # fmt: skip


FOREIGN_CASES = {
    "Service": (SERVICE, "iris"),
    "Deployment": (DEPLOYMENT, "iris"),
    "hashes Secret": (SECRET, "iris-apikeys"),
    "client Secret": (SECRET, "iris-client-billing"),
    "ServiceMonitor": (SERVICE_MONITOR, "iris"),
    "NetworkPolicy": (NETWORK_POLICY, "iris"),
}


@pytest.mark.parametrize("case", sorted(FOREIGN_CASES))
def test_a_foreign_same_named_object_is_left_alone_and_reported(case: str) -> None:
    resource, name = FOREIGN_CASES[case]
    w = world(served=(SERVICE_MONITOR,), networkPolicy={"enabled": True})
    foreign = w.kube.seed(_foreign(resource, name))
    w.settle()
    assert w.kube.stored(resource, "ml", name) == foreign, "the foreign object was written to"
    assert not [x for x in w.kube.writes if (x.kind, x.name) == (resource.kind, name)]
    ready = condition_of(w.status(), "Ready") or {}
    assert (ready.get("status"), ready.get("reason")) == ("False", "NameConflict")
    assert f"{resource.kind} {name}" in ready["message"]
    assert ("Warning", "Degraded") in _events(w.kube)


def test_a_labelled_object_of_another_owner_is_not_ours_either() -> None:
    w = world()
    labels = {
        "app.kubernetes.io/managed-by": "modeldeploy-operator",
        "modeldeploy.io/model-deployment": "iris",
    }
    owner = {"apiVersion": "modeldeploy.io/v1alpha1", "kind": "ModelDeployment", "name": "iris",
             "uid": "an-earlier-iris", "controller": True}  # fmt: skip
    foreign = w.kube.seed(_foreign(SERVICE, "iris", labels=labels, ownerReferences=[owner]))
    w.store.put(SERVICE, foreign)  # labelled: the watch brought it into the cache
    w.settle()
    assert w.kube.stored(SERVICE, "ml", "iris") == foreign
    assert (condition_of(w.status(), "Ready") or {}).get("reason") == "NameConflict"


def test_a_name_conflict_clears_by_itself_once_the_foreign_object_is_gone() -> None:
    w = world()
    w.kube.seed(_foreign(SERVICE, "iris"))
    outcome = w.reconcile()
    assert outcome.requeue_after is not None
    assert outcome.requeue_after <= CONFIG.conflict_recheck_seconds
    w.kube.remove(SERVICE, "ml", "iris")
    w.settle()
    service = w.kube.stored(SERVICE, "ml", "iris")
    assert service is not None
    assert service["spec"]["type"] == "ClusterIP"
    assert (condition_of(w.status(), "Ready") or {}).get("reason") != "NameConflict"


def test_a_rotation_request_waits_while_a_key_secret_is_someone_elses() -> None:
    w = created()
    w.someone_deletes(SECRET, "iris-apikeys")
    w.kube.seed(_foreign(SECRET, "iris-apikeys"))
    w.someone_edits(
        MODEL_DEPLOYMENT, "iris", {"metadata": {"annotations": {"modeldeploy.io/rotate": "billing"}}}
    )
    w.reconcile()
    body = w.kube.stored(MODEL_DEPLOYMENT, "ml", "iris")
    assert body is not None
    assert body["metadata"]["annotations"]["modeldeploy.io/rotate"] == "billing"
