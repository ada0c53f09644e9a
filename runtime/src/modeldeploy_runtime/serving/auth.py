"""API-key authentication for the inference and metadata endpoints.

Keys arrive as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` and are checked with
:class:`modeldeploy_runtime.apikeys.KeyVerifier` (constant time, salted hashes only). The keys
file is re-read when it changes: Kubernetes updates a mounted Secret by swapping a ``..data``
symlink, so the resolved file's identity (device, inode, size, mtime) is compared at most once
per second; a file that fails to parse keeps the previous keys in force and is logged.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Protocol

from modeldeploy_runtime.apikeys import KeysFileError, KeyVerifier, parse_keys_file

log = logging.getLogger(__name__)

UNAUTHORIZED_MESSAGE = "missing or invalid API key"  # the same for every failure
RELOAD_INTERVAL_SECONDS = 1.0
REASON_MISSING = "missing"
REASON_REJECTED = "rejected"


def _file_identity(path: Path) -> tuple[int, int, int, int]:
    stat = os.stat(path)  # follows symlinks, so a swapped ..data link shows as a new inode
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


def read_keys_file(path: Path) -> KeyVerifier:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise KeysFileError(f"cannot read keys file {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise KeysFileError(f"keys file {path} is not UTF-8 text") from None
    return KeyVerifier(parse_keys_file(text))


class KeysFile:
    """The current verifier for a keys file, refreshed when the file changes."""

    def __init__(self, path: Path, *, interval: float = RELOAD_INTERVAL_SECONDS) -> None:
        self._path = path
        self._interval = interval
        try:
            self._identity = _file_identity(path)  # before reading: a swap in between shows as a change
        except OSError as error:
            raise KeysFileError(f"cannot read keys file {path}: {error.strerror}") from None
        self._verifier = read_keys_file(path)
        self._next_check = time.monotonic() + interval
        self._lock = threading.Lock()
        log.info("API keys loaded", extra={"keys_file": str(path), "keys": len(self._verifier)})

    def verifier(self) -> KeyVerifier:
        now = time.monotonic()
        if now >= self._next_check and self._lock.acquire(blocking=False):
            try:
                self._next_check = now + self._interval
                self._reload_if_changed()
            finally:
                self._lock.release()
        return self._verifier

    def _reload_if_changed(self) -> None:
        try:
            identity = _file_identity(self._path)
        except OSError as error:
            log.error("keys file unreadable; keeping the previous keys", extra={"error": str(error)})
            return
        if identity == self._identity:
            return
        try:
            verifier = read_keys_file(self._path)
        except KeysFileError as error:
            # Kubernetes swaps the whole directory atomically, so this is a genuinely bad file.
            log.error("keys file invalid; keeping the previous keys", extra={"error": str(error)})
            self._identity = identity
            return
        self._identity = identity
        self._verifier = verifier
        log.info("API keys reloaded", extra={"keys_file": str(self._path), "keys": len(verifier)})


def presented_key(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The key from ``Authorization: Bearer`` or ``X-API-Key``, or None when neither is there."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, credential = value.partition(b" ")
            if scheme.lower() == b"bearer" and credential.strip():
                return credential.strip().decode("latin-1")
        elif name == b"x-api-key" and value.strip():
            return value.strip().decode("latin-1")
    return None


class KeySource(Protocol):
    """Where the current verifier comes from: a :class:`KeysFile`, or fixed keys."""

    def verifier(self) -> KeyVerifier: ...


class FixedKeys:
    """Keys that never change, e.g. parsed once from an environment variable."""

    def __init__(self, verifier: KeyVerifier) -> None:
        self._verifier = verifier

    def verifier(self) -> KeyVerifier:
        return self._verifier


class Authenticator:
    """Decides whether a request's headers carry a valid key; None means authentication is off."""

    def __init__(self, keys_file: KeySource | None) -> None:
        self._keys_file = keys_file

    def check(self, headers: list[tuple[bytes, bytes]]) -> str | None:
        """None when the request may proceed, else the failure reason (for metrics and logs)."""
        if self._keys_file is None:
            return None
        key = presented_key(headers)
        if key is None:
            return REASON_MISSING
        if self._keys_file.verifier().verify(key) is None:
            return REASON_REJECTED
        return None
