"""The AWS Lambda entry point: ``modeldeploy_runtime.aws_lambda.handler``.

Each HTTP event (API Gateway REST or HTTP API, or a function URL; see
:mod:`modeldeploy_runtime.aws_lambda.events`) is handed to the very ASGI application the HTTP
server runs, so routes, validation, the API-key check, the body limit and every status code
and body are the server's own. The model is loaded and warmed up once per container, on the
first invocation, and kept with its event loop at module scope for the container's life.

Configuration (environment variables; each ``MODELDEPLOY_*`` setting of ``serve`` also works):

- ``MODELDEPLOY_LAMBDA_BUNDLE_DIR``: where ``lambda package``'s zip was unpacked; default
  ``$LAMBDA_TASK_ROOT`` (Lambda's ``/var/task``), else the working directory.
- ``MODELDEPLOY_MODEL_URI``, ``_MODEL_NAME``, ``_MODEL_VERSION``, ``_MODEL_SHA256``,
  ``_MODEL_FORMAT``: default to the bundle's model; a relative path is inside the bundle.
- ``MODELDEPLOY_API_KEYS_JSON``: the API-key hashes file's JSON (hashes only), instead of the
  bundled ``apikeys.json`` or ``MODELDEPLOY_AUTH_KEYS_FILE``. With none of them, auth is off.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from modeldeploy_runtime.apikeys import KeysFileError, KeyVerifier, parse_keys_file
from modeldeploy_runtime.aws_lambda.bundle import CONFIG_NAME, BundleError, read_config
from modeldeploy_runtime.aws_lambda.events import (
    HttpRequest,
    UnsupportedEventError,
    parse_event,
    render_result,
)
from modeldeploy_runtime.errors import RequestError, StartupError
from modeldeploy_runtime.logs import configure_logging
from modeldeploy_runtime.serving.app import Message, RuntimeApp
from modeldeploy_runtime.serving.factory import api_keys, build_app, load_configured_model
from modeldeploy_runtime.serving.settings import ENV_PREFIX, RuntimeSettings, describe_validation_error

log = logging.getLogger(__name__)

ENV_BUNDLE_DIR = "MODELDEPLOY_LAMBDA_BUNDLE_DIR"
ENV_API_KEYS_JSON = "MODELDEPLOY_API_KEYS_JSON"
_TASK_ROOT = "LAMBDA_TASK_ROOT"
_FUNCTION_NAME = "AWS_LAMBDA_FUNCTION_NAME"


@dataclass(frozen=True)
class LambdaConfig:
    """The settings the app is built from, and the keys when they came from the environment."""

    settings: RuntimeSettings
    fixed_keys: KeyVerifier | None


def _env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def bundle_root() -> Path:
    return Path(os.environ.get(ENV_BUNDLE_DIR) or os.environ.get(_TASK_ROOT) or os.getcwd())


def _bundle_defaults(root: Path) -> dict[str, Any]:
    """Settings the bundle supplies; each yields to its MODELDEPLOY_* variable when that is set."""
    custom_model = _env_name("model_uri") in os.environ
    if custom_model and not (root / CONFIG_NAME).exists():
        return {}
    try:
        bundled = read_config(root)
    except BundleError as error:
        raise StartupError(str(error)) from None
    defaults: dict[str, Any] = {"model_name": bundled.name, "model_version": bundled.version}
    if not custom_model:  # the digest and format describe the bundled artifact only
        defaults.update(
            model_uri=str(root / bundled.model_path),
            model_sha256=bundled.sha256,
            model_format=bundled.model_format,
        )
    if bundled.keys_file is not None:
        defaults["auth_keys_file"] = root / bundled.keys_file
    return {name: value for name, value in defaults.items() if _env_name(name) not in os.environ}


def read_lambda_config() -> LambdaConfig:
    """Settings from MODELDEPLOY_* variables over the bundle's config; StartupError (one line) if bad."""
    root = bundle_root()
    values = _bundle_defaults(root)
    uri = os.environ.get(_env_name("model_uri"))
    if uri is not None and "://" not in uri and not Path(uri).is_absolute():
        values["model_uri"] = str(root / uri)  # a path inside the bundle
    fixed_keys = None
    keys_json = os.environ.get(ENV_API_KEYS_JSON)
    if keys_json:
        if _env_name("auth_keys_file") in os.environ:
            raise StartupError(f"set {ENV_API_KEYS_JSON} or {_env_name('auth_keys_file')}, not both")
        try:
            fixed_keys = KeyVerifier(parse_keys_file(keys_json))
        except KeysFileError as error:
            raise StartupError(f"{ENV_API_KEYS_JSON}: {error}") from None
        values.pop("auth_keys_file", None)
    try:
        # Fields not in `values` are read from their MODELDEPLOY_* variables, as `serve` reads them.
        settings = RuntimeSettings(**values, metrics_port=0)
    except ValidationError as error:
        raise StartupError("; ".join(describe_validation_error(error))) from None
    return LambdaConfig(settings, fixed_keys)


