"""The only module that talks to the Kubernetes API (through the official client's transport).

Children are written with server-side apply (field manager ``modeldeploy-operator``, force), so
the operator never does "exists? then create". Bodies are plain dicts; responses are parsed JSON.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from kubernetes import client, config

from modeldeploy_operator.constants import API_VERSION, FIELD_MANAGER, KIND, OPERATOR_NAME, PLURAL

# kind -> (API path prefix, plural, apiVersion)
RESOURCES: dict[str, tuple[str, str, str]] = {
    KIND: (f"/apis/{API_VERSION}", PLURAL, API_VERSION),
    "Deployment": ("/apis/apps/v1", "deployments", "apps/v1"),
    "Service": ("/api/v1", "services", "v1"),
    "Secret": ("/api/v1", "secrets", "v1"),
    "Pod": ("/api/v1", "pods", "v1"),
    "Event": ("/api/v1", "events", "v1"),
    "ServiceMonitor": ("/apis/monitoring.coreos.com/v1", "servicemonitors", "monitoring.coreos.com/v1"),
}

WriteRecorder = Callable[[str, str], None]  # (verb, kind)


class KubeError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


@dataclass(frozen=True)
class ListResult:
    items: list[dict[str, Any]]
    resource_version: int


def _path(kind: str, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
    prefix, plural, _ = RESOURCES[kind]
    path = prefix + (f"/namespaces/{quote(namespace)}" if namespace else "") + f"/{plural}"
    if name:
        path += f"/{quote(name)}"
    if subresource:
        path += f"/{subresource}"
    return path


def load_api_client(pool_size: int, kubeconfig: str | None = None) -> client.ApiClient:
    """``kubeconfig`` when given; else in-cluster config in a pod, else ``KUBECONFIG`` or ~/.kube/config."""
    configuration = client.Configuration()
    if kubeconfig is not None:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    configuration.connection_pool_maxsize = max(pool_size, 4)
    return client.ApiClient(configuration)


class Kube:
    def __init__(self, api: client.ApiClient, record_write: WriteRecorder | None = None) -> None:
        self._api = api
        self._record_write = record_write or (lambda verb, kind: None)

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: object = None,
        content_type: str = "application/json",
    ) -> Any:
        url_path = path + ("?" + urlencode(query) if query else "")
        headers = {"Accept": "application/json", "Content-Type": content_type}
        _, url, headers, _, _ = self._api.param_serialize(
            method, url_path, header_params=headers, auth_settings=["BearerToken"]
        )
        response = self._api.call_api(
            method, url, header_params=headers, body=body, _request_timeout=(10, 60)
        )
        data = response.read()  # type: ignore[no-untyped-call]
        if response.status >= 400:
            try:
                message = json.loads(data).get("message", "")
            except ValueError:
                message = data[:200].decode(errors="replace")
            raise KubeError(response.status, message)
        return json.loads(data) if data else {}

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._request("GET", _path(kind, namespace, name))  # type: ignore[no-any-return]
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    def list(self, kind: str, namespace: str | None, label_selector: str | None = None) -> ListResult:
        query = {"labelSelector": label_selector} if label_selector else None
        document = self._request("GET", _path(kind, namespace), query=query)
        return ListResult(document.get("items", []), int(document["metadata"]["resourceVersion"]))

    def apply(self, obj: Mapping[str, Any], *, status: bool = False) -> dict[str, Any]:
        """Server-side apply ``obj`` (or its status); returns the object as stored."""
        kind = str(obj["kind"])
        metadata = obj["metadata"]
        path = _path(kind, metadata["namespace"], metadata["name"], "status" if status else None)
        self._record_write("apply", kind + ("/status" if status else ""))
        return self._request(  # type: ignore[no-any-return]
            "PATCH",
            path,
            query={"fieldManager": FIELD_MANAGER, "force": "true"},
            body=dict(obj),
            content_type="application/apply-patch+yaml",
        )

    def merge_patch(self, kind: str, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        self._record_write("patch", kind)
        return self._request(  # type: ignore[no-any-return]
            "PATCH",
            _path(kind, namespace, name),
            query={"fieldManager": FIELD_MANAGER},
            body=dict(patch),
            content_type="application/merge-patch+json",
        )

    def delete(self, kind: str, namespace: str, name: str) -> None:
        self._record_write("delete", kind)
        try:
            self._request("DELETE", _path(kind, namespace, name), body={"propagationPolicy": "Background"})
        except KubeError as error:
            if error.status != 404:
                raise

    def has_group_resource(self, group_version: str, plural: str) -> bool:
        """Whether discovery lists ``plural`` in ``group_version`` (e.g. monitoring.coreos.com/v1)."""
        try:
            document = self._request("GET", f"/apis/{group_version}")
        except KubeError as error:
            if error.status in (404, 503):
                return False
            raise
        return any(resource.get("name") == plural for resource in document.get("resources", []))

    def post_event(
        self, involved: Mapping[str, Any], *, event_type: str, reason: str, message: str, now: datetime
    ) -> None:
        """A core/v1 Event about a ModelDeployment (never carries a key: callers pass fixed texts)."""
        metadata = involved["metadata"]
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{metadata['name']}.{secrets.token_hex(8)}",
                "namespace": metadata["namespace"],
            },
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": metadata["name"],
                "namespace": metadata["namespace"],
                "uid": metadata["uid"],
                "resourceVersion": metadata.get("resourceVersion", ""),
            },
            "type": event_type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": OPERATOR_NAME},
            "reportingComponent": OPERATOR_NAME,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        self._record_write("create", "Event")
        self._request("POST", _path("Event", metadata["namespace"]), body=event)
