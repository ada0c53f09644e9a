"""Leader election between two operator processes on one Lease, on the local control plane: one
leads and writes, the other keeps its cache warm and writes nothing, both report ready, and the
standby takes over when the leader shuts down (at once) or dies (when the Lease expires)."""

from __future__ import annotations

import copy
import dataclasses
import json
import signal
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modeldeploy_devenv.operator_process import OperatorProcess
from modeldeploy_operator.config import ConfigError, config_from_env
from modeldeploy_operator.leadership import LeaderElector, LeaseSettings, build_lease_spec
from modeldeploy_operator.resources import Resource
from tests.conftest import Cluster
from tests.operator.conftest import StartOperator
from tests.operator.factories import manifest
from tests.operator.helpers import condition, get, holds_for, wait_ready, wait_status
from tests.support import wait_until

LEASE_NAME = "modeldeploy-operator"
# Short timings keep the tests quick; the fault suite runs the defaults (15/10/2 s).
FAST_LEASE = {
    "MODELDEPLOY_LEASE_DURATION_SECONDS": "4",
    "MODELDEPLOY_RENEW_DEADLINE_SECONDS": "2.5",
    "MODELDEPLOY_RETRY_PERIOD_SECONDS": "0.5",
}
LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 4.0, 2.5, 0.5


def holder(cluster: Cluster, namespace: str) -> str | None:
    result = cluster.kubectl("get", "lease", LEASE_NAME, "-n", namespace, "-o", "json", check=False)
    if result.returncode != 0:
        return None
    return json.loads(result.stdout)["spec"].get("holderIdentity")  # type: ignore[no-any-return]


def leading(operator: OperatorProcess) -> bool:
    return operator.metric("modeldeploy_operator_leader") == 1.0


def start_pair_serving_iris(
    start_operator: StartOperator, crd: Cluster, namespace: str
) -> tuple[OperatorProcess, OperatorProcess]:
    """operator-a leading, operator-b standing by with iris in its cache, iris Ready."""
    first = start_operator(POD_NAME="operator-a", health=True, **FAST_LEASE)
    wait_until("operator-a to hold the Lease", lambda: holder(crd, namespace) == "operator-a")
    second = start_operator(POD_NAME="operator-b", health=True, **FAST_LEASE)
    crd.apply(manifest("iris"), "-n", namespace)
    wait_ready(crd, namespace, "iris")
    wait_until("the standby's cache to hold the ModelDeployment",
               lambda: second.metric("modeldeploy_operator_managed_modeldeployments") == 1.0)  # fmt: skip
    return first, second


def test_one_replica_leads_the_standby_writes_nothing_and_both_are_ready(
    crd: Cluster, namespace: str, start_operator: StartOperator
) -> None:
    leader, standby = start_pair_serving_iris(start_operator, crd, namespace)

    # Longer than two lease durations: the standby never takes a renewed Lease.
    holds_for("operator-a's lead", lambda: holder(crd, namespace) == "operator-a", 2 * LEASE_DURATION + 1)
    assert (leading(leader), leading(standby)) == (True, False)
    assert leader.metric("modeldeploy_operator_api_writes_total") >= 4
    assert standby.metric("modeldeploy_operator_api_writes_total") == 0
    assert standby.metric("modeldeploy_operator_reconciles_total") == 0
    assert standby.metric("modeldeploy_operator_leader_transitions_total") == 0
    for operator, role in ((leader, "leader"), (standby, "standby")):
        status, body = operator.health()
        assert status == 200, body
        assert json.loads(body)["role"] == role


def test_a_clean_shutdown_hands_the_lease_over_within_a_retry_period(
    crd: Cluster, namespace: str, start_operator: StartOperator
) -> None:
    leader, standby = start_pair_serving_iris(start_operator, crd, namespace)

    leader.process.send_signal(signal.SIGTERM)
    stopping = time.monotonic()
    wait_until("operator-b to lead", lambda: leading(standby), timeout=LEASE_DURATION + 5, interval=0.05)
    handover = time.monotonic() - stopping
    # Released at shutdown: taken at the standby's next look, well before the lease would expire.
    bound = RETRY_PERIOD + 1.5
    print(f"clean handover: {handover:.2f}s after SIGTERM (bound {bound:.1f}s, lease {LEASE_DURATION:g}s)")
    assert handover <= bound
    wait_until("operator-a to exit", lambda: leader.process.poll() is not None, timeout=15)
    assert "could not release" not in leader.logs()
    assert holder(crd, namespace) == "operator-b"
    assert standby.metric("modeldeploy_operator_leader_transitions_total") == 1

    crd.kubectl("patch", "mdep", "iris", "-n", namespace, "--type=merge", "-p", '{"spec":{"replicas":2}}')
    wait_status(crd, namespace, "iris", "the new leader to roll out 2 replicas",
                check=lambda b: b["status"].get("observedGeneration") == 2
                and (condition(b, "Ready") or {}).get("status") == "True", timeout=30)  # fmt: skip


