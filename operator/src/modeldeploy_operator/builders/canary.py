"""The canary's children (pure): the Deployment ``<name>-canary``, and with an httpRoute the Service
``<name>-canary`` and the HTTPRoute splitting requests by weight between it and ``<name>``."""

from __future__ import annotations

from typing import Any

from modeldeploy_operator.builders.deployment import build_deployment
from modeldeploy_operator.builders.meta import metadata, with_desired_hash
from modeldeploy_operator.builders.service import build_service
from modeldeploy_operator.config import OperatorConfig
from modeldeploy_operator.constants import (
    COMPONENT_CANARY,
    COMPONENT_SERVER,
    LABEL_COMPONENT,
    LABEL_MODEL_DEPLOYMENT,
    LABEL_TRACK,
    PORT_HTTP,
    SUFFIX_CANARY,
    TRACK_CANARY,
)
from modeldeploy_operator.model import ModelDeployment, ModelSpec
from modeldeploy_operator.resources import HTTP_ROUTE
from modeldeploy_operator.rollout_spec import HTTPRouteRef


def canary_name(md: ModelDeployment) -> str:
    return f"{md.name}{SUFFIX_CANARY}"


def with_model(md: ModelDeployment, model: ModelSpec) -> ModelDeployment:
    """``md`` serving ``model`` instead of spec.model (the stable or the canary Deployment's view)."""
    spec = md.spec.model_copy(update={"model": model})
    return ModelDeployment(
        md.name, md.namespace, md.uid, md.generation, spec, md.rotate_clients, md.status, md.annotations
    )


def canary_selector(md: ModelDeployment) -> dict[str, str]:
    """The canary Deployment's selector: the same whether its pods join the Service <name> or not."""
    return {LABEL_MODEL_DEPLOYMENT: md.name, LABEL_TRACK: TRACK_CANARY}


def build_canary_deployment(
    md: ModelDeployment, model: ModelSpec, replicas: int, config: OperatorConfig
) -> dict[str, Any]:
    """The stable Deployment with ``model``, ``replicas`` and the canary's name and labels.

    Without an httpRoute the pods keep the Service's selector labels, so they take a share of the
    Service's requests in proportion to their number; with one they carry their own component
    instead, and only the canary Service (and the HTTPRoute's weight) reaches them.
    """
    deployment = build_deployment(with_model(md, model), config)
    component = COMPONENT_CANARY if _routed(md) else COMPONENT_SERVER
    template = deployment["spec"]["template"]
    pod_labels = {**template["metadata"]["labels"], **canary_selector(md), LABEL_COMPONENT: component}
    meta = {**deployment["metadata"], "name": canary_name(md)}
    meta["labels"] = {**meta["labels"], LABEL_TRACK: TRACK_CANARY}
    spec = {
        **deployment["spec"],
        "replicas": replicas,
        "selector": {"matchLabels": canary_selector(md)},
        "template": {**template, "metadata": {**template["metadata"], "labels": pod_labels}},
    }
    return with_desired_hash({**deployment, "metadata": meta, "spec": spec})


def _routed(md: ModelDeployment) -> bool:
    canary = md.spec.rollout.canary
    return canary is not None and canary.http_route is not None


def build_canary_service(md: ModelDeployment) -> dict[str, Any]:
    """The Service ``<name>-canary`` in front of the canary pods only (for the HTTPRoute)."""
    service = build_service(md)
    meta = {**metadata(md, canary_name(md), COMPONENT_CANARY)}
    spec = {**service["spec"], "selector": canary_selector(md)}
    return with_desired_hash({**service, "metadata": meta, "spec": spec})


def build_http_route(md: ModelDeployment, route: HTTPRouteRef, canary_weight: int) -> dict[str, Any]:
    """The HTTPRoute sending ``canary_weight`` percent to ``<name>-canary`` and the rest to ``<name>``.

    With no canary (weight 0) the canary backend is left out, so the route never points at a
    Service that does not exist.
    """
    parents = [ref.model_dump(by_alias=True, exclude_none=True) for ref in route.parent_refs]
    backends = [{"name": md.name, "port": PORT_HTTP, "weight": 100 - canary_weight}]
    if canary_weight > 0:
        backends.append({"name": canary_name(md), "port": PORT_HTTP, "weight": canary_weight})
    http_route = {
        "apiVersion": HTTP_ROUTE.api_version,
        "kind": HTTP_ROUTE.kind,
        "metadata": metadata(md, route.name, COMPONENT_SERVER),
        "spec": {
            "parentRefs": parents,
            "rules": [{"backendRefs": backends}],
        },
    }
    return with_desired_hash(http_route)
