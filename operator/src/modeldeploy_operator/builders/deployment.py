"""The Deployment running the model runtime (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modeldeploy_operator.builders.meta import (
    hashes_secret_name,
    metadata,
    selector_labels,
    serving_port_name,
    with_desired_hash,
)
from modeldeploy_operator.builders.meta import labels as standard_labels
from modeldeploy_operator.config import OperatorConfig
from modeldeploy_operator.constants import (
    ANNOTATION_MODEL_SHA256,
    ANNOTATION_MODEL_VERSION,
    APIKEYS_DIR,
    APIKEYS_FILE_KEY,
    COMPONENT_SERVER,
    CONTAINER_FETCH,
    CONTAINER_RUNTIME,
    ENV_TLS_CERT_FILE,
    ENV_TLS_KEY_FILE,
    LABEL_MODEL_DEPLOYMENT,
    MODEL_DIR,
    PATH_LIVE,
    PATH_READY,
    PORT_HTTP,
    PORT_METRICS,
    PORT_METRICS_NAME,
    PVC_MOUNT_DIR,
    RUNTIME_EXECUTABLE,
    RUNTIME_UID,
    TLS_CERT_KEY,
    TLS_DIR,
    TLS_KEY_KEY,
    TMP_DIR,
    VOLUME_APIKEYS,
    VOLUME_MODEL,
    VOLUME_PVC,
    VOLUME_TLS,
    VOLUME_TMP,
)
from modeldeploy_operator.model import ModelDeployment, ModelLocation, parse_model_uri
from modeldeploy_operator.resources import DEPLOYMENT


@dataclass(frozen=True)
class RuntimeCommands:
    """The runtime's command-line contract: the init container's and the server's arguments."""

    fetch: list[str] | None  # None when the model needs no download
    serve: list[str]


def runtime_commands(md: ModelDeployment, location: ModelLocation) -> RuntimeCommands:
    """The ONE place that renders ``modeldeploy-runtime`` arguments (adjust here when it changes)."""
    model = md.spec.model
    fetch = None
    if location.remote:
        fetch = ["fetch", "--uri", model.uri, "--dest", MODEL_DIR]
        if model.sha256:
            fetch += ["--sha256", model.sha256]
    serve = [
        "serve",
        "--model-uri",
        location.path_in_pod,
        "--model-name",
        md.name,
        "--model-version",
        model.version,
    ]
    if model.sha256:
        serve += ["--model-sha256", model.sha256]
    serve += [
        "--model-format", model.format,
        "--port", str(PORT_HTTP),
        "--metrics-port", str(PORT_METRICS),
        "--workers", str(md.spec.runtime.workers),
    ]  # fmt: skip
    if md.spec.auth.enabled:
        serve += ["--auth-keys-file", f"{APIKEYS_DIR}/{APIKEYS_FILE_KEY}"]
    return RuntimeCommands(fetch=fetch, serve=serve)


