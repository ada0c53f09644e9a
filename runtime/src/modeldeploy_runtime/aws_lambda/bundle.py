"""The Lambda deployment zip: a packaged model, its metadata and a small config, nothing else.

The zip holds data only; the code (``modeldeploy_runtime`` with scikit-learn, numpy and the rest)
comes from a Lambda layer or container image, because those libraries are far larger than
Lambda's 50 MB zipped / 250 MB unzipped limit for a function's own code. Layout::

    modeldeploy-lambda.json            what the handler serves (below)
    model/model.<format>               the artifact, byte for byte as ``package`` wrote it
    model/model.<format>.metadata.json
    apikeys.json                       optional: the API-key hashes file (hashes only)

Zip entries carry a fixed timestamp and mode, so the same inputs give the same bytes and
Lambda's CodeSha256 changes only when the model or keys do. This module imports no
machine-learning library.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modeldeploy_runtime.apikeys import KeysFileError, parse_keys_file
from modeldeploy_runtime.package_layout import ONNX_ARTIFACT, ONNX_FORMAT, PackagingError, read_package

CONFIG_NAME = "modeldeploy-lambda.json"
MODEL_DIR = "model"
KEYS_NAME = "apikeys.json"
CONFIG_VERSION = 1
HANDLER = "modeldeploy_runtime.aws_lambda.handler"
MAX_DIRECT_UPLOAD_BYTES = 50 * 1024 * 1024  # Lambda's limit for a zip sent in the API call
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_FILE_MODE = 0o644 << 16


class BundleError(Exception):
    """The bundle cannot be built or read; the message is one line naming the bad value."""


@dataclass(frozen=True)
class BundleConfig:
    """What ``modeldeploy-lambda.json`` says: paths are relative to the bundle's root."""

    model_path: str
    name: str
    version: str
    sha256: str
    model_format: str
    keys_file: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "configVersion": CONFIG_VERSION,
            "model": self.model_path,
            "name": self.name,
            "version": self.version,
            "sha256": self.sha256,
            "format": self.model_format,
            "keysFile": self.keys_file,
        }


def _string(document: dict[str, Any], key: str, where: str) -> str:
    value = document.get(key)
    if not isinstance(value, str) or not value:
        raise BundleError(f"{where}: {key!r} must be a non-empty string")
    return value


def parse_config(text: bytes, where: str) -> BundleConfig:
    try:
        document = json.loads(text)
    except ValueError as error:
        raise BundleError(f"{where} is not JSON: {error}") from None
    if not isinstance(document, dict) or document.get("configVersion") != CONFIG_VERSION:
        raise BundleError(f'{where} must be an object with "configVersion": {CONFIG_VERSION}')
    keys_file = document.get("keysFile")
    if keys_file is not None and not isinstance(keys_file, str):
        raise BundleError(f"{where}: 'keysFile' must be a string or null")
    return BundleConfig(
        model_path=_string(document, "model", where),
        name=_string(document, "name", where),
        version=_string(document, "version", where),
        sha256=_string(document, "sha256", where),
        model_format=_string(document, "format", where),
        keys_file=keys_file,
    )


def read_config(root: Path) -> BundleConfig:
    path = root / CONFIG_NAME
    try:
        text = path.read_bytes()
    except OSError as error:
        raise BundleError(f"cannot read {path}: {error.strerror or error}") from None
    return parse_config(text, str(path))


def read_zip_config(zip_bytes: bytes, where: str) -> BundleConfig:
    """The config inside a deployment zip, which must be one ``lambda package`` wrote."""
    try:
        with zipfile.ZipFile(io.BytesIO(zip_bytes)) as archive:
            text = archive.read(CONFIG_NAME)
    except zipfile.BadZipFile:
        raise BundleError(f"{where} is not a zip file") from None
    except KeyError:
        raise BundleError(
            f"{where} has no {CONFIG_NAME}; build it with `modeldeploy-runtime lambda package`"
        ) from None
    return parse_config(text, f"{where}:{CONFIG_NAME}")


def _add(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
    info.external_attr = _FILE_MODE
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data)


def _read_keys(path: Path) -> bytes:
    try:
        data = path.read_bytes()
        parse_keys_file(data.decode("utf-8"))
    except OSError as error:
        raise BundleError(f"cannot read keys file {path}: {error.strerror or error}") from None
    except (KeysFileError, UnicodeDecodeError) as error:
        raise BundleError(f"keys file {path} is not a hashes file: {error}") from None
    return data


def build_bundle(
    model_dir: Path, keys_file: Path | None = None, *, onnx: bool = False
) -> tuple[bytes, BundleConfig]:
    """The zip's bytes for the package in ``model_dir`` (as ``package`` wrote it), and its config.

    With ``onnx``, the bundle holds ``model.onnx`` (and the package metadata) but no pickle.
    """
    try:
        package = read_package(model_dir)
    except PackagingError as error:
        raise BundleError(str(error)) from None
    artifact, sha256, model_format = package.artifact, package.metadata["sha256"], package.metadata["format"]
    if onnx:
        if package.onnx_artifact is None:
            raise BundleError(f"{model_dir} holds no {ONNX_ARTIFACT}: package it with `package --onnx`")
        artifact, sha256, model_format = (
            package.onnx_artifact,
            package.metadata[ONNX_FORMAT]["sha256"],
            ONNX_FORMAT,
        )
    artifact_name = f"{MODEL_DIR}/{artifact.name}"
    config = BundleConfig(
        model_path=artifact_name,
        name=package.metadata["name"],
        version=package.metadata["version"],
        sha256=sha256,
        model_format=model_format,
        keys_file=KEYS_NAME if keys_file is not None else None,
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        _add(archive, CONFIG_NAME, (json.dumps(config.to_json(), indent=2) + "\n").encode())
        _add(archive, artifact_name, artifact.read_bytes())
        _add(archive, f"{MODEL_DIR}/{package.metadata_path.name}", package.metadata_path.read_bytes())
        if keys_file is not None:
            _add(archive, KEYS_NAME, _read_keys(keys_file))
    return buffer.getvalue(), config
