"""Metric values after a known number of requests, summed over two worker processes."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from modeldeploy_runtime.serving.metrics import DURATION_BUCKETS, RuntimeMetrics
from modeldeploy_runtime.serving.model import LoadedModel
from tests.runtime.conftest import IRIS_ROW, RuntimeProcess, v2_body
from tests.support import wait_until


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _requests_in(path: Path) -> float:
    """The requests one process counted, read from its own metrics file."""
    entries = MmapedDict.read_all_values_from_file(str(path))  # type: ignore[no-untyped-call]
    return sum(float(entry[1]) for entry in entries if "modeldeploy_requests" in entry[0])


def test_metrics_after_known_requests_with_two_workers(
    tmp_path: Path, models: dict[str, Path], start_runtime: Callable[..., RuntimeProcess]
) -> None:
    metrics_dir = tmp_path / "metrics"
    runtime = start_runtime(model_uri=models["iris"], model_name="iris", workers=2, metrics_dir=metrics_dir)
    setosa, virginica = IRIS_ROW, [6.7, 3.0, 5.2, 2.3]

    def v2_call(_: int) -> int:
        with httpx.Client(base_url=runtime.url) as client:  # a fresh connection each: spreads over workers
            return client.post("/v2/models/iris/infer", json=v2_body([setosa, virginica])).status_code

    def v1_call(_: int) -> int:
        with httpx.Client(base_url=runtime.url) as client:
            return client.post("/v1/models/iris:predict", json={"instances": [setosa]}).status_code

    def bad_call(_: int) -> int:
        with httpx.Client(base_url=runtime.url) as client:
            return client.post("/v2/models/iris/infer", json=v2_body([[1.0]])).status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(v2_call, range(40))) == [200] * 40
        assert list(pool.map(v1_call, range(24))) == [200] * 24
        assert list(pool.map(bad_call, range(6))) == [400] * 6

    def answered() -> float:
        text = runtime.metrics()
        return sum(v for (name, _), v in _samples(text).items() if name == "modeldeploy_requests_total")

    # Each worker writes its counts every FLUSH_SECONDS.
    wait_until(
        "both workers to write their counts", lambda: answered() == 40 + 24 + 6, timeout=5, interval=0.05
    )
    samples = _samples(runtime.metrics())
    assert _value(samples, "modeldeploy_requests_total", model="iris", protocol="v2", code="200") == 40
    assert _value(samples, "modeldeploy_requests_total", model="iris", protocol="v1", code="200") == 24
    assert _value(samples, "modeldeploy_requests_total", model="iris", protocol="v2", code="400") == 6
    assert _value(samples, "modeldeploy_request_duration_seconds_count", model="iris", protocol="v2") == 46
    assert _value(samples, "modeldeploy_request_duration_seconds_count", model="iris", protocol="v1") == 24
    predictions = {"version": "v1", "model": "iris"}
    assert _value(samples, "modeldeploy_predictions_total", **predictions, **{"class": "0"}) == 40 + 24
    assert _value(samples, "modeldeploy_predictions_total", **predictions, **{"class": "2"}) == 40
    assert _value(samples, "modeldeploy_predictions_total", **predictions, **{"class": "1"}) == 0
    assert _value(samples, "modeldeploy_batch_size_sum", model="iris") == 40 * 2 + 24
    assert 1 <= _value(samples, "modeldeploy_batch_size_count", model="iris") <= 64
    assert _value(samples, "modeldeploy_inflight_requests", model="iris") == 0
    assert _value(samples, "modeldeploy_model_load_seconds", model="iris", version="v1") > 0
    info = [key for key in samples if key[0] == "modeldeploy_model_info"]
    assert len(info) == 1
    assert dict(info[0][1])["sha256"] == runtime.client.get("/v2/models/iris").json()["parameters"]["sha256"]
    # Both workers served some of them, so the numbers above are sums over processes.
    served_by = {path.name: _requests_in(path) for path in metrics_dir.glob("counter_*.db")}
    assert sum(1 for count in served_by.values() if count > 0) >= 2, served_by
    # The metrics are only on the metrics port, not the inference port.
    assert runtime.client.get("/metrics").status_code == 404


def _model(classes: list[int] | None) -> LoadedModel:
    return LoadedModel(
        estimator=None,
        name="iris",
        version="v1",
        sha256="0" * 64,
        model_format="onnx",
        path=Path("/model.onnx"),
        metadata=None,
        warnings=[],
        load_seconds=0.1,
        classes=classes,
    )


def test_a_flush_exposes_exactly_what_one_observe_per_value_would() -> None:
    """The buffered histogram writes prometheus-client's per-bucket values itself: this fails if
    a new prometheus-client keeps them differently."""
    seconds = [0.0, 0.0001, 0.0005, 0.0007, 0.003, 0.003, 0.2, 10.0, 12.5]
    metrics = RuntimeMetrics(_model([0, 1, 2]), batch_max_size=8)
    for value in seconds:
        metrics.record_request("v2", 200, value)
    metrics.record_batch(3, {"predict": np.asarray([2, 0, 2])})
    metrics.record_batch(5, {"predict_proba": np.eye(3)[[1, 1, 1, 0, 2]]})
    before = _samples(generate_latest(metrics.registry).decode())
    assert _value(before, "modeldeploy_requests_total", model="iris", protocol="v2", code="200") == 0
    metrics.flush(inflight=3)
    ours = _samples(generate_latest(metrics.registry).decode())

    registry = CollectorRegistry()
    reference = Histogram(
        "modeldeploy_request_duration_seconds",
        "reference",
        ["model", "protocol"],
        buckets=DURATION_BUCKETS,
        registry=registry,
    )
    for value in seconds:
        reference.labels("iris", "v2").observe(value)
    expected = {
        key: value
        for key, value in _samples(generate_latest(registry).decode()).items()
        if not key[0].endswith("_created")
    }
    assert expected
    for key, value in expected.items():
        assert ours.get(key) == value, key
    assert _value(ours, "modeldeploy_requests_total", model="iris", protocol="v2", code="200") == len(seconds)
    assert _value(ours, "modeldeploy_inflight_requests", model="iris") == 3
    assert _value(ours, "modeldeploy_batch_size_sum", model="iris") == 8
    assert _value(ours, "modeldeploy_batch_size_bucket", model="iris", le="4.0") == 1
    predicted = {
        label: _value(ours, "modeldeploy_predictions_total", model="iris", version="v1", **{"class": label})
        for label in "012"
    }
    assert predicted == {"0": 2, "1": 3, "2": 3}
    metrics.flush(inflight=0)  # nothing new: counts stay, in-flight follows
    again = _samples(generate_latest(metrics.registry).decode())
    assert _value(again, "modeldeploy_requests_total", model="iris", protocol="v2", code="200") == len(
        seconds
    )
    assert _value(again, "modeldeploy_inflight_requests", model="iris") == 0
