"""Turning a fitted scikit-learn estimator into a deployable, verifiable package.

``package()`` writes ``DEST/<name>/<version>/model.<format>`` and, beside it,
``model.<format>.metadata.json`` (layout in :mod:`modeldeploy_runtime.package_layout`). Both
files are written into a temporary folder which is then renamed into place, so a package is
either complete or absent, and an existing ``<name>/<version>`` folder is never replaced.

skops artifacts are checked the way the runtime loads them: every type skops does not trust by
default must be named by the caller (``trusted_types``); the artifact never decides that.
"""

from __future__ import annotations

import io
import json
import platform
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import skops.io
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

from modeldeploy_runtime.files import sha256_bytes, write_atomically
from modeldeploy_runtime.package_layout import (
    ARTIFACT_STEM,
    METADATA_SUFFIX,
    ONNX_ARTIFACT,
    ONNX_FORMAT,
    Package,
    PackageFormat,
    PackagingError,
    check_format,
    check_identifier,
    format_of_file,
    utc_now,
)
from modeldeploy_runtime.packaging.onnx_export import DEFAULT_TOLERANCE, compile_to_onnx

LIBRARIES = ("scikit-learn", "joblib", "numpy", "skops")


def library_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for distribution in LIBRARIES:
        try:
            found[distribution] = importlib_metadata.version(distribution)
        except importlib_metadata.PackageNotFoundError:
            found[distribution] = "absent"
    return found


def _json_list(values: Any) -> list[Any]:
    """A JSON-ready list from an estimator attribute (numpy arrays of numbers or strings)."""
    items = values.tolist() if hasattr(values, "tolist") else list(values)
    try:
        json.dumps(items)
    except (TypeError, ValueError):
        return [str(item) for item in items]
    return list(items)


def check_estimator(model: Any, source: str) -> None:
    """Raises PackagingError unless ``model`` is a fitted estimator the runtime can serve."""
    if not callable(getattr(model, "predict", None)):
        raise PackagingError(
            f"{source} holds a {type(model).__module__}.{type(model).__qualname__}, "
            "not a scikit-learn estimator (no predict method)"
        )
    try:
        check_is_fitted(model)
    except NotFittedError:
        raise PackagingError(f"{source} holds an unfitted {type(model).__name__}; fit it first") from None
    except TypeError:  # not a BaseEstimator: it has predict, so leave fittedness to the caller
        pass


def describe_model(model: Any) -> dict[str, Any]:
    """What the runtime and a reader want to know about the estimator, without loading it."""
    described: dict[str, Any] = {"model_type": f"{type(model).__module__}.{type(model).__qualname__}"}
    n_features = getattr(model, "n_features_in_", None)
    described["n_features_in"] = int(n_features) if n_features is not None else None
    names = getattr(model, "feature_names_in_", None)
    described["feature_names_in"] = _json_list(names) if names is not None else None
    classes = getattr(model, "classes_", None)
    described["classes"] = _json_list(classes) if classes is not None else None
    return described


def untrusted_skops_types(data: bytes, trusted_types: Iterable[str]) -> list[str]:
    """Types in a skops artifact that neither skops' defaults nor ``trusted_types`` cover."""
    return sorted(set(skops.io.get_untrusted_types(data=data)) - set(trusted_types))


def serialise(model: Any, model_format: PackageFormat, trusted_types: Iterable[str] = ()) -> bytes:
    """The artifact's bytes; skops types outside the trusted set are refused as the runtime would."""
    if model_format == "skops":
        try:
            data: bytes = skops.io.dumps(model)
        except Exception as error:
            raise PackagingError(
                f"skops cannot serialise this model: {type(error).__name__}: {error}"
            ) from None
        refused = untrusted_skops_types(data, trusted_types)
        if refused:
            raise PackagingError(
                f"the skops artifact holds types skops does not trust by default: {', '.join(refused)}; "
                "review them and pass them as trusted types (the runtime needs the same --trusted-types)"
            )
        return data
    buffer = io.BytesIO()
    try:
        joblib.dump(model, buffer)
    except Exception as error:
        raise PackagingError(f"joblib cannot serialise this model: {type(error).__name__}: {error}") from None
    return buffer.getvalue()


