"""moto's server on loopback: the S3-compatible model store of ``make dev`` and the tests, and the
AWS Lambda emulation of the deploy tests (MinIO is AGPL and not used).

``moto_server()`` runs it as its own process (``python -m modeldeploy_devenv.loopback_moto``), so
that its settings are its own:

- authentication is enforced, as AWS does: requests signed with ``S3_CREDENTIALS`` (an IAM user
  allowed everything) pass; any other key is refused (HTTP 403 ``InvalidAccessKeyId``, a wrong
  secret ``SignatureDoesNotMatch``). Lambda requests are the exception: moto 5.2 checks the
  signature of a body-less Lambda request (``GetFunction``) against its headers as if they were
  the body, and refuses every one;
- requests are answered one at a time: S3 evaluates a conditional write (``If-Match``,
  ``If-None-Match``) and stores the object as one atomic step, while moto checks the condition and
  then writes in two steps with no lock. Serial answering gives moto S3's atomicity; clients still
  interleave between requests (read an index, then write it conditionally), which is the race the
  registry has to handle.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from modeldeploy_devenv.polling import wait_until
from modeldeploy_devenv.processes import free_port, stop_process

# The environment of a client of this server, less the endpoint.
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",  # never ask an instance metadata service
}
IAM_USER = "modeldeploy-dev"
# Services whose requests moto cannot authenticate correctly (see above): served unauthenticated.
UNAUTHENTICATED_SERVICES = frozenset({"lambda"})
ALLOW_EVERYTHING = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}
START_TIMEOUT_SECONDS = 60.0


def _listening(port: int, server: subprocess.Popen[bytes]) -> bool:
    if server.poll() is not None:
        raise RuntimeError(f"the moto server exited with {server.returncode} before it listened")
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


@contextmanager
def moto_server() -> Iterator[str]:
    """Start the server on a free loopback port; yield its endpoint URL; stop it afterwards."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", __name__, "--port", str(port)])
    try:
        wait_until(
            f"the moto server on port {port}",
            lambda: _listening(port, server),
            timeout=START_TIMEOUT_SECONDS,
            retrying=(OSError,),
        )
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(server)


def s3_client(endpoint: str, credentials: dict[str, str] = S3_CREDENTIALS) -> Any:
    import boto3  # noqa: PLC0415 - slow to import, and only some callers need it

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
        region_name=credentials["AWS_DEFAULT_REGION"],
    )


def _create_the_allowed_user() -> None:
    """An IAM user allowed everything, whose access key is ``S3_CREDENTIALS``'s (moto draws
    random keys; the fixed one is set afterwards so that every client can name it)."""
    from moto.core.models import DEFAULT_ACCOUNT_ID  # noqa: PLC0415 - the server process only
    from moto.iam.models import iam_backends  # noqa: PLC0415

    iam = iam_backends[DEFAULT_ACCOUNT_ID]["global"]
    iam.create_user(S3_CREDENTIALS["AWS_DEFAULT_REGION"], IAM_USER)
    iam.put_user_policy(IAM_USER, "allow-everything", json.dumps(ALLOW_EVERYTHING))
    key = iam.create_access_key(IAM_USER)
    del iam.access_keys[key.access_key_id]
    key.access_key_id = S3_CREDENTIALS["AWS_ACCESS_KEY_ID"]
    key.secret_access_key = S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]
    iam.access_keys[key.access_key_id] = key


def signing_service(environ: dict[str, Any]) -> str:
    """The service a request was signed for: ``Credential=<key>/<date>/<region>/<service>/aws4_request``."""
    scope = str(environ.get("HTTP_AUTHORIZATION", "")).partition("Credential=")[2].split(",")[0]
    parts = scope.split("/")
    return parts[3] if len(parts) > 3 else ""


def serve(port: int) -> None:
    """Serve moto on 127.0.0.1:``port`` until killed, authentication enforced, one request at a time."""
    from moto import settings  # noqa: PLC0415 - the server process only
    from moto.moto_server.werkzeug_app import (  # noqa: PLC0415
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server  # noqa: PLC0415

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    _create_the_allowed_user()
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def serial(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        with lock:  # one request at a time, so the setting holds for exactly this request
            unauthenticated = signing_service(environ) in UNAUTHENTICATED_SERVICES
            settings.INITIAL_NO_AUTH_ACTION_COUNT = float("inf") if unauthenticated else 0
            return list(app(environ, start_response))

    make_server("127.0.0.1", port, serial, threaded=True, request_handler=MotoRequestHandler).serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    serve(parser.parse_args().port)


if __name__ == "__main__":
    main()
