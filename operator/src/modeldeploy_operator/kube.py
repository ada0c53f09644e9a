"""The only module that talks to the Kubernetes API (through the official client's transport).

Children are written with server-side apply (field manager ``modeldeploy-operator``, force), so
the operator never does "exists? then create". Bodies are plain dicts; responses are parsed JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlencode

import urllib3

from modeldeploy_operator.constants import FIELD_MANAGER
from modeldeploy_operator.resources import Resource, resource_of

if TYPE_CHECKING:
    from kubernetes import client

WriteRecorder = Callable[[str, str], None]  # (verb, kind)
WriteGate = Callable[[], bool]  # whether writes may go out now (this replica leads)
DEFAULT_REQUEST_TIMEOUT = (10.0, 60.0)  # (connect, read) seconds


class KubeError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class KubeUnreachableError(KubeError):
    """No answer: the connection was refused, reset or timed out (``status`` 0)."""

    def __init__(self, message: str) -> None:
        RuntimeError.__init__(self, f"API server unreachable: {message}")
        self.status = 0


class NotLeadingError(RuntimeError):
    """A write was refused before it was sent: this replica does not hold the leader Lease."""


@dataclass(frozen=True)
class ListResult:
    items: list[dict[str, Any]]
    resource_version: int


class KubeAPI(Protocol):
    """What the controller and the reconcile ask of the API server (``Kube`` over HTTP; an in-memory
    fake in the unit tests)."""

    def get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any] | None: ...

    def list(
        self, resource: Resource, namespace: str | None, label_selector: str | None = None
    ) -> ListResult: ...

    def apply(
        self, obj: Mapping[str, Any], *, status: bool = False, field_manager: str = FIELD_MANAGER
    ) -> dict[str, Any]: ...

    def merge_patch(
        self, resource: Resource, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]: ...

    def delete(self, resource: Resource, namespace: str, name: str) -> None: ...

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]: ...

    def serves(self, resource: Resource) -> bool: ...


def _path(
    resource: Resource, namespace: str | None, name: str | None = None, subresource: str | None = None
) -> str:
    scope = f"/namespaces/{quote(namespace)}" if namespace and resource.namespaced else ""
    path = f"{resource.path_prefix}{scope}/{resource.plural}"
    if name:
        path += f"/{quote(name)}"
    if subresource:
        path += f"/{subresource}"
    return path


def load_api_client(pool_size: int, kubeconfig: str | None = None) -> client.ApiClient:
    """``kubeconfig`` when given; else in-cluster config in a pod, else ``KUBECONFIG`` or ~/.kube/config."""
    # Imported here: the client takes a second to import, and only a running operator needs it
    # (the controller's and the reconcile's unit tests use an in-memory KubeAPI).
    from kubernetes import client, config  # noqa: PLC0415

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
    def __init__(
        self,
        api: client.ApiClient,
        record_write: WriteRecorder | None = None,
        *,
        may_write: WriteGate | None = None,
        request_timeout: tuple[float, float] = DEFAULT_REQUEST_TIMEOUT,
    ) -> None:
        self._api = api
        self._record_write_to_metrics = record_write or (lambda verb, kind: None)
        self._may_write = may_write or (lambda: True)
        self._request_timeout = request_timeout

    def _record_write(self, verb: str, kind: str) -> None:
        """The one gate of every write: refused unless we lead, counted when sent."""
        if not self._may_write():
            raise NotLeadingError(f"{verb} {kind} refused: this replica is not the leader")
        self._record_write_to_metrics(verb, kind)

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
        try:
            response = self._api.call_api(
                method, url, header_params=headers, body=body, _request_timeout=self._request_timeout
            )
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise KubeUnreachableError(str(error)) from error
        data = response.read()  # type: ignore[no-untyped-call]
        if response.status >= 400:
            try:
                message = json.loads(data).get("message", "")
            except ValueError:
                message = data[:200].decode(errors="replace")
            raise KubeError(response.status, message)
        return json.loads(data) if data else {}

    def get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._request("GET", _path(resource, namespace, name))  # type: ignore[no-any-return]
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    def list(
        self, resource: Resource, namespace: str | None, label_selector: str | None = None
    ) -> ListResult:
        query = {"labelSelector": label_selector} if label_selector else None
        document = self._request("GET", _path(resource, namespace), query=query)
        return ListResult(document.get("items", []), int(document["metadata"]["resourceVersion"]))

    def apply(
        self, obj: Mapping[str, Any], *, status: bool = False, field_manager: str = FIELD_MANAGER
    ) -> dict[str, Any]:
        """Server-side apply ``obj`` (or its status); returns the object as stored."""
        resource = resource_of(obj)
        metadata = obj["metadata"]
        path = _path(resource, metadata["namespace"], metadata["name"], "status" if status else None)
        self._record_write("apply", resource.kind + ("/status" if status else ""))
        return self._request(  # type: ignore[no-any-return]
            "PATCH",
            path,
            query={"fieldManager": field_manager, "force": "true"},
            body=dict(obj),
            content_type="application/apply-patch+yaml",
        )

    def merge_patch(
        self, resource: Resource, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        self._record_write("patch", resource.kind)
        return self._request(  # type: ignore[no-any-return]
            "PATCH",
            _path(resource, namespace, name),
            query={"fieldManager": FIELD_MANAGER},
            body=dict(patch),
            content_type="application/merge-patch+json",
        )

    def delete(self, resource: Resource, namespace: str, name: str) -> None:
        self._record_write("delete", resource.kind)
        try:
            self._request(
                "DELETE", _path(resource, namespace, name), body={"propagationPolicy": "Background"}
            )
        except KubeError as error:
            if error.status != 404:
                raise

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        resource = resource_of(obj)
        self._record_write("create", resource.kind)
        path = _path(resource, obj["metadata"].get("namespace"))
        return self._request("POST", path, body=dict(obj))  # type: ignore[no-any-return]

    def replace(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """PUT ``obj``; with ``metadata.resourceVersion`` set, a concurrent change fails with 409."""
        resource = resource_of(obj)
        metadata = obj["metadata"]
        self._record_write("update", resource.kind)
        path = _path(resource, metadata.get("namespace"), metadata["name"])
        return self._request("PUT", path, body=dict(obj))  # type: ignore[no-any-return]

    def serves(self, resource: Resource) -> bool:
        """Whether discovery lists ``resource`` (an optional CRD's API may be missing or unavailable)."""
        try:
            document = self._request("GET", resource.path_prefix)
        except KubeError as error:
            if error.status in (404, 503):
                return False
            raise
        return any(entry.get("name") == resource.plural for entry in document.get("resources", []))
