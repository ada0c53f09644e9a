"""The fault suite's own control plane (it restarts the API server and etcd, so it shares it with
no other test), the CRD, operators started against it directly or through the fault proxy."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from modeldeploy_devenv.apiproxy import APIProxy
from modeldeploy_devenv.cluster import ClusterState, start, stop
from modeldeploy_devenv.operator_process import OperatorProcess, start_operator
from modeldeploy_devenv.pki import Pki, pki_paths
from tests.conftest import Cluster
from tests.operator.conftest import CRD_DIR
from tests.support import free_port


@dataclass(frozen=True)
class FaultCluster(Cluster):
    directory: Path
    server: str

    @property
    def pki(self) -> Pki:
        return pki_paths(self.directory / "pki")


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultCluster]:
    """Overrides the session's cluster for this package: a control plane of its own."""
    if os.environ.get("MODELDEPLOY_USE_EXISTING_CLUSTER") == "1":
        pytest.skip("the fault suite restarts its control plane's processes: it needs its own")
    directory = tmp_path_factory.mktemp("faults-controlplane")
    state: ClusterState = start(directory)
    try:
        faults = FaultCluster(kubeconfig=state.kubeconfig, directory=directory, server=state.server)
        faults.kubectl("apply", "--server-side", "-f", str(CRD_DIR))
        faults.kubectl("wait", "--for", "condition=Established", "--timeout=60s", "-f", str(CRD_DIR))
        yield faults
    finally:
        stop(directory)


@pytest.fixture
def proxy(cluster: FaultCluster, tmp_path: Path) -> Iterator[APIProxy]:
    """A fault-injecting proxy in front of this package's API server (and a kubeconfig for it)."""
    started = APIProxy(cluster.server, cluster.pki, free_port()).start()
    started.write_kubeconfig(tmp_path / "proxied.kubeconfig")
    yield started
    started.stop()


class Operators:
    """Operator processes for one test, stopped at its end."""

    def __init__(self, cluster: FaultCluster, namespace: str, directory: Path) -> None:
        self.cluster, self.namespace, self.directory = cluster, namespace, directory
        self.started: list[OperatorProcess] = []

    def start(self, *, kubeconfig: str | None = None, **env: str) -> OperatorProcess:
        number = len(self.started)
        handle = start_operator(
            kubeconfig or self.cluster.kubeconfig,
            self.namespace,
            log=self.directory / f"operator-{number}.log",
            env={"POD_NAME": f"operator-{number}", **env},
        )
        self.started.append(handle)
        return handle

    def stop_all(self) -> None:
        for handle in self.started:
            handle.stop()
            print(f"--- operator log {handle.log} ---\n{handle.logs()[-3000:]}")


@pytest.fixture
def operators(cluster: FaultCluster, namespace: str, tmp_path: Path) -> Iterator[Operators]:
    started = Operators(cluster, namespace, tmp_path)
    yield started
    started.stop_all()
