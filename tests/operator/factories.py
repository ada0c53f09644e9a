"""ModelDeployment bodies for tests."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from modeldeploy_operator.model import ModelDeployment

SHA256 = "0" * 64  # a well-formed digest: the CRD requires one for joblib
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)  # the clock of the unit tests


def md_body(name: str = "iris", namespace: str = "ml", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": "00000000-0000-0000-0000-000000000001",
            "generation": 1,
        },
        "spec": {
            "model": {"uri": "s3://models/iris/3/model.joblib", "version": "3", "sha256": SHA256},
            "auth": {"clients": [{"name": "billing"}]},
        },
    }
    body["spec"].update(copy.deepcopy(spec))
    return body


def md(**spec: Any) -> ModelDeployment:
    return ModelDeployment.from_body(md_body(**spec))


def manifest(name: str, **spec: Any) -> dict[str, Any]:
    """A ModelDeployment to apply to the cluster (no uid, generation or namespace)."""
    body = md_body(name, **spec)
    body["metadata"] = {"name": name}
    return body


CPU_REQUEST = {"resources": {"requests": {"cpu": "100m"}}}  # spec.runtime with a CPU request


def autoscaling(**fields: Any) -> dict[str, Any]:
    """A valid ``spec.autoscaling`` (1-10 replicas, 8 in-flight requests per pod), with ``fields`` over it."""
    return {"minReplicas": 1, "maxReplicas": 10, "target": {"inFlightRequestsPerPod": 8}, **fields}


def crash_looping_pod(labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A pod ``iris-1`` whose runtime container crash-loops after failing to load the model."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "iris-1", "namespace": "ml", "labels": labels or {}},
        "status": {
            "containerStatuses": [
                {
                    "name": "runtime",
                    "ready": False,
                    "restartCount": 4,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 1, "message": "model failed to load"}},
                }
            ]
        },
    }
