"""Fixtures for packaging and registry tests: small fitted models, a CLI runner and an S3 server.

S3 is moto's server (``tests.support.moto_server``), a real S3-compatible HTTP server on 127.0.0.1
with a free port, answering one request at a time (MinIO is not used: it is AGPL-licensed).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import joblib
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from modeldeploy_runtime.packaging.build import package
from tests.support import S3_CREDENTIALS, moto_server

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "modeldeploy_runtime.packaging.cli"]
FOREST_TREE_TYPE = "sklearn.tree._tree.Tree"


@pytest.fixture(scope="session")
def iris() -> tuple[np.ndarray, np.ndarray]:
    features, target = load_iris(return_X_y=True)
    return np.asarray(features), np.asarray(target)


@pytest.fixture(scope="session")
def logistic(iris: tuple[np.ndarray, np.ndarray]) -> LogisticRegression:
    return LogisticRegression(max_iter=500).fit(*iris)


@pytest.fixture(scope="session")
def forest(iris: tuple[np.ndarray, np.ndarray]) -> RandomForestClassifier:
    """Needs ``sklearn.tree._tree.Tree`` trusted to load from skops (not trusted by default)."""
    return RandomForestClassifier(n_estimators=5, random_state=0).fit(*iris)


@pytest.fixture
def pickled_model(tmp_path: Path, logistic: LogisticRegression) -> Path:
    path = tmp_path / "iris.pkl"
    joblib.dump(logistic, path)
    return path


MakePackages = Callable[..., list[Path]]


@pytest.fixture
def make_packages(tmp_path: Path, logistic: LogisticRegression) -> MakePackages:
    """Packages the logistic model as each given version under tmp/dist; returns the folders."""

    def make(versions: Iterable[str], name: str = "iris") -> list[Path]:
        return [
            package(
                logistic, tmp_path / "dist", name=name, version=version, metadata={"v": version}
            ).directory
            for version in versions
        ]

    return make


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MODELDEPLOY_", "AWS_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra or {})
    return env


def run_cli(*arguments: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> CliResult:
    """``python -m modeldeploy_runtime.packaging.cli ARGUMENTS`` as a real process."""
    completed = subprocess.run(
        [*CLI, *arguments],
        capture_output=True,
        text=True,
        env=cli_env(env),
        cwd=cwd,
        timeout=120,
        check=False,
    )
    return CliResult(completed.returncode, completed.stdout, completed.stderr)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@dataclass(frozen=True)
class S3Registry:
    """A fresh bucket on the moto server; ``root`` is the registry location inside it."""

    endpoint: str
    bucket: str
    root: str
    env: dict[str, str]

    def client(self) -> Any:
        return boto3.client("s3", endpoint_url=self.endpoint)


@pytest.fixture
def s3_registry(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> S3Registry:
    """A registry at ``s3://<fresh bucket>/team/models``; this process's env points boto3 at moto."""
    env = {**S3_CREDENTIALS, "AWS_ENDPOINT_URL": s3_endpoint}
    for key in [key for key in os.environ if key.startswith("AWS_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    bucket = f"registry-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    return S3Registry(endpoint=s3_endpoint, bucket=bucket, root=f"s3://{bucket}/team/models", env=env)
