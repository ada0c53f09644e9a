"""The registry on a local directory and on S3 (moto's server on loopback), through the same API.

Every test runs against both stores (``registry`` fixture, parametrised ``local`` / ``s3``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.linear_model import LogisticRegression

from modeldeploy_runtime.fetch import FetchError, fetch_artifact
from modeldeploy_runtime.package_layout import read_package
from modeldeploy_runtime.packaging import cli as registry_cli
from modeldeploy_runtime.packaging.build import package
from modeldeploy_runtime.packaging.registry import (
    Reference,
    RegistryError,
    VersionExistsError,
    parse_reference,
    promote,
    register,
    resolve,
    resolve_reference,
    verify,
)
from modeldeploy_runtime.packaging.registry_store import ObjectExistsError, RegistryStore, open_store
from modeldeploy_runtime.serving.model import load_model
from tests.packaging.conftest import REPO, MakePackages, S3Registry, cli_env


@dataclass(frozen=True)
class RegistryUnderTest:
    root: str
    env: dict[str, str]
    overwrite: Callable[[str, bytes], None]  # replace an object behind the registry's back

    def store(self) -> RegistryStore:
        return open_store(self.root)

    def uri(self, key: str) -> str:
        """What the registry should print for a key: file:// locally, s3:// on S3."""
        if self.root.startswith("s3://"):
            return f"{self.root}/{key}"
        return (Path(self.root) / key).as_uri()


