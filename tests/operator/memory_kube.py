"""An in-memory fake of OUR OWN port ``modeldeploy_operator.kube.KubeAPI``, for unit tests of the
reconcile's and the controller's logic (what they write, when, and how they recover).

It is not a model of the API server: validation, admission, defaulting, server-side-apply
field ownership and garbage collection are tested against the real control plane
(tests/operator/test_operator.py and friends). Apply here replaces the object's fields, keeps its
status, and bumps ``resourceVersion`` (and ``generation`` when the spec changes); a merge patch
carrying ``metadata.resourceVersion`` is refused with 409 when the object has moved on.
"""

from __future__ import annotations

import copy
import itertools
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from modeldeploy_operator.constants import FIELD_MANAGER
from modeldeploy_operator.kube import KubeError, ListResult
from modeldeploy_operator.resources import Resource, resource_of

Key = tuple[str, str, str]  # (kind, namespace, name)


@dataclass(frozen=True)
class Write:
    verb: str  # apply, apply-status, patch, delete, create
    kind: str
    name: str


def _merge(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    """RFC 7386 JSON merge patch, in place."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _matches(labels: Mapping[str, str], selector: str | None) -> bool:
    """Equality (``k=v``) and existence (``k``) terms, as the operator's selectors use."""
    for term in (selector or "").split(","):
        if not term:
            continue
        key, has_value, value = term.partition("=")
        if key not in labels or (has_value and labels[key] != value):
            return False
    return True


class MemoryKube:
    def __init__(self, *, served: Iterable[Resource] = ()) -> None:
        """``served``: the optional APIs (CRDs) this fake cluster has; built-in ones always exist."""
        self.objects: dict[Key, dict[str, Any]] = {}
        self.writes: list[Write] = []
        self.reads: list[tuple[str, str]] = []  # (verb, kind): get, list, discovery
        self.served = {resource.kind for resource in served}
        self._versions = itertools.count(100)
        self._failures: dict[tuple[str, str], tuple[KubeError, int]] = {}  # (verb, kind) -> (error, times)

    # -- test controls ----------------------------------------------------------------------------
    def seed(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Store ``obj`` as if someone else had created it (no write is recorded)."""
        stored = copy.deepcopy(dict(obj))
        metadata = stored.setdefault("metadata", {})
        metadata.setdefault("uid", str(uuid.uuid4()))
        metadata.setdefault("generation", 1)
        metadata["resourceVersion"] = str(next(self._versions))
        self.objects[self._key(stored)] = stored
        return copy.deepcopy(stored)

    def edit(self, resource: Resource, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """Someone else changes an object (a merge patch; no write of ours is recorded)."""
        stored = self.objects[(resource.kind, namespace, name)]
        _merge(stored, patch)
        stored["metadata"]["resourceVersion"] = str(next(self._versions))
        return copy.deepcopy(stored)

    def remove(self, resource: Resource, namespace: str, name: str) -> None:
        """Someone else deletes an object."""
        del self.objects[(resource.kind, namespace, name)]

    def fail(self, verb: str, kind: str, status: int, message: str = "injected", times: int = 1) -> None:
        """The next ``times`` calls of ``verb`` on ``kind`` raise ``KubeError(status)``."""
        self._failures[(verb, kind)] = (KubeError(status, message), times)

    def stored(self, resource: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.objects.get((resource.kind, namespace, name)))

    def writes_of(self, verb: str | None = None, kind: str | None = None) -> list[Write]:
        return [
            w for w in self.writes if (verb is None or w.verb == verb) and (kind is None or w.kind == kind)
        ]

    # -- the port ---------------------------------------------------------------------------------
    def get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        self._call("get", resource.kind)
        return self.stored(resource, namespace, name)

    def list(
        self, resource: Resource, namespace: str | None, label_selector: str | None = None
    ) -> ListResult:
        self._call("list", resource.kind)
        self._require_served(resource)
        items = [
            copy.deepcopy(obj)
            for (kind, ns, _), obj in sorted(self.objects.items())
            if kind == resource.kind
            and (namespace is None or ns == namespace)
            and _matches(obj["metadata"].get("labels") or {}, label_selector)
        ]
        for item in items:  # as a real LIST: items carry no apiVersion/kind
            item.pop("apiVersion", None)
            item.pop("kind", None)
        return ListResult(items, next(self._versions))

    def apply(
        self, obj: Mapping[str, Any], *, status: bool = False, field_manager: str = FIELD_MANAGER
    ) -> dict[str, Any]:
        resource = resource_of(obj)
        self._call("apply-status" if status else "apply", resource.kind)
        self._require_served(resource)
        key = self._key(obj)
        current = self.objects.get(key)
        if field_manager != FIELD_MANAGER and current is not None and not status:
            # Another manager's partial apply (the replicas handover): only its spec fields change.
            current["spec"] = {**current.get("spec", {}), **copy.deepcopy(obj.get("spec", {}))}
            current["metadata"]["resourceVersion"] = str(next(self._versions))
            self.writes.append(Write("apply", resource.kind, key[2]))
            return copy.deepcopy(current)
        if status:
            if current is None:
                raise KubeError(404, f"{key} not found")
            current["status"] = copy.deepcopy(obj["status"])
            updated = current
        else:
            updated = copy.deepcopy(dict(obj))
            metadata = updated["metadata"]
            if current is None:
                metadata["uid"] = str(uuid.uuid4())
                metadata["generation"] = 1
            else:
                metadata["uid"] = current["metadata"]["uid"]
                changed = current.get("spec") != updated.get("spec")
                metadata["generation"] = current["metadata"]["generation"] + int(changed)
                if "status" in current:
                    updated["status"] = current["status"]
        updated["metadata"]["resourceVersion"] = str(next(self._versions))
        self.objects[key] = updated
        self.writes.append(Write("apply-status" if status else "apply", resource.kind, key[2]))
        return copy.deepcopy(updated)

    def merge_patch(
        self, resource: Resource, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        self._call("patch", resource.kind)
        stored = self.objects.get((resource.kind, namespace, name))
        if stored is None:
            raise KubeError(404, f"{resource.kind} {namespace}/{name} not found")
        precondition = (patch.get("metadata") or {}).get("resourceVersion")
        if precondition is not None and precondition != stored["metadata"]["resourceVersion"]:
            raise KubeError(
                409, "the object has been modified; please apply your changes to the latest version"
            )
        self.writes.append(Write("patch", resource.kind, name))
        return self.edit(resource, namespace, name, patch)

    def delete(self, resource: Resource, namespace: str, name: str) -> None:
        self._call("delete", resource.kind)
        self.writes.append(Write("delete", resource.kind, name))
        self.objects.pop((resource.kind, namespace, name), None)

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        resource = resource_of(obj)
        self._call("create", resource.kind)
        if self._key(obj) in self.objects:
            raise KubeError(409, f"{self._key(obj)} already exists")
        self.writes.append(Write("create", resource.kind, obj["metadata"]["name"]))
        return self.seed(obj)

    def serves(self, resource: Resource) -> bool:
        self._call("discovery", resource.kind)
        return not resource.optional or resource.kind in self.served

    # -- inside -----------------------------------------------------------------------------------
    def _call(self, verb: str, kind: str) -> None:
        if verb in ("get", "list", "discovery"):
            self.reads.append((verb, kind))
        error, times = self._failures.get((verb, kind), (None, 0))
        if error is not None and times > 0:
            self._failures[(verb, kind)] = (error, times - 1)
            raise error

    def _require_served(self, resource: Resource) -> None:
        if resource.optional and resource.kind not in self.served:
            raise KubeError(404, f"the server could not find the requested resource ({resource.plural})")

    @staticmethod
    def _key(obj: Mapping[str, Any]) -> Key:
        metadata = obj["metadata"]
        return (str(obj["kind"]), metadata.get("namespace", ""), metadata["name"])
