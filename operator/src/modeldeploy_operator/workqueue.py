"""A de-duplicating, delaying work queue of ModelDeployment keys (runs on the asyncio event loop).

Many events for one ModelDeployment collapse into one reconcile; a key is never reconciled by
two workers at once; a key added while it is being reconciled runs again afterwards.
"""

from __future__ import annotations

import asyncio
import math

Key = tuple[str, str]  # (namespace, name)


class WorkQueue:
    def __init__(self) -> None:
        self._ready: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._waiting: dict[Key, float] = {}  # key -> due time on the loop clock
        self._processing: set[Key] = set()
        self._again: dict[Key, float] = {}

    def add(self, key: Key, delay: float = 0.0) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + max(delay, 0.0)
        if key in self._processing:
            self._again[key] = min(due, self._again.get(key, math.inf))
            return
        if key in self._queued:
            return
        if key in self._waiting and self._waiting[key] <= due:
            return
        self._waiting[key] = due
        loop.call_at(due, self._promote, key, due)

    def _promote(self, key: Key, due: float) -> None:
        if self._waiting.get(key) != due:
            return  # superseded by an earlier due time
        del self._waiting[key]
        if key in self._processing:
            self._again[key] = min(due, self._again.get(key, math.inf))
            return
        self._queued.add(key)
        self._ready.put_nowait(key)

    async def get(self) -> Key:
        key = await self._ready.get()
        self._queued.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: Key) -> None:
        self._processing.discard(key)
        due = self._again.pop(key, None)
        if due is not None:
            self.add(key, due - asyncio.get_running_loop().time())

    def __len__(self) -> int:
        return len(self._queued) + len(self._waiting)
