"""uvicorn's httptools protocol with deadlines for slow clients, and one write per response.

Each response's head is written together with its body (``response_writes``).

A client must send its request headers within ``header_timeout`` seconds of the request's first
byte (or of connecting), and its whole body within ``body_timeout`` seconds of the headers; else it
gets a 408 and the connection is closed, so clients trickling bytes hold no worker resources.

The deadlines cost next to nothing per request: each phase only records when it ends, and one
timer per connection fires at the earliest recorded end, re-arming itself while the phase it
guards has moved on (it is re-armed at once only for a deadline earlier than its own). A timer
armed and cancelled per request and phase cost about a twentieth of a request's CPU time
(bench/README.md).
"""

from __future__ import annotations

import asyncio
import logging

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from modeldeploy_runtime.serving.response_writes import HeadWithBody

log = logging.getLogger(__name__)


def _timeout_response(message: str) -> bytes:
    body = orjson.dumps({"error": message})
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def deadline_protocol(header_timeout: float, body_timeout: float) -> type[asyncio.Protocol]:
    """The protocol class to give ``uvicorn.Config(http=...)``."""
    headers_late = _timeout_response("request headers not received in time")
    body_late = _timeout_response(f"request body not received within {body_timeout:g} seconds")

    class DeadlineProtocol(HttpToolsProtocol):
        _deadline: float | None = None  # when the current phase must be over; None between requests
        _late_response = headers_late
        _timer: asyncio.TimerHandle | None = None
        _timer_at = 0.0

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[arg-type]
            self._expect(header_timeout, headers_late)

        # The three per-request callbacks name their base class: zero-argument super() costs more.
        def on_message_begin(self) -> None:
            HttpToolsProtocol.on_message_begin(self)
            self._expect(header_timeout, headers_late)

        def on_headers_complete(self) -> None:
            self._expect(body_timeout, body_late)
            previous = self.cycle
            HttpToolsProtocol.on_headers_complete(self)
            cycle = self.cycle
            if cycle is not previous and cycle.scope["method"] != "HEAD":  # a new request's cycle
                cycle.transport = HeadWithBody(self.transport)  # type: ignore[assignment]

        def on_message_complete(self) -> None:
            self._deadline = None
            HttpToolsProtocol.on_message_complete(self)

        def connection_lost(self, exc: Exception | None) -> None:
            self._deadline = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            super().connection_lost(exc)

        def _expect(self, seconds: float, late_response: bytes) -> None:
            self._deadline = deadline = self.loop.time() + seconds
            self._late_response = late_response
            if self._timer is not None and self._timer_at <= deadline:
                return  # it fires first and re-arms itself for this deadline
            if self._timer is not None:
                self._timer.cancel()
            self._arm(deadline)

        def _arm(self, when: float) -> None:
            self._timer = self.loop.call_at(when, self._deadline_reached)
            self._timer_at = when

        def _deadline_reached(self) -> None:
            self._timer = None
            if self._deadline is None:
                return  # the request completed; the next one arms a new timer
            if self.loop.time() < self._deadline:  # the phase moved on since the timer was armed
                self._arm(self._deadline)
                return
            if self.transport.is_closing():
                return
            client = self.client[0] if self.client else None
            log.warning("client too slow; connection closed", extra={"client": client})
            cycle = self.cycle
            if cycle is None or not cycle.response_started:
                self.transport.write(self._late_response)
            self.transport.close()

    return DeadlineProtocol
