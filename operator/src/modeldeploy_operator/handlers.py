"""kopf wiring only: settings, start/stop, and watch events handed to the controller.

Every handler is one line of work: the controller caches the object and queues its
ModelDeployment, and the single reconcile does the rest. No handler writes to the API, so kopf
keeps no progress or diff-base state on our objects (no bookkeeping patches, no finalizer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

import kopf

from modeldeploy_operator.config import OperatorConfig
from modeldeploy_operator.constants import (
    GROUP,
    KOPF_ANNOTATION_PREFIX,
    LABEL_MANAGED_BY,
    OPERATOR_NAME,
    OWNED_SELECTOR,
)
from modeldeploy_operator.controller import Controller
from modeldeploy_operator.kube import KubeError
from modeldeploy_operator.leadership import LeaderElector, build_elector
from modeldeploy_operator.metrics import OperatorMetrics
from modeldeploy_operator.resources import CHILDREN, WATCHED, Resource, Role

logger = logging.getLogger(__name__)

OWNED = {LABEL_MANAGED_BY: OPERATOR_NAME}
# The API server ends a watch after server_timeout; a watch that went silent without being closed
# (a dropped connection, a stalled proxy) is abandoned by the client this long after that.
WATCH_CLIENT_MARGIN_SECONDS = 5


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
KOPF_ERROR_BACKOFFS_SECONDS = (0.5, 1.0, 1.0, 1.5) + (2.0,) * 60


def configure_settings(settings: kopf.OperatorSettings, config: OperatorConfig) -> None:
    # A watch without timeouts can hang silently forever after a network blip: a silent one is
    # reconnected (resuming from its last resourceVersion) within server_timeout + the margin.
    settings.watching.server_timeout = config.watch_server_timeout_seconds
    settings.watching.client_timeout = config.watch_server_timeout_seconds + WATCH_CLIENT_MARGIN_SECONDS
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
    # kopf retries a failed watch or list request after 1, 1, 2, 3, 5, 8, 13, 21 s by default, so
    # after an outage of half a minute a watch came back up to 8 s after the API server. Retrying
    # at most every 2 s keeps that under 2 s (and tolerates a longer outage: ~2 min, not 54 s).
    settings.networking.error_backoffs = KOPF_ERROR_BACKOFFS_SECONDS
    # kopf keeps a worker task and queue per object until it has been idle this long (5 s by
    # default); our handlers only cache and queue, so a short life keeps a burst of new objects
    # (N ModelDeployments applied at once, and their children) from piling up in memory.
    settings.queueing.idle_timeout = QUEUEING_IDLE_TIMEOUT_SECONDS


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    configure_settings(settings, memo.config)
    elector = build_elector(memo.config)  # None: leader election off, this replica always leads
    controller = Controller(
        memo.config, OperatorMetrics(), may_write=elector.is_leading if elector is not None else None
    )
    memo.controller, memo.elector = controller, elector
    await controller.start()  # the cache is warm before we may lead, and on a standby too
    if elector is None:
        controller.set_leading(True)
    else:
        memo.election = asyncio.create_task(elector.run(controller.set_leading))


@kopf.on.probe(id="role")
def role(memo: kopf.Memo, **_: Any) -> str:
    """Readiness and liveness (/healthz) answer for the leader and a standby alike: both have a
    warm cache (kopf serves the endpoint once ``start`` has re-listed); this says which one it is."""
    elector: LeaderElector | None = getattr(memo, "elector", None)
    return "leader" if elector is None or elector.is_leading() else "standby"


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    election: asyncio.Task[None] | None = getattr(memo, "election", None)
    if election is not None:
        election.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await election
    controller: Controller | None = getattr(memo, "controller", None)
    if controller is not None:
        await controller.stop()
    elector: LeaderElector | None = getattr(memo, "elector", None)
    if elector is not None:  # hand over at once: a standby takes an empty Lease at its next look
        try:
            await asyncio.to_thread(elector.release)
        except (KubeError, OSError) as error:  # the standby takes over when the lease expires
            logger.warning("could not release the lease: %s", error)


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
