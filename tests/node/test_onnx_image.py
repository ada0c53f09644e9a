"""The ONNX-only runtime image on the real node: serves `format: onnx`, holds no scikit-learn."""

from __future__ import annotations

from modeldeploy_devenv.sample_models import BUCKET, ONNX_SAMPLE_KEY
from modeldeploy_operator.constants import CONTAINER_RUNTIME, PORT_HTTP
from tests.node.conftest import (
    ONNX_VERSION,
    RealNode,
    client_key,
    condition,
    model_deployment,
    server_pods,
)
from tests.node.endpoint_load import predict
from tests.support import wait_until

READY_TIMEOUT_SECONDS = 240.0
NAME = "iris-onnx"


def test_the_onnx_image_serves_an_onnx_model_without_scikit_learn(
    real_node: RealNode,
    node_images: dict[str, str],
    operator_release: str,
    node_namespace: str,
    model_store: dict[str, str],
) -> None:
    cluster = real_node.cluster
    resource = model_deployment(NAME, node_namespace, "1", model_store[ONNX_VERSION], replicas=1)
    resource["spec"]["model"] |= {"uri": f"s3://{BUCKET}/{ONNX_SAMPLE_KEY}", "format": "onnx"}
    cluster.apply(resource)
    wait_until(
        f"{NAME} Ready on the ONNX-only image",
        lambda: condition(cluster, node_namespace, NAME, "Ready").get("status") == "True",
        READY_TIMEOUT_SECONDS,
    )
    pod = next(p for p in server_pods(cluster, node_namespace, NAME) if p["status"].get("phase") == "Running")
    # Without spec.runtime.image, format onnx runs on the operator's ONNX-only default (the chart's).
    assert {c["image"] for c in pod["spec"]["containers"]} == {node_images["runtime-onnx"]}

    status, body = predict(
        f"{pod['status']['podIP']}:{PORT_HTTP}", NAME, client_key(cluster, node_namespace, NAME)
    )
    assert status == 200
    assert body["outputs"][0]["data"] == [0]  # the setosa row

    # The image holds the ONNX engine and none of the scikit-learn stack.
    probe = (
        "import importlib.util as u; print(' '.join(str(u.find_spec(m) is not None) "
        "for m in ('onnxruntime', 'sklearn', 'scipy', 'joblib', 'skops')))"
    )
    result = cluster.kubectl(
        "exec", "-n", node_namespace, pod["metadata"]["name"], "-c", CONTAINER_RUNTIME, "--",
        "/opt/venv/bin/python", "-c", probe,
    )  # fmt: skip
    assert result.stdout.split() == ["True", "False", "False", "False", "False"]
    cluster.kubectl("delete", "mdep", NAME, "-n", node_namespace, "--wait=false", check=False)
