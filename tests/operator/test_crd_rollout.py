"""``spec.rollout`` as the real API server enforces it: each bad value is refused with a message
naming the field, and a full canary spec is accepted with its defaults filled in."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import Cluster
from tests.operator.factories import manifest
from tests.operator.test_crd import dry_run


def canary(**fields: Any) -> dict[str, Any]:
    """A manifest with a Canary rollout: one step unless ``steps`` is given, plus ``fields``."""
    spec = {"steps": [{"weight": 10, "pause": "30s"}], **fields}
    return manifest("iris", rollout={"strategy": "Canary", "canary": spec})


ROUTE = {"name": "iris", "parentRefs": [{"name": "gw"}]}
BAD_ROLLOUTS: dict[str, tuple[dict[str, Any], str]] = {
    "unknown strategy": (manifest("iris", rollout={"strategy": "BlueGreen"}), "spec.rollout.strategy"),
    "canary without steps spec": (manifest("iris", rollout={"strategy": "Canary"}),
                                  "spec.rollout.canary is required when spec.rollout.strategy is Canary"),
    "no steps": (canary(steps=[]), "spec.rollout.canary.steps"),
    "eleven steps": (canary(steps=[{"weight": w} for w in range(1, 12)]), "spec.rollout.canary.steps"),
    "weight zero": (canary(steps=[{"weight": 0}]), "spec.rollout.canary.steps[0].weight"),
    "weight 100": (canary(steps=[{"weight": 100}]), "spec.rollout.canary.steps[0].weight"),
    "descending weights": (canary(steps=[{"weight": 50}, {"weight": 10}]),
                           "spec.rollout.canary.steps[].weight must be strictly ascending"),
    "equal weights": (canary(steps=[{"weight": 10}, {"weight": 20}, {"weight": 20}]),
                      "spec.rollout.canary.steps[].weight must be strictly ascending"),
    "bad pause": (canary(steps=[{"weight": 10, "pause": "2 minutes"}]),
                  "spec.rollout.canary.steps[].pause must be a duration"),
    "bad interval": (canary(analysis={"interval": "-1s"}), "spec.rollout.canary.analysis.interval must be a duration"),
    "zero minRequests": (canary(analysis={"minRequests": 0}), "spec.rollout.canary.analysis.minRequests"),
    "error ratio above 1": (canary(analysis={"maxErrorRatio": 1.5}), "spec.rollout.canary.analysis.maxErrorRatio"),
    "latency ratio below 1": (canary(analysis={"maxLatencyRatio": 0.5}), "spec.rollout.canary.analysis.maxLatencyRatio"),
    "route without parents": (canary(httpRoute={"name": "iris"}), "spec.rollout.canary.httpRoute.parentRefs"),
    "route with a bad name": (canary(httpRoute={**ROUTE, "name": "Iris_Route"}),
                              "spec.rollout.canary.httpRoute.name must be a DNS subdomain"),
    "unknown analysis field": (canary(analysis={"maxErrors": 3}), "spec.rollout.canary.analysis.maxErrors"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_ROLLOUTS))
def test_a_bad_rollout_is_rejected_with_a_message_naming_the_field(
    crd: Cluster, namespace: str, case: str
) -> None:
    body, expected = BAD_ROLLOUTS[case]
    code, output = dry_run(crd, namespace, body, "--validate=strict")
    assert code != 0, f"{case} was accepted:\n{output}"
    assert expected in output, output


def test_a_canary_rollout_is_accepted_and_defaulted(crd: Cluster, namespace: str) -> None:
    steps = [{"weight": w, "pause": "1m30s"} for w in (1, 5, 10, 20, 30, 40, 50, 60, 70)] + [{"weight": 99}]
    code, output = dry_run(crd, namespace, canary(steps=steps, httpRoute=ROUTE), "--validate=strict")
    assert code == 0, output
    rollout = json.loads(output)["spec"]["rollout"]
    assert rollout["canary"]["steps"][-1] == {"weight": 99, "pause": "1m"}
    assert rollout["canary"]["analysis"] == {
        "interval": "30s",
        "minRequests": 50,
        "maxErrorRatio": 0.01,
        "maxLatencyRatio": 1.5,
    }
    assert rollout["canary"]["httpRoute"] == ROUTE


def test_the_default_rollout_is_a_rolling_update(crd: Cluster, namespace: str) -> None:
    code, output = dry_run(crd, namespace, manifest("iris"))
    assert code == 0, output
    assert json.loads(output)["spec"]["rollout"] == {"strategy": "RollingUpdate"}
