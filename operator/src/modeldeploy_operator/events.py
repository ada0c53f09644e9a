"""The Events the operator posts (pure): which transitions deserve one, their texts, and the body.

Only meaningful transitions become Events. A message never carries a key: the texts are fixed,
with client names and key ids only.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from modeldeploy_operator.constants import (
    CONDITION_DEGRADED,
    CONDITION_MONITORING,
    EVENT_DEGRADED,
    EVENT_KEY_EXPIRED,
    EVENT_KEY_ROTATED,
    EVENT_MONITORING_SKIPPED,
    OPERATOR_NAME,
)
from modeldeploy_operator.keyring import KeyPlan
from modeldeploy_operator.resources import EVENT, MODEL_DEPLOYMENT
from modeldeploy_operator.status import MAX_MESSAGE, Monitoring, condition_of, format_time


@dataclass(frozen=True)
class Note:
    """One Event to post about a ModelDeployment."""

    type: str  # Normal or Warning
    reason: str
    message: str


def key_rotation_notes(
    plan: KeyPlan, previous_clients: Collection[str], now: datetime, grace: timedelta
) -> list[Note]:
    """A new key for a client that had one (a rotation), and keys retired after their grace period."""
    until = format_time(now + grace)
    notes = [
        Note(
            "Normal",
            EVENT_KEY_ROTATED,
            f"issued a new API key for client {client}; the previous key stays valid until {until}",
        )
        for client in plan.minted
        if client in previous_clients
    ]
    if plan.retired:
        key_ids = ", ".join(plan.retired)
        message = f"retired {len(plan.retired)} API key(s) whose grace period ended (key ids {key_ids})"
        notes.append(Note("Normal", EVENT_KEY_EXPIRED, message))
    return notes


def transition_notes(
    before: Mapping[str, Any], after: Mapping[str, Any], monitoring: Monitoring
) -> list[Note]:
    """Between two statuses: monitoring skipped (its reason changed to the CRD missing), degraded."""
    notes = []
    before_monitoring = condition_of(before, CONDITION_MONITORING)
    after_monitoring = condition_of(after, CONDITION_MONITORING)
    if (
        monitoring is Monitoring.CRD_MISSING
        and after_monitoring is not None
        and (before_monitoring is None or before_monitoring.get("reason") != after_monitoring.get("reason"))
    ):
        notes.append(Note("Normal", EVENT_MONITORING_SKIPPED, after_monitoring["message"]))
    before_degraded = condition_of(before, CONDITION_DEGRADED)
    after_degraded = condition_of(after, CONDITION_DEGRADED)
    if (
        after_degraded is not None
        and after_degraded["status"] == "True"
        and (
            before_degraded is None
            or before_degraded.get("status") != "True"
            or before_degraded.get("reason") != after_degraded["reason"]
        )
    ):
        notes.append(
            Note("Warning", EVENT_DEGRADED, f"{after_degraded['reason']}: {after_degraded['message']}")
        )
    return notes


def build_event(involved: Mapping[str, Any], note: Note, now: datetime, name_suffix: str) -> dict[str, Any]:
    """The core/v1 Event about the ModelDeployment ``involved`` (``name_suffix`` makes its name unique)."""
    metadata = involved["metadata"]
    stamp = format_time(now)
    return {
        "apiVersion": EVENT.api_version,
        "kind": EVENT.kind,
        "metadata": {"name": f"{metadata['name']}.{name_suffix}", "namespace": metadata["namespace"]},
        "involvedObject": {
            "apiVersion": MODEL_DEPLOYMENT.api_version,
            "kind": MODEL_DEPLOYMENT.kind,
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "uid": metadata["uid"],
            "resourceVersion": metadata.get("resourceVersion", ""),
        },
        "type": note.type,
        "reason": note.reason,
        "message": note.message[:MAX_MESSAGE],
        "source": {"component": OPERATOR_NAME},
        "reportingComponent": OPERATOR_NAME,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
