"""Faults between the operator and the API server, injected by a loopback proxy: a watch that goes
silent without closing, throttling and server errors, and a re-list whose answer arrives after a
child's deletion."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pytest

from modeldeploy_devenv.apiproxy import APIProxy
from modeldeploy_devenv.operator_process import OperatorProcess
from tests.faults.conftest import FaultCluster, Operators
from tests.operator.factories import manifest
from tests.operator.helpers import condition, get, wait_ready
from tests.support import wait_until

SERVER_TIMEOUT_SECONDS = 20  # MODELDEPLOY_WATCH_SERVER_TIMEOUT_SECONDS, short to keep the test short
STALL_BOUND_SECONDS = SERVER_TIMEOUT_SECONDS + 10
FAILING_SECONDS = 8.0  # shorter than the renew deadline: the leader keeps its Lease
REQUESTS_PER_SECOND_BOUND = 5.0
RECOVERY_BOUND_SECONDS = 15.0
RELIST_REPAIR_BOUND_SECONDS = 5.0
RELIST_RESYNC_SECONDS = 15  # the bound must be well under it: a resync would repair it too


def _serve_iris_through(
    proxy: APIProxy, cluster: FaultCluster, namespace: str, operators: Operators, **env: str
) -> OperatorProcess:
    """An operator that reaches the API server through ``proxy``, with iris Ready."""
    operator = operators.start(kubeconfig=str(proxy.kubeconfig), **env)
    cluster.apply(manifest("iris"), "-n", namespace)
    wait_ready(cluster, namespace, "iris")
    return operator


def _rolled_out(cluster: FaultCluster, namespace: str, generation: int) -> bool:
    md = get(cluster, namespace, "mdep", "iris")
    return (
        md is not None
        and md["status"].get("observedGeneration") == generation
        and (condition(md, "Ready") or {}).get("status") == "True"
    )


def test_a_silent_watch_is_abandoned_and_resumed(
    cluster: FaultCluster, namespace: str, proxy: APIProxy, operators: Operators
) -> None:
    _serve_iris_through(
        proxy,
        cluster,
        namespace,
        operators,
        MODELDEPLOY_WATCH_SERVER_TIMEOUT_SECONDS=str(SERVER_TIMEOUT_SECONDS),
    )

    proxy.silence_watches()  # open, but nothing more passes: only the client's timeout can tell
    stalled = time.monotonic()
    cluster.kubectl("patch", "mdep", "iris", "-n", namespace, "--type=merge", "-p", '{"spec":{"replicas":2}}')
    wait_until("the change made during the stall to be reconciled", lambda: _rolled_out(cluster, namespace, 2),
               timeout=STALL_BOUND_SECONDS + 15, interval=0.2)  # fmt: skip
    elapsed = time.monotonic() - stalled
    print(f"silent watch: recovered and reconciled in {elapsed:.1f}s (bound {STALL_BOUND_SECONDS}s)")
    assert elapsed <= STALL_BOUND_SECONDS


FAILURES = {"429-retry-after-1s": (429, 1), "503": (503, None)}  # (status, Retry-After)


@pytest.mark.parametrize("failure", FAILURES.values(), ids=FAILURES.keys())
def test_throttling_and_server_errors_back_off(
    cluster: FaultCluster, namespace: str, proxy: APIProxy, operators: Operators,
    failure: tuple[int, int | None],
) -> None:  # fmt: skip
    status, retry_after = failure
    _serve_iris_through(proxy, cluster, namespace, operators)

    proxy.fail_requests(status, retry_after)
    failing = time.monotonic()
    cluster.kubectl("patch", "mdep", "iris", "-n", namespace, "--type=merge", "-p", '{"spec":{"replicas":2}}')
    time.sleep(FAILING_SECONDS)  # the outage itself
    proxy.fail_requests(None)
    recovered = time.monotonic()
    sent = proxy.requests_between(failing, recovered)
    rate = len(sent) / (recovered - failing)
    print(f"HTTP {status} for {recovered - failing:.1f}s: {len(sent)} requests, {rate:.2f}/s "
          f"(bound {REQUESTS_PER_SECOND_BOUND}/s)")  # fmt: skip
    assert all(request.status == status for request in sent)
    assert rate <= REQUESTS_PER_SECOND_BOUND

    wait_until("the change made while failing to be reconciled", lambda: _rolled_out(cluster, namespace, 2),
               timeout=RECOVERY_BOUND_SECONDS + 15, interval=0.2)  # fmt: skip
    elapsed = time.monotonic() - recovered
    print(f"reconciled {elapsed:.1f}s after the errors stopped (bound {RECOVERY_BOUND_SECONDS}s)")
    assert elapsed <= RECOVERY_BOUND_SECONDS


def test_a_child_deleted_while_a_relist_is_in_flight_is_repaired_in_seconds(
    cluster: FaultCluster, namespace: str, proxy: APIProxy, operators: Operators
) -> None:
    _serve_iris_through(
        proxy, cluster, namespace, operators, MODELDEPLOY_RESYNC_SECONDS=str(RELIST_RESYNC_SECONDS)
    )

    def service_deleted(event: Mapping[str, Any]) -> bool:
        obj = event.get("object") or {}
        return (
            event.get("type") == "DELETED"
            and obj.get("kind") == "Service"
            and obj["metadata"]["name"] == "iris"
        )

    # The next resync's LIST of Services is answered (with iris in it), then held until the
    # watch has told the operator that iris was deleted.
    held = proxy.hold_list(f"/api/v1/namespaces/{namespace}/services", release_after=service_deleted)
    wait_until("the resync's LIST of Services, held", held.is_set, timeout=RELIST_RESYNC_SECONDS + 10)
    cluster.kubectl("delete", "service", "iris", "-n", namespace)
    deleted = time.monotonic()
    wait_until("the Service to be created again", lambda: get(cluster, namespace, "service", "iris"),
               timeout=RELIST_RESYNC_SECONDS + 10, interval=0.1)  # fmt: skip
    elapsed = time.monotonic() - deleted
    print(f"stale re-list: Service repaired in {elapsed:.1f}s (bound {RELIST_REPAIR_BOUND_SECONDS}s, "
          f"resync every {RELIST_RESYNC_SECONDS}s)")  # fmt: skip
    assert elapsed <= RELIST_REPAIR_BOUND_SECONDS
