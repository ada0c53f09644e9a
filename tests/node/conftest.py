"""The real-node tier: the product as users run it, on the kubelet node ``real-0``.

The chart installs the operator with the built operator image onto real-0; ModelDeployments use
the built runtime image, and their namespace sends every pod to real-0 (default nodeSelector and
tolerations from the namespace's annotations: the PodNodeSelector and PodTolerationRestriction
admission plugins). Models come from moto's S3 server on the node's bridge address.

Where the machine cannot run the node, the tier is skipped with the reason; with
``MODELDEPLOY_REQUIRE_REAL_NODE=1`` (set by ``.ci/run``) that skip is a failure instead.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from modeldeploy_devenv.assets import require_binary
from modeldeploy_devenv.images import build_images, default_image_tags
from modeldeploy_devenv.node import (
    REAL_NODE_LABEL_KEY,
    REAL_NODE_LABEL_VALUE,
    REAL_NODE_NAME,
    REAL_NODE_TOLERATION,
    load_images,
    node_network,
    node_unavailable_reason,
    real_node_namespace_annotations,
)
from modeldeploy_devenv.node_network import NodeNetwork
from modeldeploy_devenv.sample_models import upload_onnx_sample_model, upload_sample_models
from tests.conftest import REPO_ROOT, Cluster
from tests.support import S3_CREDENTIALS, moto_server, wait_until

REQUIRE_ENV = "MODELDEPLOY_REQUIRE_REAL_NODE"
STORE_SECRET = "model-store"
CLIENT = "demo"
ONNX_VERSION = "onnx"  # model_store's key of the ONNX sample model


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.node)
            item.add_marker(pytest.mark.slow)


def skip_or_fail(reason: str) -> None:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but the real node cannot run here: {reason}")
    pytest.skip(f"no real node: {reason}")


@dataclass(frozen=True)
class RealNode:
    cluster: Cluster
    directory: Path
    network: NodeNetwork


@pytest.fixture(scope="session")
def real_node(cluster: Cluster) -> RealNode:
    reason = node_unavailable_reason()
    if reason is not None:
        skip_or_fail(reason)
    directory = Path(cluster.kubeconfig).parent
    network = node_network(directory)
    if network is None:
        skip_or_fail(f"the cluster in {directory} runs without {REAL_NODE_NAME}")
        raise AssertionError("unreachable")
    return RealNode(cluster=cluster, directory=directory, network=network)


@pytest.fixture(scope="session")
def node_images(real_node: RealNode) -> dict[str, str]:
    """Both images built from this tree and loaded into real-0. They are built every session (the
    builder's layer cache makes an unchanged tree cheap): a tag alone cannot tell an image of
    older sources, and the tier must test the code it runs beside."""
    tags = default_image_tags()
    build_images(tags, fresh=os.environ.get("MODELDEPLOY_REBUILD_IMAGES") == "1")
    load_images(real_node.directory, list(tags.values()))
    return tags


def _create_namespace(cluster: Cluster, stem: str, annotations: dict[str, str]) -> str:
    name = f"{stem}-{secrets.token_hex(3)}"
    cluster.apply(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "annotations": annotations}}
    )
    wait_until(
        f"the default ServiceAccount in {name}",
        lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
    )
    return name


@pytest.fixture(scope="session")
def node_namespace(real_node: RealNode) -> Iterator[str]:
    """A namespace whose pods all go to real-0 (the ModelDeployments of the tier live here)."""
    name = _create_namespace(
        real_node.cluster,
        "node-tier",
        real_node_namespace_annotations(),
    )
    yield name
    real_node.cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def operator_release(real_node: RealNode, node_images: dict[str, str], node_namespace: str) -> Iterator[str]:
    """The chart installed with the built operator image, on real-0, watching the tier's namespace."""
    cluster = real_node.cluster
    # A release name of its own: the chart's cluster-scoped RBAC is named after the release, and
    # other tests of the session install the chart as "modeldeploy".
    release = f"modeldeploy-node-{secrets.token_hex(3)}"
    release_namespace = f"{release}-system"
    values = {
        "image": node_images["operator"],
        "runtimeImage": node_images["runtime"],
        "runtimeOnnxImage": node_images["runtime-onnx"],
        "imagePullPolicy": "Never",
        "watchNamespaces": [node_namespace],
        "logFormat": "plain",
        "nodeSelector": {REAL_NODE_LABEL_KEY: REAL_NODE_LABEL_VALUE},
        "tolerations": [REAL_NODE_TOLERATION],
    }
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO_ROOT / "crds"))
    with tempfile.NamedTemporaryFile("w", suffix=".json") as values_file:
        json.dump(values, values_file)
        values_file.flush()
        helm = [str(require_binary("helm")), "--kubeconfig", cluster.kubeconfig]
        installed = subprocess.run(
            [*helm, "install", release, str(REPO_ROOT / "charts" / "modeldeploy"), "--namespace",
             release_namespace, "--create-namespace", "-f", values_file.name, "--wait", "--timeout", "180s"],
            check=False, capture_output=True, text=True,
        )  # fmt: skip
    assert installed.returncode == 0, f"helm install failed: {installed.stderr.strip()}"
    yield release_namespace
    subprocess.run(
        [*helm, "uninstall", release, "--namespace", release_namespace, "--wait"],
        check=False,
        capture_output=True,
    )
    cluster.kubectl("delete", "namespace", release_namespace, "--wait=false", check=False)


