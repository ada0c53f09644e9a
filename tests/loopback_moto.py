"""moto's standalone server on loopback, for tests and ``make dev``.

``moto.server.ThreadedMotoServer`` is a real HTTP server speaking the AWS APIs: the S3-compatible
model store (MinIO is AGPL and not used) and the Lambda emulation of the deploy tests.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.controlplane.cluster import free_port

S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextmanager
def moto_server(ip_address: str = "127.0.0.1") -> Iterator[str]:
    """Start the server on a free port of ``ip_address`` (loopback, or the real node's bridge
    address that its pods reach); yield its endpoint URL; stop it afterwards."""
    from moto.server import ThreadedMotoServer  # noqa: PLC0415 - heavy import, only when used

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address=ip_address, port=port, verbose=False)
    server.start()
    try:
        yield f"http://{ip_address}:{port}"
    finally:
        server.stop()


def s3_client(endpoint: str) -> Any:
    import boto3  # noqa: PLC0415

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=S3_CREDENTIALS["AWS_DEFAULT_REGION"],
    )
