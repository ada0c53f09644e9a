"""The directory where every process writes its metric values (prometheus-client multiprocess mode).

This module must not import ``prometheus_client``: the library picks its storage when first
imported, so the directory has to be exported before that (the CLI calls this first).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from modeldeploy_runtime.errors import StartupError


def prepare_metrics_dir(configured: Path | None) -> Path:
    """The multi-process metrics directory, emptied of old files and exported to prometheus-client.

    Must run before ``prometheus_client`` is imported: it picks its storage at import time.
    """
    if configured is None:
        directory = Path(tempfile.mkdtemp(prefix="modeldeploy-metrics-"))
    else:
        directory = configured
        try:
            directory.mkdir(parents=True, exist_ok=True)
            for stale in directory.glob("*.db"):
                stale.unlink()
        except OSError as error:
            raise StartupError(f"--metrics-dir {directory}: {error.strerror}") from None
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    return directory
