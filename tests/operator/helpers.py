"""Small helpers for the operator's integration tests."""

from __future__ import annotations

import base64
import json
from typing import Any

from tests.conftest import Cluster
from tests.polling import wait_until


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


def crash_loop_first_pod(cluster: Cluster, namespace: str, name: str) -> None:
    """Make ``name``'s first pod look crash-looping (what a kubelet reports when the model fails
    to load): kwok runs no containers, so the test writes the pod's status itself."""
    pod = cluster.get_json("pods", "-n", namespace, "-l", f"modeldeploy.io/model-deployment={name}")["items"][
        0
    ]
    crashed: dict[str, Any] = {"status": {
        "conditions": [{"type": "Ready", "status": "False"}, {"type": "ContainersReady", "status": "False"}],
        "containerStatuses": [{
            "name": "runtime", "ready": False, "restartCount": 3, "image": "x", "imageID": "", "started": False,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": "model failed to load"}},
        }],
    }}  # fmt: skip
    cluster.kubectl(
        "patch",
        "pod",
        pod["metadata"]["name"],
        "-n",
        namespace,
        "--subresource=status",
        "-p",
        json.dumps(crashed),
    )
