"""Prometheus and prometheus-adapter beside the local control plane: the custom-metrics path that
an HPA's Pods metrics read (``custom.metrics.k8s.io``).

Both run as host processes, built from their published modules (``custom_metrics_assets``):

- Prometheus discovers pods through the API server (``kubernetes_sd``, role ``pod``) in the given
  namespaces and scrapes every container port of the given name at the pod's IP, with the
  ``namespace`` and ``pod`` labels a ServiceMonitor would set. Pods of the real node are reachable
  from the host on its bridge (10.123.x.x); kwok's pods serve nothing.
- prometheus-adapter serves ``custom.metrics.k8s.io`` from Prometheus with a rules file, and is
  registered as the APIServices v1beta1 and v1beta2 of that group. The aggregator reaches it through
  an ExternalName Service naming 127.0.0.1 (no kube-proxy runs here, so a ClusterIP would lead
  nowhere) and verifies its serving certificate, issued by the cluster CA for
  ``<service>.<namespace>.svc``, the name the aggregator expects. It trusts the aggregator's user
  headers through the front-proxy settings the API server publishes (``cluster._aggregation_layer_flags``).

Both processes are recorded in the cluster's state, so ``stop`` ends them if a run dies first.
"""

from __future__ import annotations

import base64
import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modeldeploy_devenv.cluster import ClusterError, ClusterState, _Launcher, _terminate, kubectl
from modeldeploy_devenv.custom_metrics_assets import (
    PROMETHEUS,
    PROMETHEUS_ADAPTER,
    require_custom_metrics_binaries,
)
from modeldeploy_devenv.pki import Pki, issue_serving_certificate, pki_paths
from modeldeploy_devenv.polling import wait_until
from modeldeploy_devenv.processes import free_port

ADAPTER_NAMESPACE = "custom-metrics"
ADAPTER_SERVICE = "prometheus-adapter"
CUSTOM_METRICS_GROUP = "custom.metrics.k8s.io"
CUSTOM_METRICS_VERSIONS = ("v1beta1", "v1beta2")
SCRAPE_INTERVAL = "2s"
# The adapter re-reads the list of series this often (it must not be shorter than a scrape).
RELIST_INTERVAL = "5s"
START_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class CustomMetrics:
    prometheus_url: str
    adapter_port: int


def prometheus_config(
    server: str, pki: Pki, namespaces: list[str], port_name: str, node: str
) -> dict[str, Any]:
    """One scrape job: every container port named ``port_name`` of the pods in ``namespaces`` that
    run on ``node`` (the real node: kwok's pods have addresses that lead nowhere)."""
    meta = "__meta_kubernetes_"
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": [
            {
                "job_name": "modeldeploy-pods",
                "kubernetes_sd_configs": [
                    {
                        "role": "pod",
                        "api_server": server,
                        "namespaces": {"names": namespaces},
                        "tls_config": {
                            "ca_file": str(pki.ca_cert),
                            "cert_file": str(pki.admin_cert),
                            "key_file": str(pki.admin_key),
                        },
                    }
                ],
                "relabel_configs": [
                    {
                        "source_labels": [f"{meta}pod_container_port_name"],
                        "regex": port_name,
                        "action": "keep",
                    },
                    {"source_labels": [f"{meta}pod_phase"], "regex": "Running", "action": "keep"},
                    {"source_labels": [f"{meta}pod_node_name"], "regex": node, "action": "keep"},
                    {"source_labels": [f"{meta}namespace"], "target_label": "namespace"},
                    {"source_labels": [f"{meta}pod_name"], "target_label": "pod"},
                    {"source_labels": [f"{meta}pod_container_name"], "target_label": "container"},
                ],
            }
        ],
    }


def adapter_objects(port: int, ca_bundle: bytes) -> list[dict[str, Any]]:
    """The namespace, the ExternalName Service and one APIService per served version."""
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": ADAPTER_SERVICE, "namespace": ADAPTER_NAMESPACE},
        "spec": {
            "type": "ExternalName",
            "externalName": "127.0.0.1",
            "ports": [{"name": "https", "port": port}],
        },
    }
    apiservices = [
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": f"{version}.{CUSTOM_METRICS_GROUP}"},
            "spec": {
                "group": CUSTOM_METRICS_GROUP,
                "version": version,
                "service": {"name": ADAPTER_SERVICE, "namespace": ADAPTER_NAMESPACE, "port": port},
                "caBundle": base64.b64encode(ca_bundle).decode(),
                "groupPriorityMinimum": 100,
                "versionPriority": 100 + index,
            },
        }
        for index, version in enumerate(CUSTOM_METRICS_VERSIONS)
    ]
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ADAPTER_NAMESPACE}}
    return [namespace, service, *apiservices]


