"""Start-up: digest verification before deserialising, skops trust, metadata, settings errors."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path

import joblib
import pytest
import sklearn

from tests.runtime.conftest import (
    IRIS_ROW,
    RuntimeProcess,
    launch_runtime,
    run_runtime,
    sha256_file,
    write_metadata,
)
from tests.runtime.slow_model import PickleSideEffect, RowCounter
from tests.support import free_port, wait_until

WRONG_DIGEST = "0" * 64


def _serve_until_exit(*flags: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = run_runtime(
        "serve", "--host", "127.0.0.1", "--port", str(free_port()), "--metrics-port", "0", *flags, env=env
    )
    return result.returncode, result.stderr


def test_digest_mismatch_is_fatal_with_both_digests(models: dict[str, Path]) -> None:
    code, stderr = _serve_until_exit("--model-uri", str(models["iris"]), "--model-sha256", WRONG_DIGEST)
    assert code == 1
    last = stderr.strip().splitlines()[-1]
    assert "sha256 mismatch" in last
    assert WRONG_DIGEST in last
    assert sha256_file(models["iris"]) in last
    assert "Traceback" not in stderr


def test_right_digest_is_accepted(
    start_runtime: Callable[..., RuntimeProcess], models: dict[str, Path]
) -> None:
    runtime = start_runtime(model_uri=models["iris"], model_sha256=sha256_file(models["iris"]).upper())
    assert runtime.client.get("/v2/health/ready").status_code == 200


def test_side_effecting_pickle_is_not_run_when_its_digest_does_not_match(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    artifact = tmp_path / "evil.joblib"
    artifact.write_bytes(pickle.dumps(PickleSideEffect(str(marker))))
    code, stderr = _serve_until_exit("--model-uri", str(artifact), "--model-sha256", WRONG_DIGEST)
    assert code == 1
    assert "sha256 mismatch" in stderr
    assert not marker.exists()


def test_a_pickle_without_a_digest_is_refused_unless_the_development_flag_is_set(
    tmp_path: Path, models: dict[str, Path], start_runtime: Callable[..., RuntimeProcess]
) -> None:
    marker = tmp_path / "pwned"
    artifact = tmp_path / "evil.joblib"
    artifact.write_bytes(pickle.dumps(PickleSideEffect(str(marker))))
    code, stderr = _serve_until_exit("--model-uri", str(artifact))
    assert code == 1
    last = stderr.strip().splitlines()[-1]
    assert f"refusing to load {artifact}: a joblib artifact is a pickle" in last
    assert "registry resolve" in last
    assert "MODELDEPLOY_ALLOW_UNVERIFIED_PICKLE=1" in last
    assert not marker.exists()
    # This test is the one use of the flag. With it, the same artifact is unpickled and runs its
    # payload, which is why it is refused by default (it is then refused as a non-model).
    allow = {"MODELDEPLOY_ALLOW_UNVERIFIED_PICKLE": "1"}
    code, _ = _serve_until_exit("--model-uri", str(artifact), env=allow)
    assert code == 1
    assert marker.exists()
    # A real model is served with the flag, and the runtime says loudly that it is unverified.
    runtime = start_runtime(model_uri=str(models["iris"]), model_name="iris", env=allow)
    assert runtime.client.post("/v1/models/iris:predict", json={"instances": [IRIS_ROW]}).status_code == 200
    assert '"level": "warning"' in runtime.log()
    assert "UNVERIFIED PICKLE" in runtime.log()
    warnings = runtime.client.get("/v2/models/iris").json()["parameters"]["warnings"]
    assert any("UNVERIFIED PICKLE" in warning for warning in warnings)


def test_skops_untrusted_type_is_refused_unless_configured(
    models: dict[str, Path], start_runtime: Callable[..., RuntimeProcess]
) -> None:
    code, stderr = _serve_until_exit("--model-uri", str(models["slow_skops"]))
    assert code == 1
    assert "not trusted: tests.runtime.slow_model.SlowClassifier" in stderr
    assert "Traceback" not in stderr
    runtime = start_runtime(
        model_uri=models["slow_skops"],
        model_name="slow",
        trusted_types="tests.runtime.slow_model.SlowClassifier",
    )
    assert runtime.client.post("/v1/models/slow:predict", json={"instances": [[0, 0]]}).json() == {
        "predictions": [0]
    }


def test_metadata_version_mismatch_is_reported(
    tmp_path: Path, models: dict[str, Path], start_runtime: Callable[..., RuntimeProcess]
) -> None:
    artifact = tmp_path / "iris.joblib"
    artifact.write_bytes(models["iris"].read_bytes())
    write_metadata(artifact, **{"scikit-learn": "0.24.2", "joblib": "1.0.0"})
    runtime = start_runtime(model_uri=artifact, model_name="iris")
    parameters = runtime.client.get("/v2/models/iris").json()["parameters"]
    assert parameters["artifact_sklearn_version"] == "0.24.2"
    assert any("scikit-learn 0.24.2" in warning for warning in parameters["warnings"])
    assert any("joblib 1.0.0" in warning for warning in parameters["warnings"])
    assert 'artifact_sklearn_version="0.24.2"' in runtime.metrics()
    assert 'version_mismatch="true"' in runtime.metrics()
    assert "model was packaged with scikit-learn 0.24.2" in runtime.log()


def test_matching_metadata_gives_no_warning(
    tmp_path: Path, models: dict[str, Path], start_runtime: Callable[..., RuntimeProcess]
) -> None:
    artifact = tmp_path / "iris.joblib"
    artifact.write_bytes(models["iris"].read_bytes())
    write_metadata(artifact, **{"scikit-learn": sklearn.__version__, "joblib": joblib.__version__})
    runtime = start_runtime(model_uri=artifact, model_name="iris")
    assert runtime.client.get("/v2/models/iris").json()["parameters"]["warnings"] == []
    assert 'version_mismatch="false"' in runtime.metrics()


def test_the_metadata_file_is_informational_and_never_changes_request_checks(
    tmp_path: Path, start_runtime: Callable[..., RuntimeProcess]
) -> None:
    artifact = tmp_path / "counter.joblib"
    joblib.dump(RowCounter(), artifact)
    metadata = artifact.with_name(artifact.name + ".metadata.json")
    # Not covered by the digest: a feature count written here must not decide what is accepted.
    metadata.write_text(json.dumps({"n_features_in": 1, "versions": {"scikit-learn": sklearn.__version__}}))
    runtime = start_runtime(model_uri=artifact, model_name="counter")
    response = runtime.client.post("/v1/models/counter:predict", json={"instances": [[1, 2, 3, 4]]})
    assert response.json() == {"predictions": [4]}
    runtime.stop()
    # A broken metadata file is a warning, not a reason to stop serving.
    metadata.write_text("{not json")
    runtime = start_runtime(model_uri=artifact, model_name="counter")
    assert runtime.client.post("/v1/models/counter:predict", json={"instances": [[1, 2]]}).json() == {
        "predictions": [2]
    }
    assert "is not JSON" in runtime.log()
    assert "ignored" in runtime.log()


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (
            ["--model-uri", "/m.joblib", "--port", "eighty"],
            "--port / MODELDEPLOY_PORT: Input should be a valid integer",
        ),
        (["--model-uri", "/m.joblib", "--workers", "0"], "--workers / MODELDEPLOY_WORKERS"),
        (
            ["--model-uri", "/m.joblib", "--model-sha256", "abc"],
            "--model-sha256 / MODELDEPLOY_MODEL_SHA256: must be 64",
        ),
        (
            ["--model-uri", "/m.joblib", "--model-format", "pickle"],
            "--model-format / MODELDEPLOY_MODEL_FORMAT",
        ),
        (["--model-uri", "ftp://x/m"], "--model-uri / MODELDEPLOY_MODEL_URI: must be a path"),
        (["--model-uri", "/m.joblib", "--auth-keys-file", "/nonexistent/keys.json"], "no such file"),
        ([], "--model-uri / MODELDEPLOY_MODEL_URI: Field required"),
    ],
)
def test_bad_settings_get_one_line_per_value(flags: list[str], fragment: str) -> None:
    result = run_runtime("serve", *flags)
    assert result.returncode == 2
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    assert all(line.startswith("modeldeploy-runtime: error: ") for line in result.stderr.strip().splitlines())


def test_settings_come_from_the_environment_and_flags_win(models: dict[str, Path], tmp_path: Path) -> None:
    runtime = launch_runtime(
        tmp_path,
        env={
            "MODELDEPLOY_MODEL_URI": str(models["iris"]),
            "MODELDEPLOY_MODEL_SHA256": sha256_file(models["iris"]),
            "MODELDEPLOY_MODEL_NAME": "from-env",
        },
        model_version="from-flag",
    )
    try:
        metadata = runtime.client.get("/v2/models/from-env").json()
        assert metadata["versions"] == ["from-flag"]
    finally:
        runtime.stop()


def test_missing_model_and_bad_keys_file_are_one_line_errors(tmp_path: Path, models: dict[str, Path]) -> None:
    code, stderr = _serve_until_exit(
        "--model-uri", str(tmp_path / "absent.joblib"), "--model-sha256", WRONG_DIGEST
    )
    assert code == 1
    assert "cannot read model file" in stderr
    keys = tmp_path / "keys.json"
    keys.write_text("{not json")
    code, stderr = _serve_until_exit("--model-uri", str(models["iris"]), "--auth-keys-file", str(keys))
    assert code == 1
    assert "--auth-keys-file: keys file is not JSON" in stderr
    assert "Traceback" not in stderr
    # A hand-written entry whose salt is not hex is refused at start, not a 500 on every request.
    entry = {"id": "0123456789abcdef", "client": "c", "salt": "zz", "sha256": "ab" * 32}
    keys.write_text(json.dumps({"version": 1, "keys": [entry]}))
    code, stderr = _serve_until_exit(
        "--model-uri",
        str(models["iris"]),
        "--model-sha256",
        sha256_file(models["iris"]),
        "--auth-keys-file",
        str(keys),
    )
    assert code == 1
    assert stderr.strip().splitlines()[-1] == (
        "modeldeploy-runtime: error: --auth-keys-file: keys[0].salt must be an even number of lower-case "
        "hexadecimal characters (got 'zz')"
    )


def test_port_in_use_is_a_one_line_error(models: dict[str, Path], iris_runtime: RuntimeProcess) -> None:
    result = run_runtime(
        "serve",
        "--model-uri",
        str(models["iris"]),
        "--model-sha256",
        sha256_file(models["iris"]),
        "--host",
        "127.0.0.1",
        "--port",
        str(iris_runtime.port),
    )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{iris_runtime.port}" in result.stderr
    wait_until("the original runtime to be unaffected", iris_runtime.is_ready, timeout=5)
