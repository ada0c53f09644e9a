"""Fixtures for the Lambda tests: one packaged iris model, its deployment zip and API keys.

The zip is built by the real ``modeldeploy-runtime lambda package`` command and unpacked the
way Lambda unpacks it into ``/var/task``; the handler then serves from that directory.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from modeldeploy_runtime.apikeys import mint_key, render_keys_file
from modeldeploy_runtime.aws_lambda import function
from modeldeploy_runtime.cli import main
from modeldeploy_runtime.packaging.build import package

MODEL_NAME = "iris"
MODEL_VERSION = "1.0.0"
MAX_BODY_BYTES = 4096


@dataclass(frozen=True)
class Bundle:
    """A deployment zip, where it was unpacked, and the packaged model it came from."""

    package_dir: Path
    keys_file: Path
    api_key: str
    zip_path: Path
    root: Path


def build_zip(package_dir: Path, keys_file: Path | None, out: Path) -> Path:
    arguments = ["lambda", "package", "--model", str(package_dir), "--out", str(out)]
    if keys_file is not None:
        arguments += ["--auth-keys-file", str(keys_file)]
    assert main(arguments) == 0
    return out


def unpack(zip_path: Path, root: Path) -> Path:
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(root)
    return root


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    directory = tmp_path_factory.mktemp("lambda")
    features, labels = load_iris(return_X_y=True)
    written = package(
        LogisticRegression(max_iter=1000).fit(features, labels),
        directory / "packages",
        name=MODEL_NAME,
        version=MODEL_VERSION,
    )
    minted = mint_key("lambda-tests")
    keys_file = directory / "apikeys.json"
    keys_file.write_text(render_keys_file([minted.hashed]))
    zip_path = build_zip(written.directory, keys_file, directory / "function.zip")
    return Bundle(
        written.directory, keys_file, minted.plaintext, zip_path, unpack(zip_path, directory / "task")
    )


@pytest.fixture
def lambda_env(bundle: Bundle, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bundle]:
    """The handler's environment as Lambda sets it, with a fresh (not yet loaded) container."""
    for name in list(os.environ):
        if name.startswith("MODELDEPLOY_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(bundle.root))
    monkeypatch.setenv("MODELDEPLOY_MAX_BODY_BYTES", str(MAX_BODY_BYTES))
    monkeypatch.setenv("MODELDEPLOY_LOG_LEVEL", "warning")
    reset_container()
    yield bundle
    reset_container()


def reset_container() -> None:
    """Forget the loaded model, as a new Lambda container would start without one."""
    if function._runtime is not None:
        function._runtime.close()
    function._runtime = None
