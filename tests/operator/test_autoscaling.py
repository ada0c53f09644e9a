"""spec.autoscaling without a control plane: the HPA and ScaledObject builders (golden files), who owns
the replica count, the status, and the reconcile's writes against the in-memory fake."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modeldeploy_operator.builders import (
    build_deployment,
    build_horizontal_pod_autoscaler,
    build_scaled_object,
)
from modeldeploy_operator.builders.autoscaling import prometheus_query
from modeldeploy_operator.config import OperatorConfig, config_from_env
from modeldeploy_operator.constants import (
    CONDITION_AUTOSCALING,
    CONDITION_READY,
    FIELD_MANAGER,
    METRIC_INFLIGHT_REQUESTS,
    METRIC_LABEL_MODEL,
    METRIC_REQUESTS_PER_SECOND,
    METRIC_REQUESTS_TOTAL,
    REASON_AUTOSCALER_APPLIED,
    REASON_AUTOSCALER_UNAVAILABLE,
)
from modeldeploy_operator.replicas import applies_replicas, desired_replicas, replicas_handover
from modeldeploy_operator.resources import (
    DEPLOYMENT,
    HORIZONTAL_POD_AUTOSCALER,
    MODEL_DEPLOYMENT,
    SCALED_OBJECT,
)
from modeldeploy_operator.status import condition_of
from modeldeploy_runtime.serving.metrics import RuntimeMetrics
from modeldeploy_runtime.serving.model import LoadedModel
from tests.operator.factories import md, md_body
from tests.operator.memory_kube import Write
from tests.operator.test_builders import check_golden
from tests.operator.test_reconciler import World, created

CONFIG = OperatorConfig(
    runtime_image="registry.example/model-runtime:test",
    prometheus_address="http://prometheus.monitoring:9090",
)
CPU_REQUEST = {"resources": {"requests": {"cpu": "250m"}}}
BEHAVIOR = {
    "scaleUp": {
        "stabilizationWindowSeconds": 0,
        "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}],
    },
    "scaleDown": {"stabilizationWindowSeconds": 60, "selectPolicy": "Max"},
}


def autoscaling(target: dict[str, int], **fields: Any) -> dict[str, Any]:
    return {"autoscaling": {"minReplicas": 1, "maxReplicas": 10, "target": target, **fields}}


CASES = {
    "hpa-cpu": md(runtime=CPU_REQUEST, **autoscaling({"cpuUtilization": 70}, behavior=BEHAVIOR)),
    "hpa-inflight": md(**autoscaling({"inFlightRequestsPerPod": 8})),
    "hpa-rps": md(**autoscaling({"requestsPerSecondPerPod": 200}, minReplicas=2)),
}
KEDA_CASES = {
    "scaledobject-inflight-zero": md(
        **autoscaling({"inFlightRequestsPerPod": 8}, engine="keda", minReplicas=0)
    ),
    "scaledobject-rps": md(**autoscaling({"requestsPerSecondPerPod": 200}, engine="keda", behavior=BEHAVIOR)),
    "scaledobject-cpu": md(runtime=CPU_REQUEST, **autoscaling({"cpuUtilization": 60}, engine="keda")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_horizontal_pod_autoscaler_matches_golden(case: str) -> None:
    hpa = build_horizontal_pod_autoscaler(CASES[case])
    assert hpa is not None
    assert build_scaled_object(CASES[case], CONFIG) is None
    check_golden(case, hpa)


@pytest.mark.parametrize("case", sorted(KEDA_CASES))
def test_scaled_object_matches_golden(case: str) -> None:
    scaled_object = build_scaled_object(KEDA_CASES[case], CONFIG)
    assert scaled_object is not None
    assert build_horizontal_pod_autoscaler(KEDA_CASES[case]) is None
    check_golden(case, scaled_object)


def test_the_hpa_scales_the_deployment_on_the_metric_names_the_adapter_serves() -> None:
    metrics = {
        case: (build_horizontal_pod_autoscaler(model) or {})["spec"]["metrics"][0]
        for case, model in CASES.items()
    }
    assert metrics["hpa-cpu"]["resource"] == {
        "name": "cpu",
        "target": {"type": "Utilization", "averageUtilization": 70},
    }
    assert metrics["hpa-inflight"]["pods"]["metric"]["name"] == METRIC_INFLIGHT_REQUESTS
    assert metrics["hpa-rps"]["pods"]["metric"]["name"] == METRIC_REQUESTS_PER_SECOND
    hpa = build_horizontal_pod_autoscaler(CASES["hpa-cpu"]) or {}
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "iris"}
    assert hpa["spec"]["behavior"] == BEHAVIOR
    assert hpa["metadata"]["ownerReferences"][0]["controller"] is True


def test_keda_queries_the_runtime_series_of_this_model_only() -> None:
    inflight = KEDA_CASES["scaledobject-inflight-zero"]
    assert prometheus_query(inflight) == f'sum({METRIC_INFLIGHT_REQUESTS}{{namespace="ml",model="iris"}})'
    rps = prometheus_query(KEDA_CASES["scaledobject-rps"])
    assert rps == f'sum(rate({METRIC_REQUESTS_TOTAL}{{namespace="ml",model="iris"}}[1m]))'
    trigger = (build_scaled_object(inflight, CONFIG) or {})["spec"]["triggers"][0]
    assert trigger["metadata"]["serverAddress"] == "http://prometheus.monitoring:9090"
    assert trigger["metadata"]["threshold"] == "8"


def test_the_runtime_exports_the_series_the_autoscalers_use() -> None:
    model = LoadedModel(
        estimator=None,
        name="iris",
        version="3",
        sha256="0" * 64,
        model_format="skops",
        path=Path("/model"),
        metadata=None,
        warnings=[],
        load_seconds=0.1,
    )
    metrics = RuntimeMetrics(model, batch_max_size=8)
    metrics.record_request("v2", 200, 0.01)
    metrics.flush(inflight=1)
    samples = {
        sample.name: sample.labels for family in metrics.registry.collect() for sample in family.samples
    }
    assert samples[METRIC_INFLIGHT_REQUESTS][METRIC_LABEL_MODEL] == "iris"
    assert samples[METRIC_REQUESTS_TOTAL][METRIC_LABEL_MODEL] == "iris"


def test_the_prometheus_address_is_operator_config() -> None:
    assert config_from_env({}).prometheus_address == "http://prometheus-operated.monitoring.svc:9090"
    assert (
        config_from_env({"MODELDEPLOY_PROMETHEUS_ADDRESS": "http://p:9090"}).prometheus_address
        == "http://p:9090"
    )


def test_an_autoscaled_deployment_carries_no_replicas() -> None:
    manual = md(replicas=3)
    scaled = md(replicas=3, **autoscaling({"inFlightRequestsPerPod": 8}))
    assert build_deployment(manual, CONFIG)["spec"]["replicas"] == 3
    assert "replicas" not in build_deployment(scaled, CONFIG)["spec"]
    paused = md(replicas=3, **autoscaling({"inFlightRequestsPerPod": 8}, enabled=False))
    assert build_deployment(paused, CONFIG)["spec"]["replicas"] == 3
    assert build_horizontal_pod_autoscaler(paused) is None


def managed(manager: str, fields: dict[str, Any], operation: str = "Apply") -> dict[str, Any]:
    return {"manager": manager, "operation": operation, "fieldsType": "FieldsV1", "fieldsV1": fields}


def test_who_applies_the_replicas_is_read_from_managed_fields() -> None:
    deployment: dict[str, Any] = {
        "metadata": {
            "name": "iris",
            "namespace": "ml",
            "managedFields": [
                managed(FIELD_MANAGER, {"f:spec": {"f:template": {}}}),
                managed("kube-controller-manager", {"f:spec": {"f:replicas": {}}}, "Update"),
            ],
        },
        "spec": {"replicas": 7},
    }
    assert not applies_replicas(deployment)
    assert applies_replicas(deployment, "kube-controller-manager") is False  # an Update, not an apply
    deployment["metadata"]["managedFields"][0] = managed(FIELD_MANAGER, {"f:spec": {"f:replicas": {}}})
    assert applies_replicas(deployment)
    assert replicas_handover(deployment) == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "iris", "namespace": "ml"},
        "spec": {"replicas": 7},
    }


def test_desired_replicas_follow_the_autoscaler_while_it_is_on() -> None:
    deployment = {"spec": {"replicas": 6}}
    assert desired_replicas(md(replicas=2), deployment) == 2
    scaled = md(replicas=2, **autoscaling({"inFlightRequestsPerPod": 8}, minReplicas=3))
    assert desired_replicas(scaled, deployment) == 6
    assert desired_replicas(scaled, None) == 3


# -- the reconcile, against the in-memory fake ----------------------------------------------------
def spec_of(world: World) -> dict[str, Any]:
    body = world.kube.stored(MODEL_DEPLOYMENT, "ml", "iris")
    assert body is not None
    return dict(body["spec"])


def set_spec(world: World, **fields: Any) -> None:
    body = md_body(**{**spec_of(world), **fields})
    body["metadata"]["generation"] = 2
    world.kube.seed(body)
    world.store.put(MODEL_DEPLOYMENT, world.kube.stored(MODEL_DEPLOYMENT, "ml", "iris") or {})


def test_turning_autoscaling_on_and_off_writes_and_deletes_the_hpa() -> None:
    world = created()
    set_spec(world, **autoscaling({"inFlightRequestsPerPod": 8}))
    world.kube.writes.clear()
    world.reconcile()
    assert Write("apply", HORIZONTAL_POD_AUTOSCALER.kind, "iris") in world.kube.writes
    deployment = world.kube.stored(DEPLOYMENT, "ml", "iris") or {}
    assert "replicas" not in deployment["spec"]
    world.someone_edits(DEPLOYMENT, "iris", {"spec": {"replicas": 5}})  # the HPA scaled it
    world.kube.writes.clear()
    world.settle()
    assert not world.kube.writes_of("apply", DEPLOYMENT.kind), "the operator fought the autoscaler"
    assert world.status()["replicasSummary"] == "0/5"
    condition = condition_of(world.status(), CONDITION_AUTOSCALING) or {}
    assert condition["reason"] == REASON_AUTOSCALER_APPLIED
    assert "spec.replicas (1) is ignored" in condition["message"]
    set_spec(world, autoscaling={**spec_of(world)["autoscaling"], "enabled": False})
    world.kube.writes.clear()
    world.settle()
    writes = world.kube.writes
    assert writes.index(Write("delete", HORIZONTAL_POD_AUTOSCALER.kind, "iris")) < writes.index(
        Write("apply", DEPLOYMENT.kind, "iris")
    ), "the HPA must go before the operator takes the replicas back"
    assert (world.kube.stored(DEPLOYMENT, "ml", "iris") or {})["spec"]["replicas"] == 1
    assert condition_of(world.status(), CONDITION_AUTOSCALING) is None


def test_keda_without_its_crd_is_reported_and_the_replicas_are_kept() -> None:
    world = created()
    set_spec(world, **autoscaling({"inFlightRequestsPerPod": 8}, engine="keda", minReplicas=0))
    world.settle()
    world.someone_edits(DEPLOYMENT, "iris", {"spec": {"replicas": 4}})  # (the real API server keeps the
    world.deployment_rolled_out(4)  # count across the apply without replicas: test_autoscaling_api.py)
    world.settle()
    assert not world.kube.writes_of("apply", SCALED_OBJECT.kind)
    ready = condition_of(world.status(), CONDITION_READY) or {}
    assert (ready["status"], ready["reason"]) == ("False", REASON_AUTOSCALER_UNAVAILABLE)
    assert "keda.sh/v1alpha1 ScaledObject API is not installed" in ready["message"]
    assert "keeps its current 4 replicas" in ready["message"]


def test_keda_with_its_crd_gets_a_scaled_object_and_no_hpa() -> None:
    world = created(served=(SCALED_OBJECT,))
    set_spec(world, **autoscaling({"requestsPerSecondPerPod": 100}, engine="keda"))
    world.settle()
    assert world.kube.stored(SCALED_OBJECT, "ml", "iris") is not None
    assert world.kube.stored(HORIZONTAL_POD_AUTOSCALER, "ml", "iris") is None
    set_spec(world, autoscaling={**spec_of(world)["autoscaling"], "engine": "hpa"})
    world.settle()
    assert world.kube.stored(SCALED_OBJECT, "ml", "iris") is None
    assert world.kube.stored(HORIZONTAL_POD_AUTOSCALER, "ml", "iris") is not None
