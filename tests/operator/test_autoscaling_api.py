"""spec.autoscaling on the real control plane: good input is accepted and defaulted (bad input is
refused with the field named: test_crd.py's table), and the operator never fights the autoscaler
over the Deployment's replicas (server-side apply's field ownership, decided by the API server),
across the hand-over in both directions."""

from __future__ import annotations

import json
from typing import Any

from modeldeploy_operator.constants import FIELD_MANAGER, REPLICAS_HANDOVER_FIELD_MANAGER
from tests.conftest import Cluster
from tests.operator.conftest import StartOperator
from tests.operator.factories import CPU_REQUEST, autoscaling, manifest
from tests.operator.helpers import condition, get, wait_status
from tests.operator.test_crd import dry_run
from tests.support import wait_until

# What the HPA controller's writes look like to the API server: an update of /scale by another manager.
SCALER = "test-autoscaler"
SCALE_EVENTS = 50


def test_good_autoscaling_is_accepted_and_defaulted(crd: Cluster, namespace: str) -> None:
    behavior = {
        "scaleDown": {
            "stabilizationWindowSeconds": 30,
            "policies": [{"type": "Percent", "value": 50, "periodSeconds": 15}],
        }
    }
    cases = [
        manifest("iris", autoscaling={"maxReplicas": 4, "target": {"requestsPerSecondPerPod": 200}, "behavior": behavior}),
        manifest("iris", autoscaling=autoscaling(target={"cpuUtilization": 70}), runtime=CPU_REQUEST),
        manifest("iris", autoscaling=autoscaling(minReplicas=0, engine="keda")),
    ]  # fmt: skip
    outputs = []
    for body in cases:
        code, output = dry_run(crd, namespace, body, "--validate=strict")
        assert code == 0, output
        outputs.append(json.loads(output)["spec"]["autoscaling"])
    assert outputs[0] == {
        "enabled": True,
        "minReplicas": 1,
        "maxReplicas": 4,
        "engine": "hpa",
        "target": {"requestsPerSecondPerPod": 200},
        "behavior": behavior,
    }


def replicas_managers(deployment: dict[str, Any]) -> set[str]:
    """The field managers that own the Deployment's spec.replicas, by operation."""
    return {
        f"{entry['manager']}/{entry['operation']}"
        for entry in deployment["metadata"].get("managedFields") or []
        if "f:replicas" in ((entry.get("fieldsV1") or {}).get("f:spec") or {})
    }


def deployment_of(cluster: Cluster, namespace: str) -> dict[str, Any]:
    """The Deployment with its managedFields (kubectl hides them unless asked)."""
    return dict(cluster.get_json("deployment", "iris", "-n", namespace, "--show-managed-fields"))


def scale_as_the_autoscaler(cluster: Cluster, namespace: str, replicas: int) -> None:
    cluster.kubectl(
        "patch", "deployment", "iris", "-n", namespace, "--subresource=scale", "--type=merge",
        f"--field-manager={SCALER}", "-p", json.dumps({"spec": {"replicas": replicas}}),
    )  # fmt: skip


def patch_spec(cluster: Cluster, namespace: str, spec: dict[str, Any]) -> None:
    cluster.kubectl(
        "patch", "mdep", "iris", "-n", namespace, "--type=merge", "-p", json.dumps({"spec": spec})
    )


