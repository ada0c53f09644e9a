"""``lambda package --onnx``: the zip holds model.onnx and no pickle, and the handler serves it."""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from modeldeploy_runtime.aws_lambda import function
from modeldeploy_runtime.aws_lambda.bundle import CONFIG_NAME
from modeldeploy_runtime.cli import main
from modeldeploy_runtime.packaging.build import package
from tests.aws_lambda.conftest import reset_container, unpack
from tests.aws_lambda.lambda_events import HTTP_API, REST_API, make_event

FEATURES, LABELS = load_iris(return_X_y=True)
ROWS = FEATURES[::15]
OnnxBundle = tuple[Path, Path, Pipeline]  # the zip, where it was unpacked, the model


@pytest.fixture(scope="module")
def onnx_bundle(tmp_path_factory: pytest.TempPathFactory) -> OnnxBundle:
    directory = tmp_path_factory.mktemp("lambda-onnx")
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(FEATURES, LABELS)
    written = package(model, directory / "packages", name="flowers", version="2", onnx_sample=FEATURES)
    zip_path = directory / "function.zip"
    assert (
        main(["lambda", "package", "--model", str(written.directory), "--out", str(zip_path), "--onnx"]) == 0
    )
    return zip_path, unpack(zip_path, directory / "task"), model


@pytest.fixture
def onnx_env(onnx_bundle: OnnxBundle, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in list(os.environ):
        if name.startswith("MODELDEPLOY_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(onnx_bundle[1]))
    monkeypatch.setenv("MODELDEPLOY_LOG_LEVEL", "warning")
    reset_container()
    yield onnx_bundle[1]
    reset_container()


def test_zip_holds_the_onnx_model_and_no_pickle(onnx_bundle: OnnxBundle) -> None:
    zip_path, root, _ = onnx_bundle
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
        config = json.loads(archive.read(CONFIG_NAME))
    assert names == {CONFIG_NAME, "model/model.onnx", "model/model.joblib.metadata.json"}
    metadata = json.loads((root / "model" / "model.joblib.metadata.json").read_text())
    assert (config["model"], config["format"], config["sha256"]) == (
        "model/model.onnx",
        "onnx",
        metadata["onnx"]["sha256"],
    )


@pytest.mark.parametrize("kind", [HTTP_API, REST_API])
def test_handler_serves_the_onnx_model_like_scikit_learn(
    kind: str, onnx_env: Path, onnx_bundle: OnnxBundle
) -> None:
    model = onnx_bundle[2]
    body = {
        "inputs": [
            {"name": "x", "shape": list(ROWS.shape), "datatype": "FP64", "data": ROWS.ravel().tolist()}
        ],
        "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
    }
    event = make_event(kind, "POST", "/v2/models/flowers/infer", json.dumps(body).encode(), {})
    result = function.handler(event, None)
    assert result["statusCode"] == 200, result["body"]
    outputs = {output["name"]: output for output in json.loads(result["body"])["outputs"]}
    assert outputs["predict"]["datatype"] == "INT64"
    assert outputs["predict"]["data"] == model.predict(ROWS).tolist()
    assert outputs["predict_proba"]["datatype"] == "FP64"
    np.testing.assert_allclose(
        np.reshape(outputs["predict_proba"]["data"], outputs["predict_proba"]["shape"]),
        model.predict_proba(ROWS),
        atol=1e-4,
    )
    assert function._runtime is not None
    assert function._runtime.model.engine == "onnxruntime"
