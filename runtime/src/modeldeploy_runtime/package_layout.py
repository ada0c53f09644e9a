"""A model package on disk, and the checks shared by packaging and the registry.

A package is a folder ``<name>/<version>/`` holding ``model.<format>`` and, beside it,
``model.<format>.metadata.json`` (the file :mod:`modeldeploy_runtime.serving.model` reads when loading).
This module imports no machine-learning library, so registry commands start quickly.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

from modeldeploy_runtime.files import sha256_file

PackageFormat = Literal["joblib", "skops"]  # what `package --format` writes
FORMATS: tuple[str, ...] = get_args(PackageFormat)
ModelFormat = Literal["joblib", "skops", "onnx"]  # what `serve` loads: a package's artifact or its ONNX form
METADATA_SUFFIX = ".metadata.json"
ARTIFACT_STEM = "model"
# ``package --onnx`` adds this file beside the artifact; the package metadata's ``onnx`` block
# records its sha256, and the file carries what serving needs under this metadata_props key.
ONNX_FORMAT = "onnx"
ONNX_ARTIFACT = f"{ARTIFACT_STEM}.{ONNX_FORMAT}"
ONNX_METADATA_KEY = "modeldeploy"
# The ModelDeployment CRD's rule for spec.model.version (crds/, maxLength 63), used for model
# names, versions and aliases everywhere (packaging, registry, `serve`): every registered version
# can be deployed, and each is a safe path segment and S3 key part.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")
NAME_RULE = "expected 1-63 letters, digits, '.', '_' or '-', starting and ending with a letter or digit"


class PackagingError(Exception):
    """The model cannot be packaged; the message is one line naming the bad value."""


@dataclass(frozen=True)
class Package:
    """A packaged model on disk: its folder, artifact file and the metadata written beside it."""

    directory: Path
    artifact: Path
    metadata: dict[str, Any]

    @property
    def metadata_path(self) -> Path:
        return self.artifact.with_name(self.artifact.name + METADATA_SUFFIX)

    @property
    def onnx_artifact(self) -> Path | None:
        """``model.onnx`` when the package was built with ``--onnx``."""
        return self.directory / ONNX_ARTIFACT if isinstance(self.metadata.get(ONNX_FORMAT), dict) else None


def check_identifier(kind: str, value: str) -> str:
    """``value`` if it is a safe name/version/alias (also a safe path segment); else PackagingError."""
    if not NAME_PATTERN.fullmatch(value):
        raise PackagingError(f"{kind} {value!r} is not valid: {NAME_RULE}")
    return value


def check_format(value: str) -> PackageFormat:
    if value == "joblib":
        return "joblib"
    if value == "skops":
        return "skops"
    raise PackagingError(f"unknown format {value!r}: expected one of {', '.join(FORMATS)}")


def format_of_file(name: str) -> ModelFormat:
    """The format a file name implies when none is given: ``.skops``, ``.onnx``, anything else joblib."""
    suffix = name.lower().rsplit(".", 1)[-1]
    return "skops" if suffix == "skops" else "onnx" if suffix == "onnx" else "joblib"


def utc_now() -> str:
    """The current time as ISO 8601 in UTC with a ``Z`` suffix, to the second."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_package(directory: Path) -> Package:
    """The package in ``directory`` (as ``package()`` wrote it), its artifact checked against its digest."""
    if not directory.is_dir():
        raise PackagingError(f"{directory} is not a directory (expected a folder written by `package`)")
    found = sorted(directory.glob(f"*{METADATA_SUFFIX}"))
    if len(found) != 1:
        raise PackagingError(
            f"{directory} must hold exactly one *{METADATA_SUFFIX} file (found {len(found)})"
        )
    metadata_path = found[0]
    try:
        document = json.loads(metadata_path.read_bytes())
    except (OSError, ValueError) as error:
        raise PackagingError(f"cannot read {metadata_path}: {error}") from None
    if not isinstance(document, dict):
        raise PackagingError(f"{metadata_path} must hold a JSON object")
    for key in ("name", "version", "format", "sha256"):
        if not isinstance(document.get(key), str):
            raise PackagingError(f"{metadata_path}: missing or non-string {key!r}")
    check_identifier("name", document["name"])
    check_identifier("version", document["version"])
    check_format(document["format"])
    artifact = metadata_path.with_name(metadata_path.name.removesuffix(METADATA_SUFFIX))
    _check_unchanged(artifact, document["sha256"])
    package = Package(directory=directory, artifact=artifact, metadata=document)
    if package.onnx_artifact is not None:
        _check_unchanged(package.onnx_artifact, str(document[ONNX_FORMAT].get("sha256")))
    return package


def _check_unchanged(artifact: Path, expected: str) -> None:
    try:
        actual = sha256_file(artifact)
    except OSError as error:
        raise PackagingError(f"cannot read artifact {artifact}: {error.strerror or error}") from None
    if actual != expected:
        raise PackagingError(
            f"{artifact} changed after packaging: sha256 is {actual}, metadata says {expected}"
        )
