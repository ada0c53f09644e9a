"""The one table of the Kubernetes resources the operator uses.

kopf's watches (handlers.py), the client's paths (kube.py), the cache's re-list (controller.py)
and the discovery of optional APIs (apis.py) are all derived from ``TABLE``: adding a child kind
is one row here (plus its builder and its place in the reconcile).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

from modeldeploy_operator.constants import GROUP, KIND, PLURAL, VERSION


class Role(Enum):
    PRIMARY = "primary"  # the ModelDeployment: watched; each event queues it
    CHILD = "child"  # built and owned by us: watched through OWNED_SELECTOR, re-listed, deleted when unwanted
    USED = "used"  # read or written on demand, never watched (Pods, Events)


@dataclass(frozen=True)
class Resource:
    kind: str
    group: str  # "" for the core API
    version: str
    plural: str
    role: Role
    namespaced: bool = True
    optional: bool = False  # served by a CRD that a cluster may lack: asked through discovery first

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def path_prefix(self) -> str:
        """The API path above namespaces: ``/api/v1`` for the core group, else ``/apis/<group>/<version>``."""
        return f"/apis/{self.api_version}" if self.group else f"/api/{self.version}"


# One row per resource.
MODEL_DEPLOYMENT: Final = Resource(KIND, GROUP, VERSION, PLURAL, Role.PRIMARY)
DEPLOYMENT: Final = Resource("Deployment", "apps", "v1", "deployments", Role.CHILD)
SERVICE: Final = Resource("Service", "", "v1", "services", Role.CHILD)
SECRET: Final = Resource("Secret", "", "v1", "secrets", Role.CHILD)
SERVICE_MONITOR: Final = Resource(
    "ServiceMonitor", "monitoring.coreos.com", "v1", "servicemonitors", Role.CHILD, optional=True
)
NETWORK_POLICY: Final = Resource("NetworkPolicy", "networking.k8s.io", "v1", "networkpolicies", Role.CHILD)
CERTIFICATE: Final = Resource(
    "Certificate", "cert-manager.io", "v1", "certificates", Role.CHILD, optional=True
)
HORIZONTAL_POD_AUTOSCALER: Final = Resource(
    "HorizontalPodAutoscaler", "autoscaling", "v2", "horizontalpodautoscalers", Role.CHILD
)
SCALED_OBJECT: Final = Resource(
    "ScaledObject", "keda.sh", "v1alpha1", "scaledobjects", Role.CHILD, optional=True
)
HTTP_ROUTE: Final = Resource(
    "HTTPRoute", "gateway.networking.k8s.io", "v1", "httproutes", Role.CHILD, optional=True
)
POD: Final = Resource("Pod", "", "v1", "pods", Role.USED)
EVENT: Final = Resource("Event", "", "v1", "events", Role.USED)
LEASE: Final = Resource("Lease", "coordination.k8s.io", "v1", "leases", Role.USED)  # leader election

TABLE: Final = (
    MODEL_DEPLOYMENT, DEPLOYMENT, SERVICE, SECRET, SERVICE_MONITOR, NETWORK_POLICY, CERTIFICATE,
    HORIZONTAL_POD_AUTOSCALER, SCALED_OBJECT, HTTP_ROUTE, POD, EVENT, LEASE,
)  # fmt: skip

BY_KIND: Final = {resource.kind: resource for resource in TABLE}
CHILDREN: Final = tuple(resource for resource in TABLE if resource.role is Role.CHILD)
WATCHED: Final = tuple(resource for resource in TABLE if resource.role is not Role.USED)
OPTIONAL: Final = tuple(resource for resource in TABLE if resource.optional)


def resource_of(obj: Mapping[str, Any]) -> Resource:
    """The row of an object body, by its ``kind``."""
    return BY_KIND[str(obj["kind"])]
