"""``modeldeploy-runtime lambda deploy`` against an EMULATION of AWS Lambda: moto's standalone
server on loopback, with fake credentials. No real AWS account is touched, and nothing is
invoked (moto would need Docker for that); create, update and publish are what is tested.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from modeldeploy_runtime.aws_lambda.bundle import HANDLER
from modeldeploy_runtime.aws_lambda.deploy import TAG_MODEL_NAME, TAG_MODEL_VERSION
from modeldeploy_runtime.cli import main
from modeldeploy_runtime.packaging.build import package
from tests.aws_lambda.conftest import MODEL_NAME, MODEL_VERSION, Bundle, build_zip
from tests.support import moto_server

_ASSUME_ROLE = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """The standard AWS chain pointed at moto: fake keys, no profiles, loopback endpoint."""
    for name in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL_LAMBDA",
        "AWS_ENDPOINT_URL_IAM",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
    ):
        monkeypatch.delenv(name, raising=False)
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",  # never ask an instance metadata service
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def _role(name: str) -> str:
    role = (
        boto3.session.Session()
        .client("iam")
        .create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(_ASSUME_ROLE))
    )
    return str(role["Role"]["Arn"])


def _layer() -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("python/README.txt", "modeldeploy-runtime and its dependencies would be here")
    layer = (
        boto3.session.Session()
        .client("lambda")
        .publish_layer_version(
            LayerName="modeldeploy-runtime",
            Content={"ZipFile": buffer.getvalue()},
            CompatibleRuntimes=["python3.11"],
        )
    )
    return str(layer["LayerVersionArn"])


def _deploy(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, dict[str, Any] | str]:
    code = main(["lambda", "deploy", *arguments])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if code == 0 else captured.err


def test_create_then_update_then_versions_carry_the_model_version(
    aws: dict[str, str], bundle: Bundle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    role, layer = _role("iris-lambda"), _layer()
    common = ["--function-name", "iris-fn", "--role-arn", role, "--layer-arn", layer]

    code, created = _deploy(capsys, *common, "--zip", str(bundle.zip_path))
    assert code == 0, created
    assert isinstance(created, dict)
    assert (created["action"], created["version"], created["modelVersion"]) == ("created", "1", MODEL_VERSION)

    client = boto3.session.Session().client("lambda")
    function = client.get_function(FunctionName="iris-fn")
    configuration = function["Configuration"]
    assert (configuration["Handler"], configuration["Runtime"], configuration["Role"]) == (
        HANDLER,
        "python3.11",
        role,
    )
    assert configuration["State"] == "Active"
    assert [entry["Arn"] for entry in configuration["Layers"]] == [layer]
    assert function["Tags"][TAG_MODEL_VERSION] == MODEL_VERSION
    assert function["Tags"][TAG_MODEL_NAME] == MODEL_NAME

    # A new model version: a new package, a new zip, the same function.
    features, labels = load_iris(return_X_y=True)
    retrained = package(
        LogisticRegression(max_iter=500, C=0.5).fit(features, labels),
        tmp_path,
        name=MODEL_NAME,
        version="1.1.0",
    )
    new_zip = build_zip(retrained.directory, bundle.keys_file, tmp_path / "function-1.1.0.zip")
    capsys.readouterr()
    code, updated = _deploy(capsys, *common, "--zip", str(new_zip), "--memory-mb", "1024")
    assert code == 0, updated
    assert isinstance(updated, dict)
    assert (updated["action"], updated["version"], updated["modelVersion"]) == ("updated", "2", "1.1.0")
    assert updated["codeSha256"] != created["codeSha256"]

    function = client.get_function(FunctionName="iris-fn")
    assert function["Configuration"]["LastUpdateStatus"] == "Successful"
    assert function["Configuration"]["MemorySize"] == 1024
    assert function["Tags"][TAG_MODEL_VERSION] == "1.1.0"
    versions = {
        entry["Version"]: entry["Description"]
        for entry in client.list_versions_by_function(FunctionName="iris-fn")["Versions"]
    }
    assert versions == {
        "$LATEST": "model iris version 1.1.0",
        "1": "model iris version 1.0.0",
        "2": "model iris version 1.1.0",
    }


def test_model_version_flag_overrides_the_zips(
    aws: dict[str, str], bundle: Bundle, capsys: pytest.CaptureFixture[str]
) -> None:
    role = _role("iris-override")
    code, result = _deploy(
        capsys,
        *["--function-name", "iris-override", "--role-arn", role, "--zip", str(bundle.zip_path)],
        *["--model-version", "2026-11-26"],
    )
    assert code == 0, result
    assert isinstance(result, dict)
    published = (
        boto3.session.Session()
        .client("lambda")
        .get_function(FunctionName="iris-override", Qualifier=result["version"])
    )
    assert published["Configuration"]["Description"] == "model iris version 2026-11-26"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"--role-arn": "not-an-arn"}, "--role-arn 'not-an-arn' is not valid"),
        ({"--function-name": "bad name"}, "--function-name 'bad name' is not valid"),
        (
            {"--layer-arn": "arn:aws:lambda:us-east-1:1:layer"},
            "--layer-arn 'arn:aws:lambda:us-east-1:1:layer' is not valid",
        ),
        ({"--zip": "{not_a_bundle}"}, "has no modeldeploy-lambda.json"),
        ({"--zip": "/nonexistent.zip"}, "cannot read --zip /nonexistent.zip"),
        ({"--model-version": "no spaces"}, "--model-version 'no spaces' is not valid"),
        ({"--role-arn": "arn:aws:iam::123456789012:role/absent"}, "CreateFunction on iris-bad failed:"),
    ],
)
@pytest.mark.usefixtures("aws")
def test_deploy_user_errors_are_one_line(
    change: dict[str, str],
    expected: str,
    bundle: Bundle,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    not_a_bundle = tmp_path / "other.zip"
    with zipfile.ZipFile(not_a_bundle, "w") as archive:
        archive.writestr("lambda_function.py", "def handler(event, context): return {}\n")
    given = {
        "--function-name": "iris-bad",
        "--role-arn": "arn:aws:iam::123456789012:role/iris-lambda",
        "--zip": str(bundle.zip_path),
    }
    given.update({flag: value.format(not_a_bundle=not_a_bundle) for flag, value in change.items()})
    code, stderr = _deploy(capsys, *[part for pair in given.items() for part in pair])
    assert code == 1
    assert isinstance(stderr, str)
    assert stderr.count("\n") == 1, stderr
    assert stderr.startswith("modeldeploy-runtime: error: ")
    assert expected in stderr


@pytest.mark.parametrize(
    ("unset", "expected"),
    [
        ("AWS_DEFAULT_REGION", "no AWS region configured"),
        ("AWS_SECRET_ACCESS_KEY", "no AWS credentials found"),
    ],
)
@pytest.mark.usefixtures("aws")
def test_missing_region_or_credentials_is_one_line(
    unset: str,
    expected: str,
    bundle: Bundle,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv(unset)
    monkeypatch.delenv("AWS_REGION")
    if unset == "AWS_SECRET_ACCESS_KEY":
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    role = "arn:aws:iam::123456789012:role/iris-lambda"
    code, stderr = _deploy(
        capsys, "--function-name", "iris-x", "--role-arn", role, "--zip", str(bundle.zip_path)
    )
    assert code == 1
    assert isinstance(stderr, str)
    assert stderr.count("\n") == 1, stderr
    assert expected in stderr
