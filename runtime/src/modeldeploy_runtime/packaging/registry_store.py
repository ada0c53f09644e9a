"""Where a registry keeps its files: a local directory (or PVC) or an ``s3://bucket/prefix``.

Two guarantees the registry builds on, kept by both stores:

- ``create`` never replaces an object: locally a hard link of a complete temporary file (``link(2)``
  fails when the name exists); on S3 ``PutObject`` with ``If-None-Match: *``.
- ``update`` is an atomic read-modify-write of one small object (the index): locally under a
  file lock (``filelock``) with the new content renamed into place; on S3 an optimistic
  compare-and-swap — ``PutObject`` with ``If-Match: <ETag read>`` (``If-None-Match: *`` when the
  object is new), retried from a fresh read when another writer got there first.

Reading reuses :mod:`modeldeploy_runtime.storage` (the same code as ``fetch``), including its S3
client with the ``AWS_ENDPOINT_URL[_S3]`` override.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from botocore.exceptions import BotoCoreError, ClientError
from filelock import FileLock, Timeout

from modeldeploy_runtime.files import file_chunks, sha256_chunks, write_atomically
from modeldeploy_runtime.storage import (
    ArtifactNotFoundError,
    StorageError,
    read_chunks,
    s3_client,
)

LOCK_TIMEOUT_SECONDS = 60.0
CAS_ATTEMPTS = 60
CAS_BACKOFF_CAP_SECONDS = 1.0
_CAS_LOST = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")


class StoreError(Exception):
    """The registry's storage failed; the message is one line naming the location."""


class ObjectExistsError(StoreError):
    pass


class ObjectNotFoundError(StoreError):
    pass


Change = Callable[[bytes | None], bytes]


class RegistryStore(Protocol):
    root: str

    def uri(self, key: str) -> str:
        """The address of ``key`` as ``fetch`` and ``serve --model-uri`` take it (file:// or s3://)."""
        ...

    def read(self, key: str) -> bytes: ...

    def create(self, key: str, source: Path) -> None:
        """Store ``source`` under ``key``; ObjectExistsError if ``key`` exists (never replaced)."""
        ...

    def update(self, key: str, change: Change) -> None:
        """Atomically replace ``key`` by ``change(current content or None)``; ``change`` may raise."""
        ...

    def names(self) -> list[str]:
        """The top-level folders (model names)."""
        ...


def sha256_of(store: RegistryStore, key: str) -> str:
    """The sha256 of a stored object, streamed through the same reader as ``fetch``."""
    try:
        return sha256_chunks(read_chunks(store.uri(key)))
    except ArtifactNotFoundError:
        raise ObjectNotFoundError(f"{store.uri(key)}: no such object") from None
    except StorageError as error:
        raise StoreError(str(error)) from None


class LocalStore:
    """A registry in a directory; the lock files live beside the index they guard."""

    def __init__(self, root: Path) -> None:
        self.directory = root.expanduser().absolute()
        self.root = str(self.directory)

    def _path(self, key: str) -> Path:
        return self.directory / key

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()

    def read(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ObjectNotFoundError(f"{path}: no such file") from None
        except OSError as error:
            raise StoreError(f"cannot read {path}: {error.strerror or error}") from None

    def create(self, key: str, source: Path) -> None:
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(target, file_chunks(source), replace=False)
        except FileExistsError:
            raise ObjectExistsError(f"{target} already exists") from None
        except OSError as error:
            raise StoreError(f"cannot write {target}: {error.strerror or error}") from None

    def update(self, key: str, change: Change) -> None:
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(target) + ".lock", timeout=LOCK_TIMEOUT_SECONDS):
                current = target.read_bytes() if target.exists() else None
                write_atomically(target, [change(current)])
        except Timeout:
            raise StoreError(
                f"{target} stayed locked for {LOCK_TIMEOUT_SECONDS:.0f}s by another registration; try again"
            ) from None
        except OSError as error:
            raise StoreError(f"cannot update {target}: {error.strerror or error}") from None

    def names(self) -> list[str]:
        if not self.directory.is_dir():
            raise StoreError(f"registry {self.directory} does not exist")
        return sorted(child.name for child in self.directory.iterdir() if (child / "index.json").is_file())


