"""Compiling a fitted scikit-learn model to ONNX, and proving that the compiled model answers the same.

``compile_to_onnx`` converts with skl2onnx (``zipmap`` off, so probabilities are one float tensor),
then runs both models on the user's sample rows: the ONNX model is given the rows as float32, as
the runtime gives them, and scikit-learn the rows as they are. Labels must be identical and
probabilities (or a regressor's predictions) within ``tolerance``; the largest deviation seen is
recorded. A model that cannot be converted, or whose ONNX form answers differently, is refused
with one line naming the estimator (and the pipeline step) and the deviation.

Why sample rows are required: equivalence only means something on inputs like those the model
will serve. Rows made up from nothing (zeros, random numbers in an unknown range) would leave the
tree thresholds, the scaler's range and the decision boundaries untested and record a deviation
that proves nothing, so ``--onnx`` without ``--sample`` is refused rather than guessed.

What the runtime needs to serve the ONNX file without scikit-learn (classes, their dtype, the
output names, the feature count) is written into the ONNX model's own ``metadata_props``, so the
file alone, checked against its sha256, is enough to serve it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

from modeldeploy_runtime.files import sha256_bytes
from modeldeploy_runtime.package_layout import ONNX_METADATA_KEY, PackagingError

DEFAULT_TOLERANCE = 1e-4
INPUT_NAME = "input"
_MISSING_CONVERTER = re.compile(r"<class '([\w.]+)'>")


@dataclass(frozen=True)
class OnnxArtifact:
    """The ONNX file's bytes and what the package metadata records about it (``onnx`` block)."""

    data: bytes
    record: dict[str, Any]


def read_sample(path: Path, n_features: int | None) -> np.ndarray:
    """Rows from a ``.npy`` file or a CSV of numbers (a header line is skipped); PackagingError if unusable."""
    try:
        if path.suffix == ".npy":
            rows = np.load(path, allow_pickle=False)
        else:
            with path.open() as source:
                first = source.readline()
            rows = np.loadtxt(path, delimiter=",", ndmin=2, skiprows=0 if _is_numeric_line(first) else 1)
    except (OSError, ValueError) as error:
        raise PackagingError(f"cannot read sample rows from {path}: {error}") from None
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.shape[0] == 0 or rows.dtype.kind not in "biuf":
        raise PackagingError(
            f"sample {path} must hold a 2-D table of numbers with at least one row, got shape {rows.shape} "
            f"of {rows.dtype}"
        )
    if n_features is not None and rows.shape[1] != n_features:
        raise PackagingError(
            f"sample {path} has {rows.shape[1]} columns; the model takes {n_features} features"
        )
    return rows.astype(np.float64)


def _is_numeric_line(line: str) -> bool:
    try:
        [float(cell) for cell in line.split(",")]
    except ValueError:
        return False
    return True


def describe_steps(model: Any) -> str:
    """``Pipeline(scaler=StandardScaler, clf=LogisticRegression)`` or the estimator's class name."""
    steps = getattr(model, "steps", None)
    if isinstance(steps, list):
        inner = ", ".join(f"{name}={describe_steps(step)}" for name, step in steps)
        return f"{type(model).__name__}({inner})"
    return type(model).__name__


def _step_named(model: Any, class_path: str) -> str:
    """The pipeline step (``name=Class``) whose class is ``class_path``, else the model's description."""
    short = class_path.rsplit(".", 1)[-1]
    for name, step in getattr(model, "steps", None) or []:
        if type(step).__name__ == short:
            return f"step {name!r} ({short})"
        if getattr(step, "steps", None):
            found = _step_named(step, class_path)
            if found.startswith("step"):
                return f"step {name!r} > {found.removeprefix('step ')}"
    return short


def _final_estimator(model: Any) -> Any:
    steps = getattr(model, "steps", None)
    return _final_estimator(steps[-1][1]) if isinstance(steps, list) and steps else model


def _convert(model: Any, n_features: int) -> Any:
    from skl2onnx import convert_sklearn  # noqa: PLC0415 - skl2onnx is slow to import, only --onnx needs it
    from skl2onnx.common.data_types import FloatTensorType  # noqa: PLC0415
    from sklearn.base import is_classifier  # noqa: PLC0415

    final = _final_estimator(model)
    options = {id(final): {"zipmap": False}} if is_classifier(final) else None
    try:
        return convert_sklearn(
            model, initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))], options=options
        )
    except Exception as error:
        message = " ".join(str(error).split())
        missing = _MISSING_CONVERTER.search(message)
        if missing is not None:
            raise PackagingError(
                f"cannot convert {describe_steps(model)} to ONNX: skl2onnx has no converter for "
                f"{_step_named(model, missing.group(1))}; nothing written"
            ) from None
        raise PackagingError(
            f"cannot convert {describe_steps(model)} to ONNX: {type(error).__name__}: {message[:300]}; "
            "nothing written"
        ) from None


