"""The no-model floor: a raw ASGI app on the runtime's HTTP stack (uvicorn, httptools, uvloop).

It reads the whole request body and answers every request with the same canned V2 response, so
its req/s is what this HTTP stack can do on this machine with no model, no JSON decoding and no
metrics: the ceiling for any server built on it. ``compiled_inference.py`` starts it with
``python -m uvicorn bench.floor_server:app --workers N`` beside the runtime.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Message = dict[str, Any]
RESPONSE = (
    b'{"model_name":"iris","model_version":"v1","outputs":[{"name":"predict","shape":[1],'
    b'"datatype":"INT64","data":[0]}]}'
)
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(RESPONSE)).encode())]


async def app(
    scope: Message, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = bool(message.get("more_body", False))
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": RESPONSE})