@pytest.fixture(params=["local", "s3"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> RegistryUnderTest:
    if request.param == "local":
        root = tmp_path / "registry"

        def replace_file(key: str, data: bytes) -> None:
            (root / key).write_bytes(data)

        return RegistryUnderTest(str(root), {}, replace_file)
    s3: S3Registry = request.getfixturevalue("s3_registry")
    prefix = s3.root.removeprefix(f"s3://{s3.bucket}/")

    def overwrite(key: str, data: bytes) -> None:
        s3.client().put_object(Bucket=s3.bucket, Key=f"{prefix}/{key}", Body=data)

    return RegistryUnderTest(s3.root, s3.env, overwrite)


def cli(capsys: pytest.CaptureFixture[str], *arguments: str) -> str:
    """Runs the registry CLI in this process; returns stdout, failing on a non-zero exit."""
    code = registry_cli.main(list(arguments))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def test_register_list_promote_resolve_through_the_cli(
    registry: RegistryUnderTest, make_packages: MakePackages, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = make_packages(["1.0.0", "1.1.0"])
    root = ["--registry", registry.root]

    out = cli(capsys, "registry", "register", str(first), *root)
    assert out.startswith(f"iris@1.0.0 {registry.uri('iris/1.0.0/model.joblib')} ")
    cli(capsys, "registry", "register", str(second), *root)
    cli(capsys, "registry", "promote", "iris@1.0.0", "production", *root)
    assert cli(capsys, "registry", "promote", "iris@1.1.0", "production", *root).strip() == (
        "iris@production -> 1.1.0 (was 1.0.0)"
    )

    assert cli(capsys, "registry", "list", *root).split() == ["iris"]
    listed = json.loads(cli(capsys, "registry", "list", "iris", "--format", "json", *root))
    assert [(item["version"], item["aliases"]) for item in listed] == [
        ("1.0.0", []),
        ("1.1.0", ["production"]),
    ]
    assert listed[0]["metadata"] == {"v": "1.0.0"}
    assert listed[0]["registered_at"].endswith("Z")

    expected_sha = read_package(second).metadata["sha256"]
    uri, sha256 = cli(capsys, "registry", "resolve", "iris@production", *root).split()
    assert (uri, sha256) == (registry.uri("iris/1.1.0/model.joblib"), expected_sha)
    block = yaml.safe_load(cli(capsys, "registry", "resolve", "iris@production", "--format", "yaml", *root))
    assert block == {
        "spec": {"model": {"uri": uri, "version": "1.1.0", "sha256": expected_sha, "format": "joblib"}}
    }
    shown = json.loads(cli(capsys, "registry", "show", "iris@1.0.0", *root))
    assert shown["sha256"] == read_package(first).metadata["sha256"]
    assert shown["aliases"] == []
    assert shown["uri"] == registry.uri("iris/1.0.0/model.joblib")
    on_pvc = cli(
        capsys, "registry", "resolve", "iris@1.0.0", "--uri-prefix", "pvc://model-store/registry/", *root
    )
    assert on_pvc.split()[0] == "pvc://model-store/registry/iris/1.0.0/model.joblib"


def test_resolved_uri_and_digest_fetch_and_load_the_registered_model(
    registry: RegistryUnderTest,
    make_packages: MakePackages,
    tmp_path: Path,
    logistic: LogisticRegression,
    iris: tuple[np.ndarray, np.ndarray],
) -> None:
    store = registry.store()
    register(store, read_package(make_packages(["3"])[0]))
    promote(store, Reference("iris", "3"), "staging")

    resolved = resolve_reference(f"registry+{registry.root}#iris@staging")
    fetched = fetch_artifact(resolved.uri, tmp_path / "fetched", resolved.sha256)

    assert (tmp_path / "fetched" / "model.joblib.metadata.json").is_file()
    loaded = load_model(
        fetched,
        name="iris",
        version=resolved.version,
        model_format="joblib",
        expected_sha256=resolved.sha256,
        trusted_types=[],
    )
    np.testing.assert_array_equal(loaded.estimator.predict(iris[0]), logistic.predict(iris[0]))


def test_tampering_after_registration_is_caught_by_the_digest(
    registry: RegistryUnderTest, make_packages: MakePackages, tmp_path: Path
) -> None:
    store = registry.store()
    registered = register(store, read_package(make_packages(["1"])[0]))
    assert verify(store, parse_reference("iris@1")).sha256 == registered.sha256

    registry.overwrite("iris/1/model.joblib", b"not the model that was registered")

    with pytest.raises(RegistryError, match=r"sha256 mismatch .* changed after registration"):
        verify(store, parse_reference("iris@1"))
    with pytest.raises(FetchError, match=rf"sha256 mismatch .* expected {registered.sha256}"):
        fetch_artifact(registered.uri, tmp_path / "fetched", registered.sha256)
    assert not (tmp_path / "fetched" / "model.joblib").exists()


def test_an_existing_version_cannot_be_overwritten(
    registry: RegistryUnderTest,
    make_packages: MakePackages,
    tmp_path: Path,
    iris: tuple[np.ndarray, np.ndarray],
) -> None:
    store = registry.store()
    original = register(store, read_package(make_packages(["1"])[0]))
    other_model = LogisticRegression(max_iter=500).fit(iris[0][:, ::-1], iris[1])
    impostor = package(other_model, tmp_path / "elsewhere", name="iris", version="1")

    with pytest.raises(
        VersionExistsError, match="iris@1 is already registered; versions are never overwritten"
    ):
        register(store, impostor)
    # A registration racing this one passes the index check, but the artifact is written
    # create-only, so the registered bytes stay.
    with pytest.raises(ObjectExistsError):
        store.create("iris/1/model.joblib", impostor.artifact)
    assert verify(store, parse_reference("iris@1")).sha256 == original.sha256


def test_an_interrupted_registration_is_completed_by_registering_again(
    registry: RegistryUnderTest, make_packages: MakePackages
) -> None:
    store = registry.store()
    packaged = read_package(make_packages(["1"])[0])
    store.create("iris/1/model.joblib", packaged.artifact)  # uploaded, then the process died

    registered = register(store, packaged)

    assert resolve(store, parse_reference("iris@1")).sha256 == registered.sha256


def test_aliases_and_versions_never_share_a_name(
    registry: RegistryUnderTest, make_packages: MakePackages
) -> None:
    store = registry.store()
    one, latest = (read_package(path) for path in make_packages(["1", "latest"]))
    register(store, one)
    with pytest.raises(RegistryError, match="alias '1' is a version of iris"):
        promote(store, parse_reference("iris@1"), "1")
    promote(store, parse_reference("iris@1"), "latest")
    promote(store, parse_reference("iris@latest"), "stable")  # copies an alias
    assert resolve(store, parse_reference("iris@stable")).aliases == ("latest", "stable")
    with pytest.raises(RegistryError, match="'latest' is already an alias of iris"):
        register(store, latest)
    with pytest.raises(RegistryError, match="no such version or alias of iris"):
        promote(store, parse_reference("iris@2"), "production")


def test_concurrent_registrations_from_several_processes_lose_nothing(
    registry: RegistryUnderTest, make_packages: MakePackages
) -> None:
    workers, per_worker = 4, 3
    versions = [[f"{worker}.{index}" for index in range(per_worker)] for worker in range(workers)]
    folders = [make_packages(batch) for batch in versions]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.packaging.register_worker", registry.root, *map(str, batch)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=cli_env(registry.env),
        )
        for batch in folders
    ]
    outputs: list[str] = []
    try:
        for process in processes:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready", process.stderr and process.stderr.read()
        for process in processes:  # release them together
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        for process in processes:
            out, err = process.communicate(timeout=120)
            assert process.returncode == 0, err
            outputs.append(out)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()

    expected = sorted(version for batch in versions for version in batch)
    assert sorted(line.split()[1] for out in outputs for line in out.splitlines()) == expected
    index = json.loads(registry.store().read("iris/index.json"))
    assert sorted(index["versions"]) == expected
    store = registry.store()
    for version in expected:
        assert verify(store, parse_reference(f"iris@{version}")).version == version


def test_unreadable_index_is_reported_without_losing_it(
    registry: RegistryUnderTest, make_packages: MakePackages
) -> None:
    store = registry.store()
    register(store, read_package(make_packages(["1"])[0]))
    registry.overwrite("iris/index.json", b"{not json")

    with pytest.raises(RegistryError, match=r"registry index .*iris/index.json is not valid JSON"):
        resolve(store, parse_reference("iris@1"))
    with pytest.raises(RegistryError, match="is not valid JSON"):
        register(store, read_package(make_packages(["2"])[0]))
    assert store.read("iris/index.json") == b"{not json"
