"""Fixtures for the operator's integration tests: the CRD installed, the operator as a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, Cluster
from tests.controlplane.cluster import free_port
from tests.polling import wait_until

CRD_DIR = REPO_ROOT / "crds"
SERVICE_MONITOR_CRD = Path(__file__).parent / "servicemonitor-crd.yaml"


@pytest.fixture(scope="session")
def crd(cluster: Cluster) -> Cluster:
    """The ModelDeployment CRD, installed the way users do (server-side apply of crds/)."""
    cluster.kubectl("apply", "--server-side", "-f", str(CRD_DIR))
    cluster.kubectl("wait", "--for", "condition=Established", "--timeout=60s", "-f", str(CRD_DIR))
    return cluster


@dataclass
class OperatorProcess:
    process: subprocess.Popen[bytes]
    log: Path
    metrics_port: int
    health_port: int = 0  # kopf's /healthz (liveness and readiness); 0: not served

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            return str(response.read().decode())

    def metric(self, name: str) -> float:
        """The sum over all label sets of ``name`` (0 when absent)."""
        total = 0.0
        for line in self.metrics().splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def health(self) -> tuple[int, str]:
        """(HTTP status, body) of /healthz."""
        url = f"http://127.0.0.1:{self.health_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return int(response.status), str(response.read().decode())
        except urllib.error.HTTPError as error:
            return int(error.code), str(error.read().decode())

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


StartOperator = Callable[..., OperatorProcess]


def launch_operator(
    namespace: str, log: Path, env: dict[str, str], *, health: bool = False, timeout: float = 30
) -> OperatorProcess:
    """``modeldeploy-operator --namespace <ns>`` with ``env`` on top of ours, once its metrics answer."""
    port = free_port()
    health_port = free_port() if health else 0
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "modeldeploy_operator.cli", "--namespace", namespace, "--metrics-port", str(port),
             "--health-port", str(health_port)],
            stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, **env},
        )  # fmt: skip
    handle = OperatorProcess(process, log, port, health_port)

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the operator exited with {process.returncode}:\n{handle.logs()}")
        try:
            return "modeldeploy_operator_reconciles_total" in handle.metrics()
        except OSError:
            return False

    wait_until("the operator's metrics endpoint", up, timeout=timeout)
    return handle


@pytest.fixture
def start_operator(crd: Cluster, namespace: str, tmp_path: Path) -> Iterator[StartOperator]:
    """Start ``modeldeploy-operator --namespace <ns>`` with extra env (and /healthz with
    ``health=True``); stopped at teardown."""
    started: list[OperatorProcess] = []

    def start(*, health: bool = False, **env: str) -> OperatorProcess:
        environment = {
            "KUBECONFIG": crd.kubeconfig,
            "MODELDEPLOY_RESYNC_SECONDS": "30",
            "MODELDEPLOY_MONITORING_API_CACHE_SECONDS": "1",
            **env,
        }
        handle = launch_operator(
            namespace, tmp_path / f"operator-{len(started)}.log", environment, health=health
        )
        started.append(handle)
        return handle

    yield start
    for handle in started:
        handle.stop()
        print(f"--- operator log {handle.log} ---\n{handle.logs()[-4000:]}")


@pytest.fixture
def service_monitor_crd(crd: Cluster) -> Iterator[Cluster]:
    """The minimal ServiceMonitor CRD, removed again after the test."""
    crd.kubectl("apply", "-f", str(SERVICE_MONITOR_CRD))
    crd.kubectl("wait", "--for", "condition=Established", "--timeout=60s", "-f", str(SERVICE_MONITOR_CRD))
    yield crd
    crd.kubectl("delete", "-f", str(SERVICE_MONITOR_CRD), "--wait=true", "--timeout=60s", check=False)
