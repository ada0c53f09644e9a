"""The canary analysis against real runtime processes on loopback: the operator's scraper reads
their ``/metrics`` with prometheus-client's parser, and the verdict comes from what they really
counted. Also measures what the analysis costs: one round of scrapes of 10 runtimes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import joblib
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression

from modeldeploy_operator.analysis import Verdict, judge, measure
from modeldeploy_operator.canary import CANARY, STABLE
from modeldeploy_operator.canary_metrics import PodScraper
from modeldeploy_operator.rollout_spec import CanaryAnalysis
from tests.runtime.conftest import IRIS_ROW, RuntimeProcess, launch_runtime

ANALYSIS = CanaryAnalysis.model_validate({"minRequests": 20, "maxErrorRatio": 0.05, "maxLatencyRatio": 1.5})


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Stable: iris on 4 features. Bad: a regressor trained on 3, which rejects the 4-feature rows."""
    directory = tmp_path_factory.mktemp("canary-models")
    features, labels = load_iris(return_X_y=True)
    paths = {"good": directory / "good.joblib", "bad": directory / "bad.joblib"}
    joblib.dump(LogisticRegression(max_iter=1000).fit(features, labels), paths["good"])
    joblib.dump(LinearRegression().fit(features[:, :3], features[:, 3]), paths["bad"])
    return paths


@pytest.fixture
def runtimes(tmp_path: Path) -> Iterator[list[RuntimeProcess]]:
    started: list[RuntimeProcess] = []
    yield started
    for runtime in started:
        runtime.stop()


def as_pod(name: str, runtime: RuntimeProcess, *, canary: bool) -> dict[str, Any]:
    """What the API server says about a runtime pod, pointing at a loopback runtime."""
    labels = {"modeldeploy.io/model-deployment": "iris"}
    if canary:
        labels["modeldeploy.io/track"] = "canary"
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "runtime", "ports": [{"name": "metrics", "containerPort": runtime.metrics_port}]}]},
        "status": {"podIP": "127.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]},
    }  # fmt: skip


def predict(runtime: RuntimeProcess, count: int) -> list[int]:
    return [
        runtime.client.post("/v1/models/m:predict", json={"instances": [IRIS_ROW]}).status_code
        for _ in range(count)
    ]


def stable_and_canary(
    models: dict[str, Path], runtimes: list[RuntimeProcess], tmp_path: Path, canary_model: str
) -> tuple[RuntimeProcess, RuntimeProcess, list[dict[str, Any]]]:
    """A stable runtime on the good model, a canary one on ``canary_model``, and their pods."""
    stable = launch_runtime(tmp_path, model_uri=models["good"], model_name="m", model_version="3")
    canary = launch_runtime(tmp_path, model_uri=models[canary_model], model_name="m", model_version="4")
    runtimes += [stable, canary]
    return (
        stable,
        canary,
        [as_pod("iris-abc-1", stable, canary=False), as_pod("iris-canary-def-1", canary, canary=True)],
    )


def test_a_canary_rejecting_what_stable_accepts_fails_on_its_real_counters(
    models: dict[str, Path], runtimes: list[RuntimeProcess], tmp_path: Path
) -> None:
    stable, canary, pods = stable_and_canary(models, runtimes, tmp_path, "bad")
    scraper = PodScraper()
    predict(stable, 5)
    predict(canary, 5)  # before the step: not counted
    baseline = scraper.sample("ml", "iris", pods)
    assert set(baseline[CANARY]) == {"iris-canary-def-1"}
    assert set(baseline[STABLE]) == {"iris-abc-1"}
    assert set(predict(stable, 40)) == {200}
    assert set(predict(canary, 25)) == {400}
    assert httpx.get(f"{canary.url}/v2/health/ready").status_code == 200  # probes are not counted
    now = scraper.sample("ml", "iris", pods)
    figures = measure(now[CANARY], now[STABLE], baseline[CANARY], baseline[STABLE])
    assert (figures.requests, figures.errors, figures.stable_requests) == (25, 25, 40)
    assert figures.canary_p99 is not None
    assert figures.stable_p99 is not None
    verdict, message = judge(figures, ANALYSIS)
    assert verdict is Verdict.FAIL
    assert "error ratio 1.000 (25/25 requests failed)" in message


def test_a_canary_answering_like_stable_passes(
    models: dict[str, Path], runtimes: list[RuntimeProcess], tmp_path: Path
) -> None:
    stable, canary, pods = stable_and_canary(models, runtimes, tmp_path, "good")
    scraper = PodScraper()
    baseline = scraper.sample("ml", "iris", pods)
    predict(stable, 60)
    predict(canary, 30)
    now = scraper.sample("ml", "iris", pods)
    verdict, message = judge(measure(now[CANARY], now[STABLE], baseline[CANARY], baseline[STABLE]), ANALYSIS)
    assert verdict is Verdict.PASS, message


def test_scraping_ten_runtimes_costs_little(
    models: dict[str, Path], runtimes: list[RuntimeProcess], tmp_path: Path
) -> None:
    """The analysis overhead at 10 pods: one round of 10 scrapes (concurrent) and their parsing."""
    runtimes += [
        launch_runtime(tmp_path, wait=False, model_uri=models["good"], model_name="m", model_version=str(i))
        for i in range(10)
    ]
    for runtime in runtimes:
        runtime.wait_ready(timeout=120)
        predict(runtime, 3)
    pods = [
        as_pod(f"iris-canary-x-{i}" if i < 2 else f"iris-x-{i}", r, canary=i < 2)
        for i, r in enumerate(runtimes)
    ]
    scraper = PodScraper()
    scraper.sample("ml", "iris", pods)  # warm
    rounds = 20
    started = time.perf_counter()
    for _ in range(rounds):
        samples = scraper.sample("ml", "iris", pods)
    per_round = (time.perf_counter() - started) / rounds
    assert len(samples[CANARY]) + len(samples[STABLE]) == 10
    assert all(c.requests == 3 for side in samples.values() for c in side.values())
    print(f"\nscrape+parse of 10 runtimes: {per_round * 1000:.1f} ms per analysis round")
    assert per_round < 2.0
