"""``make dev``'s newcomer path works: the printed prediction command answers with a prediction."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, Cluster


@pytest.mark.slow
def test_dev_loop_prints_a_prediction_command_that_works(cluster: Cluster) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modeldeploy_devenv.dev", "--once", "--kubeconfig", cluster.kubeconfig],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=400, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "curl -s -H 'Authorization: Bearer mdk_" in result.stdout
    assert '"model_name":"iris"' in result.stdout.replace(" ", "")
    assert '"outputs"' in result.stdout
