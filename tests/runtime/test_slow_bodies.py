"""Bounded requests on real sockets: slow bodies hold no slot, time out whole, and large bodies
are decoded off the event loop.

The benchmark-style test starts one worker whose ``--max-concurrency`` equals the number of
slow clients (16), so a runtime that took the slot before the body would give every normal
client 503. Normal clients' p99 latency must stay within 2x of the unloaded figure (the worse
of a run before and a run after the load, so that machine noise counts on both sides), and
``/v2/health/live`` must answer within 100 ms throughout. The figures are printed (``-s``) and
recorded in docs/runtime.md.
"""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import pytest

from modeldeploy_runtime.apikeys import mint_key, render_keys_file
from tests.runtime.conftest import IRIS_ROW, RuntimeProcess, read_response_head

SLOW_CLIENTS = 16
REQUESTS = 300
TRICKLE_SECONDS = 0.1
LIVE_BUDGET_SECONDS = 0.1
LIVE_INTERVAL_SECONDS = 0.02
P99_FACTOR = 2.0
ROUNDS = 3
PREDICT_PATH = "/v1/models/iris:predict"
BODY = orjson.dumps({"instances": [IRIS_ROW]})


@dataclass
class Figures:
    """Latencies in seconds of one phase: normal predictions and liveness probes."""

    name: str
    predict: list[float]
    live: list[float]

    @property
    def predict_p99(self) -> float:
        return statistics.quantiles(self.predict, n=100)[98]

    def line(self) -> str:
        return (
            f"{self.name}: predict p50 {statistics.median(self.predict) * 1000:.2f} ms, "
            f"p99 {self.predict_p99 * 1000:.2f} ms; live max {max(self.live) * 1000:.2f} ms "
            f"over {len(self.live)} probes"
        )


# Run as its own process, so the test's other client threads cannot delay it (the GIL).
_PROBE_SCRIPT = """
import json, select, sys, time, httpx
url, interval = sys.argv[1], float(sys.argv[2])
latencies, failures = [], []
with httpx.Client(base_url=url, timeout=5.0) as client:
    print("started", flush=True)
    while not select.select([sys.stdin], [], [], interval)[0]:  # until told to stop
        started = time.perf_counter()
        status = client.get("/v2/health/live").status_code
        latencies.append(time.perf_counter() - started)
        if status != 200:
            failures.append(status)
print(json.dumps({"latencies": latencies, "failures": failures}))
"""


@dataclass
class LivenessProbe:
    """Asks ``/v2/health/live`` every 20 ms on its own connection, from its own process."""

    url: str
    latencies: list[float] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)

    @contextmanager
    def running(self) -> Iterator[LivenessProbe]:
        command = [sys.executable, "-c", _PROBE_SCRIPT, self.url, str(LIVE_INTERVAL_SECONDS)]
        with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as process:
            assert process.stdout is not None
            assert process.stdin is not None
            assert process.stdout.readline() == "started\n"
            try:
                yield self
            finally:
                process.stdin.write("stop\n")
                process.stdin.flush()
                result = json.loads(process.stdout.read())
        self.latencies, self.failures = result["latencies"], result["failures"]


def _predict_latencies(runtime: RuntimeProcess, api_key: str, count: int) -> list[float]:
    latencies = []
    headers = {"X-API-Key": api_key, "Content-Type": "application/json"}
    with httpx.Client(base_url=runtime.url, headers=headers, timeout=10.0) as client:
        client.post(PREDICT_PATH, content=BODY)  # the connection is open before timing starts
        for _ in range(count):
            started = time.perf_counter()
            response = client.post(PREDICT_PATH, content=BODY)
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200, (response.status_code, response.text)
    return latencies


def _measure(name: str, runtime: RuntimeProcess, api_key: str) -> Figures:
    with LivenessProbe(runtime.url).running() as probe:
        predict = _predict_latencies(runtime, api_key, REQUESTS)
    assert probe.failures == []
    return Figures(name, predict, probe.latencies)


def _open_request(port: int, headers: str, body_length: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        f"POST {PREDICT_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{headers}"
        f"Content-Length: {body_length}\r\n\r\n".encode()
    )
    return sock


@contextmanager
def slow_bodies(port: int, api_key: str) -> Iterator[list[socket.socket]]:
    """SLOW_CLIENTS requests with valid keys, each sending one byte of its body per TRICKLE_SECONDS."""
    sockets = [_open_request(port, f"X-API-Key: {api_key}\r\n", len(BODY)) for _ in range(SLOW_CLIENTS)]
    sent = [0] * SLOW_CLIENTS
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(TRICKLE_SECONDS):
            for index, sock in enumerate(sockets):
                if sent[index] < len(BODY) - 1:  # the last byte waits until the load is over
                    sock.sendall(BODY[sent[index] : sent[index] + 1])
                    sent[index] += 1

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        yield sockets
    finally:
        stop.set()
        thread.join(timeout=10)
        for index, sock in enumerate(sockets):
            sock.sendall(BODY[sent[index] :])  # now finish each body: it is served like any other


