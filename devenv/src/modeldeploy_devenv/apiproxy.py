"""A loopback HTTPS proxy between one client (the operator) and the local API server, for fault
injection: it silences open watch streams (the connection stays up, nothing more arrives), answers
every request with an error status (429, 5xx), or holds a LIST's answer until a given watch event
has passed (a re-list in flight while an object is deleted).

It terminates TLS with the API server's own serving certificate (so the client keeps the cluster's
CA) and talks to the API server as the admin; it runs its own event loop in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from modeldeploy_devenv.pki import Pki

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host", "upgrade"}
)
HOLD_LIMIT_SECONDS = 60.0
WatchEventMatcher = Callable[[Mapping[str, Any]], bool]


@dataclass(frozen=True)
class ProxiedRequest:
    at: float  # time.monotonic()
    method: str
    path: str
    watch: bool
    status: int


@dataclass
class _HeldList:
    path: str
    release_after: WatchEventMatcher
    caught: threading.Event = field(default_factory=threading.Event)  # the LIST arrived and is held
    released: asyncio.Event | None = None


def _ssl_contexts(pki: Pki) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    serving.load_cert_chain(pki.serving_cert, pki.serving_key)
    upstream = ssl.create_default_context(cafile=str(pki.ca_cert))
    upstream.load_cert_chain(pki.admin_cert, pki.admin_key)
    return serving, upstream


class APIProxy:
    def __init__(self, upstream: str, pki: Pki, port: int) -> None:
        self.upstream = upstream.rstrip("/")
        self.port = port
        self._pki = pki
        self._serving, self._upstream_ssl = _ssl_contexts(pki)
        self._lock = threading.Lock()
        self.requests: list[ProxiedRequest] = []
        self._failure: tuple[int, str | None] | None = None  # (status, Retry-After)
        self._silenced_generation = 0  # watch streams opened before this are silent
        self._held: _HeldList | None = None  # armed, waiting for its LIST
        self._holding: _HeldList | None = None  # its LIST's answer is being held
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="apiproxy", daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.kubeconfig: Path | None = None  # written by write_kubeconfig

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> APIProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=30)
        return self

    def stop(self) -> None:
        """Close every connection, finish every handler, then stop and close the loop."""

        async def shutdown() -> None:
            if self._runner is not None:
                await self._runner.cleanup()
            if self._session is not None:
                await self._session.close()
            others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            await self._loop.shutdown_asyncgens()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=15)
        if not self._thread.is_alive():
            self._loop.close()

    def write_kubeconfig(self, path: Path) -> Path:
        """A kubeconfig that reaches the API server through this proxy."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "proxied", "cluster": {"server": self.url, "certificate-authority": str(self._pki.ca_cert)}}],
            "users": [{"name": "admin", "user": {"client-certificate": str(self._pki.admin_cert),
                                                 "client-key": str(self._pki.admin_key)}}],
            "contexts": [{"name": "proxied", "context": {"cluster": "proxied", "user": "admin"}}],
            "current-context": "proxied",
        }  # fmt: skip
        path.write_text(json.dumps(config))
        path.chmod(0o600)
        self.kubeconfig = path
        return path

    async def _serve(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._upstream_ssl, limit=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self._serving).start()

    # -- faults ------------------------------------------------------------------------------------
    def silence_watches(self) -> None:
        """Every watch stream open now stops passing anything, and stays open until its client
        gives up; watches opened later work."""
        with self._lock:
            self._silenced_generation += 1

    def fail_requests(self, status: int | None, retry_after: int | None = None) -> None:
        """Answer every request with ``status`` (None: stop failing)."""
        with self._lock:
            self._failure = (
                None if status is None else (status, None if retry_after is None else str(retry_after))
            )

    def hold_list(self, path: str, release_after: WatchEventMatcher) -> threading.Event:
        """Hold the answer of the next LIST of ``path`` until a watch event matching
        ``release_after`` has been passed on; the returned flag is set once a LIST is held."""
        held = _HeldList(path, release_after)
        with self._lock:
            self._held = held
        return held.caught

    def requests_between(self, start: float, end: float) -> list[ProxiedRequest]:
        with self._lock:
            return [r for r in self.requests if start <= r.at <= end]

    # -- the proxy ---------------------------------------------------------------------------------
    def _record(self, request: web.Request, watch: bool, status: int) -> None:
        with self._lock:
            self.requests.append(
                ProxiedRequest(time.monotonic(), request.method, request.path, watch, status)
            )

    def _injected_failure(self) -> web.Response | None:
        with self._lock:
            failure = self._failure
        if failure is None:
            return None
        status, retry_after = failure
        reason = "TooManyRequests" if status == 429 else "ServiceUnavailable"
        body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": status,
                "reason": reason, "message": "injected by the test proxy"}  # fmt: skip
        headers = {"Retry-After": retry_after} if retry_after else {}
        return web.json_response(body, status=status, headers=headers)

    def _take_hold(self, request: web.Request, watch: bool) -> _HeldList | None:
        with self._lock:
            held = self._held
            if held is None or watch or request.method != "GET" or request.path != held.path:
                return None
            self._held = None
            held.released = asyncio.Event()
            self._holding = held
        return held

    def _passed_watch_event(self, line: bytes) -> None:
        holding = self._holding
        if holding is None or holding.released is None:
            return
        try:
            event = json.loads(line)
        except ValueError:
            return
        if holding.release_after(event):
            released = holding.released
            self._loop.call_later(0.05, released.set)  # after the event has reached the client

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        watch = request.query.get("watch") in ("true", "1")
        failed = self._injected_failure()
        if failed is not None:
            self._record(request, watch, failed.status)
            return failed
        if self._session is None:
            raise RuntimeError("start() opens the upstream session before any request")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        body = await request.read()
        async with self._session.request(
            request.method, self.upstream + request.path_qs, headers=headers, data=body or None
        ) as upstream:
            self._record(request, watch, upstream.status)
            reply_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
            if not watch:
                data = await upstream.read()
                held = self._take_hold(request, watch)
                if held is not None and held.released is not None:
                    held.caught.set()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(held.released.wait(), HOLD_LIMIT_SECONDS)
                return web.Response(body=data, status=upstream.status, headers=reply_headers)
            return await self._stream_watch(request, upstream, reply_headers)

    async def _stream_watch(
        self, request: web.Request, upstream: aiohttp.ClientResponse, headers: dict[str, str]
    ) -> web.StreamResponse:
        with self._lock:
            generation = self._silenced_generation
        response = web.StreamResponse(status=upstream.status, headers=headers)
        await response.prepare(request)

        def silenced() -> bool:
            with self._lock:
                return self._silenced_generation != generation

        try:
            await self._relay_until_silenced(response, upstream, silenced)
        except (aiohttp.ClientError, ConnectionError):
            return response  # either side went away
        # Silent: keep the client's connection open, pass nothing, until the client gives up.
        while request.transport is not None and not request.transport.is_closing():
            await asyncio.sleep(0.2)
        return response

    async def _relay_until_silenced(
        self, response: web.StreamResponse, upstream: aiohttp.ClientResponse, silenced: Callable[[], bool]
    ) -> None:
        reader = asyncio.ensure_future(self._next_line(upstream))
        while True:
            # Look at the silence flag at least every 0.2 s, not only when an event arrives.
            done, _ = await asyncio.wait({reader}, timeout=0.2)
            if silenced():
                reader.cancel()
                break
            if not done:
                continue
            line = reader.result()
            if not line:
                raise ConnectionError("the API server ended the watch")
            await response.write(line)
            self._passed_watch_event(line)
            reader = asyncio.ensure_future(self._next_line(upstream))

    @staticmethod
    async def _next_line(upstream: aiohttp.ClientResponse) -> bytes:
        return await upstream.content.readline()
