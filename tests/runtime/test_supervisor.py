"""The supervisor process: a worker that dies is replaced, and serving goes on."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.runtime.conftest import IRIS_ROW, RuntimeProcess
from tests.support import wait_until


def _workers(runtime: RuntimeProcess) -> set[int]:
    pid = runtime.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return {int(child) for child in children}


def _two_workers(runtime: RuntimeProcess, without: int | None = None) -> set[int] | None:
    """The two worker PIDs, once there are two and ``without`` is not one of them."""
    workers = _workers(runtime)
    return workers if len(workers) == 2 and without not in workers else None


def test_a_killed_worker_is_replaced(
    start_runtime: Callable[..., RuntimeProcess], models: dict[str, Path]
) -> None:
    runtime = start_runtime(model_uri=models["iris"], model_name="iris", workers=2)
    before = wait_until("two workers", lambda: _two_workers(runtime), timeout=10)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    after = wait_until("a replacement worker", lambda: _two_workers(runtime, without=victim), timeout=15)
    assert len(after & before) == 1
    for _ in range(20):  # every request (on a new connection) succeeds, whichever worker takes it
        response = httpx.post(
            f"{runtime.url}/v1/models/iris:predict", json={"instances": [IRIS_ROW]}, timeout=10
        )
        assert response.status_code == 200
    assert "worker exited unexpectedly" in runtime.log()
    assert runtime.stop() == 0
