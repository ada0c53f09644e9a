"""Building what serves one model from its settings, for the HTTP server and the Lambda function."""

from __future__ import annotations

import tempfile
from pathlib import Path

from modeldeploy_runtime.errors import StartupError
from modeldeploy_runtime.fetch import FetchError, fetch_artifact
from modeldeploy_runtime.serving.model import LoadedModel, ModelLoadError, load_model
from modeldeploy_runtime.serving.settings import RuntimeSettings
from modeldeploy_runtime.storage import is_remote


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
    try:
        return load_model(
            _resolve_model_path(settings),
            name=settings.model_name,
            version=settings.model_version,
            model_format=settings.resolved_format,
            expected_sha256=settings.model_sha256,
            trusted_types=settings.trusted_types,
            onnx_threads=settings.onnx_threads,
            onnx_provider=settings.onnx_provider,
        )
    except ModelLoadError as error:
        raise StartupError(str(error)) from None
