"""The operator's own settings: read once at start (env, then flags) and passed down."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_RUNTIME_IMAGE = "ghcr.io/modeldeploy/model-runtime:0.1.0"


class ConfigError(ValueError):
    """A setting has a value the operator cannot use; the message names it."""


@dataclass(frozen=True)
class OperatorConfig:
    runtime_image: str = DEFAULT_RUNTIME_IMAGE
    namespaces: tuple[str, ...] = ()  # empty with all_namespaces=True means cluster-wide
    all_namespaces: bool = False
    metrics_port: int = 8000  # 0 disables the metrics endpoint
    log_format: str = "plain"
    key_rotation_grace_seconds: int = 300
    resync_seconds: float = 300.0  # the safety net: re-list everything and reconcile
    workers: int = 8
    coalesce_seconds: float = 0.3  # children events for one ModelDeployment within this window merge
    monitoring_api_cache_seconds: float = 10.0
    status_debounce_seconds: float = 2.0  # progress-only status changes (replica counts) wait this long
    pod_recheck_seconds: float = 5.0  # an unfinished rollout's pods are looked at again after this long
    termination_grace_seconds: int = 30
    prestop_sleep_seconds: int = 5


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum}")
    return value


def config_from_env(env: Mapping[str, str] | None = None) -> OperatorConfig:
    """Settings from ``MODELDEPLOY_*`` environment variables; flags override some of them later."""
    env = os.environ if env is None else env
    namespaces = tuple(ns for ns in env.get("MODELDEPLOY_NAMESPACES", "").split(",") if ns)
    log_format = env.get("MODELDEPLOY_LOG_FORMAT", "plain")
    if log_format not in ("plain", "json"):
        raise ConfigError(f"MODELDEPLOY_LOG_FORMAT={log_format!r} must be 'plain' or 'json'")
    defaults = OperatorConfig()
    return OperatorConfig(
        runtime_image=env.get("MODELDEPLOY_RUNTIME_IMAGE") or defaults.runtime_image,
        namespaces=namespaces,
        all_namespaces=not namespaces,
        metrics_port=_int(env, "MODELDEPLOY_METRICS_PORT", defaults.metrics_port),
        log_format=log_format,
        key_rotation_grace_seconds=_int(
            env, "MODELDEPLOY_KEY_ROTATION_GRACE_SECONDS", defaults.key_rotation_grace_seconds
        ),
        resync_seconds=_float(env, "MODELDEPLOY_RESYNC_SECONDS", defaults.resync_seconds, 1.0),
        workers=_int(env, "MODELDEPLOY_WORKERS", defaults.workers, 1),
        coalesce_seconds=_float(env, "MODELDEPLOY_COALESCE_SECONDS", defaults.coalesce_seconds, 0.0),
        status_debounce_seconds=_float(
            env, "MODELDEPLOY_STATUS_DEBOUNCE_SECONDS", defaults.status_debounce_seconds, 0.0
        ),
        pod_recheck_seconds=_float(env, "MODELDEPLOY_POD_RECHECK_SECONDS", defaults.pod_recheck_seconds, 0.1),
        monitoring_api_cache_seconds=_float(
            env, "MODELDEPLOY_MONITORING_API_CACHE_SECONDS", defaults.monitoring_api_cache_seconds, 0.0
        ),
    )
