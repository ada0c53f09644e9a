"""Open Inference Protocol (V2) REST, as KServe, MLServer and Triton speak it: HTTP mapping only."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import numpy as np
import orjson

from modeldeploy_runtime import __version__
from modeldeploy_runtime.errors import RequestError
from modeldeploy_runtime.serving.description import ModelDescription
from modeldeploy_runtime.serving.model import PREDICT, PREDICT_PROBA, installed_version
from modeldeploy_runtime.serving.onnx_model import ENGINE as ONNX_ENGINE
from modeldeploy_runtime.serving.onnx_model import PLATFORM as ONNX_PLATFORM
from modeldeploy_runtime.serving.protocols.arrays import DUMP_OPTIONS, decode_json, to_array, to_json_value

SERVER_NAME = "modeldeploy-runtime"

DATATYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": object,
}
_MAX_DIMENSION = 1 << 31
_MISSING = object()
_PREDICT_ONLY = frozenset((PREDICT,))


def datatype_of(array: np.ndarray) -> str:
    return _datatype_name(array.dtype)


@functools.cache
def _datatype_name(dtype: np.dtype[Any]) -> str:
    kind, size = dtype.kind, dtype.itemsize
    if kind == "b":
        return "BOOL"
    if kind == "i":
        return f"INT{size * 8}"
    if kind == "u":
        return f"UINT{size * 8}"
    if kind == "f":
        return f"FP{size * 8}"
    return "BYTES"


class InferRequest(NamedTuple):  # built per request: a third of what a frozen dataclass costs
    features: np.ndarray
    outputs: frozenset[str]
    request_id: str | None


def _shape(value: Any, position: int) -> tuple[list[int], int]:
    """The shape and how many values it holds."""
    if type(value) is not list or not value:
        raise RequestError(400, f"inputs[{position}].shape must be a non-empty list of sizes, e.g. [1, 4]")
    values = 1
    for size in value:
        if type(size) is not int or not 0 <= size < _MAX_DIMENSION:  # type(): a bool is no size
            raise RequestError(
                400, f"inputs[{position}].shape must hold non-negative integers, got {value!r}"
            )
        values *= size
    return value, values


def _datatype(entry: dict[str, Any], position: int) -> Any:
    datatype = entry.get("datatype")
    dtype = DATATYPES.get(datatype) if type(datatype) is str else None
    if dtype is None:
        raise RequestError(
            400, f"inputs[{position}].datatype must be one of {', '.join(DATATYPES)}, got {datatype!r}"
        )
    return dtype


def _parse_input(entry: Any, position: int) -> np.ndarray:
    # Every request passes here: the checks are ordered and written for the valid case's speed,
    # and the messages are only formatted for a request that fails them.
    if type(entry) is not dict:
        raise RequestError(400, f"inputs[{position}] must be an object with name, shape, datatype and data")
    if type(entry.get("name")) is not str:
        raise RequestError(400, f"inputs[{position}].name must be a string")
    shape, expected = _shape(entry.get("shape"), position)
    dtype = _datatype(entry, position)
    data = entry.get("data", _MISSING)
    if data is _MISSING:
        raise RequestError(400, f"inputs[{position}].data is missing: expected the values in row-major order")
    array = to_array(data, dtype, f"inputs[{position}].data")
    if array.size != expected:
        raise RequestError(
            400, f"inputs[{position}]: shape {shape} needs {expected} values, data holds {array.size}"
        )
    if len(shape) > 2:
        raise RequestError(400, f"inputs[{position}]: expected shape [rows, features], got {shape}")
    return array.reshape(shape)


def _parse_outputs(value: Any) -> frozenset[str]:
    """The requested output names; whether the model offers them is the data plane's check."""
    if value is None:
        return _PREDICT_ONLY
    if not isinstance(value, list) or not value:
        raise RequestError(400, 'outputs must be a non-empty list like [{"name": "predict"}]')
    names = set()
    for position, entry in enumerate(value):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            raise RequestError(400, f'outputs[{position}] must be an object like {{"name": "predict"}}')
        names.add(name)
    return frozenset(names)


def _columns(arrays: list[np.ndarray]) -> np.ndarray:
    """One tensor per feature column, in order (how pandas-style clients send tables), as rows."""
    columns = [array.reshape(-1, 1) if array.ndim == 1 else array for array in arrays]
    if len({column.shape[0] for column in columns}) != 1 or any(c.shape[1] != 1 for c in columns):
        raise RequestError(400, "several inputs must each be one column of the same number of rows")
    return np.concatenate(columns, axis=1)


def parse_infer_request(body: bytes, model: ModelDescription) -> InferRequest:
    document = decode_json(body)
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise RequestError(400, "id must be a string")
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise RequestError(400, "inputs must be a non-empty list of tensors")
    if len(inputs) == 1:
        features = _parse_input(inputs[0], 0)
        if features.ndim == 1:
            # One row of features, unless the model takes a single feature (then one value per row).
            features = features.reshape(-1, 1) if model.n_features == 1 else features.reshape(1, -1)
    else:
        features = _columns([_parse_input(entry, position) for position, entry in enumerate(inputs)])
    return InferRequest(features, _parse_outputs(document.get("outputs")), request_id)


def render_infer_response(
    model: ModelDescription, request: InferRequest, results: dict[str, np.ndarray]
) -> bytes:
    outputs = []
    for name in (PREDICT, PREDICT_PROBA):
        if name not in results:
            continue
        array = results[name]
        outputs.append(
            {
                "name": name,
                "shape": array.shape,
                "datatype": datatype_of(array),
                "data": to_json_value(array if array.ndim == 1 else array.reshape(-1)),
            }
        )
    response: dict[str, Any] = {"model_name": model.name, "model_version": model.version, "outputs": outputs}
    if request.request_id is not None:
        response["id"] = request.request_id
    return orjson.dumps(response, option=DUMP_OPTIONS)


def server_metadata() -> bytes:
    return orjson.dumps({"name": SERVER_NAME, "version": __version__, "extensions": []})


def model_metadata(model: ModelDescription) -> bytes:
    n_features = model.n_features if model.n_features is not None else -1
    predict_type = datatype_of(np.asarray(model.classes)) if model.classes is not None else "FP64"
    outputs = [{"name": PREDICT, "datatype": predict_type, "shape": [-1]}]
    if PREDICT_PROBA in model.outputs:
        classes = len(model.classes) if model.classes is not None else -1
        outputs.append({"name": PREDICT_PROBA, "datatype": "FP64", "shape": [-1, classes]})
    parameters: dict[str, Any] = {
        "format": model.model_format,
        "sha256": model.sha256,
        "estimator": model.estimator_type,
        "engine": model.engine,
        "provider": model.provider,
        "sklearn_version": installed_version("scikit-learn"),
        "joblib_version": installed_version("joblib"),
        "artifact_sklearn_version": model.artifact_sklearn_version,
        "warnings": list(model.warnings),
    }
    if model.classes is not None:
        parameters["classes"] = model.classes
    if model.artifact_metadata is not None:
        parameters["artifact_metadata"] = model.artifact_metadata
    document = {
        "name": model.name,
        "versions": [model.version],
        "platform": ONNX_PLATFORM if model.engine == ONNX_ENGINE else "sklearn",
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, n_features]}],
        "outputs": outputs,
        "parameters": parameters,
    }
    return orjson.dumps(document, default=str)


def readiness(ready: bool) -> bytes:
    return b'{"ready":true}' if ready else b'{"ready":false}'
