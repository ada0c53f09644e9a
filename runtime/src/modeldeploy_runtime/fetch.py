"""``modeldeploy-runtime fetch``: download an artifact (and its metadata file) into a directory.

The artifact keeps the last segment of its URI as its name (``s3://b/iris/model.joblib`` →
``DEST/model.joblib``). It is written to a temporary file in DEST, its sha256 computed while
streaming, and renamed into place only when complete and, if a digest was given, matching. The
metadata file ``<name>.metadata.json`` beside it in the store is fetched the same way when it
exists.
"""

from __future__ import annotations

import logging
from pathlib import Path

from modeldeploy_runtime.files import DigestMismatchError, write_atomically
from modeldeploy_runtime.package_layout import METADATA_SUFFIX
from modeldeploy_runtime.storage import ArtifactNotFoundError, StorageError, artifact_basename, read_chunks

log = logging.getLogger(__name__)


class FetchError(Exception):
    """The fetch failed; the message is one line."""


def _download(uri: str, target: Path, expected_sha256: str | None) -> str:
    """Stream ``uri`` to ``target`` atomically; returns the sha256."""
    try:
        return write_atomically(target, read_chunks(uri), expected_sha256=expected_sha256)
    except DigestMismatchError as error:
        raise FetchError(f"sha256 mismatch for {uri}: {error}") from None


def fetch_artifact(uri: str, dest: Path, expected_sha256: str | None = None) -> Path:
    """Download the artifact at ``uri`` into ``dest``; returns the local file's path."""
    try:
        name = artifact_basename(uri)
        dest.mkdir(parents=True, exist_ok=True)
    except StorageError as error:
        raise FetchError(str(error)) from None
    except OSError as error:
        raise FetchError(f"cannot create {dest}: {error.strerror}") from None
    target = dest / name
    try:
        digest = _download(uri, target, expected_sha256)
        try:
            _download(uri + METADATA_SUFFIX, dest / (name + METADATA_SUFFIX), None)
        except ArtifactNotFoundError:
            pass
        except StorageError as error:  # optional file; a store may answer 403 for absent keys
            log.warning(
                "metadata file not fetched", extra={"uri": uri + METADATA_SUFFIX, "error": str(error)}
            )
    except StorageError as error:
        raise FetchError(str(error)) from None
    except OSError as error:
        raise FetchError(f"cannot write into {dest}: {error.strerror or error}") from None
    log.info("artifact fetched", extra={"uri": uri, "path": str(target), "sha256": digest})
    return target
