"""Metric values after a known number of requests, summed over two worker processes."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from tests.runtime.conftest import IRIS_ROW, RuntimeProcess, v2_body


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