def _back_off(attempt: int) -> None:
    """Sleep a random share of an exponentially growing, capped interval (full jitter)."""
    time.sleep(random.uniform(0, min(CAS_BACKOFF_CAP_SECONDS, 0.02 * 2**attempt)))  # noqa: S311


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _describe(uri: str, error: ClientError | BotoCoreError) -> str:
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        return f"{uri}: {details.get('Code', 'error')}: {details.get('Message', '')}".rstrip(": ")
    return f"{uri}: {error}"


class S3Store:
    """A registry under ``s3://bucket/prefix`` on AWS S3 or an S3-compatible server.

    The store must honour conditional writes (``If-None-Match``/``If-Match`` on PutObject), as
    AWS S3 does since 2024; on a store that ignores them, concurrent registrations can be lost.
    """

    def __init__(self, uri: str) -> None:
        parts = urlsplit(uri)
        if parts.scheme != "s3" or not parts.netloc:
            raise StoreError(f"{uri}: expected s3://<bucket>[/<prefix>]")
        self.bucket = parts.netloc
        prefix = unquote(parts.path).strip("/")
        self.prefix = f"{prefix}/" if prefix else ""
        self.root = f"s3://{self.bucket}/{prefix}".rstrip("/")
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = s3_client()
        return self._client

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"

    def _get(self, key: str) -> tuple[bytes, str] | None:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
            return response["Body"].read(), str(response["ETag"])
        except ClientError as error:
            if _error_code(error) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise StoreError(_describe(self.uri(key), error)) from None
        except BotoCoreError as error:
            raise StoreError(_describe(self.uri(key), error)) from None

    def read(self, key: str) -> bytes:
        found = self._get(key)
        if found is None:
            raise ObjectNotFoundError(f"{self.uri(key)}: no such object")
        return found[0]

    def create(self, key: str, source: Path) -> None:
        for attempt in range(CAS_ATTEMPTS):
            try:
                with source.open("rb") as body:
                    self.client.put_object(
                        Bucket=self.bucket, Key=self.prefix + key, Body=body, IfNoneMatch="*"
                    )
                return
            except ClientError as error:
                code = _error_code(error)
                if code in ("PreconditionFailed", "412"):
                    raise ObjectExistsError(f"{self.uri(key)} already exists") from None
                if code not in _CAS_LOST:
                    raise StoreError(_describe(self.uri(key), error)) from None
            except BotoCoreError as error:
                raise StoreError(_describe(self.uri(key), error)) from None
            except OSError as error:
                raise StoreError(f"cannot read {source}: {error.strerror or error}") from None
            _back_off(attempt)  # 409: a concurrent write to the same key is in flight; its outcome decides
        raise StoreError(f"{self.uri(key)}: still contended after {CAS_ATTEMPTS} attempts; try again")

    def update(self, key: str, change: Change) -> None:
        for attempt in range(CAS_ATTEMPTS):
            found = self._get(key)
            content = change(found[0] if found else None)
            condition = {"IfMatch": found[1]} if found else {"IfNoneMatch": "*"}
            try:
                self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=content, **condition)
                return
            except ClientError as error:
                if _error_code(error) not in _CAS_LOST:
                    raise StoreError(_describe(self.uri(key), error)) from None
            except BotoCoreError as error:
                raise StoreError(_describe(self.uri(key), error)) from None
            _back_off(attempt)  # another writer changed the object since our read: read it again
        raise StoreError(f"{self.uri(key)}: still contended after {CAS_ATTEMPTS} attempts; try again")

    def names(self) -> list[str]:
        found: list[str] = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix, Delimiter="/"
            )
            for page in pages:
                for common in page.get("CommonPrefixes", []):
                    found.append(str(common["Prefix"])[len(self.prefix) :].rstrip("/"))
        except ClientError as error:
            raise StoreError(_describe(self.root, error)) from None
        except BotoCoreError as error:
            raise StoreError(_describe(self.root, error)) from None
        return sorted(found)


def open_store(root: str) -> RegistryStore:
    """The store for a registry root: ``s3://bucket/prefix``, ``file://...`` or a directory path."""
    if not root.strip():
        raise StoreError("the registry location is empty: expected a directory or s3://bucket/prefix")
    if root.startswith("s3://"):
        return S3Store(root)
    if root.startswith("file://"):
        return LocalStore(Path(unquote(urlsplit(root).path)))
    if "://" in root:
        raise StoreError(f"{root}: unsupported registry location; expected a directory or s3://bucket/prefix")
    return LocalStore(Path(root))
