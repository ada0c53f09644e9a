"""Which objects are ours to write (pure): never adopt a same-named object someone else made.

An object is ours when it carries a controller owner reference to this ModelDeployment's UID. A
same-named object without one (someone's Service ``iris``, or the child of an earlier
ModelDeployment ``iris`` that garbage collection has not removed yet) is left untouched, and the
ModelDeployment reports the conflict instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from modeldeploy_operator.model import ModelDeployment


def is_ours(obj: Mapping[str, Any], md: ModelDeployment) -> bool:
    """Whether ``obj`` has a controller owner reference to ``md`` (by UID, not by name)."""
    return any(
        ref.get("controller") is True and ref.get("uid") == md.uid
        for ref in obj.get("metadata", {}).get("ownerReferences") or []
    )


def conflict_message(objects: Sequence[tuple[str, str]]) -> str:
    """The NameConflict message, naming each (kind, name) in the way."""
    named = ", ".join(f"{kind} {name}" for kind, name in objects)
    return (
        f"not owned by this ModelDeployment, so left untouched: {named} (no controller owner reference "
        "to its uid); delete or rename it, or give the ModelDeployment another name"
    )
