"""The leader SIGKILLed while 100 ModelDeployments are being reconciled: the standby takes over
within the lease duration + 2 s, and every ModelDeployment ends Ready with exactly one set of
children, one key per client, and no more writes than the benchmark allows."""

from __future__ import annotations

import base64
import json
import signal
import time
from collections import Counter
from typing import Any

from modeldeploy_runtime.apikeys import KeyVerifier, parse_keys_file
from tests.faults.conftest import FaultCluster, Operators
from tests.operator.factories import manifest
from tests.operator.helpers import api_server_writes
from tests.support import wait_until

COUNT = 100
LEASE_DURATION_SECONDS = 15.0  # the default, as in production
TAKEOVER_BOUND_SECONDS = LEASE_DURATION_SECONDS + 2
CHILDREN_PER_MD = 4  # Deployment, Service, hashes Secret, one client Secret (no ServiceMonitor CRD here)
WRITES_PER_MD_BOUND = CHILDREN_PER_MD + 2 + 1  # bench/README.md: minimum (children + 2 status) + 1


def _items(cluster: FaultCluster, kind: str, namespace: str) -> list[dict[str, Any]]:
    return cluster.get_json(kind, "-n", namespace)["items"]  # type: ignore[no-any-return]


def _ready_count(cluster: FaultCluster, namespace: str) -> int:
    return sum(
        any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in (md.get("status") or {}).get("conditions", [])
        )
        for md in _items(cluster, "mdep", namespace)
    )


def _assert_one_set_of_children(cluster: FaultCluster, namespace: str) -> None:
    uids = {md["metadata"]["name"]: md["metadata"]["uid"] for md in _items(cluster, "mdep", namespace)}
    assert len(uids) == COUNT
    expected = {
        "deployment": {f"{name}" for name in uids},
        "service": {f"{name}" for name in uids},
        "secret": {f"{name}-apikeys" for name in uids} | {f"{name}-client-billing" for name in uids},
    }
    secrets: dict[str, dict[str, Any]] = {}
    for kind, names in expected.items():
        items = [
            i
            for i in _items(cluster, kind, namespace)
            if "modeldeploy.io/model-deployment" in i["metadata"].get("labels", {})
        ]
        found = Counter(i["metadata"]["name"] for i in items)
        assert set(found) == names, f"{kind}: missing {names - set(found)}, orphaned {set(found) - names}"
        for item in items:
            owner = item["metadata"]["labels"]["modeldeploy.io/model-deployment"]
            assert [o["uid"] for o in item["metadata"].get("ownerReferences", [])] == [uids[owner]]
            if kind == "secret":
                secrets[item["metadata"]["name"]] = item
    for name in uids:  # one key per client, and the client's Secret holds it
        hashes = parse_keys_file(base64.b64decode(secrets[f"{name}-apikeys"]["data"]["keys.json"]).decode())
        assert [key.client for key in hashes] == ["billing"], f"{name}: keys {hashes}"
        plaintext = base64.b64decode(secrets[f"{name}-client-billing"]["data"]["api-key"]).decode()
        assert KeyVerifier(hashes).verify(plaintext) == "billing"


def test_leader_killed_mid_burst(cluster: FaultCluster, namespace: str, operators: Operators) -> None:
    leader = operators.start()
    wait_until("operator-0 to lead", lambda: leader.metric("modeldeploy_operator_leader") == 1.0)
    standby = operators.start()
    before = api_server_writes(cluster)

    burst = [manifest(f"md-{i:03d}") for i in range(COUNT)]
    for body in burst:
        body["metadata"]["namespace"] = namespace
    cluster.kubectl(
        "apply", "--server-side", "-f", "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": burst}),
    )  # fmt: skip
    # Mid-burst: the leader has written about a sixth of what the 100 need.
    wait_until("the leader's first 100 writes", lambda: leader.metric("modeldeploy_operator_api_writes_total") >= 100,
               timeout=120, interval=0.05)  # fmt: skip
    leader.process.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    ready_at_kill = _ready_count(cluster, namespace)
    wait_until("the standby's first write",
               lambda: standby.metric("modeldeploy_operator_api_writes_total") > 0,
               timeout=TAKEOVER_BOUND_SECONDS + 10, interval=0.05)  # fmt: skip
    takeover = time.monotonic() - killed
    print(f"takeover (SIGKILL -> standby's first write): {takeover:.2f}s, bound {TAKEOVER_BOUND_SECONDS:g}s; "
          f"{ready_at_kill}/{COUNT} Ready at the kill")  # fmt: skip
    assert takeover <= TAKEOVER_BOUND_SECONDS
    assert ready_at_kill < COUNT, "the burst was over before the kill: nothing tested the takeover"

    wait_until(
        f"all {COUNT} Ready", lambda: _ready_count(cluster, namespace) == COUNT, timeout=240, interval=1
    )
    all_ready = time.monotonic() - killed
    time.sleep(3)  # writes that trail Ready (there should be none) are counted too
    writes = api_server_writes(cluster) - before
    writes.pop("APPLY modeldeployments", None)  # this test creating the ModelDeployments
    per_md = sum(writes.values()) / COUNT
    print(f"all Ready {all_ready:.1f}s after the kill; writes per ModelDeployment {per_md:.2f} "
          f"(bound {WRITES_PER_MD_BOUND}): {dict(writes)}")  # fmt: skip
    assert per_md <= WRITES_PER_MD_BOUND
    _assert_one_set_of_children(cluster, namespace)
