"""Names, labels, owner references and the desired-state hash shared by every builder."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from modeldeploy_operator.constants import (
    ANNOTATION_DESIRED_HASH,
    API_VERSION,
    APP_NAME,
    COMPONENT_SERVER,
    KIND,
    LABEL_COMPONENT,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_MODEL_DEPLOYMENT,
    LABEL_NAME,
    LABEL_PART_OF,
    LABEL_VERSION,
    OPERATOR_NAME,
    PART_OF,
    PORT_HTTP_NAME,
    PORT_HTTPS_NAME,
    SUFFIX_APIKEYS,
    SUFFIX_CLIENT,
)
from modeldeploy_operator.model import ModelDeployment


def hashes_secret_name(md_name: str) -> str:
    return f"{md_name}{SUFFIX_APIKEYS}"


def client_secret_name(md_name: str, client: str) -> str:
    return f"{md_name}{SUFFIX_CLIENT}{client}"


def serving_port_name(md: ModelDeployment) -> str:
    """The serving port's name on the container and the Service: ``https`` with spec.tls, else ``http``."""
    return PORT_HTTPS_NAME if md.spec.tls is not None else PORT_HTTP_NAME


def selector_labels(md: ModelDeployment) -> dict[str, str]:
    """The Deployment/Service selector: stable for the object's lifetime (selectors are immutable)."""
    return {LABEL_MODEL_DEPLOYMENT: md.name, LABEL_COMPONENT: COMPONENT_SERVER}


def selector_string(md: ModelDeployment) -> str:
    """``status.selector`` for the scale subresource (label-selector string form)."""
    return ",".join(f"{key}={value}" for key, value in sorted(selector_labels(md).items()))


def labels(md: ModelDeployment, component: str) -> dict[str, str]:
    return {
        LABEL_NAME: APP_NAME,
        LABEL_INSTANCE: md.name,
        LABEL_VERSION: md.spec.model.version,
        LABEL_COMPONENT: component,
        LABEL_PART_OF: PART_OF,
        LABEL_MANAGED_BY: OPERATOR_NAME,
        LABEL_MODEL_DEPLOYMENT: md.name,
    }


def owner_reference(md: ModelDeployment) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": md.name,
        "uid": md.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(md: ModelDeployment, name: str, component: str, **extra_labels: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": md.namespace,
        "labels": {**labels(md, component), **extra_labels},
        "ownerReferences": [owner_reference(md)],
    }


def desired_hash(obj: dict[str, Any]) -> str:
    """A digest of the desired object, so a removed field is noticed even though SSA keeps others'."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def with_desired_hash(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with ``metadata.annotations[modeldeploy.io/desired-hash]`` set to the hash of the rest."""
    annotations = dict(obj["metadata"].get("annotations", {}))
    annotations.pop(ANNOTATION_DESIRED_HASH, None)
    bare = {**obj, "metadata": {**obj["metadata"], "annotations": annotations}}
    if not annotations:
        del bare["metadata"]["annotations"]
    annotations[ANNOTATION_DESIRED_HASH] = desired_hash(bare)
    return {**obj, "metadata": {**obj["metadata"], "annotations": annotations}}
