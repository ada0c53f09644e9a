"""The ModelDeployment as typed values, parsed once from the API object at the edge.

The CRD (crds/modeldeploy.io_modeldeployments.yaml) validates and defaults; these classes mirror
its defaults so a body read from an older API server (or a unit test) parses the same way.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from modeldeploy_operator.constants import ANNOTATION_ROTATE, PVC_MOUNT_DIR
from modeldeploy_operator.rollout_spec import RolloutSpec
from modeldeploy_runtime.artifact_uri import ArtifactNameError, artifact_basename


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")


class SecretRef(_Spec):
    name: str


class ModelSpec(_Spec):
    uri: str
    version: str
    sha256: str | None = None
    format: Literal["joblib", "skops", "onnx"] = "joblib"
    storage_secret_ref: SecretRef | None = Field(default=None, alias="storageSecretRef")


class EnvVar(_Spec):
    name: str
    value: str = ""


class ResourceRequirements(_Spec):
    limits: dict[str, str | int] = Field(default_factory=dict)
    requests: dict[str, str | int] = Field(default_factory=dict)


class Toleration(_Spec):
    key: str | None = None
    operator: Literal["Equal", "Exists"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = Field(default=None, alias="tolerationSeconds")


class RuntimeSpec(_Spec):
    image: str | None = None
    workers: int = 1
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)
    env: tuple[EnvVar, ...] = ()
    node_selector: dict[str, str] = Field(default_factory=dict, alias="nodeSelector")
    tolerations: tuple[Toleration, ...] = ()
    # core/v1 Affinity, validated by the CRD's schema and passed to the pod template as it is.
    affinity: dict[str, Any] = Field(default_factory=dict)
    priority_class_name: str | None = Field(default=None, alias="priorityClassName")


class Client(_Spec):
    name: str


class AuthSpec(_Spec):
    enabled: bool = True
    clients: tuple[Client, ...] = ()


class ServiceMonitorSpec(_Spec):
    enabled: bool = True
    interval: str = "30s"


class MonitoringSpec(_Spec):
    service_monitor: ServiceMonitorSpec = Field(default_factory=ServiceMonitorSpec, alias="serviceMonitor")


class IssuerRef(_Spec):
    name: str
    kind: Literal["Issuer", "ClusterIssuer"] = "Issuer"
    group: str = "cert-manager.io"


class TLSSpec(_Spec):
    secret_name: str = Field(alias="secretName")
    issuer_ref: IssuerRef | None = Field(default=None, alias="issuerRef")


class NetworkPeer(_Spec):
    """A NetworkPolicy peer without ipBlock; each selector is a meta/v1 LabelSelector."""

    namespace_selector: dict[str, Any] | None = Field(default=None, alias="namespaceSelector")
    pod_selector: dict[str, Any] | None = Field(default=None, alias="podSelector")


class NetworkPolicySpec(_Spec):
    enabled: bool = False
    allow_from: tuple[NetworkPeer, ...] = Field(default=(), alias="allowFrom")


class AutoscalingTarget(_Spec):
    """Exactly one field is set (the CRD refuses anything else)."""

    cpu_utilization: int | None = Field(default=None, alias="cpuUtilization")
    in_flight_requests_per_pod: int | None = Field(default=None, alias="inFlightRequestsPerPod")
    requests_per_second_per_pod: int | None = Field(default=None, alias="requestsPerSecondPerPod")


class AutoscalingSpec(_Spec):
    enabled: bool = True
    min_replicas: int = Field(default=1, alias="minReplicas")
    max_replicas: int = Field(alias="maxReplicas")
    engine: Literal["hpa", "keda"] = "hpa"
    target: AutoscalingTarget
    # autoscaling/v2 HorizontalPodAutoscalerBehavior, validated by the CRD's schema, passed as it is.
    behavior: dict[str, Any] = Field(default_factory=dict)


class ModelDeploymentSpec(_Spec):
    model: ModelSpec
    replicas: int = 1
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)
    auth: AuthSpec = Field(default_factory=AuthSpec)
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)
    tls: TLSSpec | None = None
    network_policy: NetworkPolicySpec = Field(default_factory=NetworkPolicySpec, alias="networkPolicy")
    autoscaling: AutoscalingSpec | None = None
    rollout: RolloutSpec = Field(default_factory=RolloutSpec)

    @property
    def autoscaled(self) -> bool:
        """An autoscaler owns the Deployment's replica count (spec.replicas is ignored)."""
        return self.autoscaling is not None and self.autoscaling.enabled


class Scheme(Enum):
    S3 = "s3"
    HTTPS = "https"
    PVC = "pvc"
    FILE = "file"


@dataclass(frozen=True)
class ModelLocation:
    """Where the runtime finds the model, derived from ``spec.model.uri``."""

    scheme: Scheme
    uri: str
    path_in_pod: str  # what --model-uri receives
    claim: str | None = None  # pvc:// only
    remote: bool = False  # s3:// and https:// are fetched by the init container


class InvalidModelURIError(ValueError):
    """The URI is not one of the supported schemes; the CRD normally rejects it first."""


def parse_model_uri(uri: str, *, model_dir: str) -> ModelLocation:
    """Map a model URI to the path the runtime serves from (pure; ``model_dir`` is the fetch dir)."""
    if uri.startswith(("s3://", "https://")):
        scheme = Scheme.S3 if uri.startswith("s3://") else Scheme.HTTPS
        try:  # the fetcher decodes the name the same way, so both sides agree on the file
            basename = artifact_basename(uri)
        except ArtifactNameError as error:
            raise InvalidModelURIError(f"spec.model.uri: {error}") from error
        return ModelLocation(scheme, uri, posixpath.join(model_dir, basename), remote=True)
    if uri.startswith("pvc://"):
        claim, _, path = uri.removeprefix("pvc://").partition("/")
        if not claim or not path:
            raise InvalidModelURIError(f"spec.model.uri {uri!r} must look like pvc://<claim>/<path>")
        return ModelLocation(Scheme.PVC, uri, posixpath.join(PVC_MOUNT_DIR, path), claim=claim)
    if uri.startswith("file:///"):
        return ModelLocation(Scheme.FILE, uri, uri.removeprefix("file://"))
    raise InvalidModelURIError(f"spec.model.uri {uri!r} must start with s3://, https://, pvc:// or file:///")


@dataclass(frozen=True)
class ModelDeployment:
    """One ModelDeployment: identity, generation, parsed spec, and the requested key rotations."""

    name: str
    namespace: str
    uid: str
    generation: int
    spec: ModelDeploymentSpec
    rotate_clients: frozenset[str]
    status: Mapping[str, Any]
    annotations: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ModelDeployment:
        metadata = body.get("metadata", {})
        annotations = metadata.get("annotations") or {}
        rotate = annotations.get(ANNOTATION_ROTATE, "")
        return cls(
            name=metadata["name"],
            namespace=metadata["namespace"],
            uid=metadata["uid"],
            generation=int(metadata.get("generation", 1)),
            spec=ModelDeploymentSpec.model_validate(body.get("spec") or {}),
            rotate_clients=frozenset(part.strip() for part in rotate.split(",") if part.strip()),
            status=body.get("status") or {},
            annotations=dict(annotations),
        )

    @property
    def client_names(self) -> tuple[str, ...]:
        return tuple(client.name for client in self.spec.auth.clients) if self.spec.auth.enabled else ()
