"""The operator against the real control plane: children, readiness, rollouts, idempotence,
drift, garbage collection, scaling, degradation and Pod Security admission."""

from __future__ import annotations

import json
import time
from collections import Counter

from modeldeploy_devenv.operator_process import OperatorProcess
from modeldeploy_operator.config import OperatorConfig
from tests.conftest import Cluster
from tests.operator.conftest import StartOperator
from tests.operator.factories import manifest
from tests.operator.helpers import (
    api_server_writes,
    condition,
    crash_loop_first_pod,
    get,
    holds_for,
    wait_ready,
    wait_status,
)
from tests.support import wait_until

CHILD_KINDS = ("deployment", "service", "secret")
# Clearly longer than the status debounce (a batched status write comes at most that long after a
# reconcile), so a quiet window this long would have seen it.
QUIET_SECONDS = 2 * OperatorConfig().status_debounce_seconds + 1

RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "privileged": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "runAsGroup": 65532,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def children(cluster: Cluster, namespace: str, name: str) -> dict[str, str]:
    """kind/name -> resourceVersion of every child of ``name`` (and the ModelDeployment itself)."""
    items = cluster.get_json(
        ",".join(CHILD_KINDS), "-n", namespace, "-l", f"modeldeploy.io/model-deployment={name}"
    )
    versions = {
        f"{i['kind']}/{i['metadata']['name']}": i["metadata"]["resourceVersion"] for i in items["items"]
    }
    body = get(cluster, namespace, "mdep", name)
    assert body is not None
    versions[f"ModelDeployment/{name}"] = body["metadata"]["resourceVersion"]
    return versions


def test_create_makes_restricted_labelled_children_and_becomes_ready(
    crd: Cluster, namespace: str, start_operator: StartOperator
) -> None:
    crd.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    operator = start_operator()
    started = time.monotonic()
    crd.apply(
        manifest("iris", replicas=2, auth={"clients": [{"name": "billing"}, {"name": "search"}]}),
        "-n",
        namespace,
    )
    body = wait_ready(crd, namespace, "iris")
    elapsed = time.monotonic() - started
    print(f"Ready after {elapsed:.1f}s")  # seconds on an idle machine; kwok can lag on a loaded one

    deployment = get(crd, namespace, "deployment", "iris")
    assert deployment is not None
    labels = deployment["metadata"]["labels"]
    assert labels == {
        "app.kubernetes.io/name": "modeldeploy-runtime", "app.kubernetes.io/instance": "iris",
        "app.kubernetes.io/version": "3", "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/part-of": "modeldeploy", "app.kubernetes.io/managed-by": "modeldeploy-operator",
        "modeldeploy.io/model-deployment": "iris",
    }  # fmt: skip
    owner = deployment["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == (
        "ModelDeployment",
        "iris",
        body["metadata"]["uid"],
    )
    pod_spec = deployment["spec"]["template"]["spec"]
    assert pod_spec["automountServiceAccountToken"] is False
    assert pod_spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    for container in pod_spec["containers"] + pod_spec.get("initContainers", []):
        assert container["securityContext"] == RESTRICTED_CONTAINER
    managed = crd.get_json("deployment", "iris", "-n", namespace, "--show-managed-fields")["metadata"][
        "managedFields"
    ]
    managers = {entry["manager"] for entry in managed if entry["operation"] == "Apply"}
    assert managers == {"modeldeploy-operator"}

    # The pods were admitted under the restricted Pod Security Standard and run.
    pods = crd.get_json("pods", "-n", namespace, "-l", "modeldeploy.io/model-deployment=iris")["items"]
    assert len(pods) == 2
    assert {p["status"]["phase"] for p in pods} == {"Running"}

    service = get(crd, namespace, "service", "iris")
    assert service is not None
    assert [(p["name"], p["port"]) for p in service["spec"]["ports"]] == [("http", 8080), ("metrics", 9090)]
    for secret in ("iris-apikeys", "iris-client-billing", "iris-client-search"):
        assert get(crd, namespace, "secret", secret) is not None

    status = body["status"]
    assert status["observedGeneration"] == body["metadata"]["generation"]
    assert status["modelVersion"] == "3"
    assert status["url"] == f"http://iris.{namespace}.svc:8080"
    assert status["clientSecrets"] == ["iris-client-billing", "iris-client-search"]
    assert (status["replicas"], status["readyReplicas"]) == (2, 2)
    assert all(c["observedGeneration"] == body["metadata"]["generation"] for c in status["conditions"])
    assert condition(body, "Degraded")["status"] == "False"  # type: ignore[index]
    # No ServiceMonitor CRD in this cluster: still Ready, and a condition and an Event say so.
    monitoring = condition(body, "Monitoring")
    assert monitoring is not None
    assert (monitoring["status"], monitoring["reason"]) == (
        "False",
        "ServiceMonitorCRDMissing",
    )
    events = crd.get_json(
        "events", "-n", namespace, "--field-selector", "involvedObject.kind=ModelDeployment"
    )["items"]
    assert [e["reason"] for e in events] == ["MonitoringSkipped"]

    table = crd.kubectl("get", "mdep", "iris", "-n", namespace).stdout.split("\n")
    assert table[0].split() == ["NAME", "READY", "VERSION", "REPLICAS", "URL", "ROLLOUT", "AGE"]
    assert table[1].split()[:5] == ["iris", "True", "3", "2/2", f"http://iris.{namespace}.svc:8080"]
    assert "iris" in crd.kubectl("get", "ml", "-n", namespace).stdout  # the category

    metrics = operator.metrics()
    for name in (
        "modeldeploy_operator_reconciles_total",
        "modeldeploy_operator_reconcile_duration_seconds_bucket",
        "modeldeploy_operator_managed_modeldeployments 1.0",
        "modeldeploy_operator_api_writes_total",
    ):
        assert name in metrics


