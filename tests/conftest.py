"""Shared fixtures: the local control plane (session) and a fresh namespace per test."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from modeldeploy_devenv.cluster import kubectl, start, stop
from tests.support import wait_until

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Cluster:
    kubeconfig: str

    def kubectl(
        self, *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return kubectl(self.kubeconfig, *args, check=check, stdin=stdin)

    def get_json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def apply(
        self, manifest: dict[str, Any] | list[dict[str, Any]], *extra: str
    ) -> subprocess.CompletedProcess[str]:
        items = manifest if isinstance(manifest, list) else [manifest]
        document = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
        return self.kubectl("apply", "-f", "-", *extra, stdin=document)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Any test that uses the control plane carries the ``cluster`` marker (``-m 'not cluster'``)."""
    for item in items:
        if "cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The local control plane, or an existing cluster when MODELDEPLOY_USE_EXISTING_CLUSTER=1."""
    if os.environ.get("MODELDEPLOY_USE_EXISTING_CLUSTER") == "1":
        kubeconfig = os.environ.get("KUBECONFIG")
        if not kubeconfig:
            pytest.fail("MODELDEPLOY_USE_EXISTING_CLUSTER=1 needs KUBECONFIG to point at the cluster")
        yield Cluster(kubeconfig=kubeconfig)
        return
    directory = tmp_path_factory.mktemp("controlplane")
    state = start(directory)
    try:
        yield Cluster(kubeconfig=state.kubeconfig)
    finally:
        stop(directory)


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace, named after the test, with its default ServiceAccount in place."""
    stem = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{stem}-{secrets.token_hex(3)}"
    cluster.kubectl("create", "namespace", name)
    wait_until(
        f"the default ServiceAccount in {name}",
        lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
    )
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
