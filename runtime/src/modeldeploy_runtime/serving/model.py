"""Loading, verifying and calling one scikit-learn model.

The artifact is read into memory once, its sha256 checked against the expected digest, and only
then deserialised from those same bytes (no window between check and load). A joblib artifact is
a pickle, which runs code when loaded, so it is refused without a digest unless the development
flag ``allow_unverified_pickle`` is set. skops artifacts are loaded with a trusted-types allowlist
from the runtime's settings, never from the artifact.

The ``.metadata.json`` file beside the artifact is not covered by the digest, so it is
informational only: it feeds version-mismatch warnings and the model's metadata, never a check
on requests (the feature count comes from the estimator alone), and a bad one is a warning.
"""

from __future__ import annotations

import io
import logging
import time
import warnings
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from modeldeploy_runtime.files import sha256_bytes
from modeldeploy_runtime.package_layout import METADATA_SUFFIX, ModelFormat
from modeldeploy_runtime.serving.description import ModelDescription
from modeldeploy_runtime.serving.settings import OnnxProvider

log = logging.getLogger(__name__)

PREDICT = "predict"
PREDICT_PROBA = "predict_proba"
MAX_CLASS_LABELS = 100  # above this many classes, the predictions metric drops its class label
MAX_METADATA_BYTES = 1024 * 1024  # an informational file; a larger one is ignored
MAX_VERSION_LENGTH = 64  # a version read from the metadata file is a metric label value
ALLOW_UNVERIFIED_PICKLE_ENV = "MODELDEPLOY_ALLOW_UNVERIFIED_PICKLE"


class ModelLoadError(Exception):
    """The model cannot be served; the message is one line for the operator to read."""


class InputError(ValueError):
    """The request's features cannot be given to this model; the message says what is expected."""


def installed_version(distribution: str) -> str:
    try:
        return importlib_metadata.version(distribution)
    except importlib_metadata.PackageNotFoundError:
        return "absent"


def verify_digest(data: bytes, expected: str | None, path: Path) -> str:
    """The artifact's sha256; raises ModelLoadError when an expected digest does not match."""
    actual = sha256_bytes(data)
    if expected is not None and actual != expected:
        raise ModelLoadError(
            f"sha256 mismatch for {path}: expected {expected}, got {actual}; refusing to load the model"
        )
    return actual


@dataclass(frozen=True)
class ArtifactMetadata:
    """What the packaging step wrote beside the artifact (``<artifact>.metadata.json``)."""

    document: dict[str, Any]

    def library_version(self, *names: str) -> str | None:
        versions = self.document.get("versions")
        for name in names:
            if isinstance(versions, dict) and isinstance(versions.get(name), str):
                return str(versions[name])[:MAX_VERSION_LENGTH]
            flat = self.document.get(f"{name.replace('-', '_')}_version")
            if isinstance(flat, str):
                return flat[:MAX_VERSION_LENGTH]
        return None

    @property
    def sklearn_version(self) -> str | None:
        return self.library_version("scikit-learn", "sklearn")

    @property
    def joblib_version(self) -> str | None:
        return self.library_version("joblib")


def read_metadata(artifact: Path) -> tuple[ArtifactMetadata | None, str | None]:
    """The metadata file beside ``artifact`` if there is a usable one, else a warning saying why not."""
    path = artifact.with_name(artifact.name + METADATA_SUFFIX)
    try:
        if not path.is_file():
            return None, None
        if path.stat().st_size > MAX_METADATA_BYTES:
            return None, f"metadata file {path} is larger than {MAX_METADATA_BYTES} bytes; ignored"
        document = orjson.loads(path.read_bytes())
    except OSError as error:
        return None, f"metadata file {path} is unreadable ({error.strerror or error}); ignored"
    except orjson.JSONDecodeError as error:
        return None, f"metadata file {path} is not JSON ({error}); ignored"
    if not isinstance(document, dict):
        return None, f"metadata file {path} does not hold a JSON object; ignored"
    return ArtifactMetadata(document), None


def version_mismatches(meta: ArtifactMetadata | None) -> list[str]:
    """Warnings for libraries whose version at packaging time differs from the installed one."""
    if meta is None:
        return []
    found = []
    for distribution, packaged in (("scikit-learn", meta.sklearn_version), ("joblib", meta.joblib_version)):
        installed = installed_version(distribution)
        if packaged is not None and packaged != installed:
            found.append(
                f"model was packaged with {distribution} {packaged} but {installed} is installed; "
                "predictions may differ or fail"
            )
    return found


