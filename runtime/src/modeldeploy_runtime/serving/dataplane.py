"""Protocol-neutral inference with adaptive micro-batching.

Requests from any protocol become (rows, outputs) pairs queued to one batcher per worker. The
batcher takes everything that queued up while the previous batch ran (up to
``batch_max_size`` rows) and predicts it in one call: at concurrency 1 a request is predicted at
once, under load batches grow by themselves, and a 64-row predict costs about as much as a 1-row
one for small models. A batch smaller than the previous one waits a little for its stragglers
(see ``_fill``). If a batch fails, its requests are retried one by one, so one bad request never
fails its neighbours.

Where a batch runs depends on what the model's calls have cost: on a dedicated predict thread,
so the event loop keeps serving while a slow call (a scikit-learn forest: milliseconds) runs; on
the event loop itself once the last ``INLINE_AFTER_CHEAP_CALLS`` calls were each cheap (ONNX,
small linear models: tens of microseconds), because handing such a call to a thread and back
costs more than the call (on a virtual machine with idle cores, each hand-off wakes a sleeping
vCPU twice; see bench/README.md). One expensive call sends the model back to the thread until it
has proven cheap again, and a batch of more than ``batch_max_size`` rows always goes to the thread.

A call is cheap when it used less than ``INLINE_CALL_SECONDS`` of CPU and ended within
``INLINE_WALL_SECONDS``. CPU time, because wall time counts what the call did not cause: a
preempted or descheduled vCPU, and on the predict thread the wait for the GIL (up to the 5 ms
switch interval), which would keep a cheap model on the thread for good. The wall-time bound
catches calls that wait rather than compute (I/O, sleeps).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

from modeldeploy_runtime.serving.model import InputError, LoadedModel

log = logging.getLogger(__name__)


_EWMA_WEIGHT = 0.2
INLINE_CALL_SECONDS = 0.0005  # CPU time of a cheap call ...
INLINE_WALL_SECONDS = 0.01  # ... which also ended within this; cheap models run on the event loop ...
INLINE_AFTER_CHEAP_CALLS = 32  # ... after this many cheap calls in a row
_FILL_FRACTION = 0.25
_FILL_POLL_SECONDS = 0.0001


class CallCost(NamedTuple):
    """Seconds of wall-clock and of this thread's CPU time, or the difference of two such readings."""

    wall: float
    cpu: float

    @classmethod
    def now(cls) -> CallCost:
        return cls(time.perf_counter(), time.thread_time())

    def since(self, start: CallCost) -> CallCost:
        return CallCost(self.wall - start.wall, self.cpu - start.cpu)

    def per(self, calls: int) -> CallCost:
        return CallCost(self.wall / calls, self.cpu / calls)


Results = dict[str, np.ndarray]  # output name -> values


class _Pending(NamedTuple):
    features: np.ndarray
    rows: int  # features.shape[0], read once
    outputs: frozenset[str]
    future: asyncio.Future[Results]


Resolution = tuple["asyncio.Future[Results]", Results | None, BaseException | None]  # future, result, error
BatchObserver = Callable[[int, Results], None]


class _Arrivals:
    """Requests waiting for the batcher, oldest first; the batcher sleeps on a future while there are none.

    What ``asyncio.Queue`` does for one consumer, without its per-item bookkeeping (unfinished-task
    count, an Event, getter and putter lists): a request's hand-off is an append.
    """

    def __init__(self) -> None:
        self._waiting: deque[_Pending] = deque()
        self._wakeup: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._waiting)

    def put(self, pending: _Pending) -> None:
        self._waiting.append(pending)
        wakeup, self._wakeup = self._wakeup, None
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    def take(self) -> _Pending:
        return self._waiting.popleft()

    async def next(self) -> _Pending:
        """The oldest waiting request, once there is one."""
        while not self._waiting:
            self._wakeup = asyncio.get_running_loop().create_future()
            await self._wakeup
        return self._waiting.popleft()


class NotStartedError(Exception):
    """The data plane has not warmed the model up yet (or has stopped): retry shortly."""


