"""Bad input to ``package`` and ``registry`` ends with one line on stderr and exit 1, never a traceback.

Each case runs the command line as a real process (``python -m modeldeploy_runtime.packaging.cli``).
"""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import pytest
import yaml

from modeldeploy_runtime.package_layout import read_package
from modeldeploy_runtime.packaging.registry import register
from modeldeploy_runtime.packaging.registry_store import open_store
from tests.packaging.conftest import CliResult, MakePackages, S3Registry, run_cli


def assert_one_line_error(result: CliResult, expected: str) -> None:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("modeldeploy-runtime: error: ")
    assert expected in lines[0]
    assert result.stdout == ""


def package_args(model_file: Path, out: Path, *extra: str) -> list[str]:
    return ["package", str(model_file), "--name", "iris", "--version", "1", "--out", str(out), *extra]


def test_package_then_register_and_resolve_from_the_command_line(pickled_model: Path, tmp_path: Path) -> None:
    packaged = run_cli(
        *package_args(pickled_model, tmp_path / "dist", "--meta", "team=ds", "--meta", "run=42")
    )
    assert packaged.returncode == 0, packaged.stderr
    folder = Path(packaged.stdout.strip())
    assert folder == tmp_path / "dist" / "iris" / "1"
    assert json.loads((folder / "model.joblib.metadata.json").read_text())["metadata"] == {
        "team": "ds",
        "run": "42",
    }

    registry = tmp_path / "registry"
    registered = run_cli("registry", "register", str(folder), "--registry", str(registry))
    assert registered.returncode == 0, registered.stderr
    resolved = run_cli(
        "registry", "resolve", "iris@1", "--format", "yaml", env={"MODELDEPLOY_REGISTRY": str(registry)}
    )
    assert resolved.returncode == 0, resolved.stderr
    model = yaml.safe_load(resolved.stdout)["spec"]["model"]
    assert model["uri"] == (registry / "iris" / "1" / "model.joblib").as_uri()
    assert model["sha256"] == json.loads((folder / "model.joblib.metadata.json").read_text())["sha256"]


def test_unknown_format(pickled_model: Path, tmp_path: Path) -> None:
    result = run_cli(*package_args(pickled_model, tmp_path, "--format", "onnx"))
    assert_one_line_error(result, "unknown format 'onnx': expected one of joblib, skops")


def test_missing_model_file(tmp_path: Path) -> None:
    result = run_cli(*package_args(tmp_path / "absent.pkl", tmp_path))
    assert_one_line_error(
        result, f"cannot read model file {tmp_path / 'absent.pkl'}: No such file or directory"
    )


def test_non_estimator_object(tmp_path: Path) -> None:
    model_file = tmp_path / "weights.pkl"
    joblib.dump({"weights": [1.0, 2.0]}, model_file)
    result = run_cli(*package_args(model_file, tmp_path))
    assert_one_line_error(result, "holds a builtins.dict, not a scikit-learn estimator (no predict method)")


def test_file_that_is_no_pickle(tmp_path: Path) -> None:
    model_file = tmp_path / "notes.pkl"
    model_file.write_text("just text\n")
    result = run_cli(*package_args(model_file, tmp_path))
    assert_one_line_error(result, "is not a readable pickle or joblib file")


def test_bad_meta_pair(pickled_model: Path, tmp_path: Path) -> None:
    result = run_cli(*package_args(pickled_model, tmp_path, "--meta", "no-equals-sign"))
    assert_one_line_error(result, "--meta 'no-equals-sign' is not valid: expected KEY=VALUE")


def test_existing_package_version(pickled_model: Path, tmp_path: Path) -> None:
    assert run_cli(*package_args(pickled_model, tmp_path)).returncode == 0
    result = run_cli(*package_args(pickled_model, tmp_path))
    assert_one_line_error(result, "already exists; a packaged version is never overwritten")


def test_unreadable_registry_index(tmp_path: Path, make_packages: MakePackages) -> None:
    registry = tmp_path / "registry"
    register(open_store(str(registry)), read_package(make_packages(["1"])[0]))
    (registry / "iris" / "index.json").write_text("{truncated")
    result = run_cli("registry", "resolve", "iris@1", "--registry", str(registry))
    assert_one_line_error(result, f"registry index {registry.as_uri()}/iris/index.json is not valid JSON")


def test_registering_an_existing_version(tmp_path: Path, make_packages: MakePackages) -> None:
    registry = tmp_path / "registry"
    folder = make_packages(["1"])[0]
    assert run_cli("registry", "register", str(folder), "--registry", str(registry)).returncode == 0
    result = run_cli("registry", "register", str(folder), "--registry", str(registry))
    assert_one_line_error(result, "iris@1 is already registered; versions are never overwritten")


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["resolve", "iris"], "reference 'iris' is not valid: expected NAME@VERSION or NAME@ALIAS"),
        (["resolve", "iris@nope"], "iris@nope: no such version or alias of iris"),
        (["resolve", "ghost@1"], "no model named 'ghost' in registry"),
        (
            ["resolve", "iris@1", "--format", "toml"],
            "--format 'toml' is not valid: expected one of text, yaml, json",
        ),
        (["promote", "iris@1", "../prod"], "alias '../prod' is not valid"),
        (["promote", "iris@1", "prod-"], "alias 'prod-' is not valid: expected 1-63 letters"),
        (["register", "/nonexistent/package"], "/nonexistent/package is not a directory"),
    ],
)
def test_bad_registry_arguments(
    tmp_path: Path, make_packages: MakePackages, arguments: list[str], expected: str
) -> None:
    registry = tmp_path / "registry"
    register(open_store(str(registry)), read_package(make_packages(["1"])[0]))
    result = run_cli("registry", *arguments, "--registry", str(registry))
    assert_one_line_error(result, expected)


def test_no_registry_given(tmp_path: Path) -> None:
    assert_one_line_error(
        run_cli("registry", "list"), "no registry given: pass --registry ROOT or set MODELDEPLOY_REGISTRY"
    )


def test_missing_s3_bucket(s3_registry: S3Registry) -> None:
    result = run_cli("registry", "list", "--registry", "s3://no-such-bucket/models", env=s3_registry.env)
    assert_one_line_error(result, "s3://no-such-bucket/models: NoSuchBucket")


def test_unreachable_s3_endpoint(make_packages: MakePackages) -> None:
    env = {
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_MAX_ATTEMPTS": "1",
    }
    folder = make_packages(["1"])[0]
    result = run_cli("registry", "register", str(folder), "--registry", "s3://bucket/models", env=env)
    assert_one_line_error(result, "Could not connect to the endpoint URL")
