"""Security settings against the real control plane: allowedImages, the NetworkPolicy and TLS
children as the API server admits them, and the resourceVersion precondition of the rotation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from modeldeploy_operator.builders import build_deployment, build_network_policy, build_service
from modeldeploy_operator.config import OperatorConfig
from modeldeploy_operator.kube import Kube, KubeError, load_api_client
from modeldeploy_operator.model import ModelDeployment
from modeldeploy_operator.resources import MODEL_DEPLOYMENT
from tests.conftest import Cluster
from tests.operator.conftest import StartOperator
from tests.operator.factories import manifest, md_body
from tests.operator.helpers import condition, get, wait_ready, wait_status
from tests.support import wait_until

ALLOWED = "registry.example/models/*"


def test_an_image_outside_allowed_images_gets_no_deployment_until_it_is_allowed(
    crd: Cluster, namespace: str, start_operator: StartOperator
) -> None:
    start_operator(MODELDEPLOY_ALLOWED_IMAGES=ALLOWED)
    crd.apply(manifest("iris", runtime={"image": "evil.example/miner:1"}), "-n", namespace)
    body = wait_status(crd, namespace, "iris", "Ready=False/ImageNotAllowed",
                       check=lambda b: (condition(b, "Ready") or {}).get("reason") == "ImageNotAllowed")  # fmt: skip
    ready = condition(body, "Ready")
    assert ready is not None
    assert ready["status"] == "False"
    assert "spec.runtime.image 'evil.example/miner:1' is not allowed" in ready["message"]
    assert get(crd, namespace, "deployment", "iris") is None
    events = crd.get_json("events", "-n", namespace, "--field-selector", "involvedObject.name=iris")["items"]
    assert any(e["type"] == "Warning" and "ImageNotAllowed" in e["message"] for e in events), events

    patch = json.dumps({"spec": {"runtime": {"image": "registry.example/models/runtime:1"}}})
    crd.kubectl("patch", "mdep", "iris", "-n", namespace, "--type=merge", "-p", patch)
    wait_ready(crd, namespace, "iris")
    deployment = get(crd, namespace, "deployment", "iris")
    assert deployment is not None
    assert (
        deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        == "registry.example/models/runtime:1"
    )


def test_the_network_policy_is_admitted_by_the_api_server_and_follows_the_flag(
    crd: Cluster, namespace: str, start_operator: StartOperator
) -> None:
    start_operator(MODELDEPLOY_MONITORING_NAMESPACE="prometheus")
    assert get(crd, namespace, "networkpolicy", "iris") is None
    allow = [
        {
            "namespaceSelector": {"matchLabels": {"team": "web"}},
            "podSelector": {"matchLabels": {"app": "shop"}},
        }
    ]
    crd.apply(manifest("iris", networkPolicy={"enabled": True, "allowFrom": allow}), "-n", namespace)
    policy = wait_until("the NetworkPolicy", lambda: get(crd, namespace, "networkpolicy", "iris"))
    assert policy["spec"]["podSelector"]["matchLabels"]["modeldeploy.io/model-deployment"] == "iris"
    assert policy["spec"]["ingress"] == [
        {"from": allow, "ports": [{"port": "http", "protocol": "TCP"}]},
        {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "prometheus"}}}],
         "ports": [{"port": "metrics", "protocol": "TCP"}]},
    ]  # fmt: skip
    assert policy["metadata"]["ownerReferences"][0]["kind"] == "ModelDeployment"
    wait_ready(crd, namespace, "iris")

    crd.kubectl(
        "patch",
        "mdep",
        "iris",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"spec":{"networkPolicy":{"enabled":false}}}',
    )
    wait_until("the NetworkPolicy deleted", lambda: get(crd, namespace, "networkpolicy", "iris") is None)


@pytest.mark.parametrize("tls", [False, True])
def test_every_rendered_child_is_valid_for_the_api_server(crd: Cluster, namespace: str, tls: bool) -> None:
    """The builders' output with every optional field, as the API server validates it (dry run)."""
    spec: dict[str, Any] = {
        "runtime": {
            "nodeSelector": {"modeldeploy.dev/node": "real"},
            "tolerations": [{"key": "modeldeploy.dev/node", "operator": "Equal", "value": "real", "effect": "NoSchedule"}],
            "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 50, "podAffinityTerm": {
                "topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "iris"}}}}]}},
            "priorityClassName": "system-cluster-critical",
            "env": [{"name": "EMPTY", "value": ""}],
        },
        "networkPolicy": {"enabled": True, "allowFrom": [{"podSelector": {"matchLabels": {"app": "web"}}}]},
    }  # fmt: skip
    if tls:
        spec["tls"] = {"secretName": "iris-tls"}
    md = ModelDeployment.from_body(md_body("iris", namespace, **spec))
    config = OperatorConfig()
    children = [build_deployment(md, config), build_service(md), build_network_policy(md, config)]
    for child in children:
        child["metadata"].pop("ownerReferences")  # the owner does not exist: validate the rest
    document = json.dumps({"apiVersion": "v1", "kind": "List", "items": children})
    result = crd.kubectl(
        "apply",
        "--server-side",
        "--dry-run=server",
        "--validate=strict",
        "-f",
        "-",
        stdin=document,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_the_rotation_precondition_is_enforced_by_the_api_server(crd: Cluster, namespace: str) -> None:
    """The annotation removal carries the resourceVersion read: a stale one is refused (409)."""
    crd.apply(manifest("iris"), "-n", namespace)
    body = get(crd, namespace, "mdep", "iris")
    assert body is not None
    stale = body["metadata"]["resourceVersion"]
    crd.kubectl("annotate", "mdep", "iris", "-n", namespace, "modeldeploy.io/rotate=billing")
    kube = Kube(load_api_client(2, crd.kubeconfig))
    patch = {"metadata": {"annotations": {"modeldeploy.io/rotate": None}, "resourceVersion": stale}}
    with pytest.raises(KubeError) as refused:
        kube.merge_patch(MODEL_DEPLOYMENT, namespace, "iris", patch)
    assert refused.value.status == 409
    after = get(crd, namespace, "mdep", "iris")
    assert after is not None
    assert after["metadata"]["annotations"]["modeldeploy.io/rotate"] == "billing"


def test_an_issuer_ref_makes_a_cert_manager_certificate_for_the_service_names(
    certificate_crd: Cluster, namespace: str, start_operator: StartOperator
) -> None:
    crd = certificate_crd
    start_operator()
    tls = {"secretName": "iris-tls", "issuerRef": {"name": "ca", "kind": "ClusterIssuer"}}
    crd.apply(manifest("iris", tls=tls), "-n", namespace)
    certificate = wait_until("the Certificate", lambda: get(crd, namespace, "certificate", "iris"))
    assert certificate["spec"]["secretName"] == "iris-tls"
    assert certificate["spec"]["issuerRef"] == {
        "name": "ca",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }
    assert certificate["spec"]["dnsNames"] == ["iris", f"iris.{namespace}", f"iris.{namespace}.svc"]
    assert certificate["metadata"]["ownerReferences"][0]["kind"] == "ModelDeployment"

    patch = json.dumps({"spec": {"tls": {"secretName": "iris-tls", "issuerRef": None}}})
    crd.kubectl("patch", "mdep", "iris", "-n", namespace, "--type=merge", "-p", patch)
    wait_until("the Certificate deleted", lambda: get(crd, namespace, "certificate", "iris") is None)


def test_a_foreign_same_named_service_is_never_adopted_and_the_conflict_clears_by_itself(
    crd: Cluster, namespace: str, start_operator: StartOperator
) -> None:
    foreign = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "iris", "labels": {"app": "theirs"}},
        "spec": {
            "type": "NodePort",
            "selector": {"app": "theirs"},
            "ports": [{"port": 80, "targetPort": 8080}],
        },
    }
    crd.apply(foreign, "-n", namespace)
    before = get(crd, namespace, "service", "iris")
    assert before is not None
    start_operator(MODELDEPLOY_CONFLICT_RECHECK_SECONDS="1")
    crd.apply(manifest("iris"), "-n", namespace)
    body = wait_status(crd, namespace, "iris", "Ready=False/NameConflict",
                       check=lambda b: (condition(b, "Ready") or {}).get("reason") == "NameConflict")  # fmt: skip
    assert "Service iris" in (condition(body, "Ready") or {})["message"]
    events = crd.get_json("events", "-n", namespace, "--field-selector", "involvedObject.name=iris")["items"]
    assert any(e["type"] == "Warning" and "NameConflict" in e["message"] for e in events), events
    after = get(crd, namespace, "service", "iris")
    assert after is not None
    # Untouched: same resourceVersion, still a NodePort with its selector, no owner reference.
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["spec"]["type"] == "NodePort"
    assert after["spec"]["selector"] == {"app": "theirs"}
    assert "ownerReferences" not in after["metadata"]
    assert get(crd, namespace, "deployment", "iris") is not None  # the other children are made

    crd.kubectl("delete", "service", "iris", "-n", namespace)
    wait_ready(crd, namespace, "iris")
    service = get(crd, namespace, "service", "iris")
    assert service is not None
    assert service["spec"]["type"] == "ClusterIP"
    assert service["metadata"]["ownerReferences"][0]["uid"] == body["metadata"]["uid"]
