"""A ScaledObject as ``engine: keda`` writes it, against KEDA's real CRD schema.

The CRDs come from KEDA's published Go module (``modeldeploy_devenv.keda``), installed for this
module's tests only and removed afterwards, so the rest of the session runs without KEDA.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from modeldeploy_devenv.keda import install_keda_crds, uninstall_keda_crds
from modeldeploy_operator.builders.autoscaling import build_scaled_object
from modeldeploy_operator.config import OperatorConfig
from modeldeploy_operator.model import ModelDeployment
from tests.conftest import Cluster
from tests.operator.factories import md_body

PROMETHEUS_ADDRESS = "http://prometheus.monitoring:9090"


@pytest.fixture(scope="module")
def keda_crds(cluster: Cluster) -> Iterator[list[str]]:
    names = install_keda_crds(cluster.kubeconfig)
    yield names
    uninstall_keda_crds(cluster.kubeconfig)


TARGETS = {"in-flight": {"inFlightRequestsPerPod": 8}, "rps": {"requestsPerSecondPerPod": 200}}


def scaled_object(name: str, namespace: str, target: str = "in-flight") -> dict[str, Any]:
    """The operator's ScaledObject for ``spec.autoscaling: {engine: keda, minReplicas: 0,
    maxReplicas: 10, target: TARGETS[target], behavior}``, without its owner reference (the
    ModelDeployment of the unit factory does not exist in this cluster)."""
    autoscaling = {
        "engine": "keda",
        "minReplicas": 0,
        "maxReplicas": 10,
        "target": TARGETS[target],
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}},
    }
    md = ModelDeployment.from_body(md_body(name, namespace, autoscaling=autoscaling))
    body = build_scaled_object(md, OperatorConfig(prometheus_address=PROMETHEUS_ADDRESS))
    assert body is not None
    del body["metadata"]["ownerReferences"]
    return body


def _apply(cluster: Cluster, body: dict[str, Any], *extra: str) -> tuple[int, str]:
    result = cluster.kubectl(
        "apply", "--server-side", "--field-manager=modeldeploy-operator", "-o", "json", "-f", "-", *extra,
        stdin=json.dumps(body), check=False,
    )  # fmt: skip
    return result.returncode, result.stdout + result.stderr


def test_the_keda_crds_come_from_kedas_module(keda_crds: list[str]) -> None:
    assert "crd/scaledobjects.keda.sh" in keda_crds


@pytest.mark.parametrize("target", list(TARGETS))
def test_a_rendered_scaled_object_is_stored_as_written(
    cluster: Cluster, namespace: str, keda_crds: list[str], target: str
) -> None:
    body = scaled_object("iris", namespace, target)
    code, output = _apply(cluster, body)
    assert code == 0, output
    stored = cluster.get_json("scaledobject.keda.sh", "iris", "-n", namespace)
    # Nothing pruned: every field written is one KEDA's schema knows.
    assert stored["spec"] == body["spec"]


def _set_threshold_number(spec: dict[str, Any]) -> None:
    spec["triggers"][0]["metadata"]["threshold"] = 8


def _drop_target(spec: dict[str, Any]) -> None:
    del spec["scaleTargetRef"]


def _drop_triggers(spec: dict[str, Any]) -> None:
    spec["triggers"] = []


def _min_above_max(spec: dict[str, Any]) -> None:
    spec["minReplicaCount"] = 11


# A change to a valid ScaledObject's spec, and what the API server's answer must say.
MALFORMED: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "threshold as a number": (_set_threshold_number, "spec.triggers[0].metadata.threshold: expected string"),
    "no scaleTargetRef": (_drop_target, "spec.scaleTargetRef: Required value"),
    "no triggers": (_drop_triggers, "spec.triggers: Invalid value"),
    "min above max": (_min_above_max, "minReplicaCount must be less than or equal to maxReplicaCount"),
}


@pytest.mark.parametrize("change", list(MALFORMED))
def test_a_malformed_scaled_object_is_refused_naming_the_field(
    cluster: Cluster, namespace: str, keda_crds: list[str], change: str
) -> None:
    spoil, message = MALFORMED[change]
    body = scaled_object("iris", namespace)
    spoil(body["spec"])
    code, output = _apply(cluster, body, "--dry-run=server")
    assert code != 0, f"accepted: {output}"
    assert message in output, output