def _keyed_runtime(
    start_runtime: Callable[..., RuntimeProcess], models: dict[str, Path], tmp_path: Path, **flags: object
) -> tuple[RuntimeProcess, str]:
    minted = mint_key("bench")
    keys = tmp_path / "keys.json"
    keys.write_text(render_keys_file([minted.hashed]))
    runtime = start_runtime(model_uri=models["iris"], model_name="iris", auth_keys_file=keys, **flags)
    return runtime, minted.plaintext


def _slow_body_round(runtime: RuntimeProcess, api_key: str) -> tuple[Figures, Figures, Figures]:
    """Unloaded, loaded and unloaded again; every request must succeed in each."""
    before = _measure("unloaded (before)", runtime, api_key)
    with slow_bodies(runtime.port, api_key) as sockets:
        loaded = _measure(f"{SLOW_CLIENTS} slow-body clients", runtime, api_key)
    responses = [read_response_head(sock) for sock in sockets]
    for sock in sockets:
        sock.close()
    assert all(response.startswith(b"HTTP/1.1 200 ") for response in responses), responses
    after = _measure("unloaded (after)", runtime, api_key)
    return before, loaded, after


def test_slow_body_clients_hold_no_slot_and_do_not_slow_others(
    start_runtime: Callable[..., RuntimeProcess], models: dict[str, Path], tmp_path: Path
) -> None:
    runtime, api_key = _keyed_runtime(
        start_runtime, models, tmp_path, workers=1, max_concurrency=SLOW_CLIENTS, body_timeout_seconds=120
    )
    # Status codes are checked in every round. The latency bounds must hold in one of ROUNDS:
    # other processes on a shared machine only ever add latency, never remove it.
    verdicts = []
    for _ in range(ROUNDS):
        before, loaded, after = _slow_body_round(runtime, api_key)
        unloaded_p99 = max(before.predict_p99, after.predict_p99)
        ratio = loaded.predict_p99 / unloaded_p99
        print()
        for figures in (before, loaded, after):
            print(figures.line())
        print(f"loaded p99 / unloaded p99 = {ratio:.2f}")
        verdicts.append(f"ratio {ratio:.2f}, {loaded.line()}")
        if ratio <= P99_FACTOR and max(loaded.live) < LIVE_BUDGET_SECONDS:
            return
    raise AssertionError(f"p99 over {P99_FACTOR}x or liveness over 100 ms in every round: {verdicts}")


@pytest.mark.parametrize(
    ("header_timeout", "body_timeout"),
    [(10, 1), (1, 2)],  # a body deadline before, and after, the headers' one would have passed
)
def test_a_body_that_does_not_arrive_in_time_gets_408_and_is_closed(
    start_runtime: Callable[..., RuntimeProcess],
    models: dict[str, Path],
    tmp_path: Path,
    header_timeout: int,
    body_timeout: int,
) -> None:
    runtime, api_key = _keyed_runtime(
        start_runtime,
        models,
        tmp_path,
        max_concurrency=1,
        header_timeout_seconds=header_timeout,
        body_timeout_seconds=body_timeout,
    )
    with _open_request(runtime.port, f"X-API-Key: {api_key}\r\n", len(BODY)) as sock:
        started = time.monotonic()
        sock.sendall(BODY[:5])  # and the rest never comes
        response = read_response_head(sock)
        elapsed = time.monotonic() - started
        while chunk := sock.recv(65536):  # the rest of the response, then the close
            response += chunk
    assert response.startswith(b"HTTP/1.1 408 ")
    assert f"request body not received within {body_timeout} seconds".encode() in response
    assert body_timeout - 0.2 <= elapsed < body_timeout + 4
    # Meanwhile and afterwards, the one slot was free for a request whose body arrived.
    headers = {"X-API-Key": api_key}
    assert runtime.client.post(PREDICT_PATH, content=BODY, headers=headers).status_code == 200


def test_large_bodies_are_decoded_off_the_event_loop(
    start_runtime: Callable[..., RuntimeProcess], models: dict[str, Path], tmp_path: Path
) -> None:
    runtime, api_key = _keyed_runtime(
        start_runtime, models, tmp_path, max_body_bytes=64 * 1024 * 1024, json_offload_bytes=64 * 1024
    )
    big = orjson.dumps({"instances": [IRIS_ROW] * 200_000})  # 3.6 MB of JSON
    headers = {"X-API-Key": api_key, "Content-Type": "application/json"}
    worst = []
    for _ in range(ROUNDS):  # the bound must hold in one round, as above
        with (
            LivenessProbe(runtime.url).running() as probe,
            httpx.Client(base_url=runtime.url, timeout=60.0) as client,
        ):
            for _ in range(3):
                response = client.post(PREDICT_PATH, content=big, headers=headers)
                assert response.status_code == 200
                assert len(response.json()["predictions"]) == 200_000
        assert probe.failures == []
        worst.append(max(probe.latencies))
        print(
            f"\n3 bodies of {len(big)} bytes: live max {worst[-1] * 1000:.1f} ms over {len(probe.latencies)} probes"
        )
        if worst[-1] < LIVE_BUDGET_SECONDS:
            return
    raise AssertionError(f"liveness over 100 ms in every round: {worst}")
