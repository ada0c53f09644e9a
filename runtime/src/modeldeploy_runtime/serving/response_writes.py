"""One write per response: a response's head leaves together with its body, in one TCP segment.

uvicorn writes a response's status line and headers when the app sends ``http.response.start``,
and its body on ``http.response.body``: two writes, so two system calls in the worker and two
segments (the socket has TCP_NODELAY) that the client reads separately. For a small inference
response the second write cost about a tenth of the request's CPU (bench/README.md).

:class:`HeadWithBody` stands between one request's uvicorn cycle and the connection's transport
and holds the final response head until the next write, which carries both. Never held: an
interim ``100 Continue`` (the client waits for it before it sends the body) and anything after
the head. A HEAD response has no body write, so the protocol does not install this for one;
closing writes a held head first.
"""

from __future__ import annotations

import asyncio
from typing import Any

_INTERIM_RESPONSE = b"HTTP/1.1 1"  # how uvicorn's "100 Continue" begins


class HeadWithBody:
    """A transport for one request's response that writes its head with the first body write."""

    __slots__ = ("_head", "_transport", "_waiting_for_head")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._head: bytes | None = None
        self._waiting_for_head = True

    def write(self, data: bytes) -> None:
        if self._head is not None:
            data, self._head = self._head + data, None
        elif self._waiting_for_head and not data.startswith(_INTERIM_RESPONSE):
            self._waiting_for_head = False
            self._head = data
            return
        self._transport.write(data)

    def close(self) -> None:
        if self._head is not None:
            self._transport.write(self._head)
            self._head = None
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:  # the rest of the transport, as it is
        return getattr(self._transport, name)
