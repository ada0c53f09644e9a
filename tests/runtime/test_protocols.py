"""Every endpoint of both protocols against a real runtime process over loopback HTTP."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

import httpx
import joblib
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.ensemble import HistGradientBoostingClassifier

from modeldeploy_runtime.apikeys import mint_key, render_keys_file
from tests.runtime.conftest import IRIS_ROW, RuntimeProcess, sha256_file, v2_body
from tests.support import wait_until

EXPECTED_CLASSES = [0, 1, 2]


def test_health_endpoints_are_open(iris_runtime: RuntimeProcess) -> None:
    client = iris_runtime.client
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2/models/iris/ready").json() == {"ready": True}
    assert client.get("/v2/models/iris/versions/v3/ready").status_code == 200
    assert client.get("/v1/models/iris").json() == {"name": "iris", "ready": True}


def test_server_and_model_metadata(iris_runtime: RuntimeProcess, models: dict[str, Path]) -> None:
    client = iris_runtime.client
    server = client.get("/v2").json()
    assert server["name"] == "modeldeploy-runtime"
    assert "version" in server
    for path in ("/v2/models/iris", "/v2/models/iris/versions/v3"):
        metadata = client.get(path).json()
        assert metadata["name"] == "iris"
        assert metadata["versions"] == ["v3"]
        assert metadata["platform"] == "sklearn"
        assert metadata["inputs"][0]["shape"] == [-1, 4]
        assert [output["name"] for output in metadata["outputs"]] == ["predict", "predict_proba"]
        assert metadata["outputs"][1]["shape"] == [-1, 3]
        assert metadata["parameters"]["classes"] == EXPECTED_CLASSES
        assert metadata["parameters"]["sha256"] == sha256_file(models["iris"])
    assert client.get("/v1/models").json() == {"models": ["iris"]}


def test_v2_infer_matches_the_model_locally(iris_runtime: RuntimeProcess, models: dict[str, Path]) -> None:
    features = load_iris().data[::15]
    expected = joblib.load(models["iris"]).predict(features).tolist()
    response = iris_runtime.client.post("/v2/models/iris/infer", json=v2_body(features.tolist(), id="req-7"))
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["id"] == "req-7"
    assert document["model_name"] == "iris"
    assert document["model_version"] == "v3"
    [output] = document["outputs"]
    assert output == {"name": "predict", "shape": [len(features)], "datatype": "INT64", "data": expected}


def test_v2_versioned_infer_and_output_selection(iris_runtime: RuntimeProcess) -> None:
    body = v2_body([IRIS_ROW, IRIS_ROW], outputs=[{"name": "predict_proba"}])
    response = iris_runtime.client.post("/v2/models/iris/versions/v3/infer", json=body)
    assert response.status_code == 200, response.text
    [output] = response.json()["outputs"]
    assert output["name"] == "predict_proba"
    assert output["shape"] == [2, 3]
    assert output["datatype"] == "FP64"
    probabilities = np.asarray(output["data"]).reshape(2, 3)
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    both = iris_runtime.client.post(
        "/v2/models/iris/infer",
        json=v2_body([IRIS_ROW], outputs=[{"name": "predict"}, {"name": "predict_proba"}]),
    ).json()
    assert [output["name"] for output in both["outputs"]] == ["predict", "predict_proba"]
    assert "id" not in both


@pytest.mark.parametrize("datatype", ["FP32", "FP64", "INT32", "INT64", "UINT8", "FP16"])
def test_v2_numeric_datatypes(iris_runtime: RuntimeProcess, datatype: str) -> None:
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": datatype, "data": [5, 3, 1, 0]}]}
    response = iris_runtime.client.post("/v2/models/iris/infer", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == [0]


def test_v2_nested_data_and_column_inputs(iris_runtime: RuntimeProcess) -> None:
    nested = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [IRIS_ROW]}]}
    assert iris_runtime.client.post("/v2/models/iris/infer", json=nested).json()["outputs"][0]["data"] == [0]
    columns = {
        "inputs": [
            {"name": f"f{index}", "shape": [2], "datatype": "FP64", "data": [value, value]}
            for index, value in enumerate(IRIS_ROW)
        ]
    }
    response = iris_runtime.client.post("/v2/models/iris/infer", json=columns)
    assert response.json()["outputs"][0] == {
        "name": "predict",
        "shape": [2],
        "datatype": "INT64",
        "data": [0, 0],
    }


def test_v1_predict(iris_runtime: RuntimeProcess) -> None:
    response = iris_runtime.client.post(
        "/v1/models/iris:predict", json={"instances": [IRIS_ROW, [6.7, 3.0, 5.2, 2.3]]}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [0, 2]}


@pytest.mark.parametrize(
    ("path", "body", "status", "fragment"),
    [
        ("/v2/models/iris/infer", {"inputs": []}, 400, "inputs must be a non-empty list"),
        ("/v2/models/iris/infer", v2_body([[1.0, 2.0, 3.0]]), 400, "expected 4 features per row, got 3"),
        (
            "/v2/models/iris/infer",
            {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64", "data": [1, 2, 3]}]},
            400,
            "needs 8 values, data holds 3",
        ),
        (
            "/v2/models/iris/infer",
            {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP99", "data": [1, 2, 3, 4]}]},
            400,
            "datatype must be one of",
        ),
        (
            "/v2/models/iris/infer",
            {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ["a", 2, 3, 4]}]},
            400,
            "cannot read values as float64",
        ),
        (
            "/v2/models/iris/infer",
            {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1e300, 2, 3, 4]}]},
            400,
            "NaN or infinity",
        ),
        (
            "/v2/models/iris/infer",
            {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "INT8", "data": [1000, 2, 3, 4]}]},
            400,
            "out of range",
        ),
        (
            "/v2/models/iris/infer",
            {"inputs": [{"name": "x", "shape": [0, 4], "datatype": "FP64", "data": []}]},
            400,
            "empty batch",
        ),
        (
            "/v2/models/iris/infer",
            v2_body([IRIS_ROW], outputs=[{"name": "transform"}]),
            400,
            "unknown output 'transform'; this model offers predict, predict_proba",
        ),
        ("/v2/models/iris/infer", v2_body([IRIS_ROW], id=5), 400, "id must be a string"),
        ("/v2/models/nope/infer", v2_body([IRIS_ROW]), 404, "this server serves model 'iris'"),
        ("/v2/models/iris/versions/v9/infer", v2_body([IRIS_ROW]), 404, "no version 'v9'"),
        ("/v1/models/iris:predict", {"rows": []}, 400, '"instances"'),
        ("/v1/models/iris:predict", {"instances": [[1, 2], [3]]}, 400, "instances"),
        ("/v1/models/iris:predict", {"instances": [[None, 2, 3, 4]]}, 400, "NaN or infinity"),
        ("/v1/models/iris:predict", {"instances": [1, 2, 3, 4]}, 400, "list of rows"),
    ],
)
def test_bad_requests_get_4xx_saying_what_is_expected(
    iris_runtime: RuntimeProcess, path: str, body: object, status: int, fragment: str
) -> None:
    response = iris_runtime.client.post(path, json=body)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]


def test_malformed_json_wrong_content_type_and_method(iris_runtime: RuntimeProcess) -> None:
    client = iris_runtime.client
    headers = {"content-type": "application/json"}
    response = client.post("/v2/models/iris/infer", content=b'{"inputs": [', headers=headers)
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]
    response = client.post("/v2/models/iris/infer", content=b"a=b", headers={"content-type": "text/plain"})
    assert response.status_code == 415
    assert client.get("/v2/models/iris/infer").status_code == 405
    assert client.get("/nowhere").status_code == 404
    assert client.post("/v1/models/iris:predict", content=b"1e400", headers=headers).status_code == 400


def test_nan_is_accepted_by_a_model_that_takes_it(
    start_runtime: Callable[..., RuntimeProcess], tmp_path: Path
) -> None:
    features, labels = load_iris(return_X_y=True)
    path = tmp_path / "hgb.joblib"
    joblib.dump(HistGradientBoostingClassifier(max_iter=5).fit(features, labels), path)
    runtime = start_runtime(model_uri=path, model_name="hgb")
    response = runtime.client.post("/v1/models/hgb:predict", json={"instances": [[None, 3.5, 1.4, 0.2]]})
    assert response.status_code == 200, response.text


def test_regressor_outputs_floats_and_no_proba(
    start_runtime: Callable[..., RuntimeProcess], models: dict[str, Path]
) -> None:
    runtime = start_runtime(model_uri=models["regressor"], model_name="reg")
    response = runtime.client.post("/v2/models/reg/infer", json=v2_body([[5.1, 3.5, 1.4]]))
    [output] = response.json()["outputs"]
    assert output["datatype"] == "FP64"
    assert isinstance(output["data"][0], float)
    refused = runtime.client.post(
        "/v2/models/reg/infer", json=v2_body([[5.1, 3.5, 1.4]], outputs=[{"name": "predict_proba"}])
    )
    assert refused.status_code == 400
    metadata = runtime.client.get("/v2/models/reg").json()
    assert [output["name"] for output in metadata["outputs"]] == ["predict"]


def test_skops_model_over_https(
    start_runtime: Callable[..., RuntimeProcess], models: dict[str, Path], tls_files: tuple[Path, Path]
) -> None:
    cert, key = tls_files
    runtime = start_runtime(
        model_uri=models["iris_skops"], model_name="iris", tls_cert=cert, tls_key=key, scheme="https"
    )
    response = runtime.client.post("/v1/models/iris:predict", json={"instances": [IRIS_ROW]})
    assert response.json() == {"predictions": [0]}
    assert runtime.client.get("/v2/models/iris").json()["parameters"]["format"] == "skops"
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{runtime.port}/v2/health/live", timeout=5.0).raise_for_status()


def test_tls_serves_https_only_on_the_serving_port_and_metrics_stay_plain(
    start_runtime: Callable[..., RuntimeProcess],
    models: dict[str, Path],
    tls_files: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    """As a kubernetes.io/tls Secret volume provides them: tls.crt and tls.key in one folder."""
    cert, key = tls_files
    mount = tmp_path / "tls"
    mount.mkdir()
    (mount / "tls.crt").write_bytes(cert.read_bytes())
    (mount / "tls.key").write_bytes(key.read_bytes())
    minted = mint_key("tls-client")
    keys = tmp_path / "keys.json"
    keys.write_text(render_keys_file([minted.hashed]))
    runtime = start_runtime(
        model_uri=models["iris"],
        model_name="iris",
        auth_keys_file=keys,
        scheme="https",
        env={"MODELDEPLOY_TLS_CERT": str(mount / "tls.crt"), "MODELDEPLOY_TLS_KEY": str(mount / "tls.key")},
    )
    trust = ssl.create_default_context(cafile=str(cert))  # the generated certificate, verified
    with httpx.Client(base_url=runtime.url, verify=trust, timeout=10.0) as verified:
        response = verified.post(
            "/v1/models/iris:predict", json={"instances": [IRIS_ROW]}, headers={"X-API-Key": minted.plaintext}
        )
        assert response.json() == {"predictions": [0]}
        assert verified.get("/v2/health/ready").status_code == 200  # what an HTTPS probe asks
    with pytest.raises(httpx.HTTPError):  # plain HTTP on the serving port gets no answer
        httpx.get(f"http://127.0.0.1:{runtime.port}/v2/health/live", timeout=5.0).raise_for_status()
    with pytest.raises(httpx.HTTPError):
        httpx.post(
            f"http://127.0.0.1:{runtime.port}/v1/models/iris:predict",
            json={"instances": [IRIS_ROW]},
            headers={"X-API-Key": minted.plaintext},
            timeout=5.0,
        ).raise_for_status()
    wait_until(  # plain HTTP, unchanged; the worker writes its counts every FLUSH_SECONDS
        "the request counter on the plain-HTTP metrics port",
        lambda: "modeldeploy_requests_total" in httpx.get(runtime.metrics_url, timeout=10.0).text,
        10,
        interval=0.05,
    )
    assert '"url": "https://127.0.0.1:' in runtime.log()
