"""spec.tls on the real node: the kubelet mounts the Secret, probes over HTTPS, clients verify."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from pathlib import Path

import pytest

from modeldeploy_operator.constants import PORT_HTTP, PORT_METRICS
from tests.node.conftest import RealNode, client_key, condition, model_deployment, server_pods
from tests.node.endpoint_load import infer_body
from tests.support import self_signed_certificate, wait_until

READY_TIMEOUT_SECONDS = 240.0
NAME = "iris-tls"
TLS_SECRET = "iris-tls-serving"


class _PodHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a pod IP, verifying the certificate against the Service's DNS name."""

    def __init__(self, pod_ip: str, server_name: str, context: ssl.SSLContext) -> None:
        super().__init__(server_name, PORT_HTTP, context=context, timeout=10)
        self.pod_ip = pod_ip

    def connect(self) -> None:
        plain = socket.create_connection((self.pod_ip, PORT_HTTP), self.timeout)
        self.sock = self._context.wrap_socket(plain, server_hostname=self.host)  # type: ignore[attr-defined]


def _infer(connection: http.client.HTTPConnection, key: str) -> tuple[int, dict[str, object]]:
    connection.request(
        "POST",
        f"/v2/models/{NAME}/infer",
        body=infer_body(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    response = connection.getresponse()
    return response.status, json.loads(response.read() or b"{}")


def test_predictions_over_tls_through_the_operators_pod(
    real_node: RealNode,
    operator_release: str,
    node_namespace: str,
    model_store: dict[str, str],
    tmp_path: Path,
) -> None:
    cluster = real_node.cluster
    server_name = f"{NAME}.{node_namespace}.svc"
    cert, key = self_signed_certificate(tmp_path, [server_name])
    cluster.kubectl(
        "create", "secret", "tls", TLS_SECRET, "-n", node_namespace, f"--cert={cert}", f"--key={key}"
    )
    cluster.apply(
        model_deployment(
            NAME, node_namespace, "1", model_store["1"], replicas=1, tls={"secretName": TLS_SECRET}
        )
    )
    # Ready means the kubelet's startup and readiness probes passed over HTTPS.
    wait_until(
        f"{NAME} Ready",
        lambda: condition(cluster, node_namespace, NAME, "Ready").get("status") == "True",
        READY_TIMEOUT_SECONDS,
    )
    pod = next(p for p in server_pods(cluster, node_namespace, NAME) if p["status"].get("phase") == "Running")
    pod_ip = pod["status"]["podIP"]
    api_key = client_key(cluster, node_namespace, NAME)

    trusting = ssl.create_default_context(cafile=str(cert))
    status, body = _infer(_PodHTTPSConnection(pod_ip, server_name, trusting), api_key)
    assert (status, body["model_name"]) == (200, NAME)

    # A client that does not trust the certificate is refused at the handshake.
    with pytest.raises(ssl.SSLCertVerificationError):
        _infer(_PodHTTPSConnection(pod_ip, server_name, ssl.create_default_context()), api_key)
    # Plain HTTP on the serving port gets no answer: the port speaks TLS only.
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        _infer(http.client.HTTPConnection(pod_ip, PORT_HTTP, timeout=10), api_key)
    # The metrics port stays plain HTTP for Prometheus (as the ServiceMonitor says).
    metrics = http.client.HTTPConnection(pod_ip, PORT_METRICS, timeout=10)
    metrics.request("GET", "/metrics")
    assert metrics.getresponse().status == 200

    cluster.kubectl("delete", "mdep", NAME, "-n", node_namespace, "--wait=false", check=False)
