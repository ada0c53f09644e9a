"""Another field manager on our children: a field we own (the Deployment's image, changed with a
real ``kubectl edit``) is taken back; a field we do not own (another tool's annotation) stays."""

from __future__ import annotations

import os
import subprocess
import time

from modeldeploy_devenv.assets import require_binary
from tests.faults.conftest import FaultCluster, Operators
from tests.operator.factories import manifest
from tests.operator.helpers import get, wait_ready
from tests.support import wait_until

TAKEN_BACK_BOUND_SECONDS = 5.0
FOREIGN_ANNOTATION = "example.com/owner"


def _kubectl_edit(cluster: FaultCluster, namespace: str, target: str, sed_expression: str) -> None:
    """``kubectl edit`` with a scripted editor (field manager ``kubectl-edit``)."""
    environment = {**os.environ, "KUBE_EDITOR": f"sed -i -e '{sed_expression}'"}
    subprocess.run(
        [str(require_binary("kubectl")), "--kubeconfig", cluster.kubeconfig, "edit", target, "-n", namespace],
        check=True, env=environment, capture_output=True, timeout=60,
    )  # fmt: skip


def _managers_of_image(cluster: FaultCluster, namespace: str) -> set[str]:
    deployment = cluster.get_json("deployment", "iris", "-n", namespace, "--show-managed-fields")
    return {
        entry["manager"]
        for entry in deployment["metadata"]["managedFields"]
        if '"f:image"' in str(entry.get("fieldsV1", "")).replace("'", '"')
    }


def test_a_field_we_own_is_taken_back_and_a_foreign_field_left_alone(
    cluster: FaultCluster, namespace: str, operators: Operators
) -> None:
    operators.start()
    cluster.apply(manifest("iris"), "-n", namespace)
    wait_ready(cluster, namespace, "iris")
    deployment = get(cluster, namespace, "deployment", "iris")
    assert deployment is not None
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]

    _kubectl_edit(cluster, namespace, "deployment/iris", f"s#image: {image}#image: evil.example/runtime:1#")
    edited = time.monotonic()

    def image_now() -> str:
        current = get(cluster, namespace, "deployment", "iris")
        return str(current["spec"]["template"]["spec"]["containers"][0]["image"]) if current else ""

    wait_until("the operator to take the image back", lambda: image_now() == image, timeout=30, interval=0.1)
    elapsed = time.monotonic() - edited
    print(f"kubectl edit of the image taken back in {elapsed:.1f}s (bound {TAKEN_BACK_BOUND_SECONDS}s)")
    assert elapsed <= TAKEN_BACK_BOUND_SECONDS
    assert "modeldeploy-operator" in _managers_of_image(cluster, namespace)

    cluster.kubectl("annotate", "deployment", "iris", "-n", namespace, f"{FOREIGN_ANNOTATION}=team-a")
    # A reconcile that writes the Deployment (a new generation) must keep the other tool's field.
    cluster.kubectl("patch", "mdep", "iris", "-n", namespace, "--type=merge", "-p", '{"spec":{"replicas":2}}')
    wait_until(
        "the Deployment scaled to 2",
        lambda: (get(cluster, namespace, "deployment", "iris") or {}).get("spec", {}).get("replicas") == 2,
    )
    annotations = get(cluster, namespace, "deployment", "iris")["metadata"]["annotations"]  # type: ignore[index]
    assert annotations.get(FOREIGN_ANNOTATION) == "team-a"
