"""API keys: accepted and refused requests, and key rotation under load with no failed request."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from modeldeploy_runtime.apikeys import HashedKey, mint_key, render_keys_file
from tests.runtime.conftest import IRIS_ROW, RuntimeProcess, v2_body
from tests.support import wait_until


class SecretMount:
    """A directory laid out like a mounted Kubernetes Secret: keys.json → ..data/keys.json.

    Kubernetes updates such a mount by writing a new timestamped directory and atomically
    renaming a fresh ``..data`` symlink over the old one; ``publish`` does the same.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._generation = 0

    @property
    def keys_file(self) -> Path:
        return self.root / "keys.json"

    def publish(self, keys: list[HashedKey]) -> None:
        self._generation += 1
        version = self.root / f"..{self._generation:04d}"
        version.mkdir()
        (version / "keys.json").write_text(render_keys_file(keys))
        temporary = self.root / "..data_tmp"
        os.symlink(version.name, temporary)
        os.replace(temporary, self.root / "..data")
        if not self.keys_file.is_symlink():
            os.symlink("..data/keys.json", self.keys_file)


WORKERS = 2


def _status(runtime: RuntimeProcess, headers: dict[str, str]) -> int:
    return runtime.client.post("/v2/models/iris/infer", json=v2_body([IRIS_ROW]), headers=headers).status_code


def _workers_reloaded(runtime: RuntimeProcess, since: int, keys: int, key: str) -> set[int]:
    """Worker pids that logged reloading ``keys`` keys after offset ``since`` of the log.

    A worker re-reads the keys file when a request reaches it, so each poll first sends one request
    on a fresh connection (a pooled one would keep reaching the same worker).
    """
    headers = {"X-API-Key": key, "Connection": "close"}
    httpx.post(f"{runtime.url}/v2/models/iris/infer", json=v2_body([IRIS_ROW]), headers=headers, timeout=10)
    pids = set()
    for line in runtime.log()[since:].splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("message") == "API keys reloaded" and record.get("keys") == keys:
            pids.add(int(record["pid"]))
    return pids


def test_keys_accepted_and_refused_identically(
    tmp_path: Path, models: dict[str, Path], start_runtime: Callable[..., RuntimeProcess]
) -> None:
    alice, bob, stranger = mint_key("alice"), mint_key("bob"), mint_key("stranger")
    mount = SecretMount(tmp_path / "apikeys")
    mount.publish([alice.hashed, bob.hashed])
    runtime = start_runtime(model_uri=models["iris"], model_name="iris", auth_keys_file=mount.keys_file)
    assert _status(runtime, {"Authorization": f"Bearer {alice.plaintext}"}) == 200
    assert _status(runtime, {"X-API-Key": bob.plaintext}) == 200
    assert runtime.client.get("/v2/models/iris", headers={"X-API-Key": bob.plaintext}).status_code == 200

    wrong_secret = alice.plaintext[:-4] + ("0000" if not alice.plaintext.endswith("0000") else "1111")
    refusals = [
        {},
        {"Authorization": f"Bearer {stranger.plaintext}"},
        {"Authorization": f"Bearer {wrong_secret}"},
        {"Authorization": f"Basic {alice.plaintext}"},
        {"X-API-Key": "not-a-key"},
    ]
    bodies = set()
    for headers in refusals:
        response = runtime.client.post("/v2/models/iris/infer", json=v2_body([IRIS_ROW]), headers=headers)
        assert response.status_code == 401, headers
        bodies.add(response.content)
    assert bodies == {b'{"error":"missing or invalid API key"}'}
    assert runtime.client.get("/v2/models/iris").status_code == 401
    assert runtime.client.post("/v1/models/iris:predict", json={"instances": [IRIS_ROW]}).status_code == 401
    # Health stays open for the kubelet's probes.
    assert runtime.client.get("/v2/health/ready").status_code == 200
    assert runtime.client.get("/v2/health/live").status_code == 200
    metrics = runtime.metrics()
    assert 'modeldeploy_auth_failures_total{model="iris",reason="missing"} 4.0' in metrics
    assert 'modeldeploy_auth_failures_total{model="iris",reason="rejected"} 3.0' in metrics
    log = runtime.log()
    assert "API key refused" in log
    for key in (alice, bob, stranger):
        assert key.plaintext not in log
        assert key.plaintext.split("_")[2] not in log


def test_key_rotation_under_load_drops_no_request(
    tmp_path: Path, models: dict[str, Path], start_runtime: Callable[..., RuntimeProcess]
) -> None:
    old, new = mint_key("client"), mint_key("client")
    mount = SecretMount(tmp_path / "apikeys")
    mount.publish([old.hashed])
    runtime = start_runtime(
        model_uri=models["iris"], model_name="iris", auth_keys_file=mount.keys_file, workers=WORKERS
    )
    current = {"key": old.plaintext}
    failures: list[str] = []
    counts = [0]
    stop = threading.Event()

    def load() -> None:
        try:
            with httpx.Client(base_url=runtime.url, timeout=30.0) as client:
                deadline = time.monotonic() + 60
                while not stop.is_set() and time.monotonic() < deadline:
                    key = current["key"]
                    response = client.post(
                        "/v2/models/iris/infer", json=v2_body([IRIS_ROW]), headers={"X-API-Key": key}
                    )
                    counts[0] += 1
                    if response.status_code != 200:
                        failures.append(f"{response.status_code} {response.text}")
        except Exception as error:  # a dropped connection is a dropped request: report it
            failures.append(f"load thread died: {type(error).__name__}: {error}")
            raise

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_until("load to start", lambda: counts[0] > 50, timeout=20)
        since = len(runtime.log())
        mount.publish([old.hashed, new.hashed])  # step 1: both keys valid
        wait_until(
            "every worker to load both keys",
            lambda: len(_workers_reloaded(runtime, since, 2, old.plaintext)) == WORKERS,
            timeout=15,
        )
        probe = {"Authorization": f"Bearer {new.plaintext}"}
        wait_until(
            "the new key to work", lambda: all(_status(runtime, probe) == 200 for _ in range(10)), timeout=15
        )
        current["key"] = new.plaintext  # step 2: clients move to the new key
        before = counts[0]
        wait_until("load on the new key", lambda: counts[0] > before + 50, timeout=20)
        since = len(runtime.log())
        mount.publish([new.hashed])  # step 3: the old key is revoked
        wait_until(
            "every worker to drop the old key",
            lambda: len(_workers_reloaded(runtime, since, 1, new.plaintext)) == WORKERS,
            timeout=15,
        )
        gone = {"X-API-Key": old.plaintext}
        wait_until(
            "the old key to be refused",
            lambda: all(_status(runtime, gone) == 401 for _ in range(10)),
            timeout=15,
        )
        before = counts[0]
        wait_until("load after revocation", lambda: counts[0] > before + 50, timeout=20)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert [thread.name for thread in threads if thread.is_alive()] == []
    assert failures == []
    assert counts[0] > 200
    assert runtime.process.poll() is None
