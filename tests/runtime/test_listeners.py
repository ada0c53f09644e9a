"""One listening socket per worker: the kernel spreads connections over them, and a port in use
still fails the start."""

from __future__ import annotations

import socket

import pytest

from modeldeploy_runtime.errors import StartupError
from modeldeploy_runtime.serving.listeners import bind_listeners


def _accepted(listener: socket.socket) -> int:
    listener.setblocking(False)
    count = 0
    while True:
        try:
            connection, _ = listener.accept()
        except BlockingIOError:
            return count
        connection.close()
        count += 1


def test_connections_are_spread_over_the_workers_sockets() -> None:
    listeners = bind_listeners("127.0.0.1", 0, 2)
    try:
        port = listeners[0].getsockname()[1]
        assert listeners[1].getsockname()[1] == port
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(64)]
        counts = [_accepted(listener) for listener in listeners]
        for client in clients:
            client.close()
    finally:
        for listener in listeners:
            listener.close()
    assert sum(counts) == 64
    assert min(counts) >= 8, counts  # a shared socket gives one worker all of them when it wakes first


def test_a_port_in_use_fails_the_start_even_against_another_reuseport_group() -> None:
    first = bind_listeners("127.0.0.1", 0, 2)
    try:
        port = first[0].getsockname()[1]
        with pytest.raises(StartupError, match=f"cannot listen on 127.0.0.1:{port}: Address already in use"):
            bind_listeners("127.0.0.1", port, 2)
    finally:
        for listener in first:
            listener.close()
