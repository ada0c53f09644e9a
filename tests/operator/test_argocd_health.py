"""The chart's Argo CD health check (health.lua), run in Lua against ModelDeployments that the real
operator left in each state: just created, Ready, a new generation not yet observed, rolling out,
and Degraded.

The fast tests read the recorded objects in ``argocd_health/``. The cluster test produces each
state again with the operator on the local control plane, checks the live objects the same way,
and fails when a recording no longer matches what the operator writes; re-record with
``MODELDEPLOY_RECORD_HEALTH_FIXTURES=1``.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cluster
from tests.operator.argocd_health import argocd_health
from tests.operator.conftest import StartOperator
from tests.operator.factories import manifest
from tests.operator.helpers import condition, crash_loop_first_pod, get, wait_ready, wait_status

FIXTURES = Path(__file__).parent / "argocd_health"
RECORD = os.environ.get("MODELDEPLOY_RECORD_HEALTH_FIXTURES") == "1"
FIXTURE_NAMESPACE = "ml"

# state -> the health Argo CD must show for it
EXPECTED = {
    "created": "Progressing",  # no status yet: the operator has not seen it
    "ready": "Healthy",
    "generation-not-observed": "Progressing",  # Ready=True, but for the previous generation
    "progressing": "Progressing",  # pods cannot be scheduled: rolling out
    "degraded": "Degraded",  # a crash-looping model
}


def recorded(state: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{state}.json").read_text())  # type: ignore[no-any-return]


def _sanitized(body: dict[str, Any], namespace: str) -> dict[str, Any]:
    body = copy.deepcopy(body)
    body["metadata"].pop("managedFields", None)
    return json.loads(json.dumps(body).replace(namespace, FIXTURE_NAMESPACE))  # type: ignore[no-any-return]


def _shape(body: dict[str, Any]) -> dict[str, Any]:
    """What the health check reads, without the values that differ between runs."""
    status = body.get("status") or {}
    return {
        "observed": status.get("observedGeneration") == body["metadata"]["generation"],
        "conditions": sorted((c["type"], c["status"], c["reason"]) for c in status.get("conditions", [])),
    }


@pytest.mark.parametrize("state", sorted(EXPECTED))
def test_recorded_states_map_to_their_health(state: str) -> None:
    health = argocd_health(recorded(state))
    assert health.status == EXPECTED[state], health
    assert health.message


def test_degraded_health_carries_the_operator_message() -> None:
    body = recorded("degraded")
    assert "model failed to load" in argocd_health(body).message
    assert argocd_health(body).message == condition(body, "Degraded")["message"]  # type: ignore[index]


def test_a_new_generation_hides_a_stale_ready_until_observed() -> None:
    body = recorded("generation-not-observed")
    assert condition(body, "Ready")["status"] == "True"  # type: ignore[index]
    assert body["status"]["observedGeneration"] < body["metadata"]["generation"]
    assert argocd_health(body).status == "Progressing"


def test_an_aborted_rollout_is_degraded() -> None:
    """``status.rollout.phase`` is what the planned canary rollouts will write."""
    body = recorded("ready")
    body["status"]["rollout"] = {"phase": "Aborted", "message": "canary error ratio 0.31 > 0.05"}
    health = argocd_health(body)
    assert (health.status, health.message) == ("Degraded", "canary error ratio 0.31 > 0.05")


def _live_states(
    crd: Cluster, namespace: str, start_operator: StartOperator
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each state of EXPECTED, produced with the real operator, in order."""
    crd.apply(manifest("iris"), "-n", namespace)
    body = get(crd, namespace, "mdep", "iris")
    assert body is not None
    yield "created", body

    operator = start_operator()
    yield "ready", wait_ready(crd, namespace, "iris")

    operator.stop()
    crd.kubectl("patch", "mdep", "iris", "-n", namespace, "--type=merge", "-p", '{"spec":{"replicas":2}}')
    body = get(crd, namespace, "mdep", "iris")
    assert body is not None
    yield "generation-not-observed", body

    start_operator()
    # More CPU than any node has: the pod stays Pending, the rollout in progress.
    unschedulable = manifest("pending", runtime={"resources": {"requests": {"cpu": "5000"}}})
    crd.apply(unschedulable, "-n", namespace)
    yield "progressing", wait_status(
        crd, namespace, "pending", "a rolling-out status for the observed generation",
        check=lambda b: (b.get("status") or {}).get("observedGeneration") == b["metadata"]["generation"]
        and (condition(b, "Progressing") or {}).get("status") == "True",
    )  # fmt: skip

    wait_ready(crd, namespace, "iris")
    crash_loop_first_pod(crd, namespace, "iris")
    yield "degraded", wait_status(
        crd, namespace, "iris", "Degraded=True",
        check=lambda b: (condition(b, "Degraded") or {}).get("status") == "True",
    )  # fmt: skip


def test_live_states_map_to_their_health_and_match_the_recordings(
    crd: Cluster, namespace: str, start_operator: StartOperator
) -> None:
    for state, body in _live_states(crd, namespace, start_operator):
        health = argocd_health(body)
        assert health.status == EXPECTED[state], f"{state}: {health} for status {body.get('status')}"
        if RECORD:
            FIXTURES.mkdir(exist_ok=True)
            text = json.dumps(_sanitized(body, namespace), indent=2, sort_keys=True) + "\n"
            (FIXTURES / f"{state}.json").write_text(text)
        assert _shape(recorded(state)) == _shape(body), f"{state}: re-record the fixtures"