class LambdaRuntime:
    """One loaded model behind the server's ASGI app, driven by a private event loop."""

    def __init__(self, config: LambdaConfig) -> None:
        settings = config.settings
        keys = api_keys(settings, config.fixed_keys)
        self.model = load_configured_model(settings)
        # One request per container at a time: nothing to batch, so never wait for company.
        serving = build_app(settings, self.model, keys, batch_max_delay_ms=0)
        serving.metrics.record_model()
        self.app: RuntimeApp = serving.app
        self.dataplane = serving.dataplane
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self.dataplane.start())
        log.info(
            "model loaded", extra={"model": self.model.name, "seconds": round(self.model.load_seconds, 3)}
        )

    def respond(self, request: HttpRequest) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """The app's (status, headers, body) for one request."""
        return self._loop.run_until_complete(self._call_app(request))

    async def _call_app(self, request: HttpRequest) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": "https",
            "path": request.path,
            "raw_path": request.path.encode("latin-1", "replace"),
            "root_path": "",
            "query_string": request.query_string,
            "headers": request.headers,
            "client": (request.client, 0) if request.client else None,
            "server": None,
        }
        delivered = False

        async def receive() -> Message:
            nonlocal delivered
            if delivered:
                return {"type": "http.disconnect"}
            delivered = True
            return {"type": "http.request", "body": request.body, "more_body": False}

        status = 500
        headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        async def send(message: Message) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(bytes(name), bytes(value)) for name, value in message.get("headers", [])]
            elif message["type"] == "http.response.body":
                chunks.append(bytes(message.get("body", b"")))

        await self.app(scope, receive, send)
        return status, headers, b"".join(chunks)

    def close(self) -> None:
        self._loop.run_until_complete(self.dataplane.stop())
        self._loop.close()


_runtime: LambdaRuntime | None = None
_runtime_lock = threading.Lock()


def current_runtime() -> LambdaRuntime:
    """The container's runtime, built on first use; a failed build is retried on the next event."""
    global _runtime  # noqa: PLW0603 - one model per container is the point
    with _runtime_lock:
        if _runtime is None:
            config = read_lambda_config()
            if _FUNCTION_NAME in os.environ:  # on Lambda: JSON lines to CloudWatch, as in a pod
                configure_logging(config.settings.log_level)
            _runtime = LambdaRuntime(config)
        return _runtime


def _error_result(status: int, message: str, payload_version: str = "2.0") -> dict[str, Any]:
    body = orjson.dumps({"error": message})
    return render_result(status, [(b"content-type", b"application/json")], body, payload_version)


def handler(event: Any, context: Any) -> dict[str, Any]:
    """Lambda entry point for API Gateway (REST and HTTP API) and function URL events."""
    try:
        request = parse_event(event)
    except UnsupportedEventError as error:
        log.error("unsupported event", extra={"error": str(error)})
        return _error_result(400, str(error))
    except RequestError as error:
        version = "2.0" if isinstance(event, Mapping) and event.get("version") == "2.0" else "1.0"
        return _error_result(error.status, error.message, version)
    try:
        runtime = current_runtime()
    except StartupError as error:
        log.error("model cannot be served", extra={"error": str(error)})
        return _error_result(503, f"model cannot be served: {error}", request.payload_version)
    status, headers, body = runtime.respond(request)
    return render_result(status, headers, body, request.payload_version)