def test_scale_and_version_bump_roll_out_a_new_replicaset_and_status_follows(
    crd: Cluster, namespace: str, start_operator: StartOperator
) -> None:
    start_operator()
    crd.apply(manifest("iris", replicas=1), "-n", namespace)
    wait_ready(crd, namespace, "iris")
    crd.kubectl("scale", "mdep/iris", "-n", namespace, "--replicas=2")  # through the scale subresource
    crd.kubectl(
        "patch", "mdep", "iris", "-n", namespace, "--type=merge", "-p", '{"spec":{"model":{"version":"4"}}}'
    )
    body = wait_status(
        crd,
        namespace,
        "iris",
        "modelVersion 4 fully rolled out on 2 replicas",
        check=lambda b: (
            b["status"].get("modelVersion") == "4"
            and (condition(b, "Ready") or {}).get("status") == "True"
            and b["status"]["observedGeneration"] == 3
            and b["status"]["readyReplicas"] == 2
        ),
    )
    assert body["status"]["observedGeneration"] == body["metadata"]["generation"] == 3
    replica_sets = crd.get_json("replicasets", "-n", namespace, "-l", "modeldeploy.io/model-deployment=iris")[
        "items"
    ]
    versions = {}
    for replica_set in replica_sets:
        version = replica_set["spec"]["template"]["metadata"]["annotations"]["modeldeploy.io/model-version"]
        versions[version] = replica_set["status"]["replicas"]
    assert versions == {"3": 0, "4": 2}
    pods = crd.get_json("pods", "-n", namespace, "-l", "modeldeploy.io/model-deployment=iris")["items"]
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert {p["metadata"]["labels"]["app.kubernetes.io/version"] for p in live} == {"4"}
    scale_path = f"/apis/modeldeploy.io/v1alpha1/namespaces/{namespace}/modeldeployments/iris/scale"
    scale = json.loads(crd.kubectl("get", "--raw", scale_path).stdout)
    assert scale["status"]["replicas"] == 2
    assert (
        scale["status"]["selector"]
        == "app.kubernetes.io/component=model-server,modeldeploy.io/model-deployment=iris"
    )


