"""``modeldeploy-runtime fetch``: download an artifact (and its metadata file) into a directory.

The artifact keeps the last segment of its URI as its name (``s3://b/iris/model.joblib`` →
``DEST/model.joblib``), decoded and checked by
:func:`~modeldeploy_runtime.artifact_uri.artifact_basename`, so it is always one safe file name
inside DEST. It is written to a temporary file in DEST, its sha256 computed while streaming, and
renamed into place only when complete and, if a digest was given, matching. The metadata file
``<name>.metadata.json`` beside it in the store is fetched the same way when it exists, except
for a URI with a query string: a pre-signed URL's signature covers one object only.
"""

from __future__ import annotations

import logging
from pathlib import Path

from modeldeploy_runtime.artifact_uri import ArtifactNameError, artifact_basename, has_query, printable_uri
from modeldeploy_runtime.files import DigestMismatchError, write_atomically
from modeldeploy_runtime.package_layout import METADATA_SUFFIX
from modeldeploy_runtime.storage import ArtifactNotFoundError, StorageError, read_chunks

log = logging.getLogger(__name__)


class FetchError(Exception):
    """The fetch failed; the message is one line."""


def _download(uri: str, target: Path, expected_sha256: str | None) -> str:
    """Stream ``uri`` to ``target`` atomically; returns the sha256."""
    try:
        return write_atomically(target, read_chunks(uri), expected_sha256=expected_sha256)
    except DigestMismatchError as error:
        raise FetchError(f"sha256 mismatch for {printable_uri(uri)}: {error}") from None


def _fetch_metadata(uri: str, target: Path) -> None:
    """The optional, informational metadata file; its absence or a failure is not an error."""
    try:
        _download(uri, target, None)
    except ArtifactNotFoundError:
        pass
    except StorageError as error:  # a store may answer 403 for absent keys
        log.warning("metadata file not fetched", extra={"uri": printable_uri(uri), "error": str(error)})


def fetch_artifact(uri: str, dest: Path, expected_sha256: str | None = None) -> Path:
    """Download the artifact at ``uri`` into ``dest``; returns the local file's path."""
    try:
        name = artifact_basename(uri)
        dest.mkdir(parents=True, exist_ok=True)
    except ArtifactNameError as error:
        raise FetchError(str(error)) from None
    except OSError as error:
        raise FetchError(f"cannot create {dest}: {error.strerror}") from None
    target = dest / name
    try:
        digest = _download(uri, target, expected_sha256)
        if not has_query(uri):
            _fetch_metadata(uri + METADATA_SUFFIX, dest / (name + METADATA_SUFFIX))
    except StorageError as error:
        raise FetchError(str(error)) from None
    except OSError as error:
        raise FetchError(f"cannot write into {dest}: {error.strerror or error}") from None
    log.info("artifact fetched", extra={"uri": printable_uri(uri), "path": str(target), "sha256": digest})
    return target
