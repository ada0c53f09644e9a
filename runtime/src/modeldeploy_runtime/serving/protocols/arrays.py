"""Turning JSON values into numpy arrays and back, with a 400 for anything unusable."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from modeldeploy_runtime.errors import RequestError

DUMP_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
_NARROW_FLOATS = (np.float16, np.float32)  # the only targets where a JSON number can overflow to inf


def decode_json(body: bytes) -> dict[str, Any]:
    if not body:
        raise RequestError(400, "empty request body: expected a JSON object")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise RequestError(400, f"request body is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise RequestError(400, f"expected a JSON object, got a JSON {type(document).__name__}")
    return document


def to_array(data: Any, dtype: Any, what: str) -> np.ndarray:
    """``data`` (nested lists) as an array of ``dtype``; 400 naming ``what`` on failure."""
    if type(data) is not list:
        raise RequestError(400, f"{what} must be a list, got {type(data).__name__}")
    try:
        if dtype in _NARROW_FLOATS:
            # Overflow to inf in a narrow float is no error here: the model's finiteness check says so.
            with np.errstate(over="ignore"):
                array = np.asarray(data, dtype=dtype)
        else:
            array = np.asarray(data, dtype=dtype)
    except OverflowError as error:
        raise RequestError(400, f"{what}: a value is out of range ({error})") from None
    except (ValueError, TypeError) as error:
        message = str(error).split(". ")[0]
        raise RequestError(400, f"{what}: cannot read values as {np.dtype(dtype).name}: {message}") from None
    if dtype is None and array.dtype == object:
        raise RequestError(400, f"{what} must hold numbers or strings, nested evenly")
    return array


def to_json_value(array: np.ndarray) -> Any:
    """Something orjson writes fast: the array itself when numeric, else plain lists."""
    if array.dtype.kind in "biuf" and array.dtype.itemsize <= 8:
        return np.ascontiguousarray(array)
    return array.tolist()
