"""Reading artifacts from where they are stored: s3://, https:// and local files, as byte chunks.

S3 credentials come from the standard AWS environment variables and files (boto3's chain); an
S3-compatible store is reached with ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``. HTTPS uses
the system trust store (``SSL_CERT_FILE`` adds a private CA). Plain http:// is refused, and so
is a redirect that leaves https; at most ``MAX_REDIRECTS`` redirects are followed. Messages show
URIs through :func:`~modeldeploy_runtime.artifact_uri.printable_uri`: a pre-signed URL's query
string (its signature) is never logged.
"""

from __future__ import annotations

import os
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.client import HTTPMessage
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

from modeldeploy_runtime.artifact_uri import printable_uri

CHUNK_BYTES = 1024 * 1024
HTTP_TIMEOUT_SECONDS = 60.0
MAX_REDIRECTS = 5


class StorageError(Exception):
    """The artifact cannot be read; the message is one line naming the URI."""


class ArtifactNotFoundError(StorageError):
    pass


def s3_client() -> Any:
    import boto3  # noqa: PLC0415 - slow to import, and only s3:// needs it

    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
    return boto3.client("s3", endpoint_url=endpoint)


def _s3_chunks(uri: str) -> Iterator[bytes]:
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 - as above

    parts = urlsplit(uri)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    shown = printable_uri(uri)
    if not bucket or not key:
        raise StorageError(f"{shown}: expected s3://<bucket>/<key>")
    try:
        response = s3_client().get_object(Bucket=bucket, Key=key)
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code in ("NoSuchKey", "404", "NotFound"):
            raise ArtifactNotFoundError(f"{shown}: no such object") from None
        raise StorageError(
            f"{shown}: {code or 'error'}: {error.response.get('Error', {}).get('Message', '')}"
        ) from None
    except BotoCoreError as error:
        raise StorageError(f"{shown}: {error}") from None
    body = response["Body"]
    try:
        yield from body.iter_chunks(CHUNK_BYTES)
    except BotoCoreError as error:
        raise StorageError(f"{shown}: download interrupted: {error}") from None
    finally:
        body.close()


class HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follows at most ``MAX_REDIRECTS`` redirects, each to https; anything else is a StorageError."""

    def redirect_request(  # noqa: PLR0917 - urllib's signature
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        origin = printable_uri(req.full_url)
        if urlsplit(newurl).scheme.lower() != "https":
            fp.close()
            raise StorageError(
                f"{origin}: redirected (HTTP {code}) to {printable_uri(newurl)}, which is not https; refused"
            )
        if len(getattr(req, "redirect_dict", {})) >= MAX_REDIRECTS:
            fp.close()
            raise StorageError(f"{origin}: more than {MAX_REDIRECTS} redirects; refused")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _https_chunks(uri: str) -> Iterator[bytes]:
    shown = printable_uri(uri)
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=ssl.create_default_context()), HttpsOnlyRedirects()
    )
    request = urllib.request.Request(uri, headers={"User-Agent": "modeldeploy-runtime"})  # noqa: S310 - https only
    try:
        response = opener.open(request, timeout=HTTP_TIMEOUT_SECONDS)
    except urllib.error.HTTPError as error:
        if error.code == 404:
            raise ArtifactNotFoundError(f"{shown}: HTTP 404") from None
        raise StorageError(f"{shown}: HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise StorageError(f"{shown}: {error.reason}") from None
    except OSError as error:
        raise StorageError(f"{shown}: {error}") from None
    with response:
        try:
            while chunk := response.read(CHUNK_BYTES):
                yield chunk
        except OSError as error:
            raise StorageError(f"{shown}: download interrupted: {error}") from None


def _file_chunks(uri: str) -> Iterator[bytes]:
    path = Path(unquote(urlsplit(uri).path)) if uri.startswith("file://") else Path(uri)
    try:
        with path.open("rb") as source:
            while chunk := source.read(CHUNK_BYTES):
                yield chunk
    except FileNotFoundError:
        raise ArtifactNotFoundError(f"{printable_uri(uri)}: no such file") from None
    except OSError as error:
        raise StorageError(f"{printable_uri(uri)}: {error.strerror}") from None


def read_chunks(uri: str) -> Iterator[bytes]:
    """The artifact's bytes in chunks; raises StorageError (ArtifactNotFoundError when it is absent)."""
    scheme = urlsplit(uri).scheme if "://" in uri else ""
    if scheme == "s3":
        return _s3_chunks(uri)
    if scheme == "https":
        return _https_chunks(uri)
    if scheme in ("", "file"):
        return _file_chunks(uri)
    if scheme == "http":
        raise StorageError(f"{printable_uri(uri)}: plain http:// is refused; use https://")
    raise StorageError(
        f"{printable_uri(uri)}: unsupported scheme {scheme!r}; expected s3://, https://, file:// or a path"
    )


def is_remote(uri: str) -> bool:
    return uri.startswith(("s3://", "https://", "http://"))
