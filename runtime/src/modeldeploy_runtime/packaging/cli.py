"""``modeldeploy-runtime package`` and ``modeldeploy-runtime registry register|list|show|resolve|promote|verify``.

User errors end with one line on stderr (``modeldeploy-runtime: error: ...``) and exit 1; bad
flags exit 2 (argparse). Heavy libraries (scikit-learn, boto3) are imported only when a command
runs, so building the parser stays cheap.

Runnable on its own as ``python -m modeldeploy_runtime.packaging.cli ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modeldeploy_runtime.errors import PROG, report_error
from modeldeploy_runtime.package_layout import PackagingError, check_format, check_identifier, read_package

if TYPE_CHECKING:
    from modeldeploy_runtime.packaging.registry import RegisteredVersion
    from modeldeploy_runtime.packaging.registry_store import RegistryStore

REGISTRY_ENV = "MODELDEPLOY_REGISTRY"


class CommandError(Exception):
    """A user error found by the command layer; the message is one line."""


def _split_types(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _add_package_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "package",
        help="serialise a fitted estimator with its metadata into OUT/<name>/<version>/",
        description="Reads a pickle/joblib file (runs code: only load your own files) or a .skops file, "
        "and writes OUT/<name>/<version>/model.<format> plus model.<format>.metadata.json atomically. "
        "An existing version is never overwritten. Prints the package directory.",
    )
    parser.add_argument("model_file", type=Path, help="the fitted estimator: .pkl/.pickle/.joblib or .skops")
    parser.add_argument("--name", required=True, help="model name (letters, digits, '.', '_', '-')")
    parser.add_argument("--version", required=True, help="model version, e.g. 1.0.0")
    parser.add_argument(
        "--format", default="joblib", help="artifact format: joblib or skops (default: joblib)"
    )
    parser.add_argument("--out", required=True, type=Path, help="directory to write the package under")
    parser.add_argument(
        "--meta",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="user metadata recorded with the model (repeatable)",
    )
    parser.add_argument(
        "--trusted-types",
        default="",
        metavar="TYPES",
        help="skops only: comma-separated type names to trust beyond skops' defaults, when reading a .skops "
        "input and when checking the artifact (the runtime needs the same list)",
    )
    parser.add_argument(
        "--onnx",
        action="store_true",
        help="also write model.onnx (skl2onnx, zipmap off), verified against the estimator on --sample rows",
    )
    parser.add_argument(
        "--sample",
        type=Path,
        metavar="FILE",
        help="with --onnx (required): rows like those the model will serve, a CSV of numbers or a .npy file",
    )
    parser.add_argument(
        "--onnx-tolerance",
        type=float,
        default=None,
        metavar="ABS",
        help="with --onnx: largest allowed probability (or relative prediction) difference; labels must "
        "match exactly (default: 1e-4)",
    )
    parser.set_defaults(run=run_package)


def _add_registry_parser(subparsers: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--registry",
        default=None,
        metavar="ROOT",
        help=f"registry location: a directory or s3://bucket/prefix [env {REGISTRY_ENV}]",
    )
    parser = subparsers.add_parser(
        "registry",
        help="register, list, show, resolve and promote model versions",
        description="A registry keeps one immutable folder per NAME/VERSION and an index per NAME. "
        "References are NAME@VERSION, NAME@ALIAS or registry+ROOT#NAME@VERSION. s3:// uses the "
        "standard AWS credentials and AWS_ENDPOINT_URL[_S3].",
    )
    actions = parser.add_subparsers(dest="registry_command", required=True)
    register = actions.add_parser("register", parents=[common], help="add a packaged version")
    register.add_argument("package_dir", type=Path, help="a folder written by `package`")
    listing = actions.add_parser("list", parents=[common], help="list models, or the versions of one")
    listing.add_argument("name", nargs="?", default=None)
    listing.add_argument("--format", dest="output", default="text", help="text or json (default: text)")
    published = argparse.ArgumentParser(add_help=False)
    published.add_argument(
        "--uri-prefix",
        default=None,
        metavar="URI",
        help="print URIs under this root instead of the registry's own, e.g. pvc://<claim>/<path> for a "
        "registry on a PersistentVolumeClaim mounted here at --registry",
    )
    show = actions.add_parser(
        "show", parents=[common, published], help="print a version's index entry as JSON"
    )
    show.add_argument("reference", help="NAME@VERSION or NAME@ALIAS")
    resolve = actions.add_parser(
        "resolve", parents=[common, published], help="print the artifact URI and sha256 for a ModelDeployment"
    )
    resolve.add_argument("reference", help="NAME@VERSION or NAME@ALIAS")
    resolve.add_argument(
        "--format",
        dest="output",
        default="text",
        help="text ('URI SHA256'), yaml (the spec.model block) or json (default: text)",
    )
    resolve.add_argument(
        "--model-format",
        default=None,
        metavar="FORMAT",
        help="which artifact to print: the packaged format (default) or onnx when packaged with --onnx",
    )
    promote = actions.add_parser("promote", parents=[common], help="point an alias at a version")
    promote.add_argument("reference", help="NAME@VERSION (or NAME@ALIAS to copy another alias)")
    promote.add_argument("alias", help="alias to move, e.g. production")
    verify = actions.add_parser(
        "verify", parents=[common], help="re-read a stored artifact and check its sha256 against the index"
    )
    verify.add_argument("reference", help="NAME@VERSION or NAME@ALIAS")
    parser.set_defaults(run=run_registry)


def add_package_and_registry_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``package`` and ``registry`` to a parser's subcommands; each sets ``run`` to its function."""
    _add_package_parser(subparsers)
    _add_registry_parser(subparsers)


