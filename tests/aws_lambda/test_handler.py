"""The Lambda handler answers exactly as the HTTP server does, for every kind of HTTP event.

The reference is the real ``modeldeploy-runtime serve`` on loopback, serving the same artifact
with the same keys and body limit: each request goes to it over HTTP and, as an API Gateway
(REST and HTTP API) or function URL event built from the recorded-format fixtures, to
``modeldeploy_runtime.aws_lambda.handler``. Status and body must be byte-for-byte equal.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from modeldeploy_runtime.apikeys import mint_key, render_keys_file
from modeldeploy_runtime.aws_lambda import function
from modeldeploy_runtime.serving import factory
from tests.aws_lambda.conftest import MAX_BODY_BYTES, MODEL_NAME, MODEL_VERSION, Bundle
from tests.aws_lambda.lambda_events import FUNCTION_URL, HTTP_API, KINDS, REST_API, make_event
from tests.runtime.conftest import IRIS_ROW, RuntimeProcess, launch_runtime

ROWS = [IRIS_ROW, [6.7, 3.0, 5.2, 2.3]]
WRONG_KEY = "mdk_" + "0" * 16 + "_" + "1" * 64


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    authenticated: bool = True


def _json(document: Any) -> bytes:
    return json.dumps(document).encode()


V2_BODY = _json(
    {
        "id": "req-1",
        "inputs": [
            {"name": "input-0", "shape": [2, 4], "datatype": "FP64", "data": [x for r in ROWS for x in r]}
        ],
        "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
    }
)
CASES = {
    "v1 predict": Case("POST", f"/v1/models/{MODEL_NAME}:predict", _json({"instances": ROWS})),
    "v2 infer": Case("POST", f"/v2/models/{MODEL_NAME}/infer", V2_BODY),
    "v2 versioned infer": Case("POST", f"/v2/models/{MODEL_NAME}/versions/{MODEL_VERSION}/infer", V2_BODY),
    "v2 model metadata": Case("GET", f"/v2/models/{MODEL_NAME}"),
    "v2 ready": Case("GET", "/v2/health/ready", authenticated=False),
    "v1 model status": Case("GET", f"/v1/models/{MODEL_NAME}", authenticated=False),
    "401 missing key": Case(
        "POST", f"/v1/models/{MODEL_NAME}:predict", _json({"instances": ROWS}), authenticated=False
    ),
    "401 wrong key": Case(
        "POST", f"/v2/models/{MODEL_NAME}/infer", V2_BODY, {"Authorization": f"Bearer {WRONG_KEY}"}, False
    ),
    "400 wrong feature count": Case(
        "POST", f"/v1/models/{MODEL_NAME}:predict", _json({"instances": [[1.0, 2.0]]})
    ),
    "400 not json": Case("POST", f"/v2/models/{MODEL_NAME}/infer", b"{not json"),
    "400 bad datatype": Case(
        "POST",
        f"/v2/models/{MODEL_NAME}/infer",
        _json({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP128", "data": IRIS_ROW}]}),
    ),
    "413 body too large": Case(
        "POST", f"/v1/models/{MODEL_NAME}:predict", _json({"instances": [IRIS_ROW] * 300})
    ),
    "415 not json content type": Case(
        "POST", f"/v1/models/{MODEL_NAME}:predict", b"instances", {"Content-Type": "text/plain"}
    ),
    "404 other model": Case("POST", "/v2/models/other/infer", V2_BODY),
    "405 wrong method": Case("GET", f"/v1/models/{MODEL_NAME}:predict"),
}


@pytest.fixture(scope="module")
def http_server(bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    """The HTTP server on loopback, configured as the Lambda bundle is."""
    metadata = json.loads(next((bundle.root / "model").glob("*.metadata.json")).read_text())
    runtime = launch_runtime(
        tmp_path_factory.mktemp("http"),
        model_uri=bundle.root / "model" / "model.joblib",
        model_name=MODEL_NAME,
        model_version=MODEL_VERSION,
        model_sha256=metadata["sha256"],
        auth_keys_file=bundle.root / "apikeys.json",
        max_body_bytes=MAX_BODY_BYTES,
    )
    yield runtime
    runtime.stop()


def _headers(case: Case, bundle: Bundle) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if case.authenticated:
        headers["X-API-Key"] = bundle.api_key
    return {**headers, **case.headers}


def _invoke(event: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = function.handler(event, None)
    return result


def _body(result: dict[str, Any]) -> bytes:
    text: str = result["body"]
    return base64.b64decode(text) if result["isBase64Encoded"] else text.encode()


@pytest.mark.parametrize("kind", KINDS)
def test_every_response_equals_the_http_servers(
    kind: str, lambda_env: Bundle, http_server: RuntimeProcess
) -> None:
    """Same status and same bytes for predictions, metadata and every client error."""
    seen_statuses = set()
    for label, case in CASES.items():
        headers = _headers(case, lambda_env)
        expected = http_server.client.request(case.method, case.path, content=case.body, headers=headers)
        result = _invoke(make_event(kind, case.method, case.path, case.body, headers))
        assert (result["statusCode"], _body(result)) == (expected.status_code, expected.content), label
        assert result["headers"]["content-type"] == "application/json", label
        seen_statuses.add(result["statusCode"])
    assert seen_statuses == {200, 400, 401, 404, 405, 413, 415}


def test_prediction_is_the_models(lambda_env: Bundle) -> None:
    event = make_event(
        REST_API,
        "POST",
        f"/v1/models/{MODEL_NAME}:predict",
        _json({"instances": ROWS}),
        {"Authorization": f"Bearer {lambda_env.api_key}"},
    )
    result = _invoke(event)
    assert result["statusCode"] == 200
    assert json.loads(result["body"]) == {"predictions": [0, 2]}
    assert result["multiValueHeaders"]["content-type"] == ["application/json"]


def test_401_says_how_to_authenticate(lambda_env: Bundle) -> None:
    result = _invoke(
        make_event(HTTP_API, "POST", f"/v1/models/{MODEL_NAME}:predict", _json({"instances": ROWS}))
    )
    assert result["statusCode"] == 401
    assert json.loads(result["body"]) == {"error": "missing or invalid API key"}
    assert result["headers"]["www-authenticate"] == 'Bearer realm="modeldeploy"'


@pytest.mark.parametrize("kind", KINDS)
def test_base64_body_and_any_header_spelling(kind: str, lambda_env: Bundle) -> None:
    headers = {"CONTENT-TYPE": "application/json", "x-Api-KEY": lambda_env.api_key}
    body = _json({"instances": ROWS})
    event = make_event(kind, "POST", f"/v1/models/{MODEL_NAME}:predict", body, headers, base64_body=True)
    result = _invoke(event)
    assert (result["statusCode"], json.loads(result["body"])) == (200, {"predictions": [0, 2]})


@pytest.mark.parametrize("kind", [HTTP_API, REST_API])
def test_named_stage_is_not_part_of_the_route(kind: str, lambda_env: Bundle) -> None:
    headers = {"X-API-Key": lambda_env.api_key}
    event = make_event(kind, "POST", f"/v2/models/{MODEL_NAME}/infer", V2_BODY, headers, stage="prod")
    result = _invoke(event)
    assert result["statusCode"] == 200, result["body"]
    assert json.loads(result["body"])["model_version"] == MODEL_VERSION


def test_stage_named_like_a_protocol_is_still_stripped_only_once(lambda_env: Bundle) -> None:
    headers = {"X-API-Key": lambda_env.api_key}
    path = f"/v1/models/{MODEL_NAME}:predict"
    result = _invoke(make_event(HTTP_API, "POST", path, _json({"instances": ROWS}), headers, stage="v2"))
    assert result["statusCode"] == 200, result["body"]
    rest = make_event(REST_API, "POST", f"/v2/models/{MODEL_NAME}/infer", V2_BODY, headers, stage="v2")
    assert _invoke(rest)["statusCode"] == 200


def test_413_counts_the_decoded_body_even_without_content_length(lambda_env: Bundle) -> None:
    body = _json({"instances": [IRIS_ROW] * 300})
    headers = {"X-API-Key": lambda_env.api_key, "Content-Length": None}
    event = make_event(
        FUNCTION_URL, "POST", f"/v1/models/{MODEL_NAME}:predict", body, headers, base64_body=True
    )
    assert "content-length" not in event["headers"]
    result = _invoke(event)
    assert result["statusCode"] == 413
    assert json.loads(result["body"]) == {
        "error": f"request body exceeds the limit of {MAX_BODY_BYTES} bytes"
    }


def test_body_marked_base64_that_is_not_gets_400(lambda_env: Bundle) -> None:
    event = make_event(
        HTTP_API, "POST", f"/v1/models/{MODEL_NAME}:predict", b"x", {"X-API-Key": lambda_env.api_key}
    )
    event["isBase64Encoded"] = True
    event["body"] = "not base64!"
    result = _invoke(event)
    assert result["statusCode"] == 400
    assert "not valid base64" in json.loads(result["body"])["error"]


def test_event_that_is_not_http_gets_400_without_loading_the_model(lambda_env: Bundle) -> None:
    result = _invoke({"Records": [{"eventSource": "aws:sqs"}]})
    assert result["statusCode"] == 400
    assert "not an API Gateway or function URL event" in json.loads(result["body"])["error"]
    assert function._runtime is None


def test_model_is_loaded_once_per_container(lambda_env: Bundle, monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[str] = []
    real_load = factory.load_configured_model

    def counting_load(settings: Any) -> Any:
        loads.append(settings.model_uri)
        return real_load(settings)

    monkeypatch.setattr(function, "load_configured_model", counting_load)
    headers = {"X-API-Key": lambda_env.api_key}
    for kind in KINDS * 3:
        event = make_event(
            kind, "POST", f"/v1/models/{MODEL_NAME}:predict", _json({"instances": ROWS}), headers
        )
        assert _invoke(event)["statusCode"] == 200
    assert loads == [str(lambda_env.root / "model" / "model.joblib")]


def test_keys_from_environment_replace_the_bundled_keys(
    lambda_env: Bundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = mint_key("from-env")
    monkeypatch.setenv("MODELDEPLOY_API_KEYS_JSON", render_keys_file([other.hashed]))
    path, body = f"/v1/models/{MODEL_NAME}:predict", _json({"instances": ROWS})
    assert (
        _invoke(make_event(HTTP_API, "POST", path, body, {"X-API-Key": other.plaintext}))["statusCode"] == 200
    )
    assert (
        _invoke(make_event(HTTP_API, "POST", path, body, {"X-API-Key": lambda_env.api_key}))["statusCode"]
        == 401
    )


def test_environment_overrides_name_and_version(lambda_env: Bundle, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELDEPLOY_MODEL_NAME", "flowers")
    monkeypatch.setenv("MODELDEPLOY_MODEL_VERSION", "7")
    event = make_event(
        FUNCTION_URL, "POST", "/v2/models/flowers/infer", V2_BODY, {"X-API-Key": lambda_env.api_key}
    )
    result = _invoke(event)
    assert result["statusCode"] == 200, result["body"]
    assert json.loads(result["body"])["model_version"] == "7"


def test_model_uri_relative_to_the_bundle(lambda_env: Bundle, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELDEPLOY_MODEL_URI", "model/model.joblib")
    event = make_event(REST_API, "GET", f"/v2/models/{MODEL_NAME}", headers={"X-API-Key": lambda_env.api_key})
    result = _invoke(event)
    assert result["statusCode"] == 200, result["body"]
    metadata = json.loads(result["body"])
    assert (metadata["name"], metadata["versions"]) == (MODEL_NAME, [MODEL_VERSION])  # still from the bundle
    assert function._runtime is not None
    assert function._runtime.model.path == lambda_env.root / "model" / "model.joblib"


def test_unservable_model_answers_503_in_one_line_and_recovers(
    lambda_env: Bundle, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MODELDEPLOY_MODEL_SHA256", "0" * 64)
    event = make_event(
        HTTP_API,
        "POST",
        f"/v1/models/{MODEL_NAME}:predict",
        _json({"instances": ROWS}),
        {"X-API-Key": lambda_env.api_key},
    )
    result = _invoke(event)
    assert result["statusCode"] == 503
    message = json.loads(result["body"])["error"]
    assert message.startswith("model cannot be served: sha256 mismatch")
    assert "\n" not in message
    monkeypatch.delenv("MODELDEPLOY_MODEL_SHA256")
    assert _invoke(event)["statusCode"] == 200  # a failed load is not cached


def test_missing_bundle_answers_503_naming_the_config(
    lambda_env: Bundle, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LAMBDA_TASK_ROOT", str(tmp_path))
    result = _invoke(make_event(HTTP_API, "GET", "/v2/health/ready"))
    assert result["statusCode"] == 503
    assert f"cannot read {tmp_path / 'modeldeploy-lambda.json'}" in json.loads(result["body"])["error"]
