"""Building what serves one model from its settings: one chain for the HTTP server and Lambda.

settings → :func:`load_configured_model` (once, before any worker starts) → :func:`api_keys`
(which keys, decided here only) → :func:`build_app` (metrics → data plane → ASGI app). The HTTP
server (``server.py``) runs the app under uvicorn in each worker; the Lambda function
(``aws_lambda/function.py``) calls it once per event. Nothing here imports uvicorn.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from modeldeploy_runtime.apikeys import KeysFileError, KeyVerifier
from modeldeploy_runtime.artifact_uri import printable_uri
from modeldeploy_runtime.errors import StartupError
from modeldeploy_runtime.fetch import FetchError, fetch_artifact
from modeldeploy_runtime.serving.app import RuntimeApp, create_app
from modeldeploy_runtime.serving.auth import Authenticator, FixedKeys, KeysFile, KeySource
from modeldeploy_runtime.serving.body_decoding import BodyDecoder
from modeldeploy_runtime.serving.dataplane import DataPlane
from modeldeploy_runtime.serving.metrics import RuntimeMetrics
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
    """The model ``settings`` name, fetched if remote and verified; StartupError (one line) if not servable.

    Its warnings are logged here, for the server and Lambda alike.
    """
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
            onnx_threads=settings.onnx_threads,
            onnx_provider=settings.onnx_provider,
        )
    except ModelLoadError as error:
        raise StartupError(str(error)) from None
    for warning in model.warnings:
        log.warning(warning, extra={"model": model.name})
    return model


def api_keys(settings: RuntimeSettings, fixed: KeyVerifier | None = None) -> KeySource | None:
    """Where the API keys come from; None means authentication is off (and is logged as a warning).

    ``fixed`` keys (Lambda's ``MODELDEPLOY_API_KEYS_JSON``) win; else ``--auth-keys-file``, re-read
    whenever it changes. StartupError (one line) when that file cannot be used.
    """
    if fixed is not None:
        return FixedKeys(fixed)
    if settings.auth_keys_file is not None:
        try:
            return KeysFile(settings.auth_keys_file)
        except KeysFileError as error:
            raise StartupError(f"--auth-keys-file: {error}") from None
    log.warning("AUTHENTICATION IS OFF: no API keys configured, anyone who can reach the port can predict")
    return None


@dataclass(frozen=True)
class ServingApp:
    """The ASGI app for one model and the parts its host drives: the data plane's life, the metrics."""

    app: RuntimeApp
    dataplane: DataPlane
    metrics: RuntimeMetrics


def build_app(
    settings: RuntimeSettings,
    model: LoadedModel,
    keys: KeySource | None,
    *,
    batch_max_delay_ms: float | None = None,
    decoder: BodyDecoder | None = None,
) -> ServingApp:
    """Metrics, data plane and app for ``model``; ``batch_max_delay_ms`` overrides the setting.

    Without a ``decoder`` (a started one, from the server's worker), bodies are decoded in place.
    """
    metrics = RuntimeMetrics(model, batch_max_size=settings.batch_max_size)
    dataplane = DataPlane(
        model,
        batch_max_size=settings.batch_max_size,
        batch_max_delay_ms=settings.batch_max_delay_ms if batch_max_delay_ms is None else batch_max_delay_ms,
        on_batch=metrics.record_batch,
    )
    app = create_app(
        settings, dataplane, metrics, Authenticator(keys), decoder or BodyDecoder(dataplane.description)
    )
    return ServingApp(app, dataplane, metrics)
