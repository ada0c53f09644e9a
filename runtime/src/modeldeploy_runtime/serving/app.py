"""The ASGI application: routing, limits, authentication and error mapping, without a framework.

A raw ASGI callable keeps the per-request cost to one route lookup, one JSON decode and one JSON
encode (orjson), with no request-model objects. ``create_app`` is the only constructor.

An inference request is bounded at each step: the API key is checked before the body is read;
the body must arrive whole within ``body_timeout_seconds`` (else 408, from the HTTP protocol in
``http_deadlines``) and within ``max_body_bytes`` (else 413); only then does it take one of
``max_concurrency`` slots (else 503),
so clients trickling their bodies hold no slot. A body larger than ``json_offload_bytes`` is
decoded by :class:`~modeldeploy_runtime.serving.body_decoding.BodyDecoder` in a helper process,
so the event loop keeps answering ``/v2/health/live`` meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import numpy as np
import orjson

from modeldeploy_runtime.errors import RequestError
from modeldeploy_runtime.serving.auth import UNAUTHORIZED_MESSAGE, Authenticator
from modeldeploy_runtime.serving.body_decoding import BodyDecoder
from modeldeploy_runtime.serving.dataplane import DataPlane, NotStartedError
from modeldeploy_runtime.serving.metrics import (
    FLUSH_SECONDS,
    PROTOCOL_NONE,
    PROTOCOL_V1,
    PROTOCOL_V2,
    RuntimeMetrics,
)
from modeldeploy_runtime.serving.model import PREDICT, InputError
from modeldeploy_runtime.serving.protocols import v1, v2
from modeldeploy_runtime.serving.settings import RuntimeSettings

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON_HEADERS = [(b"content-type", b"application/json")]
_LIVE_BODY = b'{"live":true}'
_RETRY_AFTER_SECONDS = b"1"
_PREDICT_ONLY = frozenset((PREDICT,))  # all a V1 request can ask for
_CLOSING_STATUSES = frozenset({413})  # the rest of the body may still be on its way


class ClientDisconnectedError(Exception):
    """The client went away before its body arrived; nothing to answer."""


def _body_headers(scope: Scope) -> tuple[bytes | None, bytes | None]:
    """The request's Content-Type and Content-Length, in one pass over its headers."""
    content_type = content_length = None
    for key, value in scope["headers"]:
        if key == b"content-type":
            content_type = value
        elif key == b"content-length":
            content_length = value
    return content_type, content_length


def _is_json_content_type(value: bytes | None) -> bool:
    if value is None or value == b"application/json":
        return True  # absent: accept, as the standard V2 clients and curl --json do send it anyway
    media = value.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or media.endswith(b"+json")


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole JSON body; 415 for another media type, 413 once it is known to exceed ``limit``.

    How long the body may take is the HTTP protocol's deadline (``http_deadlines``), not this loop's.
    """
    content_type, declared = _body_headers(scope)
    if not _is_json_content_type(content_type):
        raise RequestError(415, "expected Content-Type: application/json")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"request body of {int(declared)} bytes exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnectedError
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"request body exceeds the limit of {limit} bytes")
        if not message.get("more_body", False):
            return b"".join((*chunks, chunk)) if chunks else chunk  # usually the one message
        chunks.append(chunk)


class _InferenceSlots:
    """``limit`` slots for requests whose body has arrived; entering when none is free is a 503."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self.taken = 0

    def __enter__(self) -> None:
        if self.taken >= self._limit:
            raise RequestError(503, "too many requests in flight; retry shortly")
        self.taken += 1

    def __exit__(self, *_: object) -> None:
        self.taken -= 1


