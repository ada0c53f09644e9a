"""Building what serves one model from its settings, for the HTTP server and the Lambda function."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from modeldeploy_runtime.artifact_uri import printable_uri
from modeldeploy_runtime.errors import StartupError
from modeldeploy_runtime.fetch import FetchError, fetch_artifact
from modeldeploy_runtime.serving.model import (
    LoadedModel,
    ModelLoadError,
    check_pickle_is_verified,
    load_model,
)
from modeldeploy_runtime.serving.settings import RuntimeSettings
from modeldeploy_runtime.storage import is_remote

log = logging.getLogger(__name__)


def _resolve_model_path(settings: RuntimeSettings) -> Path:
    uri = settings.model_uri
    if is_remote(uri):
        target = Path(tempfile.mkdtemp(prefix="modeldeploy-model-"))
        try:
            return fetch_artifact(uri, target, settings.model_sha256)
        except FetchError as error:
            raise StartupError(str(error)) from None
    return Path(uri.removeprefix("file://"))


def load_configured_model(settings: RuntimeSettings) -> LoadedModel:
    """The verified, loaded model; its warnings are logged. StartupError (one line) when it cannot be."""
    try:
        # Before fetching: an unverified pickle is refused without downloading it.
        check_pickle_is_verified(
            printable_uri(settings.model_uri),
            settings.resolved_format,
            settings.model_sha256,
            settings.allow_unverified_pickle,
        )
        model = load_model(
            _resolve_model_path(settings),
            name=settings.model_name,
            version=settings.model_version,
            model_format=settings.resolved_format,
            expected_sha256=settings.model_sha256,
            trusted_types=settings.trusted_types,
            allow_unverified_pickle=settings.allow_unverified_pickle,
        )
    except ModelLoadError as error:
        raise StartupError(str(error)) from None
    for warning in model.warnings:
        log.warning(warning, extra={"model": model.name})
    return model
