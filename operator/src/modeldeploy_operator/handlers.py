"""kopf wiring only: settings, start/stop, and watch events handed to the controller.

Every handler is one line of work: the controller caches the object and queues its
ModelDeployment, and the single reconcile does the rest. No handler writes to the API, so kopf
keeps no progress or diff-base state on our objects (no bookkeeping patches, no finalizer).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import kopf

from modeldeploy_operator.constants import (
    GROUP,
    KOPF_ANNOTATION_PREFIX,
    LABEL_MANAGED_BY,
    OPERATOR_NAME,
    OWNED_SELECTOR,
)
from modeldeploy_operator.controller import Controller
from modeldeploy_operator.metrics import OperatorMetrics
from modeldeploy_operator.resources import CHILDREN, WATCHED, Resource, Role

OWNED = {LABEL_MANAGED_BY: OPERATOR_NAME}
WATCH_SERVER_TIMEOUT_SECONDS = 270
WATCH_CLIENT_TIMEOUT_SECONDS = 300


class NoDiffBaseStorage(kopf.DiffBaseStorage):
    """No diff base: it serves only change handlers (on.create/update/...), and there are none.

    kopf computes the "essence" of every watched object on every watch event (a deep copy of the
    whole body) whether a change handler exists or not; at a thousand ModelDeployments that was a
    fifth of the operator's CPU. An empty essence keeps kopf's change detection idle. Adding a
    change handler means putting ``kopf.AnnotationsDiffBaseStorage`` back.
    """

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[kopf.FieldSpec] | None = None
    ) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


QUEUEING_IDLE_TIMEOUT_SECONDS = 0.5


def configure_settings(settings: kopf.OperatorSettings) -> None:
    # A watch without timeouts can hang silently forever after a network blip.
    settings.watching.server_timeout = WATCH_SERVER_TIMEOUT_SECONDS
    settings.watching.client_timeout = WATCH_CLIENT_TIMEOUT_SECONDS
    settings.watching.connect_timeout = 30
    # The children's watches, filtered by the API server with OWNED_SELECTOR: only our objects reach
    # the operator (kopf's ``labels=`` filter alone would stream every Secret and Deployment).
    for child in CHILDREN:
        settings.watching.label_selectors[(child.group, child.version, child.plural)] = OWNED_SELECTOR
    # Our own prefix for anything kopf may store, never kopf.zalando.org.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = NoDiffBaseStorage()
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # kopf would turn handler log lines into Events; we post meaningful transitions ourselves.
    settings.posting.enabled = False
    settings.networking.request_timeout = 60
    # kopf keeps a worker task and queue per object until it has been idle this long (5 s by
    # default); our handlers only cache and queue, so a short life keeps a burst of new objects
    # (N ModelDeployments applied at once, and their children) from piling up in memory.
    settings.queueing.idle_timeout = QUEUEING_IDLE_TIMEOUT_SECONDS


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    configure_settings(settings)
    controller = Controller(memo.config, OperatorMetrics())
    memo.controller = controller
    await controller.start()


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    controller: Controller | None = getattr(memo, "controller", None)
    if controller is not None:
        await controller.stop()


def register_watch(resource: Resource) -> None:
    """One kopf event handler for ``resource``: cache the object, queue its ModelDeployment."""

    async def on_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        memo.controller.observe(resource, event["type"], event["object"])

    labels = OWNED if resource.role is Role.CHILD else None
    decorate = kopf.on.event(
        resource.group, resource.version, resource.plural, labels=labels, id=resource.kind
    )
    decorate(on_event)


for watched in WATCHED:
    register_watch(watched)
