"""``make dev`` on the real node: the example's pods run as containers of the built images on
``real-0`` instead of as local processes.

The operator still runs in the foreground of ``make dev`` (its logs in the terminal), with the
built runtime image; the dev namespace sends its pods to real-0; the model store listens on the
node's bridge address, which the pods' init containers reach; predictions go to a pod's IP on
that bridge.
"""

from __future__ import annotations

import json
from pathlib import Path

from modeldeploy_devenv.cluster import kubectl
from modeldeploy_devenv.images import build_images, default_image_tags
from modeldeploy_devenv.node import load_images, node_network, real_node_namespace_annotations
from modeldeploy_devenv.node_network import NodeNetwork

RUNTIME_PORT = 8080
DEV_IMAGES = ("operator", "runtime")  # the examples serve joblib models: no ONNX-only runtime


def dev_real_node(kubeconfig: str) -> NodeNetwork | None:
    """The real node's network when the cluster of ``kubeconfig`` runs one, else None."""
    return node_network(Path(kubeconfig).parent)


def prepare_real_node(kubeconfig: str, namespace: str) -> str:
    """Build the images from this tree (the layer cache makes an unchanged tree cheap), load them
    into real-0, and point ``namespace``'s pods at it; return the runtime image the operator must stamp."""
    tags = {name: tag for name, tag in default_image_tags().items() if name in DEV_IMAGES}
    build_images(tags)
    load_images(Path(kubeconfig).parent, list(tags.values()))
    document = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": namespace, "annotations": real_node_namespace_annotations()},
    }
    kubectl(kubeconfig, "apply", "-f", "-", stdin=json.dumps(document))
    return tags["runtime"]


def ready_pod_url(kubeconfig: str, namespace: str, name: str) -> str:
    """``http://<pod IP>:8080`` of a Ready pod of ModelDeployment ``name``."""
    pods = json.loads(
        kubectl(
            kubeconfig,
            "get",
            "pods",
            "-n",
            namespace,
            "-l",
            f"app.kubernetes.io/instance={name}",
            "-o",
            "json",
        ).stdout
    )["items"]
    for pod in pods:
        conditions = pod.get("status", {}).get("conditions", [])
        if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            return f"http://{pod['status']['podIP']}:{RUNTIME_PORT}"
    raise RuntimeError(f"no Ready pod of {name} in {namespace}")
