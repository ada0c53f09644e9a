"""The autoscaler of a ModelDeployment with spec.autoscaling: an autoscaling/v2 HorizontalPodAutoscaler
(engine hpa) or a KEDA ScaledObject (engine keda), both scaling the Deployment (pure).

Both target the Deployment, not the ModelDeployment's /scale: an autoscaler writing the
ModelDeployment's spec.replicas would show as drift to Argo CD and Flux, which hold that spec in Git.
"""

from __future__ import annotations

from typing import Any

from modeldeploy_operator.builders.meta import metadata, with_desired_hash
from modeldeploy_operator.config import OperatorConfig
from modeldeploy_operator.constants import (
    COMPONENT_SERVER,
    METRIC_INFLIGHT_REQUESTS,
    METRIC_LABEL_MODEL,
    METRIC_LABEL_NAMESPACE,
    METRIC_RATE_WINDOW,
    METRIC_REQUESTS_PER_SECOND,
    METRIC_REQUESTS_TOTAL,
)
from modeldeploy_operator.model import AutoscalingSpec, ModelDeployment
from modeldeploy_operator.resources import DEPLOYMENT, HORIZONTAL_POD_AUTOSCALER, SCALED_OBJECT


def _scale_target(md: ModelDeployment) -> dict[str, str]:
    return {"apiVersion": DEPLOYMENT.api_version, "kind": DEPLOYMENT.kind, "name": md.name}


def _hpa_metric(scaling: AutoscalingSpec) -> dict[str, Any]:
    """The HPA's one metric: CPU as a Resource metric, the runtime's load as Pods metrics."""
    target = scaling.target
    if target.cpu_utilization is not None:
        return {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": target.cpu_utilization},
            },
        }
    if target.in_flight_requests_per_pod is not None:
        name, value = METRIC_INFLIGHT_REQUESTS, target.in_flight_requests_per_pod
    else:
        name, value = METRIC_REQUESTS_PER_SECOND, target.requests_per_second_per_pod or 0
    return {
        "type": "Pods",
        "pods": {"metric": {"name": name}, "target": {"type": "AverageValue", "averageValue": str(value)}},
    }


def build_horizontal_pod_autoscaler(md: ModelDeployment) -> dict[str, Any] | None:
    """The HPA of an autoscaled ModelDeployment with engine hpa; None otherwise."""
    scaling = md.spec.autoscaling
    if scaling is None or not scaling.enabled or scaling.engine != "hpa":
        return None
    spec: dict[str, Any] = {
        "scaleTargetRef": _scale_target(md),
        "minReplicas": scaling.min_replicas,
        "maxReplicas": scaling.max_replicas,
        "metrics": [_hpa_metric(scaling)],
    }
    if scaling.behavior:
        spec["behavior"] = scaling.behavior
    hpa = {
        "apiVersion": HORIZONTAL_POD_AUTOSCALER.api_version,
        "kind": HORIZONTAL_POD_AUTOSCALER.kind,
        "metadata": metadata(md, md.name, COMPONENT_SERVER),
        "spec": spec,
    }
    return with_desired_hash(hpa)


def prometheus_query(md: ModelDeployment) -> str:
    """The PromQL for KEDA: the ModelDeployment's total load (KEDA divides it by the replicas)."""
    selector = f'{METRIC_LABEL_NAMESPACE}="{md.namespace}",{METRIC_LABEL_MODEL}="{md.name}"'
    scaling = md.spec.autoscaling
    if scaling is not None and scaling.target.in_flight_requests_per_pod is not None:
        return f"sum({METRIC_INFLIGHT_REQUESTS}{{{selector}}})"
    return f"sum(rate({METRIC_REQUESTS_TOTAL}{{{selector}}}[{METRIC_RATE_WINDOW}]))"


def _keda_trigger(md: ModelDeployment, scaling: AutoscalingSpec, config: OperatorConfig) -> dict[str, Any]:
    target = scaling.target
    if target.cpu_utilization is not None:
        return {
            "type": "cpu",
            "metricType": "Utilization",
            "metadata": {"value": str(target.cpu_utilization)},
        }
    threshold = target.in_flight_requests_per_pod or target.requests_per_second_per_pod
    return {
        "type": "prometheus",
        "metricType": "AverageValue",
        "metadata": {
            "serverAddress": config.prometheus_address,
            "query": prometheus_query(md),
            "threshold": str(threshold),
        },
    }


def build_scaled_object(md: ModelDeployment, config: OperatorConfig) -> dict[str, Any] | None:
    """KEDA's ScaledObject of an autoscaled ModelDeployment with engine keda; None otherwise."""
    scaling = md.spec.autoscaling
    if scaling is None or not scaling.enabled or scaling.engine != "keda":
        return None
    spec: dict[str, Any] = {
        "scaleTargetRef": _scale_target(md),
        "minReplicaCount": scaling.min_replicas,
        "maxReplicaCount": scaling.max_replicas,
        "triggers": [_keda_trigger(md, scaling, config)],
    }
    if scaling.behavior:
        spec["advanced"] = {"horizontalPodAutoscalerConfig": {"behavior": scaling.behavior}}
    scaled_object = {
        "apiVersion": SCALED_OBJECT.api_version,
        "kind": SCALED_OBJECT.kind,
        "metadata": metadata(md, md.name, COMPONENT_SERVER),
        "spec": spec,
    }
    return with_desired_hash(scaled_object)
