"""The product on the real kubelet node: images, chart, probes, securityContext, keys, rollouts."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from modeldeploy_devenv.node import (
    REAL_NODE_LABEL_KEY,
    REAL_NODE_LABEL_VALUE,
    REAL_NODE_NAME,
    REAL_NODE_TAINT,
)
from modeldeploy_operator.constants import CONTAINER_FETCH, CONTAINER_RUNTIME, PORT_HTTP
from tests.node.conftest import (
    RealNode,
    client_key,
    condition,
    endpoint_slices,
    model_deployment,
    report_figure,
    server_pods,
)
from tests.node.endpoint_load import EndpointSliceLoad, predict
from tests.support import WaitTimeoutError, wait_until

READY_TIMEOUT_SECONDS = 240.0
KEY_PROPAGATION_TIMEOUT_SECONDS = 180.0
LOAD_WARMUP_SECONDS = 2.0


@dataclass(frozen=True)
class Served:
    node: RealNode
    namespace: str
    name: str
    digests: dict[str, str]


def _explain(node: RealNode, namespace: str, name: str) -> str:
    """The ModelDeployment's status and its pods' states, for a failure message."""
    status = node.cluster.get_json("mdep", name, "-n", namespace).get("status")
    pods = [
        (p["metadata"]["name"], p["spec"].get("nodeName"), p["status"].get("phase"),
         [(s["name"], s.get("state")) for s in (p["status"].get("initContainerStatuses") or [])
          + (p["status"].get("containerStatuses") or [])])
        for p in server_pods(node.cluster, namespace, name)
    ]  # fmt: skip
    return f"status: {json.dumps(status)}\npods: {pods}"


def _ready(node: RealNode, namespace: str, name: str) -> bool:
    return condition(node.cluster, namespace, name, "Ready").get("status") == "True"


def _address(pod: dict[str, Any]) -> str:
    return f"{pod['status']['podIP']}:{PORT_HTTP}"


def _running_pods(served: Served) -> list[dict[str, Any]]:
    pods = server_pods(served.node.cluster, served.namespace, served.name)
    return [
        p
        for p in pods
        if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    ]


@pytest.fixture(scope="module")
def served(
    real_node: RealNode, operator_release: str, node_namespace: str, model_store: dict[str, str]
) -> Iterator[Served]:
    """iris v1, two replicas on real-0, Ready through the real probes."""
    name = "iris"
    started = time.monotonic()
    real_node.cluster.apply(model_deployment(name, node_namespace, "1", model_store["1"]))
    try:
        wait_until(
            f"ModelDeployment {name} Ready",
            lambda: _ready(real_node, node_namespace, name),
            READY_TIMEOUT_SECONDS,
        )
    except WaitTimeoutError as error:
        raise AssertionError(f"{error}\n{_explain(real_node, node_namespace, name)}") from None
    report_figure(
        "ModelDeployment create -> Ready (2 replicas, real probes)", f"{time.monotonic() - started:.1f}s"
    )
    yield Served(node=real_node, namespace=node_namespace, name=name, digests=model_store)
    real_node.cluster.kubectl("delete", "mdep", name, "-n", node_namespace, "--wait=false", check=False)


def test_real_node_is_labelled_tainted_and_lists_the_built_images(
    real_node: RealNode, node_images: dict[str, str]
) -> None:
    def images_listed() -> bool:
        node = real_node.cluster.get_json("node", REAL_NODE_NAME)
        # The kubelet may list an image whose names are null (an untagged layer of a rebuilt image).
        images = node["status"].get("images") or []
        names = {name for image in images for name in image.get("names") or []}
        return all(any(name.endswith(tag.split("/", 1)[1]) for name in names) for tag in node_images.values())

    node = real_node.cluster.get_json("node", REAL_NODE_NAME)
    assert node["metadata"]["labels"][REAL_NODE_LABEL_KEY] == REAL_NODE_LABEL_VALUE
    assert REAL_NODE_TAINT in [{k: t[k] for k in ("key", "value", "effect")} for t in node["spec"]["taints"]]
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == real_node.network.gateway
    wait_until("the built images in real-0's status.images", images_listed, timeout=120)


def test_the_chart_runs_the_operator_image_on_the_real_node(
    real_node: RealNode, operator_release: str
) -> None:
    pods = real_node.cluster.get_json("pods", "-n", operator_release)["items"]
    assert len(pods) == 2  # the chart's default: a leader and a standby
    for pod in pods:
        assert pod["spec"]["nodeName"] == REAL_NODE_NAME
        assert all(c["ready"] for c in pod["status"]["containerStatuses"])  # the standby is ready too
        # The operator's in-cluster config comes from its ServiceAccount token, mounted by the kubelet.
        mounts = [m["mountPath"] for m in pod["spec"]["containers"][0]["volumeMounts"]]
        assert "/var/run/secrets/kubernetes.io/serviceaccount" in mounts
    # Exactly one of them holds the leader Lease, under its pod name (the downward API's POD_NAME).
    leases = real_node.cluster.get_json("leases", "-n", operator_release)["items"]
    holders = [lease["spec"].get("holderIdentity") for lease in leases]
    assert len([h for h in holders if h in {pod["metadata"]["name"] for pod in pods}]) == 1, holders


def test_prediction_needs_the_generated_key(served: Served) -> None:
    key = client_key(served.node.cluster, served.namespace, served.name)
    pods = _running_pods(served)
    assert {p["spec"]["nodeName"] for p in pods} == {REAL_NODE_NAME}
    for pod in pods:
        status, body = predict(_address(pod), served.name, key)
        assert status == 200
        assert body["model_version"] == "1"
        assert predict(_address(pod), served.name, key[:-4] + "0000")[0] == 401


def test_the_container_runs_as_65532_on_a_read_only_root_without_a_token(served: Served) -> None:
    pod = _running_pods(served)[0]
    probe = (
        "import os, json\n"
        "try:\n    open('/probe', 'w'); writable = True\nexcept OSError:\n    writable = False\n"
        "print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(), 'root_writable': writable,"
        " 'token': os.path.exists('/var/run/secrets/kubernetes.io/serviceaccount/token')}))"
    )
    result = served.node.cluster.kubectl(
        "exec", "-n", served.namespace, pod["metadata"]["name"], "-c", CONTAINER_RUNTIME, "--",
        "/opt/venv/bin/python", "-c", probe,
    )  # fmt: skip
    assert json.loads(result.stdout) == {"uid": 65532, "gid": 65532, "root_writable": False, "token": False}


def test_a_rotated_key_reaches_every_running_pod_and_the_old_one_keeps_working(served: Served) -> None:
    cluster = served.node.cluster
    old_key = client_key(cluster, served.namespace, served.name)
    addresses = [_address(pod) for pod in _running_pods(served)]
    rotated_at = time.monotonic()
    cluster.kubectl("annotate", "mdep", served.name, "-n", served.namespace, "modeldeploy.io/rotate=demo")
    new_key = str(
        wait_until(
            "the client Secret to hold a new key",
            lambda: (key := client_key(cluster, served.namespace, served.name)) != old_key and key,
            timeout=60,
        )
    )
    secret_written = time.monotonic() - rotated_at
    accepted_after: dict[str, float] = {}

    def new_key_works_everywhere() -> bool:
        for address in addresses:
            assert predict(address, served.name, old_key)[0] == 200, (
                f"the old key stopped working on {address} in its grace period"
            )
            if address not in accepted_after and predict(address, served.name, new_key)[0] == 200:
                accepted_after[address] = time.monotonic() - rotated_at
        return len(accepted_after) == len(addresses)

    wait_until(
        "the new key to work in every running pod",
        new_key_works_everywhere,
        KEY_PROPAGATION_TIMEOUT_SECONDS,
        interval=0.5,
    )
    per_pod = ", ".join(f"{seconds:.1f}s" for seconds in sorted(accepted_after.values()))
    report_figure(
        "key rotation: annotate -> new key answers 200 in each running pod (kubelet Secret sync)",
        f"{per_pod} (client Secret written after {secret_written:.1f}s)",
    )


def _load(served: Served) -> EndpointSliceLoad:
    key = client_key(served.node.cluster, served.namespace, served.name)
    return EndpointSliceLoad(
        lambda: endpoint_slices(served.node.cluster, served.namespace, served.name),
        PORT_HTTP,
        served.name,
        key,
    )


def test_a_version_bump_under_load_fails_no_request(served: Served) -> None:
    cluster = served.node.cluster
    with _load(served) as load:
        time.sleep(LOAD_WARMUP_SECONDS)
        cluster.apply(model_deployment(served.name, served.namespace, "2", served.digests["2"]))
        bumped = int(cluster.get_json("mdep", served.name, "-n", served.namespace)["metadata"]["generation"])

        def ready_at_the_bump() -> bool:
            # One read: status and observedGeneration of the same Ready condition (two reads may
            # pair a stale True with the operator's next, rolling-out, generation).
            ready = condition(cluster, served.namespace, served.name, "Ready")
            return ready.get("status") == "True" and int(ready.get("observedGeneration", 0)) >= bumped

        wait_until("version 2 Ready", ready_at_the_bump, READY_TIMEOUT_SECONDS)
        wait_until("answers from version 2", lambda: load.report.versions["2"] > 0, 60)
    report = load.report
    report_figure(
        "version bump under load",
        f"{report.requests} requests, {len(report.failures)} failed, {dict(report.versions)}",
    )
    assert report.failures == []
    assert report.versions["1"] > 0
    assert report.versions["2"] > 0
    key = client_key(cluster, served.namespace, served.name)
    assert all(
        predict(_address(p), served.name, key)[1]["model_version"] == "2" for p in _running_pods(served)
    )


def test_deleting_a_pod_under_load_drains_its_requests(served: Served) -> None:
    cluster = served.node.cluster
    victim = _running_pods(served)[0]
    victim_address = _address(victim)
    with _load(served) as load:
        wait_until("load on the pod to delete", lambda: load.report.per_address[victim_address] > 0, 30)
        deleted_at = time.monotonic()
        cluster.kubectl("delete", "pod", victim["metadata"]["name"], "-n", served.namespace, "--wait=false")
        wait_until(
            "the deleted pod gone",
            lambda: (
                victim["metadata"]["name"]
                not in {p["metadata"]["name"] for p in server_pods(cluster, served.namespace, served.name)}
            ),
            120,
        )
        wait_until(
            "a replacement Ready",
            lambda: _ready(served.node, served.namespace, served.name),
            READY_TIMEOUT_SECONDS,
        )
    report = load.report
    report_figure("pod deletion under load", f"{report.requests} requests, {len(report.failures)} failed")
    assert report.failures == []
    assert report.answered_after[victim_address] > deleted_at, (
        "no request reached the pod while it terminated"
    )


def test_a_digest_mismatch_crash_loops_on_the_kubelet_and_degrades(
    real_node: RealNode, operator_release: str, node_namespace: str, model_store: dict[str, str]
) -> None:
    cluster = real_node.cluster
    name = "iris-bad-digest"
    cluster.apply(model_deployment(name, node_namespace, "1", model_store["2"], replicas=1))

    def crash_looping() -> bool:
        for pod in server_pods(cluster, node_namespace, name):
            for status in pod["status"].get("initContainerStatuses") or []:
                waiting = (status.get("state") or {}).get("waiting") or {}
                if status["name"] == CONTAINER_FETCH and waiting.get("reason") == "CrashLoopBackOff":
                    return True
        return False

    wait_until("the fetch init container in CrashLoopBackOff (reported by the kubelet)", crash_looping, 180)
    wait_until(
        "Degraded=True and Ready=False",
        lambda: (
            condition(cluster, node_namespace, name, "Degraded").get("status") == "True"
            and condition(cluster, node_namespace, name, "Ready").get("status") == "False"
        ),
        120,
    )
    cluster.kubectl("delete", "mdep", name, "-n", node_namespace, "--wait=false", check=False)