def _rollout_finished(cluster: Cluster, namespace: str, name: str) -> bool:
    """The Deployment controller is done: it saw the template and reports the new ReplicaSet available."""
    deployment = get(cluster, namespace, "deployment", name)
    if deployment is None:
        return False
    status = deployment.get("status", {})
    progressing = condition(deployment, "Progressing") or {}
    return bool(
        status.get("observedGeneration") == deployment["metadata"]["generation"]
        and progressing.get("reason") == "NewReplicaSetAvailable"
        and status.get("availableReplicas") == deployment["spec"]["replicas"]
    )


def test_a_quiet_reconcile_writes_nothing_even_after_a_restart(
    crd: Cluster, namespace: str, start_operator: StartOperator
) -> None:
    operator = start_operator(MODELDEPLOY_RESYNC_SECONDS="1")
    # An empty env value, which the API server drops, must not count as drift.
    env = [{"name": "EMPTY", "value": ""}, {"name": "SET", "value": "x"}]
    crd.apply(manifest("iris", replicas=2, runtime={"env": env}), "-n", namespace)
    wait_ready(crd, namespace, "iris")
    wait_until(
        "the Deployment controller to finish the rollout", lambda: _rollout_finished(crd, namespace, "iris")
    )
    before = children(crd, namespace, "iris")
    requests = api_server_writes(crd)
    writes = operator.metric("modeldeploy_operator_api_writes_total")
    reconciles = operator.metric("modeldeploy_operator_reconciles_total")
    wait_until(
        "three resync reconciles",
        lambda: operator.metric("modeldeploy_operator_reconciles_total") >= reconciles + 3,
        timeout=15,
    )
    assert children(crd, namespace, "iris") == before
    assert api_server_writes(crd) - requests == Counter()  # the API server saw no write of ours
    assert operator.metric("modeldeploy_operator_api_writes_total") == writes

    operator.stop()
    restarted = start_operator(MODELDEPLOY_RESYNC_SECONDS="1")
    wait_until(
        "a reconcile after the restart",
        lambda: restarted.metric("modeldeploy_operator_reconciles_total") >= 1,
    )
    # Any write would come within one debounce window of a reconcile; watch for several of them.
    holds_for(
        "no write request reaching the API server after the restart",
        lambda: api_server_writes(crd) - requests == Counter(),
        seconds=QUIET_SECONDS,
    )
    assert restarted.metric("modeldeploy_operator_reconciles_total") >= 3  # it kept reconciling meanwhile
    assert restarted.metric("modeldeploy_operator_api_writes_total") == 0
    assert children(crd, namespace, "iris") == before


def test_edited_or_deleted_children_are_restored_within_seconds(
    crd: Cluster, namespace: str, start_operator: StartOperator
) -> None:
    start_operator()
    crd.apply(manifest("iris"), "-n", namespace)
    wait_until("the children", lambda: len(children(crd, namespace, "iris")) == 5)
    key_before = get(crd, namespace, "secret", "iris-client-billing")["data"]  # type: ignore[index]

    patch = {"spec": {"template": {"spec": {"containers": [{"name": "runtime", "image": "evil:latest"}]}}}}
    crd.kubectl("patch", "deployment", "iris", "-n", namespace, "-p", json.dumps(patch))
    crd.kubectl("delete", "service", "iris", "-n", namespace)
    crd.kubectl("delete", "secret", "iris-apikeys", "-n", namespace)
    crd.kubectl(
        "label",
        "secret",
        "iris-client-billing",
        "-n",
        namespace,
        "app.kubernetes.io/part-of=other",
        "--overwrite",
    )

    def restored() -> bool:
        deployment = get(crd, namespace, "deployment", "iris")
        client = get(crd, namespace, "secret", "iris-client-billing")
        return (
            deployment is not None
            and deployment["spec"]["template"]["spec"]["containers"][0]["image"] != "evil:latest"
            and get(crd, namespace, "service", "iris") is not None
            and get(crd, namespace, "secret", "iris-apikeys") is not None
            and client is not None
            and client["metadata"]["labels"]["app.kubernetes.io/part-of"] == "modeldeploy"
        )

    started = time.monotonic()
    wait_until("the edited Deployment, the deleted Service and hashes Secret restored", restored, timeout=15)
    assert time.monotonic() - started < 10
    # The hashes were rebuilt from the existing client key: no rotation happened.
    assert get(crd, namespace, "secret", "iris-client-billing")["data"] == key_before  # type: ignore[index]