def test_a_killed_leader_is_replaced_once_its_lease_expires(
    crd: Cluster, namespace: str, start_operator: StartOperator
) -> None:
    leader, standby = start_pair_serving_iris(start_operator, crd, namespace)

    leader.process.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    wait_until("operator-b to lead", lambda: leading(standby), timeout=LEASE_DURATION + 5, interval=0.05)
    takeover = time.monotonic() - killed
    print(
        f"takeover after SIGKILL: {takeover:.2f}s (lease {LEASE_DURATION:g}s, bound {LEASE_DURATION + 2:g}s)"
    )
    # Never before the dead leader's own renew deadline could have passed, never later than the bound.
    assert RENEW_DEADLINE < takeover <= LEASE_DURATION + 2
    assert holder(crd, namespace) == "operator-b"

    crd.kubectl("delete", "service", "iris", "-n", namespace)
    wait_until(
        "the new leader to restore the Service", lambda: get(crd, namespace, "service", "iris"), timeout=10
    )


def test_lease_timing_defaults_and_the_rule_between_them() -> None:
    config = config_from_env({"POD_NAME": "operator-0", "POD_NAMESPACE": "ops"})
    assert (config.lease_duration_seconds, config.renew_deadline_seconds, config.retry_period_seconds) == (
        15,
        10,
        2,
    )
    assert (config.identity, config.lease_namespace, config.leader_election) == ("operator-0", "ops", True)
    watching_two = dataclasses.replace(config_from_env({}), namespaces=("ml", "other"))
    assert LeaseSettings.from_config(watching_two).namespace == "ml"  # outside a pod
    with pytest.raises(ConfigError, match="MODELDEPLOY_RENEW_DEADLINE_SECONDS=13 must be less than"):
        config_from_env({"MODELDEPLOY_RENEW_DEADLINE_SECONDS": "13"})
    outside_a_pod = config_from_env({})
    assert (
        LeaseSettings.from_config(outside_a_pod).identity != LeaseSettings.from_config(outside_a_pod).identity
    )


def test_lease_spec_counts_hand_overs_and_release_empties_the_holder() -> None:
    settings = LeaseSettings("l", "ns", "b", duration=15, renew_deadline=10, retry_period=2)
    held_by_a = {"holderIdentity": "a", "acquireTime": "2026-01-01T00:00:00.000000Z", "leaseTransitions": 3}
    now = datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    taken = build_lease_spec(held_by_a, settings, now, holder="b")
    assert taken == {"holderIdentity": "b", "leaseDurationSeconds": 15, "acquireTime": "2026-01-01T00:01:00.000000Z",
                     "renewTime": "2026-01-01T00:01:00.000000Z", "leaseTransitions": 4}  # fmt: skip
    renewed = build_lease_spec(taken, settings, now + timedelta(seconds=2), holder="b")
    assert (renewed["acquireTime"], renewed["leaseTransitions"]) == (taken["acquireTime"], 4)
    released = build_lease_spec(renewed, settings, now, holder="")
    assert (released["holderIdentity"], released["leaseDurationSeconds"], released["leaseTransitions"]) == (
        None,
        1,
        4,
    )


class _Leases:
    """One Lease in memory, for the elector's timing only (409s and RBAC are the API server's:
    the cluster tests above cover them)."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None

    def get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.lease)

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        self.lease = {**copy.deepcopy(dict(obj)), "metadata": {**obj["metadata"], "resourceVersion": "1"}}
        return self.lease

    def replace(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        assert self.lease is not None
        version = str(int(self.lease["metadata"]["resourceVersion"]) + 1)
        self.lease = {**copy.deepcopy(dict(obj)), "metadata": {**obj["metadata"], "resourceVersion": version}}
        return self.lease


def test_a_standby_takes_over_within_a_lease_duration_of_the_last_renewal() -> None:
    """Never before the dead leader's renew deadline, never later than the lease duration."""
    now = [0.0]
    leases = _Leases()

    def elector(identity: str) -> LeaderElector:
        settings = LeaseSettings("l", "ns", identity, duration=15.0, renew_deadline=10.0, retry_period=2.0)
        return LeaderElector(leases, settings, monotonic=lambda: now[0])

    for phase in (0.0, 0.7, 1.3, 1.9):  # the standby's looks at every offset from the renewals
        leases.lease, now[0] = None, 100.0
        leader, standby = elector("a"), elector("b")
        assert leader.try_acquire_or_renew()
        last_renewal, next_look = 100.0, 100.0 + phase
        while True:  # in 0.05 s steps: the leader renews every 2 s, the last time at 110 s, then dies
            if now[0] <= 110.0 and now[0] - last_renewal >= 2.0:
                assert leader.try_acquire_or_renew()
                last_renewal = now[0]
            if now[0] >= next_look:
                if standby.try_acquire_or_renew():
                    break
                assert now[0] < 130.0, "the standby did not take over"
                next_look = now[0] + standby.next_look_in()
            now[0] = round(now[0] + 0.05, 2)
        assert last_renewal == 110.0
        assert last_renewal + 10.0 < now[0] <= last_renewal + 15.0 + 0.05
        assert not leader.is_leading()  # its own renew deadline passed before
