"""What the operator renders is what the runtime understands.

The operator reconciles a ModelDeployment on the local control plane; its Deployment's pod
template is then run, as rendered, by the local pod runner: the init container fetches the model
from an S3-compatible store on loopback (moto's standalone server — MinIO is AGPL and not used),
the runtime serves it with the mounted hashes Secret, and a client calls it with the key from the
``<name>-client-<client>`` Secret.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from modeldeploy_devenv.pod_runner import LocalPod
from modeldeploy_devenv.sample_models import IRIS_SETOSA_ROW, upload_sample_models
from tests.conftest import Cluster
from tests.operator.conftest import StartOperator
from tests.operator.helpers import get, secret_text, wait_ready, wait_status
from tests.support import S3_CREDENTIALS, moto_server, wait_until


@pytest.fixture(scope="module")
def model_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """The S3 store on loopback with iris v1 and v2; yields its endpoint and the digests."""
    with moto_server() as endpoint:
        yield endpoint, upload_sample_models(endpoint, tmp_path_factory.mktemp("models"))


def _model_deployment(version: str, sha256: str) -> dict[str, Any]:
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "iris"},
        "spec": {
            "model": {
                "uri": f"s3://models/iris/{version}/model.joblib",
                "version": version,
                "sha256": sha256,
                "storageSecretRef": {"name": "model-store"},
            },
            "replicas": 1,
            "auth": {"clients": [{"name": "billing"}]},
        },
    }


def _pod_template(cluster: Cluster, namespace: str) -> dict[str, Any]:
    deployment = get(cluster, namespace, "deployment", "iris")
    assert deployment is not None
    return deployment["spec"]["template"]  # type: ignore[no-any-return]


def _runner(cluster: Cluster, namespace: str, template: dict[str, Any]) -> LocalPod:
    def read_secret(name: str) -> dict[str, str]:
        secret = get(cluster, namespace, "secret", name)
        assert secret is not None, f"the pod template names Secret {name}, which does not exist"
        return dict(secret.get("data", {}))

    return LocalPod(template=template, read_secret=read_secret)


def _infer(pod: LocalPod, key: str) -> httpx.Response:
    body = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": IRIS_SETOSA_ROW}]}
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{pod.url()}/v2/models/iris/infer", json=body, headers=headers, timeout=10)


def test_rendered_pod_serves_predictions_rolls_versions_and_rotates_keys(
    cluster: Cluster, namespace: str, start_operator: StartOperator, model_store: tuple[str, dict[str, str]]
) -> None:
    endpoint, digests = model_store
    credentials = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "model-store"},
        "stringData": {**S3_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint},
    }
    cluster.apply([credentials, _model_deployment("1", digests["1"])], "-n", namespace)
    start_operator(MODELDEPLOY_KEY_ROTATION_GRACE_SECONDS="600")
    wait_ready(cluster, namespace, "iris")

    # 1. The pod as rendered: init container fetches from S3, the runtime serves with the hashes file.
    first = _runner(cluster, namespace, _pod_template(cluster, namespace))
    try:
        first.start()
        key = secret_text(cluster, namespace, "iris-client-billing", "api-key")
        assert key is not None
        answer = _infer(first, key)
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_version"] == "1"
        assert answer.json()["outputs"][0]["data"] == [0]  # setosa
        wrong = _infer(first, key[:-1] + ("0" if key[-1] != "0" else "1"))
        assert wrong.status_code == 401
        assert _infer(first, "").status_code == 401

        # 2. Rotation reaches the running runtime through the re-written hashes file, no restart.
        cluster.kubectl("annotate", "mdep", "iris", "-n", namespace, "modeldeploy.io/rotate=billing")

        def rotated_key() -> str | None:
            current = secret_text(cluster, namespace, "iris-client-billing", "api-key")
            return current if current not in (None, key) else None

        new_key = wait_until("a new key in iris-client-billing", rotated_key, timeout=60)
        pid_before = first.process.pid if first.process else None
        first.refresh_secret_volumes(_pod_template(cluster, namespace))  # what the kubelet does
        wait_until(
            "the new key to be accepted", lambda: _infer(first, new_key).status_code == 200, timeout=15
        )
        assert _infer(first, key).status_code == 200, "the old key must keep working during the grace period"
        assert first.process is not None
        assert first.process.pid == pid_before
        assert first.process.poll() is None
    finally:
        first.stop()

    # 3. A version bump renders a new template whose runtime serves the new model.
    template_before = _pod_template(cluster, namespace)
    cluster.apply(_model_deployment("2", digests["2"]), "-n", namespace)
    wait_status(
        cluster, namespace, "iris", "status.modelVersion 2",
        check=lambda body: body.get("status", {}).get("modelVersion") == "2",
    )  # fmt: skip
    template_after = _pod_template(cluster, namespace)
    assert template_after != template_before
    assert template_after["metadata"]["annotations"]["modeldeploy.io/model-version"] == "2"
    second = _runner(cluster, namespace, template_after)
    try:
        second.start()
        answer = _infer(second, new_key)
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_version"] == "2"
        metadata = httpx.get(
            f"{second.url()}/v2/models/iris", headers={"Authorization": f"Bearer {new_key}"}, timeout=10
        ).json()
        assert metadata["name"] == "iris"
        assert metadata["versions"] == ["2"]
    finally:
        second.stop()