def test_deleting_the_model_deployment_garbage_collects_its_children(
    crd: Cluster, namespace: str, start_operator: StartOperator
) -> None:
    start_operator()
    crd.apply(manifest("iris"), "-n", namespace)
    wait_until("the children", lambda: len(children(crd, namespace, "iris")) == 5)
    body = get(crd, namespace, "mdep", "iris")
    assert body is not None
    assert not body["metadata"].get("finalizers")
    crd.kubectl("delete", "mdep", "iris", "-n", namespace, "--wait=true", "--timeout=30s")
    wait_until(
        "children garbage-collected",
        lambda: (
            crd.get_json(
                ",".join(CHILD_KINDS), "-n", namespace, "-l", "modeldeploy.io/model-deployment=iris"
            )["items"]
            == []
        ),
    )


def _ready_gauge(operator: OperatorProcess, namespace: str) -> float | None:
    sample = f'modeldeploy_operator_modeldeployment_ready{{name="iris",namespace="{namespace}"}} '
    lines = [line for line in operator.metrics().splitlines() if line.startswith(sample)]
    return float(lines[0].rsplit(" ", 1)[1]) if lines else None


def test_crash_looping_pods_make_it_degraded_not_ready(
    crd: Cluster, namespace: str, start_operator: StartOperator
) -> None:
    operator = start_operator()
    crd.apply(manifest("iris"), "-n", namespace)
    wait_ready(crd, namespace, "iris")
    wait_until("the ready gauge at 1", lambda: _ready_gauge(operator, namespace) == 1.0)
    crash_loop_first_pod(crd, namespace, "iris")
    body = wait_status(
        crd,
        namespace,
        "iris",
        "Degraded=True",
        check=lambda b: (condition(b, "Degraded") or {}).get("status") == "True",
    )
    assert condition(body, "Degraded")["reason"] == "CrashLoopBackOff"  # type: ignore[index]
    assert "model failed to load" in condition(body, "Degraded")["message"]  # type: ignore[index]
    assert condition(body, "Ready")["status"] == "False"  # type: ignore[index]
    events = crd.get_json(
        "events", "-n", namespace, "--field-selector", "involvedObject.kind=ModelDeployment"
    )["items"]
    assert any(e["reason"] == "Degraded" and e["type"] == "Warning" for e in events)
    wait_until(
        "the ready gauge at 0, for the NotReady alert", lambda: _ready_gauge(operator, namespace) == 0.0
    )


def test_disabling_auth_or_removing_a_client_deletes_its_secrets(
    crd: Cluster, namespace: str, start_operator: StartOperator
) -> None:
    start_operator()
    crd.apply(manifest("iris", auth={"clients": [{"name": "billing"}, {"name": "search"}]}), "-n", namespace)
    wait_until(
        "the search client's Secret", lambda: get(crd, namespace, "secret", "iris-client-search") is not None
    )
    crd.apply(manifest("iris", auth={"clients": [{"name": "billing"}]}), "-n", namespace)
    wait_until(
        "the search client's Secret deleted",
        lambda: get(crd, namespace, "secret", "iris-client-search") is None,
    )
    crd.kubectl(
        "patch", "mdep", "iris", "-n", namespace, "--type=merge", "-p", '{"spec":{"auth":{"enabled":false}}}'
    )
    wait_until(
        "all key Secrets deleted",
        lambda: (
            crd.get_json("secrets", "-n", namespace, "-l", "modeldeploy.io/model-deployment=iris")["items"]
            == []
        ),
    )
    body = wait_status(
        crd,
        namespace,
        "iris",
        "status at generation 3",
        check=lambda b: b.get("status", {}).get("observedGeneration") == 3,
    )
    assert body["status"]["clientSecrets"] == []
    args = get(crd, namespace, "deployment", "iris")["spec"]["template"]["spec"]["containers"][0]["args"]  # type: ignore[index]
    assert "--auth-keys-file" not in args
