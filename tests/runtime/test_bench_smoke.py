"""Tiny runs of the runtime benchmarks in bench/ (runtime_vs_mlserver.py, compiled_inference.py,
request_path.py), so they cannot silently rot.

The runtime's part always runs. The MLServer part needs MLServer's own virtualenv
(``.venv-bench/``, made by ``bench/runtime_vs_mlserver.py --setup-mlserver``); without it that
test is reported as skipped, with the command that sets it up, never passed silently.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.runtime.conftest import REPO, runtime_env

MLSERVER = REPO / ".venv-bench" / "bin" / "mlserver"


def _bench_smoke(module: str, *flags: str, timeout: float = 240) -> str:
    """``python -m bench.<module> --smoke --models logreg <flags>``: its output, after it exited 0."""
    result = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", "--smoke", "--models", "logreg", *flags],
        cwd=REPO,
        env=runtime_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _smoke_run(*flags: str) -> str:
    output = _bench_smoke("runtime_vs_mlserver", *flags)
    assert "| logreg | 1 | runtime(w=1) |" in output
    assert "start → ready" in output
    return output


def _require_mlserver() -> None:
    """Skip without the peer (``make bench-peer``, which ``make test`` runs, installs it); CI sets
    MODELDEPLOY_REQUIRE_BENCH_PEER=1 so that a missing peer fails instead of hiding."""
    if MLSERVER.exists():
        return
    reason = f"MLServer peer not installed ({MLSERVER} missing); `make bench-peer` installs it"
    if os.environ.get("MODELDEPLOY_REQUIRE_BENCH_PEER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.mark.slow
def test_benchmark_smoke_run_of_the_runtime() -> None:
    _smoke_run("--skip-mlserver")


@pytest.mark.slow
def test_benchmark_smoke_run_against_mlserver() -> None:
    _require_mlserver()
    output = _smoke_run()
    assert "mlserver(pw=0)" in output


def _compiled_inference_smoke_run(*flags: str) -> str:
    """bench/compiled_inference.py: both engines, the floor and their load times, in a tiny run."""
    output = _bench_smoke("compiled_inference", *flags, timeout=300)
    for server in ("sklearn(w=1)", "onnx(w=1)", "floor(w=1)", "floor(w=1,shared)"):
        assert f"| logreg | 1 | {server} |" in output
    assert "| logreg | onnx |" in output  # its load time
    return output


@pytest.mark.slow
def test_compiled_inference_smoke_run_of_the_runtime() -> None:
    _compiled_inference_smoke_run("--skip-mlserver")


@pytest.mark.slow
def test_compiled_inference_smoke_run_against_batching_mlserver() -> None:
    _require_mlserver()
    output = _compiled_inference_smoke_run("--mlserver-configs", "0:4/0.002")
    assert "mlserver(pw=0,batch=4/2ms)" in output


@pytest.mark.slow
def test_request_path_breakdown_measures_every_variant() -> None:
    tiny = ["--rounds", "1", "--requests", "40", "--concurrency", "2"]
    result = subprocess.run(
        [sys.executable, "-m", "bench.request_path", *tiny],
        cwd=REPO,
        env=runtime_env(),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for variant in ("full", "parse", "render", "dataplane", "model"):
        assert re.search(rf"^  {variant} +\d+\.\d", result.stdout, re.MULTILINE), result.stdout
