"""The one test-support module: what tests need from the development tooling, under one name.

Waiting with a deadline, free loopback ports, stopping a process and the loopback S3 server
(moto, authentication enforced) live in the ``modeldeploy_devenv`` package, which ``make dev``
and bench use too; tests import them from here.
"""

from modeldeploy_devenv.loopback_moto import S3_CREDENTIALS, moto_server, s3_client
from modeldeploy_devenv.polling import WaitTimeoutError, wait_until
from modeldeploy_devenv.processes import free_port, stop_process

__all__ = [
    "S3_CREDENTIALS",
    "WaitTimeoutError",
    "free_port",
    "moto_server",
    "s3_client",
    "stop_process",
    "wait_until",
]
