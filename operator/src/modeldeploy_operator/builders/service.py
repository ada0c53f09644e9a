"""The Service in front of the runtime pods (pure)."""

from __future__ import annotations

from typing import Any

from modeldeploy_operator.builders.meta import metadata, selector_labels, serving_port_name, with_desired_hash
from modeldeploy_operator.constants import (
    COMPONENT_SERVER,
    PORT_HTTP,
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
                {
                    "name": serving_port_name(md),
                    "port": PORT_HTTP,
                    "targetPort": serving_port_name(md),
                    "protocol": "TCP",
                },
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
    scheme = "https" if md.spec.tls is not None else "http"
    return f"{scheme}://{md.name}.{md.namespace}.svc:{PORT_HTTP}"
