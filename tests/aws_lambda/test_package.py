"""``modeldeploy-runtime lambda package``: the zip holds what the handler needs and nothing secret,
and once unpacked as Lambda unpacks it, a fresh interpreter imports the handler and serves from it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from modeldeploy_runtime.aws_lambda.bundle import CONFIG_NAME, HANDLER
from modeldeploy_runtime.cli import main
from tests.aws_lambda.conftest import MODEL_NAME, MODEL_VERSION, Bundle, build_zip
from tests.aws_lambda.lambda_events import FUNCTION_URL, REST_API, make_event
from tests.runtime.conftest import IRIS_ROW, runtime_env

# Runs in a new process, as a cold Lambda container would: import, then two invocations.
_INVOKE = """
import json, sys
module, _, function = sys.argv[1].rpartition(".")
handler = getattr(__import__(module, fromlist=[function]), function)
for event in json.load(sys.stdin):
    print(json.dumps(handler(event, None)))
"""


def test_zip_holds_model_metadata_config_and_key_hashes_only(bundle: Bundle) -> None:
    with zipfile.ZipFile(bundle.zip_path) as archive:
        names = set(archive.namelist())
        config = json.loads(archive.read(CONFIG_NAME))
        contents = b"".join(archive.read(name) for name in names)
    assert names == {
        CONFIG_NAME,
        "model/model.joblib",
        "model/model.joblib.metadata.json",
        "apikeys.json",
    }
    metadata = json.loads((bundle.package_dir / "model.joblib.metadata.json").read_text())
    assert config == {
        "configVersion": 1,
        "model": "model/model.joblib",
        "name": MODEL_NAME,
        "version": MODEL_VERSION,
        "sha256": metadata["sha256"],
        "format": "joblib",
        "keysFile": "apikeys.json",
    }
    secret = bundle.api_key.rsplit("_", 1)[1]
    assert secret.encode() not in contents


def test_same_inputs_give_the_same_zip(bundle: Bundle, tmp_path: Path) -> None:
    again = build_zip(bundle.package_dir, bundle.keys_file, tmp_path / "again.zip")
    assert again.read_bytes() == bundle.zip_path.read_bytes()


def test_unpacked_zip_imports_and_serves_in_a_fresh_interpreter(bundle: Bundle) -> None:
    headers = {"X-API-Key": bundle.api_key}
    body = json.dumps({"instances": [IRIS_ROW]}).encode()
    events = [
        make_event(FUNCTION_URL, "POST", f"/v1/models/{MODEL_NAME}:predict", body, headers),
        make_event(REST_API, "POST", f"/v1/models/{MODEL_NAME}:predict", body, {}),
    ]
    completed = subprocess.run(
        [sys.executable, "-c", _INVOKE, HANDLER],
        input=json.dumps(events),
        cwd=bundle.root,
        env=runtime_env(LAMBDA_TASK_ROOT=str(bundle.root)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    served, refused = (json.loads(line) for line in completed.stdout.splitlines())
    assert (served["statusCode"], json.loads(served["body"])) == (200, {"predictions": [0]})
    assert refused["statusCode"] == 401


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--model", "/nonexistent/iris/1.0.0"], "/nonexistent/iris/1.0.0 is not a directory"),
        (["--auth-keys-file", "{plaintext}"], "is not a hashes file"),
    ],
)
def test_package_user_errors_are_one_line(
    arguments: list[str],
    expected: str,
    bundle: Bundle,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    plaintext = tmp_path / "plaintext.txt"
    plaintext.write_text(bundle.api_key)
    given = {"--model": str(bundle.package_dir)}
    for flag, value in zip(arguments[::2], arguments[1::2], strict=True):
        given[flag] = value.format(plaintext=plaintext)
    out = tmp_path / "function.zip"
    command = ["lambda", "package", "--out", str(out)] + [part for pair in given.items() for part in pair]
    assert main(command) == 1
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1
    assert stderr.startswith("modeldeploy-runtime: error: ")
    assert expected in stderr
    assert not out.exists()
