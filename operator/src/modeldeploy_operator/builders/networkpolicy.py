"""The NetworkPolicy admitting only the listed callers to the serving port (pure)."""

from __future__ import annotations

from typing import Any

from modeldeploy_operator.builders.meta import metadata, serving_port_name, with_desired_hash
from modeldeploy_operator.config import OperatorConfig
from modeldeploy_operator.constants import (
    COMPONENT_SERVER,
    LABEL_MODEL_DEPLOYMENT,
    LABEL_NAME,
    LABEL_NAMESPACE_NAME,
    OPERATOR_NAME,
    PORT_METRICS_NAME,
)
from modeldeploy_operator.model import ModelDeployment, NetworkPeer
from modeldeploy_operator.resources import NETWORK_POLICY


def _peer(peer: NetworkPeer) -> dict[str, Any]:
    rendered: dict[str, Any] = {}
    if peer.namespace_selector is not None:
        rendered["namespaceSelector"] = dict(peer.namespace_selector)
    if peer.pod_selector is not None:
        rendered["podSelector"] = dict(peer.pod_selector)
    return rendered


def build_network_policy(md: ModelDeployment, config: OperatorConfig) -> dict[str, Any]:
    """Ingress to the runtime pods: ``allowFrom`` to the serving port, the monitoring namespace to
    the metrics port, nothing else.

    A rule is left out rather than rendered with no peers: an ingress rule without ``from`` admits
    every source, so an empty ``allowFrom`` must mean no rule at all.
    """
    ingress: list[dict[str, Any]] = []
    peers = [_peer(peer) for peer in md.spec.network_policy.allow_from]
    if peers:
        ingress.append({"from": peers, "ports": [{"port": serving_port_name(md), "protocol": "TCP"}]})
    if md.spec.rollout.is_canary and config.canary_prometheus_url is None and config.operator_namespace:
        # The operator reads the canary's and the stable pods' /metrics itself (docs/canary.md).
        operator = {
            "namespaceSelector": {"matchLabels": {LABEL_NAMESPACE_NAME: config.operator_namespace}},
            "podSelector": {"matchLabels": {LABEL_NAME: OPERATOR_NAME}},
        }
        ingress.append({"from": [operator], "ports": [{"port": PORT_METRICS_NAME, "protocol": "TCP"}]})
    if config.monitoring_namespace:
        monitoring = {
            "namespaceSelector": {"matchLabels": {LABEL_NAMESPACE_NAME: config.monitoring_namespace}}
        }
        ingress.append({"from": [monitoring], "ports": [{"port": PORT_METRICS_NAME, "protocol": "TCP"}]})
    policy = {
        "apiVersion": NETWORK_POLICY.api_version,
        "kind": NETWORK_POLICY.kind,
        "metadata": metadata(md, md.name, COMPONENT_SERVER),
        "spec": {
            # Every runtime pod of this ModelDeployment, the canary's too (whatever its component).
            "podSelector": {"matchLabels": {LABEL_MODEL_DEPLOYMENT: md.name}},
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }
    return with_desired_hash(policy)
