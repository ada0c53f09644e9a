"""The supervisor process: a worker that dies is replaced, and serving goes on."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.runtime.conftest import IRIS_ROW, RuntimeProcess, wait_until


def _children(pid: int) -> set[int]:
    return {int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def _workers(runtime: RuntimeProcess) -> set[int]:
    return _children(runtime.process.pid)


def test_a_killed_worker_is_replaced(
    start_runtime: Callable[..., RuntimeProcess], models: dict[str, Path]
) -> None:
    runtime = start_runtime(model_uri=models["iris"], model_name="iris", workers=2)
    before = wait_until(
        lambda: len(_workers(runtime)) == 2 and _workers(runtime), timeout=10, what="two workers"
    )
    victim = min(before)
    [decoder] = _children(victim)  # each worker forks one helper that decodes large bodies
    os.kill(victim, signal.SIGKILL)
    after = wait_until(
        lambda: len(_workers(runtime)) == 2 and victim not in _workers(runtime) and _workers(runtime),
        timeout=15,
        what="a replacement worker",
    )
    assert len(after & before) == 1
    for _ in range(20):  # every request (on a new connection) succeeds, whichever worker takes it
        response = httpx.post(
            f"{runtime.url}/v1/models/iris:predict", json={"instances": [IRIS_ROW]}, timeout=10
        )
        assert response.status_code == 200
    assert "worker exited unexpectedly" in runtime.log()
    wait_until(
        lambda: not Path(f"/proc/{decoder}").exists(), timeout=10, what="the killed worker's helper to exit"
    )
    assert runtime.stop() == 0
