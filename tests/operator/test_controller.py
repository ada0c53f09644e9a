"""Unit tests of the controller (cache, queue, workers, failure backoff) against the in-memory fake
of our Kube port. The watches and the API server's answers are tested on the real control plane."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from modeldeploy_operator.config import OperatorConfig
from modeldeploy_operator.controller import (
    FIRST_BACKOFF_SECONDS,
    MAX_BACKOFF_SECONDS,
    Controller,
    retry_delay,
)
from modeldeploy_operator.metrics import OperatorMetrics
from modeldeploy_operator.resources import (
    DEPLOYMENT,
    EVENT,
    MODEL_DEPLOYMENT,
    SERVICE,
    SERVICE_MONITOR,
)
from tests.operator.factories import NOW, md_body
from tests.operator.memory_kube import MemoryKube

CONFIG = OperatorConfig(
    namespaces=("ml",),
    metrics_port=0,
    workers=2,
    coalesce_seconds=0.0,
    status_debounce_seconds=0.0,
    resync_seconds=3600.0,
)


def quick_backoff(failures: int) -> float:
    """``retry_delay`` shape at a tenth of the scale, so a test waits for retries briefly."""
    return retry_delay(failures) / 10


def controller(kube: MemoryKube, config: OperatorConfig = CONFIG) -> Controller:
    return Controller(config, OperatorMetrics(), kube, clock=lambda: NOW, backoff=quick_backoff)


def sample(metrics: OperatorMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def eventually(what: str, check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``check`` on the event loop until it holds; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


def succeeded(ctl: Controller) -> float:
    return sample(ctl.metrics, "modeldeploy_operator_reconciles_total", result="success")


def running(
    ctl: Controller, scenario: Callable[[], Coroutine[Any, Any, None]], *, leading: bool = True
) -> None:
    async def main() -> None:
        await ctl.start()
        ctl.set_leading(leading)
        try:
            await scenario()
        finally:
            await ctl.stop()

    asyncio.run(main())


def test_retry_delay_doubles_from_half_a_second_up_to_a_minute() -> None:
    assert [retry_delay(n) for n in range(1, 5)] == [0.5, 1.0, 2.0, 4.0]
    assert retry_delay(1) == FIRST_BACKOFF_SECONDS
    assert retry_delay(100) == MAX_BACKOFF_SECONDS


def test_relist_caches_our_objects_and_skips_an_api_the_cluster_lacks() -> None:
    kube = MemoryKube()
    kube.seed(md_body())
    kube.seed(
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "other", "namespace": "ml"}}
    )
    ctl = controller(kube)
    ctl.relist()
    assert ctl.store.keys(MODEL_DEPLOYMENT) == [("ml", "iris")]
    assert ctl.store.get(DEPLOYMENT, "ml", "other") is None  # not ours: the LIST selects on our labels
    body = ctl.store.get(MODEL_DEPLOYMENT, "ml", "iris")
    assert body is not None
    assert (body["apiVersion"], body["kind"]) == (MODEL_DEPLOYMENT.api_version, MODEL_DEPLOYMENT.kind)
    listed = {kind for verb, kind in kube.reads if verb == "list"}
    assert listed == {
        "ModelDeployment",
        "Deployment",
        "Service",
        "Secret",
        "NetworkPolicy",
        "HorizontalPodAutoscaler",
    }
    assert sample(ctl.metrics, "modeldeploy_operator_managed_modeldeployments") == 1


def test_relist_includes_servicemonitors_when_their_api_is_served() -> None:
    kube = MemoryKube(served=(SERVICE_MONITOR,))
    ctl = controller(kube)
    ctl.relist()
    assert ("list", "ServiceMonitor") in kube.reads


def test_start_reconciles_every_cached_object_and_a_quiet_controller_writes_nothing_more() -> None:
    kube = MemoryKube()
    kube.seed(md_body())
    ctl = controller(kube)

    async def scenario() -> None:
        await eventually(
            "the status written", lambda: "status" in (kube.stored(MODEL_DEPLOYMENT, "ml", "iris") or {})
        )
        await eventually("the queue drained", lambda: ctl.queue is not None and len(ctl.queue) == 0)
        await eventually("a reconcile counted", lambda: succeeded(ctl) >= 1)  # counted after it returns
        writes = len(kube.writes)
        for kind in (MODEL_DEPLOYMENT, DEPLOYMENT, SERVICE):  # each our own write echoed by a watch
            for obj in [o for (k, _, _), o in kube.objects.items() if k == kind.kind]:
                ctl.observe(kind, "MODIFIED", obj)
        assert ctl.queue is not None
        assert len(ctl.queue) == 0  # echoes of what the cache holds queue nothing
        assert len(kube.writes) == writes

    running(ctl, scenario)
    assert kube.stored(DEPLOYMENT, "ml", "iris") is not None


def test_a_child_event_queues_its_owner_and_the_drift_is_repaired() -> None:
    kube = MemoryKube()
    kube.seed(md_body())
    ctl = controller(kube)

    async def scenario() -> None:
        await eventually("the Service", lambda: kube.stored(SERVICE, "ml", "iris") is not None)
        await eventually("the queue drained", lambda: ctl.queue is not None and len(ctl.queue) == 0)
        kube.remove(SERVICE, "ml", "iris")
        deleted = ctl.store.get(SERVICE, "ml", "iris")
        assert deleted is not None
        ctl.observe(SERVICE, "DELETED", deleted)
        await eventually("the Service restored", lambda: kube.stored(SERVICE, "ml", "iris") is not None)

    running(ctl, scenario)


def test_a_new_model_deployment_event_is_reconciled() -> None:
    kube = MemoryKube()
    ctl = controller(kube)

    async def scenario() -> None:
        ctl.observe(MODEL_DEPLOYMENT, "ADDED", kube.seed(md_body("wine")))
        await eventually("wine's Deployment", lambda: kube.stored(DEPLOYMENT, "ml", "wine") is not None)

    running(ctl, scenario)
    assert sample(ctl.metrics, "modeldeploy_operator_managed_modeldeployments") == 1


def test_a_failing_reconcile_is_retried_with_backoff_and_reported_once() -> None:
    kube = MemoryKube()
    kube.seed(md_body())
    kube.fail("apply", "Deployment", 500, "etcd is unhappy", times=2)
    ctl = controller(kube)
    started = time.monotonic()

    async def scenario() -> None:
        await eventually(
            "the Deployment after two failures", lambda: kube.stored(DEPLOYMENT, "ml", "iris") is not None
        )
        await eventually("the successful reconcile counted", lambda: succeeded(ctl) >= 1)

    running(ctl, scenario)
    assert time.monotonic() - started >= quick_backoff(1) + quick_backoff(2)  # it waited, it did not spin
    assert sample(ctl.metrics, "modeldeploy_operator_reconciles_total", result="error") == 2
    warnings = [o for (k, _, _), o in kube.objects.items() if k == EVENT.kind and o["type"] == "Warning"]
    assert [(e["reason"], e["message"]) for e in warnings] == [
        ("ReconcileFailed", "KubeError: HTTP 500: etcd is unhappy")
    ]
    assert warnings[0]["lastTimestamp"] == "2026-01-01T12:00:00Z"  # the controller's clock


@pytest.mark.parametrize("gone", ["DELETED", "deleting"])
def test_a_model_deployment_that_goes_away_is_forgotten(gone: str) -> None:
    kube = MemoryKube()
    body = kube.seed(md_body())
    ctl = controller(kube)
    ctl.relist()
    if gone == "DELETED":
        ctl.observe(MODEL_DEPLOYMENT, "DELETED", body)
        assert ctl.store.get(MODEL_DEPLOYMENT, "ml", "iris") is None
    else:
        ctl.observe(
            MODEL_DEPLOYMENT,
            "MODIFIED",
            kube.edit(MODEL_DEPLOYMENT, "ml", "iris", {"metadata": {"deletionTimestamp": "x"}}),
        )
    assert ctl.reconciler.reconcile("ml", "iris").writes == 0
    assert kube.writes == []


def test_a_standby_keeps_its_cache_but_reconciles_nothing_until_it_leads() -> None:
    kube = MemoryKube()
    kube.seed(md_body())
    ctl = controller(kube)

    async def scenario() -> None:
        ctl.observe(
            MODEL_DEPLOYMENT,
            "MODIFIED",
            {**md_body(), "metadata": {**md_body()["metadata"], "resourceVersion": "99"}},
        )
        await asyncio.sleep(0.2)  # time in which a worker would have reconciled
        assert ctl.store.keys(MODEL_DEPLOYMENT) == [("ml", "iris")]
        assert (kube.writes, succeeded(ctl)) == ([], 0)
        assert sample(ctl.metrics, "modeldeploy_operator_leader") == 0
        ctl.set_leading(True)
        await eventually("the new leader's first reconcile", lambda: succeeded(ctl) >= 1)
        assert kube.stored(DEPLOYMENT, "ml", "iris") is not None
        assert sample(ctl.metrics, "modeldeploy_operator_leader") == 1
        assert sample(ctl.metrics, "modeldeploy_operator_leader_transitions_total") == 1
        ctl.set_leading(False)
        assert sample(ctl.metrics, "modeldeploy_operator_leader") == 0

    running(ctl, scenario, leading=False)