@pytest.fixture(scope="session")
def model_store(
    real_node: RealNode, node_namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """moto's S3 on the node's bridge address, holding iris v1 and v2 and the ONNX form of a
    third (key ``ONNX_VERSION``); {version: sha256}."""
    with moto_server(real_node.network.gateway) as endpoint:
        workdir = tmp_path_factory.mktemp("models")
        digests = upload_sample_models(endpoint, workdir)
        digests[ONNX_VERSION] = upload_onnx_sample_model(endpoint, workdir)
        real_node.cluster.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": STORE_SECRET, "namespace": node_namespace},
                "stringData": {**S3_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint},
            }
        )
        yield digests


def model_deployment(
    name: str, namespace: str, version: str, sha256: str, replicas: int = 2, **spec: Any
) -> dict[str, Any]:
    """iris ``version`` from the tier's model store; ``spec`` adds or replaces top-level spec fields."""
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {
                "uri": f"s3://models/iris/{version}/model.joblib",
                "version": version,
                "format": "joblib",
                "sha256": sha256,
                "storageSecretRef": {"name": STORE_SECRET},
            },
            "replicas": replicas,
            "runtime": {
                "workers": 1,
                "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "768Mi"}},
            },
            "auth": {"enabled": True, "clients": [{"name": CLIENT}]},
            **spec,
        },
    }


def client_key(cluster: Cluster, namespace: str, name: str) -> str:
    secret = cluster.get_json("secret", f"{name}-client-{CLIENT}", "-n", namespace)
    return base64.b64decode(secret["data"]["api-key"]).decode()


def condition(cluster: Cluster, namespace: str, name: str, kind: str) -> dict[str, Any]:
    status = cluster.get_json("mdep", name, "-n", namespace).get("status") or {}
    found = [c for c in status.get("conditions") or [] if c.get("type") == kind]
    return found[0] if found else {}


def endpoint_slices(cluster: Cluster, namespace: str, service: str) -> list[dict[str, Any]]:
    listed = cluster.get_json(
        "endpointslices", "-n", namespace, "-l", f"kubernetes.io/service-name={service}"
    )
    return list(listed.get("items", []))


def server_pods(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    listed = cluster.get_json("pods", "-n", namespace, "-l", f"app.kubernetes.io/instance={name}")
    return list(listed.get("items", []))


FIGURES: dict[str, str] = {}


def report_figure(name: str, value: str) -> None:
    """A measured figure of the tier, printed in pytest's closing summary."""
    FIGURES[name] = value


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("real-node figures")
        for name, value in FIGURES.items():
            terminalreporter.write_line(f"{name}: {value}")
