"""Runtime settings: every ``serve`` flag has a ``MODELDEPLOY_<NAME>`` environment equivalent.

Parsed and validated once at start (flags win over the environment), then passed down. Nothing
here imports the serving stack or touches ``sys.path``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from modeldeploy_runtime.artifact_uri import printable_uri
from modeldeploy_runtime.package_layout import NAME_PATTERN, NAME_RULE, ModelFormat, format_of_file

ENV_PREFIX = "MODELDEPLOY_"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
OnnxProvider = Literal["auto", "cpu", "cuda"]


class RuntimeSettings(BaseSettings):
    """What ``modeldeploy-runtime serve`` needs; field descriptions are the ``--help`` text."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, protected_namespaces=()
    )

    model_uri: str = Field(
        description="model artifact: a file path, file://, s3:// or https:// URI (remote ones are fetched first)"
    )
    model_name: str = Field("model", description="name served in URLs and metrics")
    model_version: str = Field("v1", description="version served in metadata and metrics")
    model_sha256: str | None = Field(
        None, description="expected sha256 of the artifact (64 hex); checked before deserialising"
    )
    model_format: ModelFormat | None = Field(
        None,
        description="joblib, skops or onnx; default: from the file extension (.skops, .onnx, else joblib)",
    )
    onnx_threads: int = Field(
        1, ge=1, le=256, description="onnx only: ONNX Runtime intra-op threads per worker process"
    )
    onnx_provider: OnnxProvider = Field(
        "auto",
        description="onnx only: auto (CUDA when onnxruntime-gpu is installed and a GPU is mounted, "
        "else CPU), cpu or cuda",
    )
    allow_unverified_pickle: bool = Field(
        False,
        description="DEVELOPMENT ONLY: load a joblib artifact (a pickle, which runs code when loaded) "
        "without --model-sha256; logged as a warning at start",
    )
    trusted_types: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="skops only: extra fully qualified type names to trust, comma-separated "
        "(the artifact never decides this)",
    )
    host: str = Field("0.0.0.0", description="address to listen on")  # noqa: S104 - a pod serves its IP
    port: int = Field(8080, ge=1, le=65535, description="HTTP port for the inference API and health")
    metrics_port: int = Field(9090, ge=0, le=65535, description="Prometheus /metrics port (0 = off)")
    metrics_dir: Path | None = Field(
        None, description="directory for multi-process metric files; default: a fresh one under $TMPDIR"
    )
    workers: int = Field(1, ge=1, le=64, description="worker processes sharing the port")
    auth_keys_file: Path | None = Field(
        None, description="API-key hashes file (JSON); absent = authentication OFF"
    )
    tls_cert: Path | None = Field(None, description="PEM certificate; with --tls-key serves HTTPS")
    tls_key: Path | None = Field(None, description="PEM private key for --tls-cert")
    max_body_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, le=1024**3, description="larger request bodies get 413"
    )
    max_concurrency: int = Field(
        256, ge=1, le=100_000, description="requests in flight per worker before 503 + Retry-After"
    )
    batch_max_size: int = Field(64, ge=1, le=65536, description="most rows predicted in one micro-batch")
    batch_max_delay_ms: float = Field(
        2.0,
        ge=0,
        le=1000,
        description="longest wait to fill a micro-batch; the runtime waits only while recent traffic "
        "says more requests are coming, and at most a quarter of a model call (0 = never wait)",
    )
    header_timeout_seconds: float = Field(
        10.0, gt=0, le=600, description="a client must send its request headers within this time"
    )
    body_timeout_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="a client must send its whole request body within this time after its headers, "
        "else 408 and close",
    )
    json_offload_bytes: int = Field(
        256 * 1024,
        ge=0,
        le=1024**3,
        description="request bodies larger than this are decoded on a thread, off the event loop, so "
        "health checks stay responsive (0 = always)",
    )
    keep_alive_seconds: int = Field(5, ge=1, le=3600, description="idle keep-alive connection timeout")
    shutdown_delay_seconds: float = Field(
        0.0, ge=0, le=600, description="after SIGTERM: keep serving, unready, this long before draining"
    )
    shutdown_timeout_seconds: float = Field(
        25.0, gt=0, le=3600, description="after SIGTERM: longest wait for in-flight requests"
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="log level")
    access_log: bool = Field(False, description="log every request (costs throughput)")

    @field_validator("model_sha256")
    @classmethod
    def _check_sha256(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        lowered = value.strip().lower()
        if not _SHA256.match(lowered):
            raise ValueError("must be 64 hexadecimal characters")
        return lowered

    @field_validator("model_name", "model_version")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not NAME_PATTERN.fullmatch(value):
            raise ValueError(NAME_RULE)
        return value

    @field_validator("model_uri")
    @classmethod
    def _check_uri(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in ("", "file", "s3", "https"):
            raise ValueError("must be a path or a file://, s3:// or https:// URI")
        return value

    @field_validator("trusted_types", mode="before")
    @classmethod
    def _split_types(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            return [part.strip() for item in value for part in str(item).split(",") if part.strip()]
        return value

    @field_validator("auth_keys_file", "tls_cert", "tls_key")
    @classmethod
    def _check_readable(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @model_validator(mode="after")
    def _check_pairs(self) -> RuntimeSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key must be given together")
        if self.metrics_port == self.port:
            raise ValueError(f"--metrics-port must differ from --port ({self.port})")
        return self

    @property
    def resolved_format(self) -> ModelFormat:
        if self.model_format is not None:
            return self.model_format
        return format_of_file(self.model_uri)

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def describe_validation_error(error: ValidationError) -> list[str]:
    """One line per bad value, naming the flag, its environment variable and what is expected."""
    lines = []
    for item in error.errors():
        location = [str(part) for part in item["loc"]]
        message = item["msg"].removeprefix("Value error, ")
        if not location:
            lines.append(message)
            continue
        field = location[0]
        got = item.get("input")
        if field == "model_uri" and isinstance(got, str):
            got = printable_uri(got)  # a pre-signed URL's signature is never printed
        shown = "" if item["type"] == "missing" or isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"{flag_name(field)} / {ENV_PREFIX}{field.upper()}: {message}{shown}")
    return lines
