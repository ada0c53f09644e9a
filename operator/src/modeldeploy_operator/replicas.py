"""Who owns the Deployment's replica count, and how many pods are wanted (pure).

Without autoscaling the operator applies ``spec.replicas``. With it, an autoscaler (the HPA, or the
HPA KEDA makes) writes the Deployment's ``/scale`` and the operator's applies omit the field. Letting
go of a field in server-side apply removes it when nobody else owns it, and the Deployment would drop
to its default of 1 pod; so before the first apply without it, another field manager
(``REPLICAS_HANDOVER_FIELD_MANAGER``) applies the current count and keeps the field alive until the
autoscaler takes it. Turning autoscaling off, the operator's forced apply takes the field back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modeldeploy_operator.constants import FIELD_MANAGER
from modeldeploy_operator.model import ModelDeployment
from modeldeploy_operator.resources import DEPLOYMENT


def desired_replicas(md: ModelDeployment, deployment: Mapping[str, Any] | None) -> int:
    """The pods wanted now: spec.replicas, or, while autoscaled, the observed Deployment's count
    (what the autoscaler last decided). A canary is sized from this number too."""
    if not md.spec.autoscaled:
        return md.spec.replicas
    if deployment is None:
        return md.spec.autoscaling.min_replicas if md.spec.autoscaling is not None else md.spec.replicas
    return int((deployment.get("spec") or {}).get("replicas", 1))


def applies_replicas(deployment: Mapping[str, Any], manager: str = FIELD_MANAGER) -> bool:
    """Whether ``manager``'s server-side apply owns the Deployment's spec.replicas."""
    for entry in deployment.get("metadata", {}).get("managedFields") or []:
        if entry.get("manager") == manager and entry.get("operation") == "Apply":
            spec = (entry.get("fieldsV1") or {}).get("f:spec") or {}
            if "f:replicas" in spec:
                return True
    return False


def replicas_handover(deployment: Mapping[str, Any]) -> dict[str, Any]:
    """The apply body (for ``REPLICAS_HANDOVER_FIELD_MANAGER``) that holds the current count."""
    metadata = deployment["metadata"]
    return {
        "apiVersion": DEPLOYMENT.api_version,
        "kind": DEPLOYMENT.kind,
        "metadata": {"name": metadata["name"], "namespace": metadata["namespace"]},
        "spec": {"replicas": int((deployment.get("spec") or {}).get("replicas", 1))},
    }
