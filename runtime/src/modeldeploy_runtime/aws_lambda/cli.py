"""``modeldeploy-runtime lambda package|deploy``: the same packaged model, served on AWS Lambda.

``package`` turns a folder written by ``modeldeploy-runtime package`` into a deployment zip
(see :mod:`modeldeploy_runtime.aws_lambda.bundle`); ``deploy`` creates or updates the function from
that zip and publishes a version carrying the model version. User errors end with one line on
stderr and exit 1; bad flags exit 2 (argparse). boto3 is imported only when ``deploy`` runs.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from modeldeploy_runtime.aws_lambda.bundle import (
    HANDLER,
    MAX_DIRECT_UPLOAD_BYTES,
    BundleError,
    build_bundle,
    read_zip_config,
)
from modeldeploy_runtime.errors import PROG, report_error
from modeldeploy_runtime.files import write_atomically
from modeldeploy_runtime.package_layout import PackagingError, check_identifier

DEFAULT_RUNTIME = "python3.11"
_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
_LAYER_ARN = re.compile(r"^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:layer:[A-Za-z0-9_-]+:\d+$")
_RUNTIME = re.compile(r"^python3\.\d{1,2}$")


class LambdaCommandError(Exception):
    """A user error found by the command layer; the message is one line."""


def _add_package_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "package",
        help="build a Lambda deployment zip from a packaged model",
        description="Writes a zip holding the model, its metadata, a small config and optionally the "
        "API-key hashes file. The code comes from a layer or container image that has "
        "modeldeploy-runtime installed (see docs/aws-lambda.md). Prints the zip's path.",
    )
    parser.add_argument("--model", required=True, type=Path, help="a folder written by `package`")
    parser.add_argument("--out", required=True, type=Path, help="the zip to write, e.g. function.zip")
    parser.add_argument(
        "--auth-keys-file",
        type=Path,
        default=None,
        help="API-key hashes file (hashes only) to bundle; or set MODELDEPLOY_API_KEYS_JSON on the function",
    )
    parser.add_argument(
        "--onnx",
        action="store_true",
        help="bundle model.onnx (from `package --onnx`) instead of the joblib/skops artifact: served with "
        "ONNX Runtime, so the layer needs neither scikit-learn nor SciPy",
    )
    parser.set_defaults(run=run_lambda_package)


def _add_deploy_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "deploy",
        help="create or update a Lambda function from a zip and publish a version",
        description="Region and credentials come from the standard AWS chain (AWS_DEFAULT_REGION, AWS_PROFILE, "
        "...). Waits until the function is Active and its update Successful, tags it with the model "
        "name and version, and publishes a version described by them. Prints the result as JSON.",
    )
    parser.add_argument("--function-name", required=True, help="Lambda function name")
    parser.add_argument(
        "--role-arn", required=True, help="execution role ARN (used when creating or updating)"
    )
    parser.add_argument("--zip", required=True, type=Path, help="zip written by `lambda package`")
    parser.add_argument(
        "--layer-arn",
        action="append",
        default=[],
        help="layer version ARN with modeldeploy-runtime and its dependencies (repeatable)",
    )
    parser.add_argument(
        "--runtime", default=DEFAULT_RUNTIME, help=f"Lambda runtime (default: {DEFAULT_RUNTIME})"
    )
    parser.add_argument("--handler", default=HANDLER, help=f"handler (default: {HANDLER})")
    parser.add_argument("--model-version", default=None, help="model version to record (default: the zip's)")
    parser.add_argument("--memory-mb", type=int, default=None, help="memory size in MB (128-10240)")
    parser.add_argument("--timeout-seconds", type=int, default=None, help="timeout in seconds (1-900)")
    parser.set_defaults(run=run_lambda_deploy)


def add_lambda_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``lambda package`` and ``lambda deploy``; each sets ``run`` to its function."""
    parser = subparsers.add_parser("lambda", help="serve a packaged model on AWS Lambda")
    commands = parser.add_subparsers(dest="lambda_command", required=True)
    _add_package_parser(commands)
    _add_deploy_parser(commands)


def _write_zip(path: Path, data: bytes) -> None:
    try:
        write_atomically(path, [data])
    except OSError as error:
        raise LambdaCommandError(f"cannot write {path}: {error.strerror or error}") from None


