"""The Prometheus-operator ServiceMonitor scraping the runtime's metrics port (pure)."""

from __future__ import annotations

from typing import Any

from modeldeploy_operator.builders.meta import metadata, selector_labels, with_desired_hash
from modeldeploy_operator.constants import COMPONENT_SERVER, PORT_METRICS_NAME
from modeldeploy_operator.model import ModelDeployment
from modeldeploy_operator.resources import SERVICE_MONITOR


def build_service_monitor(md: ModelDeployment) -> dict[str, Any]:
    monitor = {
        "apiVersion": SERVICE_MONITOR.api_version,
        "kind": SERVICE_MONITOR.kind,
        "metadata": metadata(md, md.name, COMPONENT_SERVER),
        "spec": {
            "selector": {"matchLabels": selector_labels(md)},
            "namespaceSelector": {"matchNames": [md.namespace]},
            "endpoints": [
                {
                    "port": PORT_METRICS_NAME,
                    "path": "/metrics",
                    "interval": md.spec.monitoring.service_monitor.interval,
                }
            ],
        },
    }
    return with_desired_hash(monitor)
