"""The Service in front of the runtime pods (pure)."""

from __future__ import annotations

from typing import Any

from modeldeploy_operator.builders.meta import metadata, selector_labels, with_desired_hash
from modeldeploy_operator.constants import (
    COMPONENT_SERVER,
    PORT_HTTP,
    PORT_HTTP_NAME,
    PORT_METRICS,
    PORT_METRICS_NAME,
)
from modeldeploy_operator.model import ModelDeployment
from modeldeploy_operator.resources import SERVICE


def build_service(md: ModelDeployment) -> dict[str, Any]:
    service = {
        "apiVersion": SERVICE.api_version,
        "kind": SERVICE.kind,
        "metadata": metadata(md, md.name, COMPONENT_SERVER),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(md),
            "ports": [
                {"name": PORT_HTTP_NAME, "port": PORT_HTTP, "targetPort": PORT_HTTP_NAME, "protocol": "TCP"},
                {
                    "name": PORT_METRICS_NAME,
                    "port": PORT_METRICS,
                    "targetPort": PORT_METRICS_NAME,
                    "protocol": "TCP",
                },
            ],
        },
    }
    return with_desired_hash(service)


def service_url(md: ModelDeployment) -> str:
    return f"http://{md.name}.{md.namespace}.svc:{PORT_HTTP}"