def run_lambda_package(arguments: argparse.Namespace) -> int:
    try:
        data, config = build_bundle(arguments.model, arguments.auth_keys_file, onnx=arguments.onnx)
        _write_zip(arguments.out, data)
    except (BundleError, LambdaCommandError) as error:
        return report_error(str(error))
    if len(data) > MAX_DIRECT_UPLOAD_BYTES:
        print(
            f"{PROG}: warning: {arguments.out} is {len(data)} bytes, above the {MAX_DIRECT_UPLOAD_BYTES}-byte "
            "limit for a direct upload; `lambda deploy` will refuse it",
            file=sys.stderr,
        )
    print(arguments.out)
    print(f"model {config.name} version {config.version}, {len(data)} bytes", file=sys.stderr)
    return 0


def _check_deploy_arguments(arguments: argparse.Namespace) -> None:
    if not _FUNCTION_NAME.fullmatch(arguments.function_name):
        raise LambdaCommandError(
            f"--function-name {arguments.function_name!r} is not valid: expected 1-64 letters, digits, '-' or '_'"
        )
    if not _ROLE_ARN.fullmatch(arguments.role_arn):
        raise LambdaCommandError(
            f"--role-arn {arguments.role_arn!r} is not valid: expected arn:aws:iam::<account>:role/<name>"
        )
    for layer in arguments.layer_arn:
        if not _LAYER_ARN.fullmatch(layer):
            raise LambdaCommandError(
                f"--layer-arn {layer!r} is not valid: expected arn:aws:lambda:<region>:<account>:layer:<name>:<version>"
            )
    if not _RUNTIME.fullmatch(arguments.runtime):
        raise LambdaCommandError(f"--runtime {arguments.runtime!r} is not valid: expected e.g. python3.11")
    if arguments.memory_mb is not None and not 128 <= arguments.memory_mb <= 10240:
        raise LambdaCommandError(f"--memory-mb {arguments.memory_mb} is not valid: expected 128-10240")
    if arguments.timeout_seconds is not None and not 1 <= arguments.timeout_seconds <= 900:
        raise LambdaCommandError(
            f"--timeout-seconds {arguments.timeout_seconds} is not valid: expected 1-900"
        )


def _read_zip(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise LambdaCommandError(f"cannot read --zip {path}: {error.strerror or error}") from None
    if len(data) > MAX_DIRECT_UPLOAD_BYTES:
        raise LambdaCommandError(
            f"--zip {path} is {len(data)} bytes, above Lambda's {MAX_DIRECT_UPLOAD_BYTES}-byte direct upload "
            "limit; serve the model from S3 with MODELDEPLOY_MODEL_URI instead"
        )
    return data


def run_lambda_deploy(arguments: argparse.Namespace) -> int:
    try:
        _check_deploy_arguments(arguments)
        data = _read_zip(arguments.zip)
        config = read_zip_config(data, str(arguments.zip))
        model_version = check_identifier("--model-version", arguments.model_version or config.version)
    except (LambdaCommandError, BundleError, PackagingError) as error:
        return report_error(str(error))
    from modeldeploy_runtime.aws_lambda.deploy import (  # noqa: PLC0415 - boto3 is slow to import
        DeployError,
        DeployRequest,
        deploy_function,
    )

    request = DeployRequest(
        function_name=arguments.function_name,
        role_arn=arguments.role_arn,
        zip_bytes=data,
        handler=arguments.handler,
        runtime=arguments.runtime,
        model_name=config.name,
        model_version=model_version,
        layer_arns=tuple(arguments.layer_arn),
        memory_mb=arguments.memory_mb,
        timeout_seconds=arguments.timeout_seconds,
    )
    try:
        result = deploy_function(request)
    except DeployError as error:
        return report_error(str(error))
    document = {
        "function": arguments.function_name,
        "action": "created" if result.created else "updated",
        "functionArn": result.function_arn,
        "version": result.version,
        "versionArn": result.version_arn,
        "codeSha256": result.code_sha256,
        "modelName": config.name,
        "modelVersion": model_version,
    }
    print(json.dumps(document, indent=2))
    return 0


def run_lambda_command(arguments: argparse.Namespace) -> int:
    """Run a parsed ``lambda`` command; returns the exit code."""
    result: int = arguments.run(arguments)
    return result
