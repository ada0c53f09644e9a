"""The Helm chart: its CRD copy, Pod Security, and RBAC proven by running the operator with the
chart's own ServiceAccount token against the local control plane."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from modeldeploy_devenv.assets import require_binary
from modeldeploy_devenv.operator_process import start_operator
from tests.conftest import REPO_ROOT, Cluster
from tests.operator.helpers import wait_ready
from tests.support import free_port, wait_until

CHART = REPO_ROOT / "charts" / "modeldeploy"


def helm(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(require_binary("helm")), "--kubeconfig", cluster.kubeconfig, *args],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, f"helm {' '.join(args)} failed: {result.stderr}"
    return result


def test_chart_crds_are_identical_to_the_top_level_crds() -> None:
    top_level = {path.name: path.read_text() for path in (REPO_ROOT / "crds").glob("*.yaml")}
    in_chart = {path.name: path.read_text() for path in (CHART / "crds").glob("*.yaml")}
    assert top_level, "crds/ holds no CRD"
    assert in_chart == top_level, "charts/modeldeploy/crds differs from crds/: run `make chart-crds`"


def test_every_value_is_documented_and_in_the_schema() -> None:
    values_text = (CHART / "values.yaml").read_text()
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    values = yaml.safe_load(values_text)
    assert set(values) == set(schema["properties"])
    for name in values:
        assert f"# {name} " in values_text, f"value {name} has no comment starting with its name"


def test_schema_rejects_unknown_values(cluster: Cluster) -> None:
    result = subprocess.run(
        [str(require_binary("helm")), "template", "x", str(CHART), "--set", "replicaCount=2"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "replicaCount" in result.stderr


def _token_kubeconfig(cluster: Cluster, token: str, path: Path) -> Path:
    admin = json.loads(Path(cluster.kubeconfig).read_text())
    entry = admin["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": entry}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "local", "user": "operator"}}],
        "current-context": "operator",
    }
    path.write_text(json.dumps(config))
    return path


def _model_deployment(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "modeldeploy.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": "https://models.example.com/iris/1/model.joblib", "version": "1"},
            "auth": {"clients": [{"name": "billing"}]},
        },
    }


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.mark.slow
def test_chart_installs_under_restricted_pod_security_and_its_rbac_suffices(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    workloads = f"{namespace}-models"
    cluster.kubectl("create", "namespace", workloads)
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    values = ["--set", f"watchNamespaces={{{workloads}}}", "--set", "prometheusRuleEnabled=false"]

    # The rendered chart is admitted by the API server into a namespace enforcing `restricted`.
    rendered = helm(
        cluster, "template", "modeldeploy", str(CHART), "-n", namespace, "--skip-crds", *values
    ).stdout
    dry_run = cluster.kubectl("apply", "--dry-run=server", "-f", "-", stdin=rendered)
    assert "deployment.apps/modeldeploy-operator created (server dry run)" in dry_run.stdout

    helm(
        cluster, "install", "modeldeploy", str(CHART), "-n", namespace, "--wait", "--timeout", "120s", *values
    )
    cluster.kubectl("wait", "--for", "condition=Established", "crd/modeldeployments.modeldeploy.io")

    # The operator runs with a token of the chart's ServiceAccount: its RBAC is all it has.
    token = cluster.kubectl("create", "token", "modeldeploy-operator", "-n", namespace).stdout.strip()
    kubeconfig = _token_kubeconfig(cluster, token, tmp_path / "operator.kubeconfig")
    refused = subprocess.run(
        [str(require_binary("kubectl")), "--kubeconfig", str(kubeconfig), "get", "secrets", "-A"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "Forbidden" in refused.stderr

    health_port = free_port()
    operator = start_operator(
        str(kubeconfig),
        workloads,
        log=tmp_path / "operator.log",
        arguments=["--health-port", str(health_port)],
    )
    try:
        cluster.apply(_model_deployment("iris"), "-n", workloads)
        wait_ready(cluster, workloads, "iris", timeout=120)
        for child in ("deployment/iris", "service/iris", "secret/iris-apikeys", "secret/iris-client-billing"):
            cluster.kubectl("get", child, "-n", workloads)
        wait_until("the operator's liveness endpoint", lambda: _healthy(health_port))
        logs = operator.logs()
        assert "Forbidden" not in logs, logs[-3000:]
        assert " 403" not in logs, logs[-3000:]
    finally:
        exit_code = operator.stop()
        cluster.kubectl("delete", "namespace", workloads, "--wait=false", check=False)
    assert exit_code != -signal.SIGKILL, "the operator did not exit on SIGTERM"
