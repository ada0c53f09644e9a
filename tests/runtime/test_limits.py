"""Body size, concurrency and header-time limits, and the SIGTERM drain, on real sockets."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.runtime.conftest import RuntimeProcess
from tests.support import wait_until

SLOW_SECONDS = 1.5


def _read_response(sock: socket.socket, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_declared_oversized_body_gets_413_before_it_is_sent(iris_runtime: RuntimeProcess) -> None:
    with socket.create_connection(("127.0.0.1", iris_runtime.port)) as sock:
        sock.sendall(
            b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000000\r\n\r\n"
        )
        response = _read_response(sock)  # nothing of the 100 MB body was sent
    assert response.startswith(b"HTTP/1.1 413 ")


def test_chunked_oversized_body_gets_413_while_streaming(iris_runtime: RuntimeProcess) -> None:
    chunk = b"[" + b"1," * 8000 + b"1]"
    with socket.create_connection(("127.0.0.1", iris_runtime.port)) as sock:
        sock.sendall(
            b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        for _ in range(5):  # 80 KB against a 64 KiB limit, and the terminating chunk never comes
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        response = _read_response(sock)
    assert response.startswith(b"HTTP/1.1 413 ")


def test_body_under_the_limit_is_served(iris_runtime: RuntimeProcess) -> None:
    rows = [[5.1, 3.5, 1.4, 0.2]] * 1000  # ~25 KB
    response = iris_runtime.client.post("/v1/models/iris:predict", json={"instances": rows})
    assert response.status_code == 200
    assert len(response.json()["predictions"]) == 1000


def test_slow_headers_are_cut_off(
    start_runtime: Callable[..., RuntimeProcess], models: dict[str, Path]
) -> None:
    runtime = start_runtime(model_uri=models["iris"], model_name="iris", header_timeout_seconds=1)
    with socket.create_connection(("127.0.0.1", runtime.port)) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\n")  # and then nothing more
        response = _read_response(sock)
        elapsed = time.monotonic() - started
        assert sock.recv(1024) == b""  # closed
    assert response.startswith(b"HTTP/1.1 408 ")
    assert 0.8 <= elapsed < 5
    # A connection that sends nothing at all is closed too.
    with socket.create_connection(("127.0.0.1", runtime.port)) as sock:
        assert _read_response(sock).startswith(b"HTTP/1.1 408 ")
    # Prompt clients are unaffected, including on a kept-alive connection used after a pause.
    with httpx.Client(base_url=runtime.url) as client:
        assert client.get("/v2/health/live").status_code == 200
        time.sleep(1.2)  # idle between requests (under the 5 s keep-alive) is not a slow header
        assert client.post("/v1/models/iris:predict", json={"instances": [[1, 2, 3, 4]]}).status_code == 200


def _slow_requests(runtime: RuntimeProcess, count: int, results: list[int]) -> list[threading.Thread]:
    def call() -> None:
        with httpx.Client(base_url=runtime.url, timeout=30.0) as client:
            response = client.post("/v1/models/slow:predict", json={"instances": [[SLOW_SECONDS, 0]]})
            results.append(response.status_code)

    threads = [threading.Thread(target=call) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads


def _inflight(runtime: RuntimeProcess) -> float:
    for line in runtime.metrics().splitlines():
        if line.startswith("modeldeploy_inflight_requests{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_too_many_in_flight_gets_503_with_retry_after(
    start_runtime: Callable[..., RuntimeProcess], models: dict[str, Path]
) -> None:
    runtime = start_runtime(model_uri=models["slow"], model_name="slow", max_concurrency=2)
    results: list[int] = []
    threads = _slow_requests(runtime, 2, results)
    wait_until("two requests in flight", lambda: _inflight(runtime) >= 2, timeout=10, interval=0.05)
    response = runtime.client.post("/v1/models/slow:predict", json={"instances": [[0, 0]]})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert "too many requests" in response.json()["error"]
    assert runtime.client.get("/v2/health/ready").status_code == 200  # probes are not limited
    for thread in threads:
        thread.join(timeout=30)
    assert results == [200, 200]
    assert runtime.client.post("/v1/models/slow:predict", json={"instances": [[0, 0]]}).status_code == 200


@pytest.mark.slow
def test_sigterm_turns_unready_at_once_and_drains_in_flight_requests(
    start_runtime: Callable[..., RuntimeProcess], models: dict[str, Path]
) -> None:
    runtime = start_runtime(model_uri=models["slow"], model_name="slow", workers=2, shutdown_delay_seconds=3)
    results: list[int] = []
    threads = _slow_requests(runtime, 3, results)
    wait_until("three requests in flight", lambda: _inflight(runtime) >= 3, timeout=10, interval=0.05)
    sent = time.monotonic()
    runtime.process.send_signal(signal.SIGTERM)
    # Readiness turns false at once, well within the shutdown delay that keeps the listener open.
    wait_until(
        "readiness to go false",
        lambda: runtime.client.get("/v2/health/ready").status_code == 503,
        timeout=2.0,
        interval=0.05,
    )
    assert time.monotonic() - sent < 2.0
    for thread in threads:
        thread.join(timeout=30)
    assert results == [200, 200, 200]
    try:
        code = runtime.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"runtime did not exit after SIGTERM:\n{runtime.log()}")
    assert code == 0, runtime.log()
    assert time.monotonic() - sent < 15
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{runtime.url}/v2/health/live", timeout=2.0)