def _container_security_context() -> dict[str, Any]:
    """Restricted Pod Security Standard, read-only root filesystem."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": RUNTIME_UID,
        "runAsGroup": RUNTIME_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _probe(md: ModelDeployment, path: str, *, period: int, failures: int, timeout: int = 2) -> dict[str, Any]:
    get: dict[str, Any] = {"path": path, "port": serving_port_name(md)}
    if md.spec.tls is not None:
        get["scheme"] = "HTTPS"
    return {
        "httpGet": get,
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
    }


def _resources(md: ModelDeployment) -> dict[str, Any]:
    resources = md.spec.runtime.resources
    out: dict[str, Any] = {}
    if resources.limits:
        out["limits"] = dict(resources.limits)
    if resources.requests:
        out["requests"] = dict(resources.requests)
    return out


def _env(md: ModelDeployment) -> list[dict[str, str]]:
    """The runtime container's env: the TLS files first, then spec.runtime.env.

    An empty value is rendered as no ``value`` at all: the API server drops an empty string, and the
    object it stores must compare equal to the desired one (else every reconcile re-applies it).
    """
    env = []
    if md.spec.tls is not None:
        env += [
            {"name": ENV_TLS_CERT_FILE, "value": f"{TLS_DIR}/{TLS_CERT_KEY}"},
            {"name": ENV_TLS_KEY_FILE, "value": f"{TLS_DIR}/{TLS_KEY_KEY}"},
        ]
    env += [
        {"name": var.name, "value": var.value} if var.value else {"name": var.name}
        for var in md.spec.runtime.env
    ]
    return env


def runtime_image(md: ModelDeployment, config: OperatorConfig) -> str:
    """spec.runtime.image, else the operator's default for the model's format: ONNX models run on
    the ONNX-only runtime image, joblib and skops on the scikit-learn one."""
    if md.spec.runtime.image:
        return md.spec.runtime.image
    return config.runtime_onnx_image if md.spec.model.format == "onnx" else config.runtime_image


def runtime_containers(
    md: ModelDeployment, config: OperatorConfig
) -> tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]]]:
    """(init containers, the runtime container, volumes) for ``md``."""
    location = parse_model_uri(md.spec.model.uri, model_dir=MODEL_DIR)
    commands = runtime_commands(md, location)
    image = runtime_image(md, config)
    volumes: list[dict[str, Any]] = [{"name": VOLUME_TMP, "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [{"name": VOLUME_TMP, "mountPath": TMP_DIR}]
    init_containers: list[dict[str, Any]] = []
    if commands.fetch is not None:
        volumes.append({"name": VOLUME_MODEL, "emptyDir": {}})
        model_mount = {"name": VOLUME_MODEL, "mountPath": MODEL_DIR}
        mounts.append({**model_mount, "readOnly": True})
        fetch: dict[str, Any] = {
            "name": CONTAINER_FETCH,
            "image": image,
            "command": [RUNTIME_EXECUTABLE],
            "args": commands.fetch,
            "securityContext": _container_security_context(),
            "volumeMounts": [{"name": VOLUME_TMP, "mountPath": TMP_DIR}, model_mount],
        }
        if md.spec.model.storage_secret_ref is not None:
            fetch["envFrom"] = [{"secretRef": {"name": md.spec.model.storage_secret_ref.name}}]
        init_containers.append(fetch)
    if location.claim is not None:
        volumes.append(
            {"name": VOLUME_PVC, "persistentVolumeClaim": {"claimName": location.claim, "readOnly": True}}
        )
        mounts.append({"name": VOLUME_PVC, "mountPath": PVC_MOUNT_DIR, "readOnly": True})
    if md.spec.auth.enabled:
        volumes.append(
            {
                "name": VOLUME_APIKEYS,
                "secret": {"secretName": hashes_secret_name(md.name), "defaultMode": 0o440},
            }
        )
        mounts.append({"name": VOLUME_APIKEYS, "mountPath": APIKEYS_DIR, "readOnly": True})
    if md.spec.tls is not None:
        volumes.append(
            {"name": VOLUME_TLS, "secret": {"secretName": md.spec.tls.secret_name, "defaultMode": 0o440}}
        )
        mounts.append({"name": VOLUME_TLS, "mountPath": TLS_DIR, "readOnly": True})
    container: dict[str, Any] = {
        "name": CONTAINER_RUNTIME,
        "image": image,
        "command": [RUNTIME_EXECUTABLE],
        "args": commands.serve,
        "ports": [
            {"name": serving_port_name(md), "containerPort": PORT_HTTP, "protocol": "TCP"},
            {"name": PORT_METRICS_NAME, "containerPort": PORT_METRICS, "protocol": "TCP"},
        ],
        "env": _env(md),
        "resources": _resources(md),
        "startupProbe": _probe(md, PATH_READY, period=5, failures=120),  # up to 10 minutes to load a model
        "readinessProbe": _probe(md, PATH_READY, period=5, failures=2),
        "livenessProbe": _probe(md, PATH_LIVE, period=10, failures=3),
        "securityContext": _container_security_context(),
        "volumeMounts": mounts,
    }
    if not container["env"]:
        del container["env"]
    return init_containers, container, volumes


def _scheduling(md: ModelDeployment) -> dict[str, Any]:
    """spec.runtime's nodeSelector, tolerations, affinity and priorityClassName, as pod spec fields."""
    runtime = md.spec.runtime
    fields: dict[str, Any] = {}
    if runtime.node_selector:
        fields["nodeSelector"] = dict(runtime.node_selector)
    if runtime.tolerations:
        fields["tolerations"] = [
            toleration.model_dump(by_alias=True, exclude_none=True) for toleration in runtime.tolerations
        ]
    if runtime.affinity:
        fields["affinity"] = dict(runtime.affinity)
    if runtime.priority_class_name:
        fields["priorityClassName"] = runtime.priority_class_name
    return fields


def build_deployment(md: ModelDeployment, config: OperatorConfig) -> dict[str, Any]:
    init_containers, container, volumes = runtime_containers(md, config)
    # The preStop pause lets endpoints drop the pod before the server stops accepting requests.
    container = {**container, "lifecycle": {"preStop": {"sleep": {"seconds": config.prestop_sleep_seconds}}}}
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": config.termination_grace_seconds,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUNTIME_UID,
            "runAsGroup": RUNTIME_UID,
            "fsGroup": RUNTIME_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
        **_scheduling(md),
    }
    if init_containers:
        pod_spec["initContainers"] = init_containers
    pod_labels = {**standard_labels(md, COMPONENT_SERVER), **selector_labels(md)}
    pod_labels[LABEL_MODEL_DEPLOYMENT] = md.name
    deployment: dict[str, Any] = {
        "apiVersion": DEPLOYMENT.api_version,
        "kind": DEPLOYMENT.kind,
        "metadata": metadata(md, md.name, COMPONENT_SERVER),
        "spec": {
            "replicas": md.spec.replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector_labels(md)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": {
                        ANNOTATION_MODEL_VERSION: md.spec.model.version,
                        ANNOTATION_MODEL_SHA256: md.spec.model.sha256 or "",
                    },
                },
                "spec": pod_spec,
            },
        },
    }
    if md.spec.autoscaled:  # the autoscaler's field manager owns the count: never written by us
        del deployment["spec"]["replicas"]
    return with_desired_hash(deployment)
