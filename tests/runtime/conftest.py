"""Fixtures for the runtime tests: tiny models trained here, and the runtime run as a real process.

Every server is ``modeldeploy-runtime serve`` started as a subprocess on loopback, with free ports;
tests talk to it over real HTTP. Waiting is done with ``tests.support.wait_until``, which has a
deadline and says what it waited for.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import joblib
import pytest
import skops.io
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression

from tests.runtime.slow_model import SlowClassifier
from tests.support import free_port, self_signed_certificate, stop_process, wait_until

REPO = Path(__file__).resolve().parents[2]
RUNTIME = [sys.executable, "-m", "modeldeploy_runtime"]
IRIS_ROW = [5.1, 3.5, 1.4, 0.2]


def read_response_head(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """What a raw socket receives up to the end of the response headers (or until it is closed)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def runtime_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MODELDEPLOY_")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


@dataclass
class RuntimeProcess:
    """A running ``modeldeploy-runtime serve``; ``url`` and ``metrics_url`` point at it."""

    process: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    log_path: Path
    scheme: str = "http"
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url, timeout=30.0, verify=False)  # noqa: S501 - self-signed

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def is_ready(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"runtime exited with {self.process.returncode} before ready:\n{self.log()}")
        return self.client.get("/v2/health/ready").status_code == 200

    def wait_ready(self, timeout: float = 60.0) -> RuntimeProcess:
        wait_until(
            f"runtime on port {self.port} to be ready",
            self.is_ready,
            timeout=timeout,
            interval=0.05,
            retrying=(httpx.TransportError,),
        )
        return self

    def metrics(self) -> str:
        return httpx.get(self.metrics_url, timeout=10.0).text

    def stop(self) -> int:
        self.client.close()
        return stop_process(self.process)


def launch_runtime(
    log_dir: Path, *, wait: bool = True, scheme: str = "http", env: dict[str, str] | None = None, **flags: Any
) -> RuntimeProcess:
    """Starts ``serve`` with the given flags (``model_uri=...`` → ``--model-uri ...``) on free ports.

    A local joblib ``model_uri`` is passed with its digest (``--model-sha256``) unless the caller
    gives one: the runtime refuses to unpickle an unverified artifact.
    """
    model_uri = flags.get("model_uri")
    if isinstance(model_uri, Path) and model_uri.suffix == ".joblib" and "model_sha256" not in flags:
        flags["model_sha256"] = sha256_file(model_uri)
    port, metrics_port = free_port(), free_port()
    arguments = ["serve", "--host", "127.0.0.1", "--port", str(port), "--metrics-port", str(metrics_port)]
    for name, value in flags.items():
        arguments += [f"--{name.replace('_', '-')}", str(value)]
    log_path = log_dir / f"runtime-{port}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [*RUNTIME, *arguments], cwd=REPO, env=runtime_env(**(env or {})), stdout=log_file, stderr=log_file
        )
    runtime = RuntimeProcess(process, port, metrics_port, log_path, scheme=scheme)
    return runtime.wait_ready() if wait else runtime


@pytest.fixture
def start_runtime(tmp_path: Path) -> Iterator[Callable[..., RuntimeProcess]]:
    """Starts runtimes for one test and stops them after it."""
    started: list[RuntimeProcess] = []

    def start(**options: Any) -> RuntimeProcess:
        wait = options.pop("wait", True)
        runtime = launch_runtime(tmp_path, wait=False, **options)
        started.append(runtime)
        return runtime.wait_ready() if wait else runtime

    yield start
    for runtime in started:
        runtime.stop()


@pytest.fixture(scope="module")
def iris_runtime(
    models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RuntimeProcess]:
    """One iris LogisticRegression runtime shared by a module's read-only tests."""
    runtime = launch_runtime(
        tmp_path_factory.mktemp("iris-runtime"),
        model_uri=models["iris"],
        model_name="iris",
        model_version="v3",
        max_body_bytes=65536,
    )
    yield runtime
    runtime.stop()


def run_runtime(
    *arguments: str, env: dict[str, str] | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Runs a short-lived runtime command (one that should exit by itself) and captures its output."""
    return subprocess.run(
        [*RUNTIME, *arguments],
        cwd=REPO,
        env=runtime_env(**(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny models trained on iris (shipped inside scikit-learn), saved as the runtime reads them."""
    directory = tmp_path_factory.mktemp("models")
    features, labels = load_iris(return_X_y=True)
    paths = {
        "iris": directory / "iris.joblib",
        "iris_skops": directory / "iris.skops",
        "forest": directory / "forest.joblib",
        "regressor": directory / "regressor.joblib",
        "slow": directory / "slow.joblib",
        "slow_skops": directory / "slow.skops",
    }
    classifier = LogisticRegression(max_iter=1000).fit(features, labels)
    joblib.dump(classifier, paths["iris"])
    skops.io.dump(classifier, paths["iris_skops"])
    joblib.dump(
        RandomForestClassifier(n_estimators=10, random_state=0).fit(features, labels), paths["forest"]
    )
    joblib.dump(LinearRegression().fit(features[:, :3], features[:, 3]), paths["regressor"])
    joblib.dump(SlowClassifier(), paths["slow"])
    skops.io.dump(SlowClassifier(), paths["slow_skops"])
    return paths


def write_metadata(artifact: Path, **versions: str) -> Path:
    path = artifact.with_name(artifact.name + ".metadata.json")
    path.write_text(json.dumps({"format": "joblib", "versions": versions}))
    return path


def v2_body(rows: list[list[float]], **extra: Any) -> dict[str, Any]:
    flat = [value for row in rows for value in row]
    shape = [len(rows), len(rows[0]) if rows else 0]
    return {"inputs": [{"name": "input-0", "shape": shape, "datatype": "FP64", "data": flat}], **extra}


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1/localhost, generated here with ``cryptography``."""
    return self_signed_certificate(tmp_path_factory.mktemp("tls"), ["localhost"], ("127.0.0.1",))
