"""The canary analysis against real runtime processes on loopback: the operator's scraper reads
their ``/metrics`` with prometheus-client's parser, and the verdict comes from what they really
counted. The Prometheus source (``MODELDEPLOY_CANARY_PROMETHEUS_URL``) is checked against a real
Prometheus (built from its Go module) scraping the same runtimes. Also measures what the analysis
costs: one round of scrapes of 10 runtimes."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import joblib
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression

from modeldeploy_devenv.custom_metrics_assets import PROMETHEUS, require_custom_metrics_binaries
from modeldeploy_operator.analysis import PodCounters, Verdict, judge, measure
from modeldeploy_operator.canary import CANARY, STABLE, Samples
from modeldeploy_operator.canary_metrics import PodScraper, PrometheusSource, SampleError
from modeldeploy_operator.rollout_spec import CanaryAnalysis
from tests.runtime.conftest import IRIS_ROW, RuntimeProcess, launch_runtime
from tests.support import free_port, stop_process, wait_until

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


def _answered(runtime: RuntimeProcess) -> float:
    """The requests ``runtime`` has written to its metrics so far."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(runtime.metrics())
        for sample in family.samples
        if sample.name == "modeldeploy_requests_total"
    )


def predict(runtime: RuntimeProcess, count: int) -> list[int]:
    """``count`` predictions, returned once the runtime's metrics count them (it writes them
    every ``FLUSH_SECONDS``), so a scrape right after sees them all."""
    before = _answered(runtime)
    codes = [
        runtime.client.post("/v1/models/m:predict", json={"instances": [IRIS_ROW]}).status_code
        for _ in range(count)
    ]
    wait_until(
        f"{count} requests in the metrics", lambda: _answered(runtime) == before + count, 10, interval=0.05
    )
    return codes


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
    predict(stable, 200)
    predict(canary, 100)  # enough that one request slowed by the machine is not the p99 alone
    now = scraper.sample("ml", "iris", pods)
    # Two identical runtimes on a shared VM: the latency bound here allows noise, as on the real node.
    tolerant = ANALYSIS.model_copy(update={"max_latency_ratio": 3.0})
    verdict, message = judge(measure(now[CANARY], now[STABLE], baseline[CANARY], baseline[STABLE]), tolerant)
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


@contextmanager
def _prometheus_scraping(pods: list[dict[str, Any]], directory: Path) -> Iterator[str]:
    """A real Prometheus scraping each pod's metrics port every second, labelled as the
    ServiceMonitor's scrape would label it (namespace, pod); yields its URL."""
    targets = [
        {
            "targets": [f"127.0.0.1:{pod['spec']['containers'][0]['ports'][0]['containerPort']}"],
            "labels": {"namespace": "ml", "pod": pod["metadata"]["name"]},
        }
        for pod in pods
    ]
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "runtimes", "static_configs": targets}],
    }
    (directory / "prometheus.yml").write_text(json.dumps(config))
    port = free_port()
    process = subprocess.Popen(
        [str(require_custom_metrics_binaries()[PROMETHEUS]), f"--config.file={directory / 'prometheus.yml'}",
         f"--storage.tsdb.path={directory / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        ready = lambda: httpx.get(f"{url}/-/ready").status_code == 200  # noqa: E731
        wait_until("Prometheus ready", ready, 60, retrying=(httpx.HTTPError,))
        yield url
    finally:
        stop_process(process)


def _comparable(samples: Samples) -> dict[str, dict[str, tuple[float, float, dict[float, float]]]]:
    """Counters by side and pod, bucket bounds as numbers (Prometheus 3 writes ``le`` as floats)."""
    return {
        side: {
            pod: (c.requests, c.errors, {float(le): count for le, count in c.buckets.items()})
            for pod, c in pods.items()
        }
        for side, pods in samples.items()
    }


@pytest.mark.slow  # builds Prometheus from its Go module the first time
def test_prometheus_gives_the_counters_the_pods_give(
    models: dict[str, Path], runtimes: list[RuntimeProcess], tmp_path: Path
) -> None:
    stable, canary, pods = stable_and_canary(models, runtimes, tmp_path, "bad")
    predict(stable, 30)
    predict(canary, 20)
    scraped = PodScraper().sample("ml", "iris", pods)
    with _prometheus_scraping(pods, tmp_path) as url:
        source = PrometheusSource(url)

        def same_as_scraped() -> bool:
            try:
                return _comparable(source.sample("ml", "iris", pods)) == _comparable(scraped)
            except SampleError:  # no series of the canary yet
                return False

        wait_until("Prometheus's counters to equal the pods' own", same_as_scraped, 60)
        queried = source.sample("ml", "iris", pods)
    assert queried[CANARY]["iris-canary-def-1"].errors == 20  # every canary answer was a rejection
    empty = {side: {pod: PodCounters() for pod in counters} for side, counters in queried.items()}
    verdict, message = judge(
        measure(queried[CANARY], queried[STABLE], empty[CANARY], empty[STABLE]), ANALYSIS
    )
    assert verdict is Verdict.FAIL, message
