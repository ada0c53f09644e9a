"""metrics-server for the real node: built from its published Go module (sigs.k8s.io/metrics-server)
into the binary cache on first use, run as a local process that scrapes the real kubelet's
/metrics/resource, and registered with the API server as the aggregated API metrics.k8s.io.

The API server reaches it through the aggregation layer (cluster.py's --requestheader-* and
--proxy-client-* flags): the APIService names a Service of type ExternalName ``localhost``, which the
aggregator resolves to https://localhost:<APIService port>, checking the serving certificate issued
here by the cluster CA for ``metrics-server.kube-system.svc``. It scrapes the real node only (the kwok
nodes have no kubelet), with the admin client certificate the kubelet trusts; the kubelet's serving
certificate is self-signed, so it is not verified (``--kubelet-insecure-tls``, local use only).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from modeldeploy_devenv.assets import AssetError, _go_install, cache_dir, find_binary
from modeldeploy_devenv.cluster import kubectl
from modeldeploy_devenv.pki import FRONT_PROXY_CLIENT_NAME, issue_serving_certificate, pki_paths
from modeldeploy_devenv.polling import wait_until
from modeldeploy_devenv.processes import free_port, stop_process
from modeldeploy_devenv.versions import METRICS_SERVER_VERSION

METRICS_SERVER = "metrics-server"
NAMESPACE = "kube-system"
SERVICE = "metrics-server"
API_SERVICE = "v1beta1.metrics.k8s.io"
METRIC_RESOLUTION = "10s"  # how often it scrapes the kubelet (metrics-server's minimum)
KUBELET_REQUEST_TIMEOUT = "5s"  # must be shorter than the resolution (its default, 10 s, is not)
KWOK_NODE_SELECTOR = "type!=kwok"  # cluster.py labels its fake nodes type=kwok


def require_metrics_server() -> Path:
    """The binary, built into the per-version cache the first time (a few minutes); raises AssetError."""
    found = find_binary(METRICS_SERVER)
    if found is not None:
        return found
    if shutil.which("go") is None:
        raise AssetError(f"Go is needed to build {METRICS_SERVER} (or set TEST_ASSET_METRICS_SERVER)")
    started = time.monotonic()
    print(f"[binaries] building {METRICS_SERVER} {METRICS_SERVER_VERSION} (first time) ...", flush=True)
    with tempfile.TemporaryDirectory(prefix="modeldeploy-build-") as workdir:
        _go_install(
            "sigs.k8s.io/metrics-server/cmd/metrics-server",
            METRICS_SERVER_VERSION,
            METRICS_SERVER,
            Path(workdir),
        )
    print(f"[binaries] built {METRICS_SERVER} in {time.monotonic() - started:.0f}s", flush=True)
    return cache_dir(METRICS_SERVER) / METRICS_SERVER


def _serving_certificate(directory: Path) -> tuple[Path, Path]:
    """A serving certificate from the cluster CA for the name the aggregator checks."""
    cert_path, key_path = directory / "metrics-server.crt", directory / "metrics-server.key"
    names = [f"{SERVICE}.{NAMESPACE}.svc", "localhost"]
    issue_serving_certificate(pki_paths(directory / "pki"), SERVICE, names, cert_path, key_path)
    return cert_path, key_path


def registration(port: int, ca_bundle: bytes) -> dict[str, object]:
    """The Service (ExternalName localhost) and the APIService pointing the aggregator at ``port``."""
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": SERVICE, "namespace": NAMESPACE},
        "spec": {"type": "ExternalName", "externalName": "localhost"},
    }
    api_service = {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": API_SERVICE},
        "spec": {
            "group": "metrics.k8s.io",
            "version": "v1beta1",
            "service": {"name": SERVICE, "namespace": NAMESPACE, "port": port},
            "caBundle": base64.b64encode(ca_bundle).decode(),
            "groupPriorityMinimum": 100,
            "versionPriority": 100,
        },
    }
    return {"apiVersion": "v1", "kind": "List", "items": [service, api_service]}


@dataclass
class MetricsServer:
    process: subprocess.Popen[bytes]
    port: int
    kubeconfig: str

    def node_usage(self) -> list[dict[str, object]]:
        """``kubectl get --raw`` of the NodeMetrics, through the aggregator (empty until a scrape)."""
        result = kubectl(self.kubeconfig, "get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes", check=False)
        if result.returncode != 0:
            return []
        return list(json.loads(result.stdout).get("items", []))

    def stop(self) -> None:
        kubectl(self.kubeconfig, "delete", "apiservice", API_SERVICE, "--ignore-not-found", check=False)
        stop_process(self.process)


def start_metrics_server(cluster_directory: Path, kubeconfig: str, timeout: float = 120.0) -> MetricsServer:
    """Start metrics-server, register its APIService and wait until it serves the real node's usage."""
    binary = require_metrics_server()
    pki = pki_paths(cluster_directory / "pki")
    cert, key = _serving_certificate(cluster_directory)
    port = free_port()
    log = (cluster_directory / "logs").joinpath("metrics-server.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        process = subprocess.Popen(
            [
                str(binary), f"--secure-port={port}", "--bind-address=127.0.0.1",
                f"--tls-cert-file={cert}", f"--tls-private-key-file={key}",
                f"--kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--requestheader-client-ca-file={pki.front_proxy_ca_cert}",
                f"--requestheader-allowed-names={FRONT_PROXY_CLIENT_NAME}",
                f"--kubelet-client-certificate={pki.admin_cert}", f"--kubelet-client-key={pki.admin_key}",
                "--kubelet-insecure-tls", "--kubelet-preferred-address-types=InternalIP",
                "--kubelet-use-node-status-port", f"--node-selector={KWOK_NODE_SELECTOR}",
                f"--metric-resolution={METRIC_RESOLUTION}", f"--kubelet-request-timeout={KUBELET_REQUEST_TIMEOUT}", "--v=1",
            ],
            stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    server = MetricsServer(process, port, kubeconfig)
    try:
        kubectl(
            kubeconfig, "apply", "-f", "-", stdin=json.dumps(registration(port, pki.ca_cert.read_bytes()))
        )

        def serving() -> bool:
            if process.poll() is not None:
                raise AssetError(f"metrics-server exited; {log} ends:\n{log.read_text()[-1500:]}")
            return bool(server.node_usage())

        wait_until("metrics.k8s.io to serve the real node's usage", serving, timeout=timeout, interval=1.0)
    except BaseException:
        server.stop()
        raise
    return server
