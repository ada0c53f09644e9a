"""A tiny run of bench/operator_scale.py, so the benchmark keeps working (numbers are not checked
against the targets here: a loaded test machine says nothing about them)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO_ROOT, Cluster


def test_operator_scale_benchmark_smoke(crd: Cluster) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "operator_scale.py"), "--count", "2", "--timeout", "240",
         "--settle", "1", "--kubeconfig", crd.kubeconfig, "--json"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["count"] == 2
    assert report["direct_seconds"] > 0
    assert report["operator_seconds"] > 0
    assert report["minimum_writes_per_md"] == 7
    # The operator writes each child once and needs no kopf bookkeeping: exactly these resources.
    assert set(report["writes_by_resource"]) == {
        "APPLY deployments",
        "APPLY services",
        "APPLY secrets",
        "APPLY servicemonitors",
        "APPLY modeldeployments/status",
    }
    assert report["writes_by_resource"]["APPLY deployments"] == 2
    assert report["operator_peak_rss_mb"] > 0
    # A shared cluster: no control-plane processes of its own to account; the operator's are.
    assert set(report["cpu_seconds"]["yardstick"]) == {"benchmark"}
    assert set(report["cpu_seconds"]["operator"]) == {"benchmark", "operator"}
    # Progressing and then Ready, or Ready alone when the rollout ends within the status debounce.
    assert 1 <= report["requests_per_md"]["operator"]["APPLY modeldeployments/status"] <= 2
    assert report["reconciles_per_md"] >= 1