def test_the_operator_never_fights_the_autoscaler_over_replicas(
    crd: Cluster, namespace: str, start_operator: StartOperator
) -> None:
    start_operator(MODELDEPLOY_STATUS_DEBOUNCE_SECONDS="0")
    crd.apply(manifest("iris", replicas=3), "-n", namespace)
    wait_until("the operator's Deployment with 3 replicas",
               lambda: (get(crd, namespace, "deployment", "iris") or {}).get("spec", {}).get("replicas") == 3)  # fmt: skip
    assert f"{FIELD_MANAGER}/Apply" in replicas_managers(deployment_of(crd, namespace))

    # Off -> on: the HPA appears, the count stays at 3 (not reset to 1), the operator lets go of it.
    patch_spec(crd, namespace, {"autoscaling": autoscaling()})
    wait_until("the HPA", lambda: get(crd, namespace, "hpa", "iris") is not None)
    wait_until(
        "the operator to let go of spec.replicas",
        lambda: f"{FIELD_MANAGER}/Apply" not in replicas_managers(deployment_of(crd, namespace)),
    )
    deployment = deployment_of(crd, namespace)
    assert deployment["spec"]["replicas"] == 3, "handing the count over reset it"
    assert f"{REPLICAS_HANDOVER_FIELD_MANAGER}/Apply" in replicas_managers(deployment)
    hpa = get(crd, namespace, "hpa", "iris") or {}
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "iris"}
    assert hpa["metadata"]["ownerReferences"][0]["kind"] == "ModelDeployment"
    body = wait_status(crd, namespace, "iris", "the Autoscaling condition",
                       check=lambda b: (condition(b, "Autoscaling") or {}).get("status") == "True")  # fmt: skip
    assert "spec.replicas (3) is ignored" in (condition(body, "Autoscaling") or {})["message"]

    # 50 scale events by another manager, while the operator reconciles (and re-applies the Deployment
    # with a new template every 10 events): each count stays as the autoscaler wrote it.
    applied_templates = 0
    for event in range(SCALE_EVENTS):
        replicas = 2 + event % 8  # 2..9, inside [minReplicas, maxReplicas]: the HPA controller agrees
        scale_as_the_autoscaler(crd, namespace, replicas)
        if event % 10 == 9:
            patch_spec(crd, namespace, {"runtime": {"env": [{"name": "ROUND", "value": str(event)}]}})
            applied_templates += 1
        wait_status(
            crd, namespace, "iris", f"the operator to have reconciled scale event {event} ({replicas} replicas)",
            check=lambda b, want=replicas: b["status"].get("replicasSummary", "").endswith(f"/{want}")
            and b["status"].get("observedGeneration") == b["metadata"]["generation"],
            timeout=30,
        )  # fmt: skip
        deployment = deployment_of(crd, namespace)
        assert deployment["spec"]["replicas"] == replicas, (
            f"scale event {event}: the operator changed replicas"
        )
        assert f"{FIELD_MANAGER}/Apply" not in replicas_managers(deployment)
    env = deployment_of(crd, namespace)["spec"]["template"]["spec"]["containers"][0].get("env")
    assert env == [{"name": "ROUND", "value": str(SCALE_EVENTS - 1)}], "the operator did not apply meanwhile"
    assert applied_templates == SCALE_EVENTS // 10

    # On -> off: the HPA goes, and the operator takes the count back to spec.replicas.
    patch_spec(crd, namespace, {"replicas": 2, "autoscaling": {"enabled": False}})
    wait_until("the HPA to be deleted", lambda: get(crd, namespace, "hpa", "iris") is None)
    wait_until(
        "the operator to own spec.replicas again at 2",
        lambda: (
            f"{FIELD_MANAGER}/Apply" in replicas_managers(deployment_of(crd, namespace))
            and deployment_of(crd, namespace)["spec"]["replicas"] == 2
        ),
    )
    body = wait_status(crd, namespace, "iris", "no Autoscaling condition",
                       check=lambda b: condition(b, "Autoscaling") is None)  # fmt: skip
    assert body["status"]["replicasSummary"].endswith("/2")


def test_keda_without_its_crd_is_not_ready_and_keeps_the_replica_count(
    crd: Cluster, namespace: str, start_operator: StartOperator
) -> None:
    start_operator(MODELDEPLOY_STATUS_DEBOUNCE_SECONDS="0")
    crd.apply(manifest("iris", replicas=3), "-n", namespace)
    wait_status(crd, namespace, "iris", "Ready with 3 replicas",
                check=lambda b: (condition(b, "Ready") or {}).get("status") == "True"
                and b["status"].get("readyReplicas") == 3)  # fmt: skip
    patch_spec(crd, namespace, {"autoscaling": autoscaling(engine="keda", minReplicas=0)})
    body = wait_status(crd, namespace, "iris", "Ready=False AutoscalerUnavailable",
                       check=lambda b: (condition(b, "Ready") or {}).get("reason") == "AutoscalerUnavailable")  # fmt: skip
    ready = condition(body, "Ready") or {}
    assert ready["status"] == "False"
    assert "keda.sh/v1alpha1 ScaledObject API is not installed" in ready["message"]
    assert "keeps its current 3 replicas" in ready["message"]
    deployment = deployment_of(crd, namespace)
    assert deployment["spec"]["replicas"] == 3
    assert f"{FIELD_MANAGER}/Apply" not in replicas_managers(deployment)
    assert get(crd, namespace, "hpa", "iris") is None
    assert body["status"]["readyReplicas"] == 3
