"""``modeldeploy-runtime serve|fetch``: the command line the operator renders into pods.

User errors (bad flags, unreadable or mismatching artifacts, unreachable stores) end with one
line on stderr and a non-zero exit, never a traceback: 2 for invalid settings, 1 for everything
else that stops the command.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from modeldeploy_runtime.aws_lambda.cli import add_lambda_commands, run_lambda_command
from modeldeploy_runtime.errors import EXIT_FAILED, EXIT_USAGE, PROG, StartupError, report_error
from modeldeploy_runtime.logs import configure_logging
from modeldeploy_runtime.packaging.cli import add_package_and_registry_commands, run_command
from modeldeploy_runtime.serving.metrics_dir import prepare_metrics_dir
from modeldeploy_runtime.serving.settings import (
    ENV_PREFIX,
    RuntimeSettings,
    describe_validation_error,
    flag_name,
)

# Each worker is one process; BLAS/OpenMP thread pools inside it only add contention.
_SINGLE_THREADED = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _serve_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve one model over HTTP (V1 and V2 protocols)",
        description="Every flag also reads from the environment variable "
        f"{ENV_PREFIX}<FLAG_IN_UPPER_SNAKE_CASE>; flags win.",
    )
    for name, field in RuntimeSettings.model_fields.items():
        env = f"{ENV_PREFIX}{name.upper()}"
        help_text = f"{field.description} [env {env}]"
        if not field.is_required():
            default = field.get_default(call_default_factory=True)
            help_text += f" (default: {default})"
        if field.annotation is bool:
            parser.add_argument(
                flag_name(name),
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        else:
            parser.add_argument(flag_name(name), dest=name, default=None, help=help_text, metavar="VALUE")


def _fetch_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "fetch",
        help="download a model artifact (and its .metadata.json) into a directory",
        description="Writes DEST/<last segment of the URI> atomically, verifying --sha256 while "
        "streaming. s3:// uses the standard AWS credentials and AWS_ENDPOINT_URL[_S3].",
    )
    parser.add_argument("--uri", required=True, help="s3://bucket/key, https://..., file:// or a path")
    parser.add_argument("--dest", required=True, type=Path, help="directory to write into")
    parser.add_argument("--sha256", default=None, help="expected sha256 (64 hex) of the artifact")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="modeldeploy's model runtime")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _serve_parser(subparsers)
    _fetch_parser(subparsers)
    add_package_and_registry_commands(subparsers)
    add_lambda_commands(subparsers)
    return parser


def _serve(arguments: argparse.Namespace) -> int:
    given = {key: value for key, value in vars(arguments).items() if key != "command" and value is not None}
    try:
        settings = RuntimeSettings(**given)
    except ValidationError as error:
        for line in describe_validation_error(error):
            report_error(line, EXIT_USAGE)
        return EXIT_USAGE
    configure_logging(settings.log_level)
    try:
        metrics_dir = prepare_metrics_dir(settings.metrics_dir)
    except StartupError as error:
        return report_error(str(error), EXIT_FAILED)
    try:
        # Imported only now: prometheus-client picks its multi-process storage at import time,
        # and the serving stack (numpy, scikit-learn) is not needed for `fetch` or `--help`.
        from modeldeploy_runtime.serving.server import serve  # noqa: PLC0415

        return serve(settings)
    except StartupError as error:
        return report_error(str(error), EXIT_FAILED)
    finally:
        if settings.metrics_dir is None:  # ours alone: a fresh directory made for this run
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _fetch(arguments: argparse.Namespace) -> int:
    from modeldeploy_runtime.fetch import FetchError, fetch_artifact  # noqa: PLC0415 - boto3 is slow to import

    configure_logging("info")
    sha256 = arguments.sha256.strip().lower() if arguments.sha256 else None
    if sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", sha256):
        return report_error(
            f"--sha256: must be 64 hexadecimal characters (got {arguments.sha256!r})", EXIT_USAGE
        )
    try:
        path = fetch_artifact(arguments.uri, arguments.dest, sha256)
    except FetchError as error:
        return report_error(str(error), EXIT_FAILED)
    print(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    for variable in _SINGLE_THREADED:
        os.environ.setdefault(variable, "1")
    arguments = build_parser().parse_args(argv)
    try:
        if arguments.command == "serve":
            return _serve(arguments)
        if arguments.command in ("package", "registry"):
            return run_command(arguments)
        if arguments.command == "lambda":
            return run_lambda_command(arguments)
        return _fetch(arguments)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
