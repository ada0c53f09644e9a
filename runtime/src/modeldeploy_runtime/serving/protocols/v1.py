"""KServe V1 (TensorFlow-Serving style) REST: HTTP mapping only."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from modeldeploy_runtime.errors import RequestError
from modeldeploy_runtime.serving.description import ModelDescription
from modeldeploy_runtime.serving.protocols.arrays import DUMP_OPTIONS, decode_json, to_array, to_json_value


def parse_predict_request(body: bytes, model: ModelDescription) -> np.ndarray:
    document = decode_json(body)
    instances = document.get("instances")
    if instances is None:
        raise RequestError(400, 'expected {"instances": [[feature, ...], ...]}')
    try:
        features = to_array(instances, np.float64, "instances")  # null becomes NaN, checked later
    except RequestError:
        features = to_array(instances, None, "instances")  # strings, for models that take them
    if features.ndim == 1 and model.n_features == 1:
        features = features.reshape(-1, 1)
    if features.ndim != 2:
        expected = model.n_features if model.n_features is not None else "N"
        raise RequestError(
            400,
            f"instances must be a list of rows, each a list of {expected} features; got {features.ndim}-D",
        )
    return features


def render_predict_response(predictions: np.ndarray) -> bytes:
    return orjson.dumps({"predictions": to_json_value(predictions)}, option=DUMP_OPTIONS)


def model_status(model: ModelDescription, ready: bool) -> bytes:
    document: dict[str, Any] = {"name": model.name, "ready": ready}
    return orjson.dumps(document)