def build_metadata(
    model: Any,
    *,
    name: str,
    version: str,
    model_format: PackageFormat,
    artifact_name: str,
    data: bytes,
    user_metadata: Mapping[str, Any],
    created_at: str,
) -> dict[str, Any]:
    return {
        "name": name,
        "version": version,
        "format": model_format,
        "artifact": artifact_name,
        "sha256": sha256_bytes(data),
        "size_bytes": len(data),
        **describe_model(model),
        "created_at": created_at,
        "versions": library_versions(),
        "metadata": dict(user_metadata),
    }


def package(
    model: Any,
    dest: Path,
    *,
    name: str,
    version: str,
    format: str = "joblib",
    metadata: Mapping[str, Any] | None = None,
    trusted_types: Iterable[str] = (),
    onnx_sample: np.ndarray | None = None,
    onnx_tolerance: float = DEFAULT_TOLERANCE,
) -> Package:
    """Serialise ``model`` into ``dest/<name>/<version>/`` with its metadata; never overwrites.

    With ``onnx_sample`` (rows like those the model will serve), ``model.onnx`` is written too,
    after :func:`compile_to_onnx` showed it answers like ``model`` on those rows.
    """
    check_identifier("name", name)
    check_identifier("version", version)
    model_format = check_format(format)
    check_estimator(model, "the model")
    user_metadata = dict(metadata or {})
    try:
        json.dumps(user_metadata)
    except (TypeError, ValueError) as error:
        raise PackagingError(f"metadata must be JSON-serialisable: {error}") from None
    target = dest / name / version
    if target.exists():
        raise PackagingError(f"{target} already exists; a packaged version is never overwritten")
    data = serialise(model, model_format, trusted_types)
    compiled = compile_to_onnx(model, onnx_sample, onnx_tolerance) if onnx_sample is not None else None
    artifact_name = f"{ARTIFACT_STEM}.{model_format}"
    document = build_metadata(
        model,
        name=name,
        version=version,
        model_format=model_format,
        artifact_name=artifact_name,
        data=data,
        user_metadata=user_metadata,
        created_at=utc_now(),
    )
    if compiled is not None:
        document[ONNX_FORMAT] = {"artifact": ONNX_ARTIFACT, **compiled.record}
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{version}.", suffix=".partial", dir=target.parent))
    except OSError as error:
        raise PackagingError(f"cannot create {target.parent}: {error.strerror or error}") from None
    try:
        write_atomically(staging / artifact_name, [data], replace=False)
        write_atomically(staging / (artifact_name + METADATA_SUFFIX), [_encode(document)], replace=False)
        if compiled is not None:
            write_atomically(staging / ONNX_ARTIFACT, [compiled.data], replace=False)
        staging.chmod(0o755)
        # rename(2) refuses a non-empty target, so a version packaged meanwhile is not replaced.
        staging.rename(target)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        if target.exists():
            raise PackagingError(
                f"{target} already exists; a packaged version is never overwritten"
            ) from None
        raise PackagingError(f"cannot write {target}: {error.strerror or error}") from None
    return Package(directory=target, artifact=target / artifact_name, metadata=document)


def _encode(document: Mapping[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()


def load_estimator(path: Path, trusted_types: Iterable[str] = ()) -> Any:
    """The estimator in a ``.skops`` file (trusted types as the runtime checks them) or a pickle/joblib.

    Pickle and joblib files run code when loaded: pass only files you made yourself.
    """
    try:
        data = path.read_bytes()
    except OSError as error:
        raise PackagingError(f"cannot read model file {path}: {error.strerror or error}") from None
    if format_of_file(path.name) == "skops":
        try:
            refused = untrusted_skops_types(data, trusted_types)
        except Exception as error:
            raise PackagingError(f"{path} is not a readable skops file: {error}") from None
        if refused:
            raise PackagingError(
                f"{path} holds types that are not trusted: {', '.join(refused)}; "
                "review them and pass them as trusted types if they are safe"
            )
        try:
            return skops.io.loads(data, trusted=list(trusted_types))
        except Exception as error:
            raise PackagingError(f"cannot load {path} with skops: {type(error).__name__}: {error}") from None
    try:
        return joblib.load(io.BytesIO(data))
    except Exception as error:
        raise PackagingError(
            f"{path} is not a readable pickle or joblib file: {type(error).__name__}: {error}"
        ) from None
