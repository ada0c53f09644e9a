"""The no-model floor: a raw ASGI app on the runtime's HTTP stack (uvicorn, httptools, uvloop).

It reads the whole request body and answers every request with the same canned V2 response, so
its req/s is what this HTTP stack can do on this machine with no model, no JSON decoding and no
metrics: the ceiling for any server built on it. It runs with the runtime's uvicorn options, and
its workers listen as the runtime's do (one SO_REUSEPORT socket each,
``modeldeploy_runtime.serving.listeners``) or, with ``--shared-socket``, as ``uvicorn --workers``
does (one socket for all). Which is faster depends on the load: a shared socket lets one worker
take every keep-alive connection, which leaves a core to a load generator on the same machine.
The benchmark runs both and holds the runtime to the faster.

With ``--runtime-protocol`` it serves with the runtime's own HTTP protocol class (uvicorn's
httptools protocol with the runtime's deadlines and one write per response,
``modeldeploy_runtime.serving.http_deadlines``) instead of uvicorn's: what that protocol alone is
worth, reported beside the targets, which hold the runtime to the stock stack::

    python -m bench.floor_server --port 8080 --workers 2 [--shared-socket] [--runtime-protocol]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

from modeldeploy_runtime.serving.http_deadlines import deadline_protocol
from modeldeploy_runtime.serving.listeners import bind_listeners
from modeldeploy_runtime.serving.settings import RuntimeSettings

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


def _serve(sock: socket.socket, runtime_protocol: bool) -> None:
    defaults = RuntimeSettings.model_fields
    http = (
        deadline_protocol(
            defaults["header_timeout_seconds"].default, defaults["body_timeout_seconds"].default
        )
        if runtime_protocol
        else "httptools"
    )
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http=http,
        lifespan="off",
        access_log=False,
        log_level="warning",
        server_header=False,
        proxy_headers=False,
    )
    uvicorn.Server(config).run(sockets=[sock])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--shared-socket", action="store_true", help="one listening socket for all workers")
    parser.add_argument("--runtime-protocol", action="store_true", help="the runtime's HTTP protocol class")
    args = parser.parse_args()
    listeners = bind_listeners(args.host, args.port, 1 if args.shared_socket else args.workers)
    workers = []
    for index in range(args.workers):
        sock = listeners[index % len(listeners)]
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            _serve(sock, args.runtime_protocol)
            os._exit(0)
        workers.append(pid)

    def stop(*_: object) -> None:
        for pid in workers:
            os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    for _ in workers:
        os.wait()


if __name__ == "__main__":
    main()
