"""The local control plane behaves like a real cluster where the operator depends on it."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from modeldeploy_devenv.assets import require_binary
from modeldeploy_devenv.cluster import ClusterState, pid_alive
from tests.conftest import REPO_ROOT, Cluster
from tests.support import wait_until


def _deployment(name: str, replicas: int, image: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "main", "image": image}]},
            },
        },
    }


def test_api_server_is_ready(cluster: Cluster) -> None:
    assert cluster.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"


def test_deployment_pods_become_ready_and_a_template_change_rolls_out(
    cluster: Cluster, namespace: str
) -> None:
    cluster.apply(_deployment("web", 2, "registry.example/web:1"), "-n", namespace)

    def ready_replicas() -> int:
        return int(cluster.get_json("deployment", "web", "-n", namespace)["status"].get("readyReplicas", 0))

    wait_until("2 ready replicas of web", lambda: ready_replicas() == 2, timeout=120)
    pods = cluster.get_json("pods", "-n", namespace, "-l", "app=web")["items"]
    assert {pod["status"]["phase"] for pod in pods} == {"Running"}
    assert all(pod["spec"]["nodeName"].startswith("kwok-node-") for pod in pods)

    cluster.apply(_deployment("web", 2, "registry.example/web:2"), "-n", namespace)
    cluster.kubectl("rollout", "status", "deployment/web", "-n", namespace, "--timeout=180s")
    replica_sets = cluster.get_json("replicasets", "-n", namespace, "-l", "app=web")["items"]
    assert len(replica_sets) == 2
    images = {
        rs["spec"]["template"]["spec"]["containers"][0]["image"]: rs["status"]["replicas"]
        for rs in replica_sets
    }
    assert images == {"registry.example/web:1": 0, "registry.example/web:2": 2}


def test_deleting_an_owner_garbage_collects_its_children(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "configmap", "owner", "-n", namespace)
    owner_uid = cluster.get_json("configmap", "owner", "-n", namespace)["metadata"]["uid"]
    child = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "child",
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}],
        },
        "stringData": {"k": "v"},
    }
    cluster.apply(child, "-n", namespace)
    cluster.kubectl("delete", "configmap", "owner", "-n", namespace)
    wait_until(
        "the owned Secret to be garbage-collected",
        lambda: cluster.kubectl("get", "secret", "child", "-n", namespace, check=False).returncode != 0,
    )


def test_privileged_pod_is_rejected_under_restricted_pod_security(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "privileged"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": True}}]},
    }
    result = subprocess.run(
        [*_kubectl_base(cluster), "apply", "-n", namespace, "-f", "-"],
        input=json.dumps(pod), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in result.stderr
    assert "privileged" in result.stderr


def _kubectl_base(cluster: Cluster) -> list[str]:
    return [str(require_binary("kubectl")), "--kubeconfig", cluster.kubeconfig]


def test_service_account_with_a_narrow_role_is_refused_outside_it(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "serviceaccount", "reader", "-n", namespace)
    cluster.kubectl(
        "create", "role", "cm-reader", "--verb=get,list", "--resource=configmaps", "-n", namespace
    )
    cluster.kubectl(
        "create",
        "rolebinding",
        "cm-reader",
        "--role=cm-reader",
        f"--serviceaccount={namespace}:reader",
        "-n",
        namespace,
    )
    token = cluster.kubectl("create", "token", "reader", "-n", namespace).stdout.strip()
    config = json.loads(Path(cluster.kubeconfig).read_text())
    cluster_entry = config["clusters"][0]["cluster"]
    as_reader = [
        *_kubectl_base(cluster)[:1],
        "--kubeconfig=/dev/null",
        f"--server={cluster_entry['server']}",
        f"--certificate-authority={cluster_entry['certificate-authority']}",
        f"--token={token}",
    ]
    allowed = subprocess.run(
        [*as_reader, "get", "configmaps", "-n", namespace], capture_output=True, text=True, check=False
    )
    assert allowed.returncode == 0, allowed.stderr
    for forbidden_args in (["get", "secrets", "-n", namespace], ["get", "configmaps", "-A"]):
        refused = subprocess.run([*as_reader, *forbidden_args], capture_output=True, text=True, check=False)
        assert refused.returncode != 0
        assert "Forbidden" in refused.stderr
        assert f"system:serviceaccount:{namespace}:reader" in refused.stderr


@pytest.mark.slow
def test_make_cluster_up_is_idempotent_and_cluster_down_stops_everything(tmp_path: Path) -> None:
    env = {**os.environ, "MODELDEPLOY_CLUSTER_DIR": str(tmp_path / "cluster")}

    def make(target: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["make", "-s", target],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    first = make("cluster-up")
    assert first.returncode == 0, first.stdout + first.stderr
    state = ClusterState.load(tmp_path / "cluster")
    assert state is not None
    assert set(state.pids) == {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}
    assert all(pid_alive(pid) for pid in state.pids.values())

    second = make("cluster-up")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "reusing healthy cluster" in second.stdout
    assert ClusterState.load(tmp_path / "cluster") == state  # same processes, nothing restarted

    down = make("cluster-down")
    assert down.returncode == 0, down.stdout + down.stderr
    wait_until(
        "every control-plane process to exit", lambda: not any(pid_alive(p) for p in state.pids.values())
    )
    assert not (tmp_path / "cluster").exists()
