"""The operator's own settings: read once at start (env, then flags) and passed down."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_RUNTIME_IMAGE = "ghcr.io/modeldeploy/model-runtime:0.1.0"
# The ONNX-only runtime (no scikit-learn): what `format: onnx` runs unless spec.runtime.image is set.
DEFAULT_RUNTIME_ONNX_IMAGE = DEFAULT_RUNTIME_IMAGE + "-onnx"
DEFAULT_LEASE_NAME = "modeldeploy-operator"
DEFAULT_PROMETHEUS_ADDRESS = (
    "http://prometheus-operated.monitoring.svc:9090"  # the Prometheus operator's Service
)
IN_CLUSTER_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class ConfigError(ValueError):
    """A setting has a value the operator cannot use; the message names it."""


@dataclass(frozen=True)
class OperatorConfig:
    runtime_image: str = DEFAULT_RUNTIME_IMAGE
    runtime_onnx_image: str = DEFAULT_RUNTIME_ONNX_IMAGE
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
    conflict_recheck_seconds: float = (
        10.0  # a same-named object that is not ours is looked at again after this long
    )
    termination_grace_seconds: int = 30
    prestop_sleep_seconds: int = 5
    # Image patterns a spec.runtime.image must match ('*' matches anything); empty allows every image.
    allowed_images: tuple[str, ...] = ()
    # The namespace whose pods (Prometheus) a ModelDeployment's NetworkPolicy admits to the metrics port.
    monitoring_namespace: str = "monitoring"
    # The Prometheus that KEDA's ScaledObjects query (spec.autoscaling.engine keda): one per cluster,
    # run by the platform team, so a setting of the operator rather than a field of every ModelDeployment.
    prometheus_address: str = DEFAULT_PROMETHEUS_ADDRESS
    watch_server_timeout_seconds: int = 270  # the API server ends each watch after this long
    leader_election: bool = True  # False: lead at once, with no Lease (a single replica)
    lease_name: str = DEFAULT_LEASE_NAME
    lease_namespace: str | None = None  # None: the first watched namespace, else "default"
    identity: str = ""  # this replica's name in the Lease: the pod's name ("": host name + random)
    lease_duration_seconds: float = 15.0  # a standby takes over this long after the last renewal it saw
    renew_deadline_seconds: float = 10.0  # the leader stops writing when it could not renew for this long
    retry_period_seconds: float = 2.0  # how often the leader renews and a standby looks at the Lease
    # Canary analysis: Prometheus' base URL to query instead of scraping the pods (None: scrape them).
    canary_prometheus_url: str | None = None
    canary_scrape_timeout_seconds: float = 2.0
    # The operator's own namespace: a NetworkPolicy admits its pods to the metrics port (canary scrapes).
    operator_namespace: str | None = None


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


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated setting, each item stripped, empty items dropped."""
    return tuple(item.strip() for item in env.get(name, "").split(",") if item.strip())


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw not in ("true", "false"):
        raise ConfigError(f"{name}={raw!r} must be 'true' or 'false'")
    return raw == "true"


def _lease_namespace(env: Mapping[str, str]) -> str | None:
    """``MODELDEPLOY_LEASE_NAMESPACE``, else the pod's namespace (downward API or the in-cluster
    token's); None outside a pod (the lease then lives in the first watched namespace)."""
    explicit = env.get("MODELDEPLOY_LEASE_NAMESPACE") or env.get("POD_NAMESPACE")
    if explicit:
        return explicit
    try:
        return IN_CLUSTER_NAMESPACE_FILE.read_text().strip() or None
    except OSError:
        return None


def _lease_timing(env: Mapping[str, str], defaults: OperatorConfig) -> tuple[float, float, float]:
    duration = _float(env, "MODELDEPLOY_LEASE_DURATION_SECONDS", defaults.lease_duration_seconds, 1.0)
    renew_deadline = _float(env, "MODELDEPLOY_RENEW_DEADLINE_SECONDS", defaults.renew_deadline_seconds, 0.5)
    retry_period = _float(env, "MODELDEPLOY_RETRY_PERIOD_SECONDS", defaults.retry_period_seconds, 0.1)
    # A standby may take over up to one retry period early (leadership.py explains why), so the
    # leader must have stopped writing by then: renew deadline < lease duration - retry period.
    if renew_deadline >= duration - retry_period:
        raise ConfigError(
            f"MODELDEPLOY_RENEW_DEADLINE_SECONDS={renew_deadline:g} must be less than "
            f"MODELDEPLOY_LEASE_DURATION_SECONDS - MODELDEPLOY_RETRY_PERIOD_SECONDS = {duration - retry_period:g}"
        )
    if retry_period >= renew_deadline:
        raise ConfigError(
            f"MODELDEPLOY_RETRY_PERIOD_SECONDS={retry_period:g} must be less than "
            f"MODELDEPLOY_RENEW_DEADLINE_SECONDS={renew_deadline:g}"
        )
    return duration, renew_deadline, retry_period


def config_from_env(env: Mapping[str, str] | None = None) -> OperatorConfig:
    """Settings from ``MODELDEPLOY_*`` environment variables; flags override some of them later."""
    env = os.environ if env is None else env
    namespaces = _list(env, "MODELDEPLOY_NAMESPACES")
    log_format = env.get("MODELDEPLOY_LOG_FORMAT", "plain")
    if log_format not in ("plain", "json"):
        raise ConfigError(f"MODELDEPLOY_LOG_FORMAT={log_format!r} must be 'plain' or 'json'")
    defaults = OperatorConfig()
    lease_duration, renew_deadline, retry_period = _lease_timing(env, defaults)
    return OperatorConfig(
        runtime_image=env.get("MODELDEPLOY_RUNTIME_IMAGE") or defaults.runtime_image,
        runtime_onnx_image=env.get("MODELDEPLOY_RUNTIME_ONNX_IMAGE") or defaults.runtime_onnx_image,
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
        conflict_recheck_seconds=_float(
            env, "MODELDEPLOY_CONFLICT_RECHECK_SECONDS", defaults.conflict_recheck_seconds, 0.1
        ),
        allowed_images=_list(env, "MODELDEPLOY_ALLOWED_IMAGES"),
        monitoring_namespace=env.get(
            "MODELDEPLOY_MONITORING_NAMESPACE", defaults.monitoring_namespace
        ).strip(),
        prometheus_address=env.get("MODELDEPLOY_PROMETHEUS_ADDRESS", "").strip()
        or defaults.prometheus_address,
        watch_server_timeout_seconds=_int(
            env, "MODELDEPLOY_WATCH_SERVER_TIMEOUT_SECONDS", defaults.watch_server_timeout_seconds, 1
        ),
        leader_election=_bool(env, "MODELDEPLOY_LEADER_ELECTION", defaults.leader_election),
        lease_name=env.get("MODELDEPLOY_LEASE_NAME") or defaults.lease_name,
        lease_namespace=_lease_namespace(env),
        identity=env.get("POD_NAME", ""),
        lease_duration_seconds=lease_duration,
        renew_deadline_seconds=renew_deadline,
        retry_period_seconds=retry_period,
        canary_prometheus_url=env.get("MODELDEPLOY_CANARY_PROMETHEUS_URL", "").strip() or None,
        canary_scrape_timeout_seconds=_float(
            env, "MODELDEPLOY_CANARY_SCRAPE_TIMEOUT_SECONDS", defaults.canary_scrape_timeout_seconds, 0.1
        ),
        operator_namespace=env.get("POD_NAMESPACE") or _lease_namespace(env),
    )
