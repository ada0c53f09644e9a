"""Writing a ModelDeployment's children: each write is followed by updating the cache with the
server's answer, and a same-named object that is not ours is never adopted, only recorded as a
conflict (reconcile.py and key_reconcile.py write through :class:`Children`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modeldeploy_operator.apis import APIAvailability
from modeldeploy_operator.constants import ANNOTATION_DESIRED_HASH
from modeldeploy_operator.drift import contains
from modeldeploy_operator.events import Note
from modeldeploy_operator.kube import KubeAPI, KubeError
from modeldeploy_operator.model import ModelDeployment
from modeldeploy_operator.ownership import is_ours
from modeldeploy_operator.resources import Resource, resource_of
from modeldeploy_operator.store import Store


@dataclass
class Outcome:
    """What one reconcile did."""

    writes: int = 0
    requeue_after: float | None = None
    notes: list[Note] = field(default_factory=list)  # Events posted at the end of the reconcile
    conflicts: list[tuple[str, str]] = field(default_factory=list)  # (kind, name) in the way, not ours

    def requeue(self, delay: float) -> None:
        """Ask to run again within ``delay`` seconds (the earliest of all such asks wins)."""
        self.requeue_after = delay if self.requeue_after is None else min(self.requeue_after, delay)


def needs_apply(desired: dict[str, Any], observed: dict[str, Any] | None) -> bool:
    if observed is None:
        return True
    wanted_hash = desired["metadata"].get("annotations", {}).get(ANNOTATION_DESIRED_HASH)
    if wanted_hash is not None:
        observed_hash = (observed.get("metadata", {}).get("annotations") or {}).get(ANNOTATION_DESIRED_HASH)
        if observed_hash != wanted_hash:
            return True
    return not contains(observed, desired)


class Children:
    """Applies, deletes and looks up the children of ModelDeployments, through the cache."""

    def __init__(self, kube: KubeAPI, store: Store, apis: APIAvailability) -> None:
        self.kube, self.store, self.apis = kube, store, apis

    def apply(self, obj: dict[str, Any], outcome: Outcome, **apply_options: Any) -> dict[str, Any]:
        stored = self.kube.apply(obj, **apply_options)
        self.store.put(resource_of(obj), stored)
        outcome.writes += 1
        return stored

    def apply_optional(self, resource: Resource, obj: dict[str, Any], outcome: Outcome) -> bool:
        """Apply a child of an optional API; False (and the API forgotten) when its CRD went away
        between discovery and the apply."""
        try:
            self.apply(obj, outcome)
        except KubeError as error:
            if error.status != 404:
                raise
            self.apis.forget(resource)
            return False
        return True

    def delete(self, resource: Resource, namespace: str, name: str, outcome: Outcome) -> None:
        self.kube.delete(resource, namespace, name)
        self.store.remove(resource, namespace, name)
        outcome.writes += 1

    def child(
        self, md: ModelDeployment, resource: Resource, name: str, outcome: Outcome
    ) -> tuple[bool, dict[str, Any] | None]:
        """(ours to write, the object as observed), never adopting a same-named object.

        The cache holds only objects with our labels, so a name it lacks is asked of the server
        before anything is written under it (this also keeps a lagging cache from minting a new
        key over an existing key Secret). An object without a controller reference to this
        ModelDeployment's UID is someone else's: it is recorded as a conflict and never written.
        """
        observed = self.store.get(resource, md.namespace, name)
        if observed is None:
            observed = self.kube.get(resource, md.namespace, name)
            if observed is not None and is_ours(observed, md):
                self.store.put(resource, observed)
        if observed is None or is_ours(observed, md):
            return True, observed
        outcome.conflicts.append((resource.kind, name))
        return False, None

    def ensure(
        self, md: ModelDeployment, resource: Resource, name: str, desired: dict[str, Any], outcome: Outcome
    ) -> None:
        """Apply ``desired`` unless the object of that name is someone else's or already as desired."""
        writable, observed = self.child(md, resource, name, outcome)
        if writable and needs_apply(desired, observed):
            self.apply(desired, outcome)

    def delete_if_ours(self, md: ModelDeployment, resource: Resource, name: str, outcome: Outcome) -> None:
        """Delete an unwanted child, if the cache holds it and it is ours."""
        observed = self.store.get(resource, md.namespace, name)
        if observed is not None and is_ours(observed, md):
            self.delete(resource, md.namespace, name, outcome)

    def observe(self, md: ModelDeployment, resource: Resource, name: str) -> dict[str, Any] | None:
        """The cached child, if it is ours (the canary reads its Deployment through this)."""
        observed = self.store.get(resource, md.namespace, name)
        return observed if observed is not None and is_ours(observed, md) else None