def _deserialise(data: bytes, model_format: ModelFormat, trusted_types: list[str]) -> Any:
    if model_format == "skops":
        # Imported only for skops artifacts: it imports every scikit-learn estimator (~0.6 s).
        import skops.io  # noqa: PLC0415

        try:
            untrusted = set(skops.io.get_untrusted_types(data=data))
        except Exception as error:
            raise ModelLoadError(f"not a readable skops artifact: {error}") from None
        refused = sorted(untrusted - set(trusted_types))
        if refused:
            raise ModelLoadError(
                f"skops artifact contains types that are not trusted: {', '.join(refused)}; "
                "review them and add them to --trusted-types if they are safe"
            )
        return skops.io.loads(data, trusted=list(trusted_types))
    import joblib  # noqa: PLC0415 - the ONNX engine reads no pickle, so it imports neither joblib nor sklearn

    return joblib.load(io.BytesIO(data))


def _allows_nan(estimator: Any) -> bool:
    from sklearn.utils import get_tags  # noqa: PLC0415 - see _deserialise

    try:
        return bool(get_tags(estimator).input_tags.allow_nan)
    except Exception:
        return False


@dataclass
class LoadedModel:
    """A deserialised estimator plus what the server needs to know about it."""

    estimator: Any
    name: str
    version: str
    sha256: str
    model_format: ModelFormat
    path: Path
    metadata: ArtifactMetadata | None
    warnings: list[str]
    load_seconds: float
    n_features: int | None = None
    classes: list[Any] | None = None
    allow_nan: bool = False
    outputs: tuple[str, ...] = field(default=(PREDICT,))
    engine: str = "sklearn"  # or "onnxruntime"
    provider: str = "cpu"  # where predictions run: "cpu", or "cuda" for ONNX Runtime's CUDA provider

    @property
    def estimator_name(self) -> str:
        """The class name of the estimator (for ONNX, the one it was converted from)."""
        return str(getattr(self.estimator, "estimator_name", type(self.estimator).__name__))

    @property
    def artifact_sklearn_version(self) -> str:
        return (self.metadata.sklearn_version if self.metadata else None) or "unknown"

    def describe(self) -> ModelDescription:
        return ModelDescription(
            name=self.name,
            version=self.version,
            n_features=self.n_features,
            outputs=self.outputs,
            classes=self.classes,
            model_format=self.model_format,
            sha256=self.sha256,
            estimator_type=self.estimator_name,
            artifact_sklearn_version=self.artifact_sklearn_version,
            warnings=tuple(self.warnings),
            artifact_metadata=self.metadata.document if self.metadata is not None else None,
            engine=self.engine,
            provider=self.provider,
        )

    def check_outputs(self, outputs: frozenset[str]) -> None:
        """Raises InputError when a requested output is not one this model offers."""
        unknown = outputs - set(self.outputs)
        if unknown:
            raise InputError(
                f"unknown output {sorted(unknown)[0]!r}; this model offers {', '.join(self.outputs)}"
            )

    def check_shape(self, features: np.ndarray) -> None:
        """Raises InputError when the rows do not have the shape the model takes."""
        if features.ndim != 2:
            raise InputError(f"expected a 2-D batch of rows, got {features.ndim} dimensions")
        if features.shape[0] == 0:
            raise InputError("empty batch: expected at least one row")
        if self.n_features is not None and features.shape[1] != self.n_features:
            raise InputError(f"expected {self.n_features} features per row, got {features.shape[1]}")

    def check_values(self, features: np.ndarray) -> None:
        """Raises InputError for NaN or infinity where the model cannot take them."""
        if features.dtype.kind in "fc" and not self.allow_nan and not np.isfinite(features).all():
            raise InputError("features contain NaN or infinity, which this model cannot take")

    def run(self, features: np.ndarray, outputs: frozenset[str]) -> dict[str, np.ndarray]:
        """Call the requested estimator methods on a batch; sklearn's ValueError becomes InputError."""
        results: dict[str, np.ndarray] = {}
        try:
            for output in outputs:
                results[output] = np.asarray(getattr(self.estimator, output)(features))
        except (ValueError, TypeError) as error:
            raise InputError(f"the model rejected the input: {error}") from None
        except Exception as error:
            # The model was shown to work on a zero row at start-up, so an exception here comes
            # from what this request sent (e.g. strings where a pipeline expects numbers).
            raise InputError(f"the model rejected the input: {type(error).__name__}: {error}") from None
        return results

    def warm_up(self) -> None:
        """One prediction on a zero row, so the first user request is not the slow one."""
        if self.n_features is None:
            log.warning("model does not declare its feature count; skipping warm-up")
            return
        try:
            self.run(np.zeros((1, self.n_features)), frozenset(self.outputs))
        except InputError as error:
            # Some pipelines only take e.g. strings; real requests may still be fine.
            log.warning("warm-up on a zero row failed; serving anyway", extra={"error": str(error)})


