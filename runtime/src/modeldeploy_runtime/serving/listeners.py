"""The listening sockets of ``serve``: one per worker, on one port, with SO_REUSEPORT.

With one shared listening socket, whichever worker wakes first accepts every connection waiting
(uvloop accepts until none is left), so a few long-lived keep-alive connections (a gateway's
pool, a load generator) pile onto one worker: 16 connections landed 16/0 or 15/1 on two workers,
and the second core idled. With a socket per worker and SO_REUSEPORT, the kernel spreads new
connections over the sockets by their addresses' hash.

SO_REUSEPORT would also let a second server on the same port silently take half the traffic, so
the port is first bound once without it: a port in use fails the start, as before.
"""

from __future__ import annotations

import socket

from modeldeploy_runtime.errors import StartupError

BACKLOG = 2048


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _free_port(host: str, port: int) -> int:
    """``port`` (an ephemeral one for 0) when no socket is bound to it; StartupError when one is."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers are fine
        try:
            probe.bind((host, port))
        except OSError as error:
            raise StartupError(f"cannot listen on {host}:{port}: {error.strerror}") from None
        return int(probe.getsockname()[1])


def bind_listeners(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` listening sockets on ``host:port``, inheritable by forked workers."""
    port = _free_port(host, port)
    listeners: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(_family(host), socket.SOCK_STREAM)
            listeners.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.listen(BACKLOG)
            sock.set_inheritable(True)
    except OSError as error:
        for sock in listeners:
            sock.close()
        raise StartupError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    return listeners
