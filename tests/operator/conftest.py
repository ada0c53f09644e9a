"""Fixtures for the operator's integration tests: the CRD installed, the operator as a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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
CERTIFICATE_CRD = Path(__file__).parent / "certificate-crd.yaml"


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


@pytest.fixture
def start_operator(crd: Cluster, namespace: str, tmp_path: Path) -> Iterator[StartOperator]:
    """Start ``modeldeploy-operator --namespace <ns>`` with extra env; stopped at teardown."""
    started: list[OperatorProcess] = []

    def start(**env: str) -> OperatorProcess:
        port = free_port()
        log = tmp_path / f"operator-{len(started)}.log"
        environment = {
            **os.environ,
            "KUBECONFIG": crd.kubeconfig,
            "MODELDEPLOY_RESYNC_SECONDS": "30",
            "MODELDEPLOY_MONITORING_API_CACHE_SECONDS": "1",
            **env,
        }
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "modeldeploy_operator.cli", "--namespace", namespace, "--metrics-port", str(port)],
                stdout=sink, stderr=subprocess.STDOUT, env=environment,
            )  # fmt: skip
        handle = OperatorProcess(process, log, port)
        started.append(handle)

        def up() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"the operator exited with {process.returncode}:\n{handle.logs()}")
            try:
                return "modeldeploy_operator_reconciles_total" in handle.metrics()
            except OSError:
                return False

        wait_until("the operator's metrics endpoint", up, timeout=30)
        return handle

    yield start
    for handle in started:
        handle.stop()
        print(f"--- operator log {handle.log} ---\n{handle.logs()[-4000:]}")


def _installed(cluster: Cluster, path: Path) -> Iterator[Cluster]:
    cluster.kubectl("apply", "-f", str(path))
    cluster.kubectl("wait", "--for", "condition=Established", "--timeout=60s", "-f", str(path))
    yield cluster
    cluster.kubectl("delete", "-f", str(path), "--wait=true", "--timeout=60s", check=False)


@pytest.fixture
def service_monitor_crd(crd: Cluster) -> Iterator[Cluster]:
    """The minimal ServiceMonitor CRD, removed again after the test."""
    yield from _installed(crd, SERVICE_MONITOR_CRD)


@pytest.fixture
def certificate_crd(crd: Cluster) -> Iterator[Cluster]:
    """The minimal cert-manager Certificate CRD, removed again after the test."""
    yield from _installed(crd, CERTIFICATE_CRD)
