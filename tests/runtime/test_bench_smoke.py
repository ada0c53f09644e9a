"""Tiny runs of the runtime benchmarks in bench/, so they cannot silently rot.

MLServer takes part when its virtualenv (``.venv-bench/``) exists; otherwise the runtime alone.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.runtime.conftest import REPO, runtime_env


@pytest.mark.slow
def test_benchmark_smoke_run() -> None:
    mlserver = REPO / ".venv-bench" / "bin" / "mlserver"
    flags = ["--smoke", "--models", "logreg"] + ([] if mlserver.exists() else ["--skip-mlserver"])
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "runtime_vs_mlserver.py"), *flags],
        cwd=REPO,
        env=runtime_env(),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| logreg | 1 | runtime(w=1) |" in result.stdout
    assert "start → ready" in result.stdout
    if mlserver.exists():
        assert "mlserver(pw=0)" in result.stdout


@pytest.mark.slow
def test_compiled_inference_benchmark_smoke_run() -> None:
    """bench/compiled_inference.py: both engines, the floor and (when installed) batching MLServer."""
    mlserver = REPO / ".venv-bench" / "bin" / "mlserver"
    peer = ["--mlserver-configs", "0:4/0.002"] if mlserver.exists() else ["--skip-mlserver"]
    result = subprocess.run(
        [sys.executable, "-m", "bench.compiled_inference", "--smoke", "--models", "logreg", *peer],
        cwd=REPO,
        env=runtime_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for server in ("sklearn(w=1)", "onnx(w=1)", "floor(w=1)"):
        assert f"| logreg | 1 | {server} |" in result.stdout
    assert "| logreg | onnx |" in result.stdout  # load time
    if mlserver.exists():
        assert "mlserver(pw=0,batch=4/2ms)" in result.stdout
