"""The one test-support module: what tests need from the development tooling, under one name.

Waiting with a deadline, free loopback ports, stopping a process and the loopback S3 server
(moto, authentication enforced) live in the ``modeldeploy_devenv`` package, which ``make dev``
and bench use too; tests import them from here. The self-signed TLS certificate is the tests' own.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from modeldeploy_devenv.loopback_moto import S3_CREDENTIALS, moto_server, s3_client
from modeldeploy_devenv.polling import WaitTimeoutError, wait_until
from modeldeploy_devenv.processes import free_port, stop_process

__all__ = [
    "S3_CREDENTIALS",
    "WaitTimeoutError",
    "free_port",
    "moto_server",
    "s3_client",
    "self_signed_certificate",
    "stop_process",
    "wait_until",
]


def self_signed_certificate(
    directory: Path, dns_names: list[str], ip_addresses: tuple[str, ...] = ()
) -> tuple[Path, Path]:
    """(cert.pem, key.pem) in ``directory``: a self-signed certificate (its own CA) for the names."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])])
    sans: list[x509.GeneralName] = [x509.DNSName(dns) for dns in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path