def _parse_meta(pairs: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key.strip():
            raise CommandError(f"--meta {pair!r} is not valid: expected KEY=VALUE")
        found[key.strip()] = value
    return found


def run_package(arguments: argparse.Namespace) -> int:
    try:
        check_identifier("name", arguments.name)
        check_identifier("version", arguments.version)
        model_format = check_format(arguments.format)
        metadata = _parse_meta(arguments.meta)
    except (PackagingError, CommandError) as error:
        return report_error(str(error))
    from modeldeploy_runtime.packaging.build import (  # noqa: PLC0415 - scikit-learn is slow to import
        check_estimator,
        load_estimator,
        package,
    )

    trusted = _split_types(arguments.trusted_types)
    try:
        _check_onnx_flags(arguments)
        model = load_estimator(arguments.model_file, trusted)
        check_estimator(model, str(arguments.model_file))
        sample = _onnx_sample(arguments, model)
        written = package(
            model,
            arguments.out,
            name=arguments.name,
            version=arguments.version,
            format=model_format,
            metadata=metadata,
            trusted_types=trusted,
            onnx_sample=sample,
            **({"onnx_tolerance": arguments.onnx_tolerance} if arguments.onnx_tolerance is not None else {}),
        )
    except (PackagingError, CommandError) as error:
        return report_error(str(error))
    print(written.directory)
    return 0


def _check_onnx_flags(arguments: argparse.Namespace) -> None:
    if arguments.onnx and arguments.sample is None:
        raise CommandError(
            "--onnx needs --sample FILE (a CSV or .npy of rows like those the model will serve): "
            "equivalence is only proven on real inputs"
        )
    if not arguments.onnx and (arguments.sample is not None or arguments.onnx_tolerance is not None):
        raise CommandError("--sample and --onnx-tolerance only apply with --onnx")


def _onnx_sample(arguments: argparse.Namespace, model: Any) -> Any:
    if not arguments.onnx:
        return None
    from modeldeploy_runtime.packaging.onnx_export import read_sample  # noqa: PLC0415 - numpy, only with --onnx

    n_features = getattr(model, "n_features_in_", None)
    return read_sample(arguments.sample, int(n_features) if n_features is not None else None)


def _store(arguments: argparse.Namespace, reference_root: str | None = None) -> RegistryStore:
    from modeldeploy_runtime.packaging.registry_store import open_store  # noqa: PLC0415 - boto3 is slow to import

    if reference_root and arguments.registry and reference_root != arguments.registry:
        raise CommandError(
            f"the reference names registry {reference_root} but --registry is {arguments.registry}"
        )
    root = reference_root or arguments.registry or os.environ.get(REGISTRY_ENV)
    if not root:
        raise CommandError(f"no registry given: pass --registry ROOT or set {REGISTRY_ENV}")
    return open_store(root)


def spec_model_yaml(registered: RegisteredVersion, model_format: str | None = None) -> str:
    """``spec.model`` as YAML; values are JSON strings, which YAML reads as double-quoted scalars."""
    lines = ["spec:", "  model:"]
    lines += [f"    {key}: {json.dumps(value)}" for key, value in registered.spec_model(model_format).items()]
    return "\n".join(lines)


def _describe(registered: RegisteredVersion) -> dict[str, Any]:
    return {
        "name": registered.name,
        "version": registered.version,
        "uri": registered.uri,
        "aliases": list(registered.aliases),
        **registered.entry,
    }


def _published(registered: RegisteredVersion, arguments: argparse.Namespace) -> RegisteredVersion:
    prefix: str | None = arguments.uri_prefix
    return registered.published_under(prefix) if prefix else registered


def _check_output(value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise CommandError(f"--format {value!r} is not valid: expected one of {', '.join(allowed)}")
    return value


def _run_registry_command(arguments: argparse.Namespace) -> None:
    from modeldeploy_runtime.packaging import registry  # noqa: PLC0415 - boto3 is slow to import

    command = arguments.registry_command
    if command == "register":
        package = read_package(arguments.package_dir)
        registered = registry.register(_store(arguments), package)
        print(f"{registered.name}@{registered.version} {registered.uri} {registered.sha256}")
        return
    if command == "list":
        output = _check_output(arguments.output, ("text", "json"))
        store = _store(arguments)
        if arguments.name is None:
            names = registry.list_models(store)
            print(json.dumps(names) if output == "json" else "\n".join(names))
            return
        versions = registry.list_versions(store, arguments.name)
        if output == "json":
            print(json.dumps([_describe(item) for item in versions], indent=2))
            return
        print(f"{'VERSION':<20} {'REGISTERED_AT':<21} {'SHA256':<13} ALIASES")
        for item in versions:
            registered_at = str(item.entry.get("registered_at", ""))
            print(f"{item.version:<20} {registered_at:<21} {item.sha256[:12]:<13} {','.join(item.aliases)}")
        return
    reference = registry.parse_reference(arguments.reference)
    store = _store(arguments, reference.root)
    if command == "show":
        print(json.dumps(_describe(_published(registry.resolve(store, reference), arguments)), indent=2))
    elif command == "resolve":
        output = _check_output(arguments.output, ("text", "yaml", "json"))
        resolved = _published(registry.resolve(store, reference), arguments)
        block = resolved.spec_model(arguments.model_format)
        if output == "yaml":
            print(spec_model_yaml(resolved, arguments.model_format))
        elif output == "json":
            print(json.dumps({"spec": {"model": block}}))
        else:
            print(f"{block['uri']} {block['sha256']}")
    elif command == "promote":
        previous, promoted = registry.promote(store, reference, arguments.alias)
        moved = f" (was {previous})" if previous and previous != promoted.version else ""
        print(f"{promoted.name}@{arguments.alias} -> {promoted.version}{moved}")
    elif command == "verify":
        verified = registry.verify(store, reference)
        print(f"{verified.name}@{verified.version} {verified.uri} sha256 {verified.sha256} OK")


def run_registry(arguments: argparse.Namespace) -> int:
    from modeldeploy_runtime.packaging.registry import RegistryError  # noqa: PLC0415 - boto3 is slow to import
    from modeldeploy_runtime.packaging.registry_store import StoreError  # noqa: PLC0415

    try:
        _run_registry_command(arguments)
    except (RegistryError, StoreError, PackagingError, CommandError) as error:
        return report_error(str(error))
    return 0


def run_command(arguments: argparse.Namespace) -> int:
    """Run a parsed ``package`` or ``registry`` command; returns the exit code."""
    result: int = arguments.run(arguments)
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="package models and manage a model registry")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_package_and_registry_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    try:
        return run_command(arguments)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
