"""Small helpers for the operator's integration tests."""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from modeldeploy_operator.resources import CHILDREN, MODEL_DEPLOYMENT
from tests.conftest import Cluster
from tests.support import wait_until

# What the operator writes, as the API server names it in ``apiserver_request_total``.
OPERATOR_RESOURCES = frozenset(resource.plural for resource in (MODEL_DEPLOYMENT, *CHILDREN))
# Server-side apply is APPLY, the rotation annotation's removal a PATCH. DELETE is left out: the
# garbage collector deletes the children of earlier tests' ModelDeployments at any moment.
OPERATOR_WRITE_VERBS = frozenset({"APPLY", "PATCH", "POST"})


def condition(body: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for item in body.get("status", {}).get("conditions", []):
        if item["type"] == kind:
            return item  # type: ignore[no-any-return]
    return None


def get(cluster: Cluster, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
    result = cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def wait_ready(cluster: Cluster, namespace: str, name: str, timeout: int = 120) -> dict[str, Any]:
    """``kubectl wait --for=condition=Ready`` (what users run), then the body."""
    cluster.kubectl("wait", "--for=condition=Ready", f"mdep/{name}", "-n", namespace, f"--timeout={timeout}s")
    body = get(cluster, namespace, "mdep", name)
    assert body is not None
    return body


def wait_status(
    cluster: Cluster, namespace: str, name: str, what: str, *, check: Any, timeout: float = 120
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        body = get(cluster, namespace, "mdep", name)
        return body if body is not None and check(body) else None

    return wait_until(what, probe, timeout=timeout)


def secret_text(cluster: Cluster, namespace: str, name: str, key: str) -> str | None:
    secret = get(cluster, namespace, "secret", name)
    if secret is None or key not in secret.get("data", {}):
        return None
    return base64.b64decode(secret["data"][key]).decode()


def api_server_writes(cluster: Cluster) -> Counter[str]:
    """Write requests the API server has served on the operator's resources so far, by
    "VERB resource[/subresource]": its own ``apiserver_request_total``, read with the admin
    kubeconfig, a witness independent of the operator's metrics."""
    counts: Counter[str] = Counter()
    metric = "apiserver_request_total"
    lines = cluster.kubectl("get", "--raw", "/metrics").stdout.splitlines()
    samples = "\n".join(line for line in lines if line.startswith(metric + "{"))  # of several MB
    for family in text_string_to_metric_families(samples + "\n"):
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name == metric
                and labels.get("resource") in OPERATOR_RESOURCES
                and labels.get("verb") in OPERATOR_WRITE_VERBS
                and not labels.get("dry_run")
            ):
                subresource = f"/{labels['subresource']}" if labels.get("subresource") else ""
                counts[f"{labels['verb']} {labels['resource']}{subresource}"] += int(sample.value)
    return counts


def holds_for(what: str, check: Callable[[], bool], seconds: float, interval: float = 0.5) -> None:
    """Poll ``check`` for ``seconds``; fail at the first poll where it no longer holds."""
    deadline = time.monotonic() + seconds
    while True:
        assert check(), (
            f"{what} stopped holding {seconds - (deadline - time.monotonic()):.1f}s into {seconds:.1f}s"
        )
        if time.monotonic() >= deadline:
            return
        time.sleep(min(interval, max(deadline - time.monotonic(), 0.0)))