def _serving_facts(model: Any, proto: Any, sample: np.ndarray) -> dict[str, Any]:
    """What the runtime needs to serve the ONNX model exactly like the scikit-learn one."""
    classes = getattr(model, "classes_", None)
    predicted = np.asarray(model.predict(sample[:1]))
    outputs = [output.name for output in proto.graph.output]
    has_proba = classes is not None and callable(getattr(model, "predict_proba", None)) and len(outputs) > 1
    return {
        "estimator": f"{type(model).__module__}.{type(model).__qualname__}",
        "n_features": int(sample.shape[1]),
        "input": INPUT_NAME,
        "outputs": {"predict": outputs[0], **({"predict_proba": outputs[1]} if has_proba else {})},
        "classes": np.asarray(classes).tolist() if classes is not None else None,
        "predict_dtype": "str" if predicted.dtype.kind in "OUS" else predicted.dtype.str,
        "predict_ndim": int(predicted.ndim),
    }


def _run_onnx(data: bytes, sample: np.ndarray, names: list[str]) -> list[np.ndarray]:
    import onnxruntime  # noqa: PLC0415

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 4  # the failure is reported as PackagingError, not as an ORT log line
    session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    results = session.run(names, {INPUT_NAME: sample.astype(np.float32)})
    return [np.asarray(result) for result in results]


def measure_deviation(
    model: Any, data: bytes, facts: dict[str, Any], sample: np.ndarray
) -> tuple[int, float]:
    """(rows whose label differs, largest |probability or prediction difference|) on ``sample``."""
    outputs = facts["outputs"]
    names = [outputs["predict"]] + ([outputs["predict_proba"]] if "predict_proba" in outputs else [])
    try:
        compiled = _run_onnx(data, sample, names)
    except Exception as error:
        message = " ".join(str(error).split())[:300]
        raise PackagingError(
            f"ONNX form of {describe_steps(model)} fails on the sample rows ({message}); nothing written"
        ) from None
    expected = np.asarray(model.predict(sample))
    if facts["classes"] is None:
        got = compiled[0].reshape(expected.shape).astype(np.float64)
        scale = np.maximum(1.0, np.abs(expected.astype(np.float64)))
        return 0, float(np.max(np.abs(got - expected) / scale))
    labels = compiled[0].reshape(-1)
    mismatched = int(np.count_nonzero(labels.astype(expected.dtype) != expected.reshape(-1)))
    if len(compiled) < 2:
        return mismatched, 0.0
    probabilities = np.asarray(model.predict_proba(sample), dtype=np.float64)
    return mismatched, float(np.max(np.abs(compiled[1].astype(np.float64) - probabilities)))


def library_version(distribution: str) -> str:
    try:
        return importlib_metadata.version(distribution)
    except importlib_metadata.PackageNotFoundError:
        return "absent"


def compile_to_onnx(model: Any, sample: np.ndarray, tolerance: float = DEFAULT_TOLERANCE) -> OnnxArtifact:
    """The verified ONNX form of ``model``; PackagingError (one line) if it cannot be made or differs."""
    if not tolerance >= 0:
        raise PackagingError(f"ONNX tolerance must be a non-negative number, got {tolerance!r}")
    proto = _convert(model, int(sample.shape[1]))
    facts = _serving_facts(model, proto, sample)
    entry = proto.metadata_props.add()
    entry.key, entry.value = ONNX_METADATA_KEY, json.dumps(facts)
    data: bytes = proto.SerializeToString()
    mismatched, deviation = measure_deviation(model, data, facts, sample)
    what = describe_steps(model)
    if mismatched:
        raise PackagingError(
            f"ONNX form of {what} predicts other labels on {mismatched} of {sample.shape[0]} sample rows "
            f"(max probability deviation {deviation:.3g}, tolerance {tolerance:g}); nothing written"
        )
    if deviation > tolerance:
        raise PackagingError(
            f"ONNX form of {what} deviates by up to {deviation:.3g} on the sample rows, more than the "
            f"tolerance {tolerance:g}; nothing written"
        )
    record = {
        "sha256": sha256_bytes(data),
        "size_bytes": len(data),
        "tolerance": tolerance,
        "max_deviation": deviation,
        "sample_rows": int(sample.shape[0]),
        "input_dtype": "float32",
        "opset": {item.domain or "ai.onnx": int(item.version) for item in proto.opset_import},
        "versions": {name: library_version(name) for name in ("skl2onnx", "onnx", "onnxruntime")},
    }
    return OnnxArtifact(data=data, record=record)