class RuntimeApp:
    """Routes the V1 and V2 endpoints of one model onto a data plane."""

    def __init__(
        self,
        settings: RuntimeSettings,
        dataplane: DataPlane,
        metrics: RuntimeMetrics,
        authenticator: Authenticator,
        decoder: BodyDecoder,
    ) -> None:
        self._settings = settings
        self._decoder = decoder
        self._dataplane = dataplane
        self._metrics = metrics
        self._auth = authenticator
        self._model = dataplane.description
        self._slots = _InferenceSlots(settings.max_concurrency)
        self._metrics_flusher: asyncio.Task[None] | None = None
        self._v2_model_prefix = f"/v2/models/{self._model.name}"
        self._v1_model_path = f"/v1/models/{self._model.name}"
        # The paths nearly every request takes, looked up before any other routing.
        self._inference_routes: dict[str, Callable[[Scope, Receive], Awaitable[bytes]]] = {
            f"{self._v2_model_prefix}/infer": self._infer_v2,
            f"{self._v2_model_prefix}/versions/{self._model.version}/infer": self._infer_v2,
            f"{self._v1_model_path}:predict": self._predict_v1,
        }
        self._server_metadata = v2.server_metadata()
        self._model_metadata = v2.model_metadata(self._model)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._dataplane.start()
                except Exception as error:
                    log.exception("warm-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                self._metrics_flusher = asyncio.create_task(self._flush_metrics(), name="metrics")
                log.info("worker ready", extra={"model": self._model.name})
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._dataplane.stop()
                if self._metrics_flusher is not None:
                    self._metrics_flusher.cancel()
                self._metrics.flush(self._slots.taken)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _flush_metrics(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                self._metrics.flush(self._slots.taken)
            except Exception:  # a metrics bug must not stop serving
                log.exception("writing metrics failed")

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        # Health: open, unlimited, not counted, so probes work under any load.
        if path == "/v2/health/live":
            await _respond(send, 200, _LIVE_BODY)
            return
        if path == "/v2/health/ready":
            ready = self._dataplane.is_ready()
            await _respond(send, 200 if ready else 503, v2.readiness(ready))
            return
        started = time.perf_counter()
        protocol = (
            PROTOCOL_V2
            if path.startswith("/v2")
            else PROTOCOL_V1
            if path.startswith("/v1")
            else PROTOCOL_NONE
        )
        status = 500
        try:
            infer = self._inference_routes.get(path)
            if infer is None:
                status, body = self._route(scope, method, path)
            else:
                _require(method, "POST")
                self._authorise(scope)
                body = await infer(scope, receive)
                status = 200
            await _respond(send, status, body)
        except RequestError as error:
            status = error.status
            retry = [(b"retry-after", _RETRY_AFTER_SECONDS)] if status == 503 else None
            await _respond(
                send, status, _error_body(error.message), close=status in _CLOSING_STATUSES, extra=retry
            )
        except ClientDisconnectedError:
            status = 499
        except Exception:
            log.exception("request failed", extra={"path": path})
            status = 500
            await _respond(send, 500, _error_body("internal error; see the server log"))
        finally:
            self._metrics.record_request(protocol, status, time.perf_counter() - started)

    def _authorise(self, scope: Scope) -> None:
        reason = self._auth.check(scope["headers"])
        if reason is not None:
            self._metrics.record_auth_failure(reason)
            client = scope.get("client")
            log.warning(
                "API key refused",
                extra={"reason": reason, "client": client[0] if client else None, "path": scope["path"]},
            )
            raise RequestError(401, UNAUTHORIZED_MESSAGE)

    def _route(self, scope: Scope, method: str, path: str) -> tuple[int, bytes]:
        """Every endpoint but inference (``_inference_routes``): none of them reads a body."""
        if path.startswith(self._v2_model_prefix):
            routed = self._route_v2_model(scope, method, path[len(self._v2_model_prefix) :])
        elif path.startswith(self._v1_model_path):
            routed = self._route_v1_model(method, path[len(self._v1_model_path) :])
        elif path in ("/v2", "/v2/"):
            _require(method, "GET")
            routed = 200, self._server_metadata
        elif path == "/v1/models":
            _require(method, "GET")
            routed = 200, orjson.dumps({"models": [self._model.name]})
        else:
            routed = None
        if routed is not None:
            return routed
        if path.startswith(("/v2/models/", "/v1/models/")):
            raise RequestError(
                404, f"unknown model or endpoint {path!r}; this server serves model {self._model.name!r}"
            )
        raise RequestError(404, f"no such endpoint: {path!r}")

    def _route_v2_model(self, scope: Scope, method: str, rest: str) -> tuple[int, bytes] | None:
        if rest.startswith("/versions/"):
            version, _, tail = rest[len("/versions/") :].partition("/")
            if version != self._model.version:
                raise RequestError(
                    404,
                    f"model {self._model.name!r} has no version {version!r}; it serves {self._model.version!r}",
                )
            rest = "/" + tail if tail else ""
        if rest == "/ready":
            _require(method, "GET")
            ready = self._dataplane.is_ready()
            return (200 if ready else 503), v2.readiness(ready)
        if rest in ("", "/"):
            _require(method, "GET")
            self._authorise(scope)
            return 200, self._model_metadata
        return None

    def _route_v1_model(self, method: str, rest: str) -> tuple[int, bytes] | None:
        if rest == "":
            _require(method, "GET")
            ready = self._dataplane.is_ready()
            return (200 if ready else 503), v1.model_status(self._model, ready)
        return None

    async def _infer_v2(self, scope: Scope, receive: Receive) -> bytes:
        body = await _read_body(scope, receive, self._settings.max_body_bytes)
        with self._slots:
            request = await self._decoder.decode(v2.parse_infer_request, body)
            results = await self._run(request.features, request.outputs)
            return v2.render_infer_response(self._model, request, results)

    async def _predict_v1(self, scope: Scope, receive: Receive) -> bytes:
        body = await _read_body(scope, receive, self._settings.max_body_bytes)
        with self._slots:
            features = await self._decoder.decode(v1.parse_predict_request, body)
            results = await self._run(features, _PREDICT_ONLY)
            return v1.render_predict_response(results[PREDICT])

    async def _run(self, features: np.ndarray, outputs: frozenset[str]) -> dict[str, np.ndarray]:
        try:
            return await self._dataplane.infer(features, outputs)
        except NotStartedError:
            raise RequestError(503, "model is not loaded yet; retry shortly") from None
        except InputError as error:
            raise RequestError(400, str(error)) from None


def _require(method: str, expected: str) -> None:
    if method != expected and not (expected == "GET" and method == "HEAD"):
        raise RequestError(405, f"method {method} not allowed here; use {expected}")


def _error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    *,
    close: bool = False,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="modeldeploy"'))
    if close:
        headers.append((b"connection", b"close"))
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_app(
    settings: RuntimeSettings,
    dataplane: DataPlane,
    metrics: RuntimeMetrics,
    authenticator: Authenticator,
    decoder: BodyDecoder,
) -> RuntimeApp:
    """The ASGI app for one model (see :func:`modeldeploy_runtime.serving.factory.build_app`)."""
    return RuntimeApp(settings, dataplane, metrics, authenticator, decoder)
