"""Writing files all or nothing, and their sha256 without holding them in memory.

A write goes to a temporary file beside the target (same filesystem), is flushed to disk and made
world-readable (0644), and only then takes the target's name: renamed over it, or hard-linked to
it when an existing file must never be replaced (``link(2)`` fails when the name exists). A
reader therefore sees the old file, the complete new one, or nothing, never a part.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

CHUNK_BYTES = 1024 * 1024
FILE_MODE = 0o644


class DigestMismatchError(Exception):
    """The bytes written do not have the expected sha256; the target was left as it was."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"expected {expected}, got {actual}")
        self.expected = expected
        self.actual = actual


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_chunks(chunks: Iterable[bytes]) -> str:
    """The hex sha256 of the concatenated ``chunks``, read one at a time."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def file_chunks(path: Path) -> Iterator[bytes]:
    """The file's bytes in chunks of at most ``CHUNK_BYTES``; raises OSError."""
    with path.open("rb") as source:
        while chunk := source.read(CHUNK_BYTES):
            yield chunk


def sha256_file(path: Path) -> str:
    return sha256_chunks(file_chunks(path))


def write_atomically(
    target: Path,
    chunks: Iterable[bytes],
    *,
    expected_sha256: str | None = None,
    replace: bool = True,
) -> str:
    """Write ``chunks`` to ``target`` all or nothing; returns their sha256.

    ``replace=False`` never replaces an existing ``target`` (FileExistsError). With
    ``expected_sha256``, other bytes raise DigestMismatchError and ``target`` is left alone.
    OSError from the file system (and anything ``chunks`` raises) passes through, after the
    temporary file is removed.
    """
    directory = target.parent if str(target.parent) else Path()
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=directory)
    staged = Path(temporary)
    try:
        digest = hashlib.sha256()
        with os.fdopen(handle, "wb") as sink:
            for chunk in chunks:
                digest.update(chunk)
                sink.write(chunk)
            sink.flush()
            os.fsync(sink.fileno())
        actual = digest.hexdigest()
        if expected_sha256 is not None and actual != expected_sha256:
            raise DigestMismatchError(expected_sha256, actual)
        os.chmod(staged, FILE_MODE)
        if replace:
            os.replace(staged, target)
        else:
            os.link(staged, target)
    finally:
        staged.unlink(missing_ok=True)
    return actual
