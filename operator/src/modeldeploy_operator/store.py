"""An in-memory cache of the objects the operator watches (an informer cache, kept by watch events,
periodic re-lists and our own write responses), so a reconcile reads nothing from the API server.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from modeldeploy_operator.constants import LABEL_MODEL_DEPLOYMENT
from modeldeploy_operator.resources import Resource, Role

Key = tuple[str, str, str]  # (kind, namespace, name)


def _resource_version(obj: Mapping[str, Any]) -> int | None:
    try:
        return int(obj.get("metadata", {}).get("resourceVersion", ""))
    except ValueError:
        return None


def _compact(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Keep what the reconcile reads: everything but managedFields."""
    metadata = {k: v for k, v in obj.get("metadata", {}).items() if k != "managedFields"}
    return {**obj, "metadata": metadata}


class Store:
    """Thread-safe: watch handlers write from the event loop, reconciles read from worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[Key, dict[str, Any]] = {}
        self._by_owner: dict[tuple[str, str, str], set[str]] = {}  # (kind, ns, md name) -> names
        self._counts: Counter[str] = Counter()  # kind -> objects held

    def put(self, resource: Resource, obj: Mapping[str, Any]) -> bool:
        """Remember ``obj`` unless we already hold this or a newer version; True when it was news
        (a watch event that echoes our own write, whose response is already here, is not)."""
        metadata = obj.get("metadata", {})
        kind = resource.kind
        key = (kind, metadata.get("namespace", ""), metadata.get("name", ""))
        with self._lock:
            current = self._objects.get(key)
            if current is not None:
                old, new = _resource_version(current), _resource_version(obj)
                if old is not None and new is not None and new <= old:
                    return False
            else:
                self._counts[kind] += 1
            self._objects[key] = _compact(obj)
            owner = (metadata.get("labels") or {}).get(LABEL_MODEL_DEPLOYMENT)
            if owner and resource.role is Role.CHILD:
                self._by_owner.setdefault((kind, key[1], owner), set()).add(key[2])
        return True

    def remove(self, resource: Resource, namespace: str, name: str) -> None:
        kind = resource.kind
        with self._lock:
            obj = self._objects.pop((kind, namespace, name), None)
            if obj is None:
                return
            self._counts[kind] -= 1
            owner = (obj.get("metadata", {}).get("labels") or {}).get(LABEL_MODEL_DEPLOYMENT)
            names = self._by_owner.get((kind, namespace, owner or ""))
            if names is not None:
                names.discard(name)
                if not names:
                    del self._by_owner[(kind, namespace, owner or "")]

    def get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._objects.get((resource.kind, namespace, name))

    def owned(self, resource: Resource, namespace: str, owner: str) -> list[dict[str, Any]]:
        kind = resource.kind
        with self._lock:
            names = sorted(self._by_owner.get((kind, namespace, owner), ()))
            return [
                self._objects[(kind, namespace, name)]
                for name in names
                if (kind, namespace, name) in self._objects
            ]

    def keys(self, resource: Resource) -> list[tuple[str, str]]:
        with self._lock:
            return [(ns, name) for (k, ns, name) in self._objects if k == resource.kind]

    def all(self, resource: Resource) -> list[dict[str, Any]]:
        with self._lock:
            return [obj for (k, _, _), obj in self._objects.items() if k == resource.kind]

    def count(self, resource: Resource) -> int:
        with self._lock:
            return self._counts[resource.kind]

    def replace(
        self,
        resource: Resource,
        namespaces: Iterable[str] | None,
        items: Iterable[Mapping[str, Any]],
        list_version: int,
    ) -> None:
        """Merge a fresh LIST: store its items; forget cached objects older than the list that it lacks."""
        kind = resource.kind
        seen: set[Key] = set()
        for item in items:
            metadata = item.get("metadata", {})
            seen.add((kind, metadata.get("namespace", ""), metadata.get("name", "")))
            self.put(resource, item)
        scope = set(namespaces) if namespaces is not None else None
        with self._lock:
            stale = [
                key
                for key, obj in self._objects.items()
                if key[0] == kind
                and key not in seen
                and (scope is None or key[1] in scope)
                and (_resource_version(obj) or 0) <= list_version
            ]
        for _, namespace, name in stale:
            self.remove(resource, namespace, name)
