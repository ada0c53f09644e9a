"""A real kubelet node, ``real-0``, beside the kwok nodes of the local control plane.

It runs real containers: its own containerd (see ``containerd``), a bridge network of its own
(see ``node_network``), the kubelet built like the control-plane binaries. It carries the label
``modeldeploy.dev/node=real`` and the taint ``modeldeploy.dev/node=real:NoSchedule``, so only pods
that ask for it land there. Its state lives in ``<cluster dir>/node``; ``stop_real_node`` undoes
everything it made on the host: processes, mounts, network namespaces, cgroups, the bridge, the
iptables rule and runc's state.

It needs Linux and root (containers, mounts, a bridge). Elsewhere ``node_unavailable_reason``
says why, and the cluster comes up without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from modeldeploy_devenv.cluster import kubectl, pid_alive
from modeldeploy_devenv.containerd import (
    CRI_NAMESPACE,
    PAUSE_IMAGE,
    ContainerdPaths,
    build_containerd_config,
    containerd_answers,
    import_images,
    kill_shims,
    network_namespaces,
    remove_containers,
)
from modeldeploy_devenv.debian import PACKAGES_FOR, cannot_install_reason, ensure_packages, missing_packages
from modeldeploy_devenv.host_cleanup import (
    remove_container_log_links,
    remove_empty_cgroup,
    remove_network_namespaces,
    unmount_under,
)
from modeldeploy_devenv.images import image_builder, image_exists
from modeldeploy_devenv.node_binaries import PAUSE, require_node_binaries
from modeldeploy_devenv.node_network import NodeNetwork, build_cni_conflist, create_network, delete_network
from modeldeploy_devenv.pki import Pki, _issue, _name, _write_key
from modeldeploy_devenv.polling import wait_until
from modeldeploy_devenv.processes import free_port

REAL_NODE_NAME = "real-0"
REAL_NODE_LABEL_KEY = "modeldeploy.dev/node"
REAL_NODE_LABEL_VALUE = "real"
REAL_NODE_TAINT = {"key": REAL_NODE_LABEL_KEY, "value": REAL_NODE_LABEL_VALUE, "effect": "NoSchedule"}
REAL_NODE_TOLERATION = {**REAL_NODE_TAINT, "operator": "Equal"}
# Set to 0 to start the control plane without the real node.
REAL_NODE_ENV = "MODELDEPLOY_REAL_NODE"
NODE_READY_TIMEOUT_SECONDS = 180.0
STOP_TIMEOUT_SECONDS = 20.0
SHORT_PATHS_ROOT = Path("/run/modeldeploy")
# The API server runs RBAC only (no Node authorizer): nodes get their permissions from this binding.
NODE_ROLE_BINDING = {
    "apiVersion": "rbac.authorization.k8s.io/v1",
    "kind": "ClusterRoleBinding",
    "metadata": {"name": "modeldeploy:system:nodes"},
    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:node"},
    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:nodes"}],
}


def real_node_namespace_annotations() -> dict[str, str]:
    """Annotations that send every pod of a namespace to real-0: its default nodeSelector and
    tolerations (the PodNodeSelector and PodTolerationRestriction admission plugins)."""
    return {
        "scheduler.alpha.kubernetes.io/node-selector": f"{REAL_NODE_LABEL_KEY}={REAL_NODE_LABEL_VALUE}",
        "scheduler.alpha.kubernetes.io/defaultTolerations": json.dumps([REAL_NODE_TOLERATION]),
    }


class NodeError(RuntimeError):
    """The real node could not start; the message names the step and, for a process, its log."""


@dataclass
class NodeState:
    """What ``stop_real_node`` needs to undo, saved in ``<cluster dir>/node/node.json``."""

    directory: str
    node_id: str
    apiserver_port: int
    network: dict[str, str] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def node_dir(self) -> Path:
        return Path(self.directory) / "node"

    @property
    def containerd(self) -> ContainerdPaths:
        return ContainerdPaths(self.node_dir / "containerd", self.short_dir)

    @property
    def short_dir(self) -> Path:
        """Where the node's Unix sockets live, and the kubelet's root dir (which holds sockets):
        a socket path must stay under ~104 bytes, which a deep cluster directory (pytest's) passes."""
        return SHORT_PATHS_ROOT / self.node_id

    @property
    def pod_logs_dir(self) -> Path:
        return self.node_dir / "pod-logs"

    def save(self) -> None:
        self.node_dir.mkdir(parents=True, exist_ok=True)
        (self.node_dir / "node.json").write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, directory: Path) -> NodeState | None:
        try:
            return cls(**json.loads((directory / "node" / "node.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None


def node_unavailable_reason() -> str | None:
    """Why this machine cannot run the real node, or None when it can."""
    if os.environ.get(REAL_NODE_ENV) == "0":
        return f"{REAL_NODE_ENV}=0"
    if not sys.platform.startswith("linux"):
        return f"the real node needs Linux; this is {sys.platform}"
    if os.geteuid() != 0:
        return "the real node needs root (containers, mounts, a bridge)"
    if not Path("/sys/fs/cgroup").is_dir():
        return "no cgroup filesystem at /sys/fs/cgroup"
    if missing_packages(PACKAGES_FOR["node"]) and cannot_install_reason() is not None:
        return f"the Debian packages {' '.join(PACKAGES_FOR['node'])} are missing: {cannot_install_reason()}"
    return None


def build_kubelet_config(
    state: NodeState, ca_cert: Path, network: NodeNetwork, port: int, healthz_port: int
) -> dict[str, Any]:
    """The KubeletConfiguration for this machine kind: cgroup v1 hybrid without systemd
    (cgroupfs, no QoS cgroups: containerd puts each container in ``/k8s.io/<id>``), no swap or
    eviction pressure, no image GC of the locally built images, every host path inside the
    node's directory."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": network.gateway,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(ca_cert)},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "containerRuntimeEndpoint": f"unix://{state.containerd.socket}",
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupsPerQOS": False,
        "enforceNodeAllocatable": [],
        "failSwapOn": False,
        "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "podLogsDir": str(state.pod_logs_dir),
        "volumePluginDir": str(state.node_dir / "volume-plugins"),
        "registerWithTaints": [REAL_NODE_TAINT],
        "serializeImagePulls": False,
        "resolvConf": "/etc/resolv.conf",
    }


def _write_node_credentials(state: NodeState, pki: Pki, server: str) -> Path:
    """A client certificate ``system:node:real-0`` in ``system:nodes``, and its kubeconfig."""
    ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise NodeError(f"the cluster CA key {pki.ca_key} is not an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _issue(
        _name(f"system:node:{REAL_NODE_NAME}", "system:nodes"),
        public_key=key.public_key(),
        ca_cert=ca_cert,
        ca_key=ca_key,
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    cert_path, key_path = state.node_dir / "node.crt", state.node_dir / "node.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)
    kubeconfig = state.node_dir / "kubeconfig"
    kubeconfig.write_text(
        json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "node",
            "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority": str(pki.ca_cert)}}],
            "users": [{"name": "node", "user": {"client-certificate": str(cert_path), "client-key": str(key_path)}}],
            "contexts": [{"name": "node", "context": {"cluster": "local", "user": "node"}}],
        })
    )  # fmt: skip
    kubeconfig.chmod(0o600)
    return kubeconfig


def _launch(state: NodeState, name: str, command: list[str]) -> int:
    logs = Path(state.directory) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / f"{name}.log").open("ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    state.pids[name] = process.pid
    state.save()
    return process.pid


def _alive_or_raise(state: NodeState, name: str) -> bool:
    if not pid_alive(state.pids[name]):
        log = Path(state.directory) / "logs" / f"{name}.log"
        tail = log.read_text(errors="replace")[-1500:] if log.is_file() else ""
        raise NodeError(f"{name} of {REAL_NODE_NAME} exited; {log} ends:\n{tail}")
    return True


def build_pause_image(pause_binary: Path) -> None:
    """The sandbox image: the pause binary alone, imported into the image builder's store."""
    if image_exists(PAUSE_IMAGE):
        return
    builder, env = image_builder()
    with tempfile.TemporaryDirectory(prefix="modeldeploy-pause-") as workdir:
        archive = Path(workdir) / "pause.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(pause_binary, arcname=PAUSE)
        result = subprocess.run(
            [builder, "import", "--change", 'ENTRYPOINT ["/pause"]', "--change", "USER 65535:65535",
             str(archive), PAUSE_IMAGE],
            capture_output=True, text=True, check=False, env=env,
        )  # fmt: skip
    if result.returncode != 0:
        raise NodeError(f"{builder} import of {PAUSE_IMAGE} failed: {result.stderr.strip()}")


def node_is_ready(kubeconfig: str) -> bool:
    result = kubectl(kubeconfig, "get", "node", REAL_NODE_NAME, "-o", "json", check=False)
    if result.returncode != 0:
        return False
    conditions = json.loads(result.stdout).get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def start_real_node(directory: Path, pki: Pki, kubeconfig: str, server: str) -> dict[str, int]:
    """Start containerd and the kubelet of ``real-0``; return their PIDs once the Node is Ready."""
    started = time.monotonic()
    binaries = require_node_binaries()
    ensure_packages("node")
    node_id = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:12]
    state = NodeState(directory=str(directory), node_id=node_id, apiserver_port=int(server.rsplit(":", 1)[1]))
    state.save()
    network = create_network(node_id, state.apiserver_port)
    state.network = network.to_dict()
    state.save()
    node_kubeconfig = _write_node_credentials(state, pki, server)
    kubectl(kubeconfig, "apply", "-f", "-", stdin=json.dumps(NODE_ROLE_BINDING))
    paths = state.containerd
    paths.cni_conf_dir.mkdir(parents=True, exist_ok=True)
    paths.socket_dir.mkdir(parents=True, exist_ok=True)
    paths.config.write_text(build_containerd_config(paths))
    (paths.cni_conf_dir / "10-modeldeploy.conflist").write_text(
        json.dumps(build_cni_conflist(network, state.node_dir / "cni-ipam"), indent=2)
    )
    _launch(state, "containerd", [shutil.which("containerd") or "containerd", "--config", str(paths.config)])
    wait_until(
        "containerd", lambda: _alive_or_raise(state, "containerd") and containerd_answers(paths), timeout=60
    )
    build_pause_image(binaries[PAUSE])
    import_images(paths, [PAUSE_IMAGE])
    config = state.node_dir / "kubelet.yaml"
    config.write_text(
        json.dumps(build_kubelet_config(state, pki.ca_cert, network, free_port(), free_port()), indent=2)
    )
    _launch(state, "kubelet", [
        str(binaries["kubelet"]), f"--config={config}", f"--kubeconfig={node_kubeconfig}",
        f"--root-dir={state.short_dir / 'kubelet'}", f"--cert-dir={state.node_dir / 'kubelet-pki'}",
        f"--hostname-override={REAL_NODE_NAME}", f"--node-ip={network.gateway}",
        f"--node-labels={REAL_NODE_LABEL_KEY}={REAL_NODE_LABEL_VALUE}", "--v=1",
    ])  # fmt: skip
    wait_until(
        f"Node {REAL_NODE_NAME} Ready",
        lambda: _alive_or_raise(state, "kubelet") and node_is_ready(kubeconfig),
        timeout=NODE_READY_TIMEOUT_SECONDS,
        interval=0.5,
    )
    print(
        f"[node] {REAL_NODE_NAME} Ready in {time.monotonic() - started:.1f}s at {network.gateway} "
        f"(pods on {network.subnet}, bridge {network.bridge})",
        flush=True,
    )
    return dict(state.pids)


def load_images(directory: Path, tags: list[str]) -> None:
    """Import ``tags`` from podman's store into the real node's containerd."""
    state = NodeState.load(directory)
    if state is None:
        raise NodeError(f"no real node in {directory}")
    import_images(state.containerd, tags)


def node_network(directory: Path) -> NodeNetwork | None:
    state = NodeState.load(directory)
    return NodeNetwork.from_dict(state.network) if state is not None and state.network else None


def _stop_process(state: NodeState, name: str) -> None:
    pid = state.pids.get(name)
    if pid is None or not pid_alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.1)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


def stop_real_node(directory: Path) -> None:
    """Undo ``start_real_node``: safe on a half-started node and to repeat."""
    state = NodeState.load(directory)
    if state is None:
        return
    _stop_process(state, "kubelet")
    paths = state.containerd
    namespaces = network_namespaces(paths)
    remove_containers(paths)
    _stop_process(state, "containerd")
    kill_shims(paths)
    unmount_under(state.node_dir)
    unmount_under(state.short_dir)
    remove_network_namespaces(namespaces)
    remove_empty_cgroup(CRI_NAMESPACE)
    remove_container_log_links(state.pod_logs_dir)
    if state.network:
        delete_network(NodeNetwork.from_dict(state.network), state.apiserver_port)
    shutil.rmtree(state.node_dir, ignore_errors=True)
    shutil.rmtree(state.short_dir, ignore_errors=True)
    with contextlib.suppress(OSError):  # shared by the machine's nodes: only once it is empty
        SHORT_PATHS_ROOT.rmdir()