class DataPlane:
    """Validates rows, batches them and runs the model; knows nothing about HTTP.

    Its life: ``start()`` warms the model up and starts batching (from then ``is_ready()``),
    ``begin_drain()`` turns readiness off while requests are still served, ``stop()`` ends it.
    """

    def __init__(
        self,
        model: LoadedModel,
        *,
        batch_max_size: int,
        batch_max_delay_ms: float,
        on_batch: BatchObserver | None = None,
    ) -> None:
        self._model = model
        self.description = model.describe()
        self._batch_max_size = batch_max_size
        self._batch_max_delay = batch_max_delay_ms / 1000.0
        self._on_batch = on_batch
        self._arrivals: _Arrivals | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._call_seconds = 0.0  # moving average of one model call's CPU time
        self._cheap_calls = 0  # cheap model calls in a row
        self._last_batch_requests = 1
        self._draining = False

    def is_ready(self) -> bool:
        """True from warm-up until draining begins: what the readiness endpoints report."""
        return self._task is not None and not self._draining

    def begin_drain(self) -> None:
        """Report not ready from now on (so traffic moves elsewhere), but keep predicting."""
        self._draining = True

    async def start(self) -> None:
        """Warm the model up on the predict thread, then start batching."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._model.warm_up)
        self._arrivals = _Arrivals()
        self._task = asyncio.create_task(self._run_batches(self._arrivals), name="batcher")

    async def stop(self) -> None:
        self.begin_drain()
        self._arrivals = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def infer(self, features: np.ndarray, outputs: frozenset[str]) -> Results:
        """Predict the requested outputs for a batch of rows.

        Raises NotStartedError before ``start()`` has finished, InputError for outputs the model
        does not offer or rows it cannot take. Outputs and shapes are checked here, values (NaN,
        infinity) once per batch, and per request only when the batch has a bad one.
        """
        if self._arrivals is None:
            raise NotStartedError("the model is not loaded yet")
        self._model.check_outputs(outputs)
        self._model.check_shape(features)
        future: asyncio.Future[Results] = asyncio.get_running_loop().create_future()
        self._arrivals.put(_Pending(features, features.shape[0], outputs, future))
        return await future

    def _take_more(self, arrivals: _Arrivals, batch: list[_Pending], rows: int) -> int:
        """Move waiting requests into ``batch`` (of ``rows`` rows) while it has room; its rows then."""
        while rows < self._batch_max_size and arrivals:
            pending = arrivals.take()
            batch.append(pending)
            rows += pending.rows
        return rows

    async def _run_batches(self, arrivals: _Arrivals) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await arrivals.next()
            batch = [first]
            rows = self._take_more(arrivals, batch, first.rows)
            rows = await self._fill(arrivals, batch, rows)
            if any(pending.future.cancelled() for pending in batch):
                batch = [pending for pending in batch if not pending.future.cancelled()]
                if not batch:
                    continue
                rows = sum(pending.rows for pending in batch)
            self._last_batch_requests = len(batch)
            try:
                if self._cheap_calls >= INLINE_AFTER_CHEAP_CALLS and rows <= self._batch_max_size:
                    # cheap enough to predict on the event loop (see the module doc)
                    resolutions, cost = self._predict_batch(batch)
                else:
                    resolutions, cost = await loop.run_in_executor(self._executor, self._predict_batch, batch)
            except Exception:  # a bug, not bad input: fail these requests, keep serving
                log.exception("prediction failed")
                resolutions = [(pending.future, None, RuntimeError("prediction failed")) for pending in batch]
            else:
                self._call_seconds += (cost.cpu - self._call_seconds) * _EWMA_WEIGHT
                cheap = cost.cpu < INLINE_CALL_SECONDS and cost.wall < INLINE_WALL_SECONDS
                self._cheap_calls = self._cheap_calls + 1 if cheap else 0
            for resolution in resolutions:
                _resolve(*resolution)

    async def _fill(self, arrivals: _Arrivals, batch: list[_Pending], rows: int) -> int:
        """Wait briefly for the requests that recent traffic says are about to arrive.

        Clients at a steady concurrency send their next requests right after their responses, so
        a batch smaller than the previous one is usually a batch that started too early. Waiting
        a fraction of the model-call time (bounded by ``batch_max_delay_ms``) lets it fill; at
        concurrency 1 the previous batch had one request and there is no wait at all.
        """
        budget = min(self._batch_max_delay, self._call_seconds * _FILL_FRACTION)
        if budget <= 0:
            return rows
        deadline = time.perf_counter() + budget
        while (
            len(batch) < self._last_batch_requests
            and rows < self._batch_max_size
            and time.perf_counter() < deadline
        ):
            await asyncio.sleep(_FILL_POLL_SECONDS)
            rows = self._take_more(arrivals, batch, rows)
        return rows

    def _predict_batch(self, batch: list[_Pending]) -> tuple[list[Resolution], CallCost]:
        """Each request's result or error, and what one model call cost; runs on either thread."""
        started = CallCost.now()
        if len(batch) > 1:
            try:
                outputs = frozenset().union(*(pending.outputs for pending in batch))
                stacked = np.concatenate([pending.features for pending in batch])
                self._model.check_values(stacked)
                results = self._model.run(stacked, outputs)
            except (InputError, ValueError, TypeError):
                pass  # retried one by one below, so only the bad request fails
            else:
                cost = CallCost.now().since(started)
                self._observe(stacked.shape[0], results)
                resolutions: list[Resolution] = []
                start = 0
                for pending in batch:
                    end = start + pending.rows
                    part = {name: results[name][start:end] for name in pending.outputs}
                    resolutions.append((pending.future, part, None))
                    start = end
                return resolutions, cost
        resolutions = []
        for pending in batch:
            try:
                self._model.check_values(pending.features)
                results = self._model.run(pending.features, pending.outputs)
            except InputError as error:
                resolutions.append((pending.future, None, error))
            else:
                self._observe(pending.rows, results)
                resolutions.append((pending.future, results, None))
        return resolutions, CallCost.now().since(started).per(len(batch))

    def _observe(self, rows: int, results: Results) -> None:
        if self._on_batch is not None:
            try:
                self._on_batch(rows, results)
            except Exception:
                log.exception("recording batch metrics failed")


def _resolve(
    future: asyncio.Future[Results],
    result: Results | None,
    error: BaseException | None,
) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    elif result is not None:
        future.set_result(result)
