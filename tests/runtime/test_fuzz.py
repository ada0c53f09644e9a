"""Property-based fuzzing of request bodies: whatever a client sends, never a 5xx, never a crash."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.runtime.conftest import RuntimeProcess


def _encode(document: Any) -> bytes:
    return json.dumps(document).encode()  # the stdlib writes integers of any size, like hostile clients


PATHS = ["/v2/models/iris/infer", "/v1/models/iris:predict"]
FUZZ_SETTINGS = settings(max_examples=150, deadline=None, database=None)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=30,
)
datatypes = st.sampled_from(["BOOL", "INT8", "INT64", "UINT8", "FP16", "FP32", "FP64", "BYTES", "FP128", ""])
shapes = st.lists(st.integers(min_value=-2, max_value=6), min_size=0, max_size=3) | json_values
tensors = st.fixed_dictionaries(
    {
        "name": st.text(max_size=4) | scalars,
        "shape": shapes,
        "datatype": datatypes | scalars,
        "data": json_values,
    },
)
v2_requests = st.fixed_dictionaries(
    {"inputs": st.lists(tensors, max_size=3) | json_values},
    optional={
        "id": scalars,
        "outputs": st.lists(
            st.fixed_dictionaries({"name": st.sampled_from(["predict", "predict_proba", "x"])})
        )
        | json_values,
        "parameters": json_values,
    },
)
v1_requests = st.fixed_dictionaries(
    {"instances": json_values | st.lists(st.lists(scalars, max_size=5), max_size=4)}
)


def _post(runtime: RuntimeProcess, path: str, body: bytes, content_type: str = "application/json") -> int:
    try:
        response = runtime.client.post(path, content=body, headers={"content-type": content_type})
    except httpx.HTTPError as error:
        pytest.fail(f"connection failed for body {body[:200]!r}: {error!r}")
    assert response.status_code < 500, (path, body[:500], response.text)
    if response.status_code >= 400:
        assert "error" in response.json()
    return response.status_code


def _assert_survived(runtime: RuntimeProcess) -> None:
    """After a fuzz run: the server still runs, is ready, and logged no traceback."""
    assert runtime.process.poll() is None
    assert runtime.client.get("/v2/health/ready").status_code == 200
    assert "Traceback" not in runtime.log()


# Each test runs its Hypothesis search, then checks that the server survived it, so the check
# follows every fuzz run whatever order the tests run in.


def test_v2_structured_bodies_never_5xx(iris_runtime: RuntimeProcess) -> None:
    @FUZZ_SETTINGS
    @given(document=v2_requests)
    def fuzz(document: dict[str, Any]) -> None:
        _post(iris_runtime, PATHS[0], _encode(document))

    fuzz()
    _assert_survived(iris_runtime)


def test_v1_bodies_never_5xx(iris_runtime: RuntimeProcess) -> None:
    @FUZZ_SETTINGS
    @given(document=v1_requests)
    def fuzz(document: dict[str, Any]) -> None:
        _post(iris_runtime, PATHS[1], _encode(document))

    fuzz()
    _assert_survived(iris_runtime)


def test_arbitrary_bytes_never_5xx(iris_runtime: RuntimeProcess) -> None:
    @FUZZ_SETTINGS
    @given(path=st.sampled_from(PATHS), body=st.binary(max_size=300) | json_values.map(_encode))
    def fuzz(path: str, body: bytes) -> None:
        _post(iris_runtime, path, body)

    fuzz()
    _assert_survived(iris_runtime)


def test_nearly_valid_tensors_never_5xx(iris_runtime: RuntimeProcess) -> None:
    @FUZZ_SETTINGS
    @given(
        rows=st.integers(min_value=0, max_value=5),
        columns=st.sampled_from([3, 4, 5]),
        datatype=st.sampled_from(["FP16", "FP32", "FP64", "INT8", "INT64", "UINT8", "BOOL"]),
        data=st.data(),
    )
    def fuzz(rows: int, columns: int, datatype: str, data: st.DataObject) -> None:
        values = st.floats(width=64) | st.integers(min_value=-(2**65), max_value=2**65) | st.booleans()
        flat = data.draw(st.lists(values, min_size=max(rows * columns - 1, 0), max_size=rows * columns + 1))
        body = {"inputs": [{"name": "x", "shape": [rows, columns], "datatype": datatype, "data": flat}]}
        status = _post(iris_runtime, PATHS[0], json.dumps(body).encode())
        if status == 200:
            assert columns == 4
            assert len(flat) == rows * columns
            assert rows > 0

    fuzz()
    _assert_survived(iris_runtime)