def _prometheus_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:  # noqa: S310 (our http URL)
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _apiservice_available(kubeconfig: str, version: str) -> bool:
    found = kubectl(
        kubeconfig, "get", "apiservice", f"{version}.{CUSTOM_METRICS_GROUP}", "-o", "json", check=False
    )
    if found.returncode != 0:
        return False
    conditions = json.loads(found.stdout).get("status", {}).get("conditions", [])
    return any(c.get("type") == "Available" and c.get("status") == "True" for c in conditions)


def _record(state: ClusterState, launcher: _Launcher) -> None:
    state.pids.update(launcher.pids)
    state.save()


def _forget(directory: Path, names: list[str]) -> None:
    state = ClusterState.load(directory)
    if state is not None:
        for name in names:
            state.pids.pop(name, None)
        state.save()


@contextlib.contextmanager
def custom_metrics(
    directory: Path, namespaces: list[str], port_name: str, rules_file: Path, node: str
) -> Iterator[CustomMetrics]:
    """Prometheus scraping the pods of ``namespaces`` on ``node`` and prometheus-adapter serving
    ``rules_file``, registered on the control plane in ``directory``; all removed again on exit."""
    binaries = require_custom_metrics_binaries()
    state = ClusterState.load(directory)
    if state is None:
        raise ClusterError(f"no cluster state in {directory}")
    pki = pki_paths(directory / "pki")
    work = directory / "custom-metrics"
    work.mkdir(parents=True, exist_ok=True)
    launcher = _Launcher(directory)
    prometheus_port, adapter_port = free_port(), free_port()
    prometheus_url = f"http://127.0.0.1:{prometheus_port}"
    config = work / "prometheus.yml"
    config.write_text(json.dumps(prometheus_config(state.server, pki, namespaces, port_name, node), indent=2))
    serving_cert, serving_key = work / "adapter.crt", work / "adapter.key"
    issue_serving_certificate(
        pki, ADAPTER_SERVICE, [f"{ADAPTER_SERVICE}.{ADAPTER_NAMESPACE}.svc"], serving_cert, serving_key
    )
    objects = adapter_objects(adapter_port, pki.ca_cert.read_bytes())
    try:
        launcher.run(PROMETHEUS, [
            str(binaries[PROMETHEUS]), f"--config.file={config}", f"--storage.tsdb.path={work / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}", "--storage.tsdb.retention.time=2h",
            "--log.level=warn",
        ])  # fmt: skip
        _record(state, launcher)
        wait_until(
            "Prometheus /-/ready",
            lambda: launcher.running() and _prometheus_ready(prometheus_url),
            timeout=START_TIMEOUT_SECONDS,
        )
        launcher.run(PROMETHEUS_ADAPTER, [
            str(binaries[PROMETHEUS_ADAPTER]), f"--prometheus-url={prometheus_url}", f"--config={rules_file}",
            f"--metrics-relist-interval={RELIST_INTERVAL}", "--bind-address=127.0.0.1",
            f"--secure-port={adapter_port}", f"--tls-cert-file={serving_cert}",
            f"--tls-private-key-file={serving_key}", f"--lister-kubeconfig={state.kubeconfig}",
            f"--authentication-kubeconfig={state.kubeconfig}", f"--authorization-kubeconfig={state.kubeconfig}",
            f"--cert-dir={work / 'certs'}", "--v=1",
        ])  # fmt: skip
        _record(state, launcher)
        kubectl(
            state.kubeconfig,
            "apply",
            "-f",
            "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}),
        )
        for version in CUSTOM_METRICS_VERSIONS:
            wait_until(
                f"APIService {version}.{CUSTOM_METRICS_GROUP} Available",
                lambda version=version: (
                    launcher.running() and _apiservice_available(state.kubeconfig, version)
                ),  # type: ignore[misc]
                timeout=START_TIMEOUT_SECONDS,
                interval=0.5,
            )
        yield CustomMetrics(prometheus_url=prometheus_url, adapter_port=adapter_port)
    finally:
        # An APIService left without its server makes discovery fail for every client: remove first.
        for item in reversed(objects):
            kind, name = item["kind"].lower(), item["metadata"]["name"]
            where = ["-n", ADAPTER_NAMESPACE] if kind == "service" else []
            kubectl(
                state.kubeconfig,
                "delete",
                kind,
                name,
                *where,
                "--ignore-not-found",
                "--wait=false",
                check=False,
            )
        for name, pid in launcher.pids.items():
            _terminate(pid, name)
        _forget(directory, list(launcher.pids))
