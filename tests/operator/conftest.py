"""Fixtures for the operator's integration tests: the CRD installed, the operator as a subprocess."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modeldeploy_devenv.operator_process import OperatorProcess
from modeldeploy_devenv.operator_process import start_operator as start_operator_process
from tests.conftest import REPO_ROOT, Cluster

CRD_DIR = REPO_ROOT / "crds"
SERVICE_MONITOR_CRD = Path(__file__).parent / "servicemonitor-crd.yaml"


@pytest.fixture(scope="session")
def crd(cluster: Cluster) -> Cluster:
    """The ModelDeployment CRD, installed the way users do (server-side apply of crds/)."""
    cluster.kubectl("apply", "--server-side", "-f", str(CRD_DIR))
    cluster.kubectl("wait", "--for", "condition=Established", "--timeout=60s", "-f", str(CRD_DIR))
    return cluster


StartOperator = Callable[..., OperatorProcess]


@pytest.fixture
def start_operator(crd: Cluster, namespace: str, tmp_path: Path) -> Iterator[StartOperator]:
    """Start ``modeldeploy-operator --namespace <ns>`` with extra env; stopped at teardown."""
    started: list[OperatorProcess] = []

    def start(**env: str) -> OperatorProcess:
        log = tmp_path / f"operator-{len(started)}.log"
        operator = start_operator_process(
            crd.kubeconfig,
            namespace,
            log=log,
            env={"MODELDEPLOY_RESYNC_SECONDS": "30", "MODELDEPLOY_MONITORING_API_CACHE_SECONDS": "1", **env},
        )
        started.append(operator)
        return operator

    yield start
    for operator in started:
        operator.stop()
        print(f"--- operator log {operator.log} ---\n{operator.logs()[-4000:]}")


@pytest.fixture
def service_monitor_crd(crd: Cluster) -> Iterator[Cluster]:
    """The minimal ServiceMonitor CRD, removed again after the test."""
    crd.kubectl("apply", "-f", str(SERVICE_MONITOR_CRD))
    crd.kubectl("wait", "--for", "condition=Established", "--timeout=60s", "-f", str(SERVICE_MONITOR_CRD))
    yield crd
    crd.kubectl("delete", "-f", str(SERVICE_MONITOR_CRD), "--wait=true", "--timeout=60s", check=False)
