"""Decoding request bodies without stalling a worker's event loop.

orjson and numpy hold the GIL for the whole of one large decode (a 3.6 MB V1 body takes
0.05-1.2 s depending on the machine's load), so a thread would not help: ``/v2/health/live``
would wait behind it. A body larger than ``json_offload_bytes`` is therefore decoded in a helper
process, forked from the worker before it starts serving (so it runs no thread of the
worker's); only the parsed arrays come back. Smaller bodies,
and every body on AWS Lambda (one request per container, no probes), are decoded in place.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from modeldeploy_runtime.serving.description import ModelDescription

log = logging.getLogger(__name__)

Parsed = TypeVar("Parsed")
Parser = Callable[[bytes, ModelDescription], Parsed]

_ORPHAN_CHECK_SECONDS = 1.0
_helper_description: ModelDescription | None = None  # what the forked helper parses against


def _exit_with_worker(worker: int) -> None:
    while os.getppid() == worker:
        time.sleep(_ORPHAN_CHECK_SECONDS)
    os._exit(0)  # the worker died without shutting us down (e.g. SIGKILL)


def _start_helper(worker: int) -> None:
    """The helper leaves signals to its worker (Ctrl-C in a terminal reaches the whole group) and
    exits when the worker is gone, however it went."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_worker, args=(worker,), daemon=True).start()


def _decode_in_helper(parse: Parser[Parsed], body: bytes) -> Parsed:
    if _helper_description is None:  # pragma: no cover - set before the fork
        raise RuntimeError("body decoder helper started without a model description")
    return parse(body, _helper_description)


class BodyDecoder:
    """Decodes a body with a protocol's parser, in the helper process once it is large enough."""

    def __init__(self, description: ModelDescription, *, offload_bytes: int | None = None) -> None:
        """``offload_bytes=None`` decodes everything in place (no helper process)."""
        self._description = description
        self._offload_bytes = offload_bytes
        self._helper: ProcessPoolExecutor | None = None

    def start(self) -> None:
        """Fork the helper now, while the calling process runs no other thread."""
        global _helper_description  # noqa: PLW0603 - what the forked helper inherits
        if self._offload_bytes is None:
            return
        _helper_description = self._description
        self._helper = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_start_helper,
            initargs=(os.getpid(),),
        )
        self._helper.submit(int).result()  # forks it

    def stop(self) -> None:
        if self._helper is not None:
            self._helper.shutdown(wait=True, cancel_futures=True)
            self._helper = None

    async def decode(self, parse: Parser[Parsed], body: bytes) -> Parsed:
        """``parse(body, description)``; its RequestError (a 400) is raised here either way."""
        helper = self._helper
        if helper is None or self._offload_bytes is None or len(body) <= self._offload_bytes:
            return parse(body, self._description)
        try:
            return await asyncio.get_running_loop().run_in_executor(helper, _decode_in_helper, parse, body)
        except BrokenProcessPool:
            log.error("body decoder process died; decoding in place from now on")
            self._helper = None
            return parse(body, self._description)
