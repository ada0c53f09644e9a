"""Each response leaves in one TCP segment, and the responses that must not wait for a body do not.

The kernel counts: ``TCP_INFO`` on the test client's socket says how many segments carrying data
it has received (``tcpi_data_segs_in``, Linux 4.6+). The runtime's sockets have TCP_NODELAY, so
a head and a body written separately arrive as two.
"""

from __future__ import annotations

import socket
import struct
from typing import BinaryIO

import orjson

from tests.runtime.conftest import IRIS_ROW, RuntimeProcess, read_response_head

TCPI_DATA_SEGS_IN_OFFSET = 152  # struct tcp_info in linux/tcp.h
INFER_BODY = orjson.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": IRIS_ROW}]})
REQUESTS = {  # what each response is: request bytes
    "inference": b"POST /v2/models/iris/infer HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(INFER_BODY), INFER_BODY),
    "bad request (400)": b"POST /v2/models/iris/infer HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
    b"content-length: 2\r\n\r\n{}",
    "readiness": b"GET /v2/health/ready HTTP/1.1\r\nhost: t\r\n\r\n",
    "unknown path (404)": b"GET /nothing HTTP/1.1\r\nhost: t\r\n\r\n",
}
ROUNDS = 5
REQUESTS_PIPELINED = ("unknown path (404)", "inference", "bad request (400)")


def _data_segments_received(sock: socket.socket) -> int:
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return int(struct.unpack_from("I", info, TCPI_DATA_SEGS_IN_OFFSET)[0])


def _response(stream: BinaryIO) -> bytes:
    """Read one whole response (its head, then Content-Length bytes); its status line."""
    head = [stream.readline().rstrip(b"\r\n")]
    while head[-1]:
        head.append(stream.readline().rstrip(b"\r\n"))
    length = next(int(line.split(b":", 1)[1]) for line in head if line.lower().startswith(b"content-length:"))
    assert len(stream.read(length)) == length, "the connection closed inside the body"
    return head[0]


def test_every_response_leaves_in_one_segment(iris_runtime: RuntimeProcess) -> None:
    with socket.create_connection(("127.0.0.1", iris_runtime.port), timeout=10) as sock:
        stream = sock.makefile("rb")
        for _ in range(ROUNDS):
            for what, request in REQUESTS.items():
                before = _data_segments_received(sock)
                sock.sendall(request)
                status = _response(stream)
                assert _data_segments_received(sock) - before == 1, f"{what} ({status!r}) came in pieces"


def test_100_continue_is_sent_before_the_body_is(iris_runtime: RuntimeProcess) -> None:
    """A client that sends ``Expect: 100-continue`` waits for it before sending its body."""
    head = (
        b"POST /v2/models/iris/infer HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
        b"expect: 100-continue\r\ncontent-length: %d\r\n\r\n" % len(INFER_BODY)
    )
    with socket.create_connection(("127.0.0.1", iris_runtime.port), timeout=10) as sock:
        sock.sendall(head)
        assert read_response_head(sock, timeout=2.0) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(INFER_BODY)
        assert _response(sock.makefile("rb")) == b"HTTP/1.1 200 OK"


def test_a_head_request_gets_its_head_without_a_body(iris_runtime: RuntimeProcess) -> None:
    """A HEAD response has no body write to carry its head: it must leave on its own."""
    with socket.create_connection(("127.0.0.1", iris_runtime.port), timeout=10) as sock:
        sock.sendall(b"HEAD /v2/health/ready HTTP/1.1\r\nhost: t\r\n\r\n")
        head = read_response_head(sock, timeout=2.0)
        assert head.startswith(b"HTTP/1.1 "), head
        sock.sendall(REQUESTS["readiness"])  # the connection still serves the next request
        assert _response(sock.makefile("rb")) == b"HTTP/1.1 200 OK"


def test_pipelined_requests_get_their_responses_in_order(iris_runtime: RuntimeProcess) -> None:
    """Requests sent back to back before any response: each request's cycle holds its own head."""
    with socket.create_connection(("127.0.0.1", iris_runtime.port), timeout=10) as sock:
        sock.sendall(b"".join(REQUESTS[what] for what in REQUESTS_PIPELINED))
        stream = sock.makefile("rb")
        statuses = [_response(stream) for _ in REQUESTS_PIPELINED]
    assert statuses == [b"HTTP/1.1 404 Not Found", b"HTTP/1.1 200 OK", b"HTTP/1.1 400 Bad Request"]