def check_pickle_is_verified(
    what: str, model_format: ModelFormat, expected_sha256: str | None, allow_unverified_pickle: bool
) -> str | None:
    """Raises ModelLoadError for a joblib artifact without a digest; a warning when the flag allows it."""
    if model_format != "joblib" or expected_sha256 is not None:
        return None
    if not allow_unverified_pickle:
        raise ModelLoadError(
            f"refusing to load {what}: a joblib artifact is a pickle, which runs code when it is loaded, "
            "and no --model-sha256 was given to verify it; pass its digest (`modeldeploy-runtime registry "
            "resolve` or `sha256sum` prints it), or for local development only set "
            f"{ALLOW_UNVERIFIED_PICKLE_ENV}=1"
        )
    return (
        f"UNVERIFIED PICKLE: {what} was loaded without a sha256 because {ALLOW_UNVERIFIED_PICKLE_ENV} "
        "is set; anyone who can change the file can run code in this process. Development only."
    )


def load_model(
    path: Path,
    *,
    name: str,
    version: str,
    model_format: ModelFormat,
    expected_sha256: str | None,
    trusted_types: list[str],
    allow_unverified_pickle: bool = False,
    onnx_threads: int = 1,
    onnx_provider: OnnxProvider = "auto",
) -> LoadedModel:
    started = time.perf_counter()
    unverified = check_pickle_is_verified(str(path), model_format, expected_sha256, allow_unverified_pickle)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ModelLoadError(f"cannot read model file {path}: {error.strerror}") from None
    digest = verify_digest(data, expected_sha256, path)
    if model_format == "onnx":
        return _load_onnx(data, path, name=name, version=version, digest=digest, started=started,
                          threads=onnx_threads, provider=onnx_provider)  # fmt: skip
    meta, metadata_problem = read_metadata(path)
    found_warnings = [found for found in (unverified, metadata_problem) if found is not None]
    found_warnings += version_mismatches(meta)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            estimator = _deserialise(data, model_format, trusted_types)
        except ModelLoadError:
            raise
        except Exception as error:
            raise ModelLoadError(
                f"cannot load {path} as {model_format}: {type(error).__name__}: {error}"
            ) from None
    for warning in caught:
        if "InconsistentVersionWarning" in type(warning.message).__name__:
            found_warnings.append(str(warning.message).splitlines()[0])
    if not callable(getattr(estimator, PREDICT, None)):
        raise ModelLoadError(f"{path} holds a {type(estimator).__name__}, which has no predict method")
    n_features = getattr(estimator, "n_features_in_", None)  # never from the unverified metadata file
    raw_classes = getattr(estimator, "classes_", None)
    classes = np.asarray(raw_classes).tolist() if raw_classes is not None else None
    outputs = (PREDICT, PREDICT_PROBA) if callable(getattr(estimator, PREDICT_PROBA, None)) else (PREDICT,)
    return LoadedModel(
        estimator=estimator,
        name=name,
        version=version,
        sha256=digest,
        model_format=model_format,
        path=path,
        metadata=meta,
        warnings=found_warnings,
        load_seconds=time.perf_counter() - started,
        n_features=int(n_features) if isinstance(n_features, int | np.integer) else None,
        classes=classes if isinstance(classes, list) else None,
        allow_nan=_allows_nan(estimator),
        outputs=outputs,
    )


def _load_onnx(
    data: bytes,
    path: Path,
    *,
    name: str,
    version: str,
    digest: str,
    started: float,
    threads: int,
    provider: OnnxProvider,
) -> LoadedModel:
    from modeldeploy_runtime.serving.onnx_model import (  # noqa: PLC0415 - onnxruntime only for ONNX
        ENGINE,
        PROVIDER_LABELS,
        OnnxLoadError,
        open_session,
    )

    try:
        predictor, facts = open_session(data, path, threads=threads, provider=provider)
    except OnnxLoadError as error:
        raise ModelLoadError(str(error)) from None
    metadata, metadata_problem = read_metadata(path)  # informational only, as for the other formats
    return LoadedModel(
        estimator=predictor,
        name=name,
        version=version,
        sha256=digest,
        model_format="onnx",
        path=path,
        metadata=metadata,
        warnings=[metadata_problem] if metadata_problem is not None else [],
        load_seconds=time.perf_counter() - started,
        n_features=facts.n_features,
        classes=facts.classes,
        allow_nan=False,
        outputs=(PREDICT, PREDICT_PROBA) if PREDICT_PROBA in facts.output_names else (PREDICT,),
        engine=ENGINE,
        provider=PROVIDER_LABELS.get(predictor.provider, predictor.provider),
    )
