"""The machinery between kopf's watch events and the reconcile: the cache, the work queue, the
worker tasks, the periodic resync (the safety net) and the metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from modeldeploy_operator.apis import APIAvailability
from modeldeploy_operator.config import OperatorConfig
from modeldeploy_operator.constants import EVENT_RECONCILE_FAILED, LABEL_MODEL_DEPLOYMENT, OWNED_SELECTOR
from modeldeploy_operator.events import Note
from modeldeploy_operator.kube import Kube, KubeAPI, KubeError, load_api_client
from modeldeploy_operator.metrics import OperatorMetrics
from modeldeploy_operator.reconcile import Reconciler, post_event
from modeldeploy_operator.resources import MODEL_DEPLOYMENT, WATCHED, Resource, Role
from modeldeploy_operator.store import Store
from modeldeploy_operator.workqueue import Key, WorkQueue

logger = logging.getLogger(__name__)

FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 60.0


def retry_delay(failures: int) -> float:
    """Seconds before the next attempt after ``failures`` failed reconciles in a row (doubling)."""
    return min(FIRST_BACKOFF_SECONDS * 2.0 ** (failures - 1), MAX_BACKOFF_SECONDS)


class Controller:
    def __init__(
        self,
        config: OperatorConfig,
        metrics: OperatorMetrics,
        kube: KubeAPI | None = None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        backoff: Callable[[int], float] = retry_delay,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.kube = kube or Kube(load_api_client(config.workers + 2), record_write=metrics.record_write)
        self.clock, self.backoff = clock, backoff
        self.store = Store()
        metrics.watch_readiness(lambda: self.store.all(MODEL_DEPLOYMENT))
        self.apis = APIAvailability(self.kube, config.monitoring_api_cache_seconds)
        self.reconciler = Reconciler(self.kube, self.store, config, apis=self.apis, clock=clock)
        self.queue: WorkQueue | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._failures: dict[Key, int] = {}
        self._last_error: dict[Key, str] = {}

    # -- cache -------------------------------------------------------------------------------------
    def _namespaces(self) -> list[str | None]:
        return [None] if self.config.all_namespaces else list(self.config.namespaces)

    def relist(self) -> None:
        """LIST everything we watch into the cache (blocking: run it in a thread)."""
        scope = None if self.config.all_namespaces else list(self.config.namespaces)
        for resource in WATCHED:
            if not self.apis.available(resource):
                continue
            selector = OWNED_SELECTOR if resource.role is Role.CHILD else None
            for namespace in self._namespaces():
                result = self.kube.list(resource, namespace, selector)
                for item in result.items:  # a LIST leaves these out of its items
                    item.setdefault("apiVersion", resource.api_version)
                    item.setdefault("kind", resource.kind)
                self.store.replace(resource, scope, result.items, result.resource_version)
        self.metrics.managed.set(self.store.count(MODEL_DEPLOYMENT))

    def observe(self, resource: Resource, event_type: str | None, obj: Mapping[str, Any]) -> None:
        """A watch event: update the cache and queue the ModelDeployment it concerns, unless the
        event tells nothing new (the echo of our own write, whose response is cached already)."""
        metadata = obj.get("metadata", {})
        namespace, name = metadata.get("namespace", ""), metadata.get("name", "")
        if event_type == "DELETED":
            self.store.remove(resource, namespace, name)
        elif not self.store.put(resource, obj):
            return
        if resource.role is Role.PRIMARY:
            self.metrics.managed.set(self.store.count(MODEL_DEPLOYMENT))
            if event_type != "DELETED":
                self._enqueue((namespace, name), 0.0)
            return
        owner = (metadata.get("labels") or {}).get(LABEL_MODEL_DEPLOYMENT)
        if owner:
            self._enqueue((namespace, owner), self.config.coalesce_seconds)

    def _enqueue(self, key: Key, delay: float) -> None:
        if self.queue is not None:
            self.queue.add(key, delay)
            self.metrics.queue_depth.set(len(self.queue))

    # -- workers -----------------------------------------------------------------------------------
    async def start(self) -> None:
        self.queue = WorkQueue()
        await asyncio.to_thread(self.relist)
        for namespace, name in self.store.keys(MODEL_DEPLOYMENT):
            self._enqueue((namespace, name), 0.0)
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(self.config.workers)]
        self._tasks.append(asyncio.create_task(self._resync()))
        self.metrics.serve(self.config.metrics_port)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.config.resync_seconds)
            try:
                await asyncio.to_thread(self.relist)
            except (KubeError, OSError) as error:
                logger.warning("resync failed: %s", error)
                continue
            for key in self.store.keys(MODEL_DEPLOYMENT):
                self._enqueue(key, 0.0)

    async def _worker(self) -> None:
        if self.queue is None:
            raise RuntimeError("start() creates the queue before the workers")
        while True:
            key = await self.queue.get()
            started = time.perf_counter()
            try:
                outcome = await asyncio.to_thread(self.reconciler.reconcile, *key)
            except Exception as error:  # one failing object must not stop the worker
                self.metrics.reconciles.labels(result="error").inc()
                await self._failed(key, error)
            else:
                self.metrics.reconciles.labels(result="success").inc()
                self._failures.pop(key, None)
                self._last_error.pop(key, None)
                if outcome.requeue_after is not None:
                    self.queue.add(key, outcome.requeue_after)
                if outcome.writes:
                    logger.info("%s/%s reconciled with %d write(s)", key[0], key[1], outcome.writes)
            finally:
                self.metrics.reconcile_duration.observe(time.perf_counter() - started)
                self.queue.done(key)
                self.metrics.queue_depth.set(len(self.queue))

    async def _failed(self, key: Key, error: Exception) -> None:
        if self.queue is None:
            return
        failures = self._failures[key] = self._failures.get(key, 0) + 1
        delay = self.backoff(failures)
        message = f"{type(error).__name__}: {error}"
        logger.error(
            "%s/%s: reconcile failed (attempt %d, retrying in %.1fs): %s", *key, failures, delay, message
        )
        self.queue.add(key, delay)
        if self._last_error.get(key) != message:
            self._last_error[key] = message
            body = self.store.get(MODEL_DEPLOYMENT, *key)
            if body is not None:
                note = Note("Warning", EVENT_RECONCILE_FAILED, message)
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(post_event, self.kube, body, note, self.clock())
