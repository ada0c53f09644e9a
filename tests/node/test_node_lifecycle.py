"""The real node's lifecycle: a second cluster on the same machine gets a node of its own, and
stopping it leaves nothing behind (processes, mounts, network namespaces, cgroups, bridge,
iptables rule, runc state)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from modeldeploy_devenv.cluster import kubectl, pid_alive, start, stop
from modeldeploy_devenv.containerd import PAUSE_IMAGE, shim_pids
from modeldeploy_devenv.host_cleanup import cgroup_mount_points, mounts_under
from modeldeploy_devenv.node import (
    REAL_NODE_LABEL_KEY,
    REAL_NODE_LABEL_VALUE,
    REAL_NODE_NAME,
    REAL_NODE_TOLERATION,
    NodeState,
)
from tests.node.conftest import RealNode
from tests.support import wait_until


def _container_cgroups(container_ids: list[str]) -> list[Path]:
    found = []
    for hierarchy in cgroup_mount_points():
        for container_id in container_ids:
            found += list(hierarchy.glob(f"**/{container_id}"))
    return found


def test_a_second_cluster_gets_its_own_node_and_leaves_nothing_behind(
    real_node: RealNode, tmp_path_factory: pytest.TempPathFactory
) -> None:
    directory = tmp_path_factory.mktemp("second-cluster")
    second = start(directory)
    try:
        state = NodeState.load(directory)
        assert state is not None
        assert state.network["subnet"] != real_node.network.subnet
        assert state.network["bridge"] != real_node.network.bridge
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "sleeper", "namespace": "default"},
            "spec": {
                "nodeSelector": {REAL_NODE_LABEL_KEY: REAL_NODE_LABEL_VALUE},
                "tolerations": [REAL_NODE_TOLERATION],
                "automountServiceAccountToken": False,
                "containers": [{"name": "pause", "image": PAUSE_IMAGE, "imagePullPolicy": "Never"}],
            },
        }
        kubectl(second.kubeconfig, "apply", "-f", "-", stdin=json.dumps(pod))
        wait_until(
            f"a pod Running on the second cluster's {REAL_NODE_NAME}",
            lambda: (
                '"phase": "Running"'
                in kubectl(second.kubeconfig, "get", "pod", "sleeper", "-o", "json").stdout
            ),
            120,
        )
        runc_states = list(state.containerd.runc_root.glob("*/*/state.json"))
        container_ids = [path.parent.name for path in runc_states]
        assert len(container_ids) >= 2  # the sandbox and its container
        assert mounts_under(state.node_dir)
        assert mounts_under(state.short_dir)  # the kubelet's root dir: the pod's volumes
    finally:
        stop(directory)
    assert not any(pid_alive(pid) for pid in state.pids.values())
    assert shim_pids(state.containerd) == []
    assert mounts_under(state.node_dir) == []
    assert mounts_under(state.short_dir) == []
    assert not state.short_dir.exists()
    assert _container_cgroups(container_ids) == []
    assert (
        subprocess.run(
            ["ip", "link", "show", state.network["bridge"]], capture_output=True, check=False
        ).returncode
        != 0
    )
    rules = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True, check=True).stdout
    assert state.network["cni_network"] not in rules
    assert not directory.exists() or not any(directory.iterdir())
    # The first cluster's node is untouched.
    assert (
        subprocess.run(
            ["ip", "link", "show", real_node.network.bridge], capture_output=True, check=False
        ).returncode
        == 0
    )
