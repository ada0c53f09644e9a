"""The ModelDeployment API as the real API server enforces it: validation, defaults, explain."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import REPO_ROOT, Cluster
from tests.operator.factories import CPU_REQUEST, autoscaling, manifest

SHA = "0" * 64


def dry_run(cluster: Cluster, namespace: str, body: dict[str, Any], *extra: str) -> tuple[int, str]:
    result = cluster.kubectl(
        "apply",
        "--dry-run=server",
        "-n",
        namespace,
        "-o",
        "json",
        "-f",
        "-",
        *extra,
        stdin=json.dumps(body),
        check=False,
    )
    return result.returncode, result.stdout + result.stderr


def with_model(**model: Any) -> dict[str, Any]:
    """A manifest with exactly this ``spec.model`` (a digest only when given)."""
    return manifest("iris", model=model)


def runtime(**fields: Any) -> dict[str, Any]:
    return manifest("iris", runtime=fields)


BAD_INPUTS: dict[str, tuple[dict[str, Any], str]] = {
    "missing uri": (with_model(version="1"), "spec.model.uri: Required value"),
    "empty uri": (with_model(uri="", version="1"), "spec.model.uri"),
    "unsupported scheme": (with_model(uri="gs://bucket/model.joblib", version="1"), "spec.model.uri must be s3://"),
    "uri without a file": (with_model(uri="s3://bucket/dir/", version="1"), "spec.model.uri must name a file"),
    "missing version": (with_model(uri="s3://bucket/m.joblib"), "spec.model.version: Required value"),
    "empty version": (with_model(uri="s3://bucket/m.joblib", version=""), "spec.model.version"),
    "bad version": (with_model(uri="s3://bucket/m.joblib", version="-1 beta"), "spec.model.version must be"),
    "short sha256": (with_model(uri="s3://bucket/m.joblib", version="1", sha256="abc"), "spec.model.sha256 must be"),
    "uppercase sha256": (with_model(uri="s3://b/m.joblib", version="1", sha256="A" * 64), "spec.model.sha256 must be"),
    "unknown format": (with_model(uri="s3://bucket/m.joblib", version="1", format="pickle"), "spec.model.format"),
    "too many replicas": (manifest("iris", replicas=101), "spec.replicas"),
    "negative replicas": (manifest("iris", replicas=-1), "spec.replicas"),
    "zero workers": (manifest("iris", runtime={"workers": 0}), "spec.runtime.workers"),
    "too many workers": (manifest("iris", runtime={"workers": 33}), "spec.runtime.workers"),
    "duplicate clients": (manifest("iris", auth={"clients": [{"name": "a"}, {"name": "a"}]}), "spec.auth.clients[1]: Duplicate value"),
    "invalid client name": (manifest("iris", auth={"clients": [{"name": "Billing_1"}]}), "spec.auth.clients[].name must be a DNS label"),
    "name too long": (manifest("m" * 56), "metadata.name must be a DNS-1035 label of at most 55 characters"),
    "name with dots": (manifest("iris.v2"), "metadata.name must be a DNS-1035 label"),
    "client secret name too long": (manifest("m" * 40, auth={"clients": [{"name": "c" * 16}]}), "spec.auth.clients[].name is too long"),
    "bad interval": (manifest("iris", monitoring={"serviceMonitor": {"interval": "30 seconds"}}),
                     "spec.monitoring.serviceMonitor.interval must be a Prometheus duration"),
    "bad quantity": (manifest("iris", runtime={"resources": {"limits": {"cpu": "lots"}}}), "spec.runtime.resources.limits.cpu"),
    "bad env name": (manifest("iris", runtime={"env": [{"name": "1X", "value": "v"}]}), "spec.runtime.env[].name must be"),
    # A pickle is loaded only with a pinned digest.
    "joblib without sha256": (with_model(uri="s3://bucket/m.joblib", version="1"), "spec.model.sha256 is required for format joblib"),
    "explicit joblib without sha256": (with_model(uri="s3://bucket/m.joblib", version="1", format="joblib"),
                                       "modeldeploy-runtime registry resolve"),
    # Scheduling.
    "bad nodeSelector key": (runtime(nodeSelector={"bad key!": "x"}), "spec.runtime.nodeSelector keys must be label keys"),
    "bad nodeSelector value": (runtime(nodeSelector={"pool": "a b"}), "spec.runtime.nodeSelector values must be label values"),
    "long nodeSelector value": (runtime(nodeSelector={"pool": "a" * 64}), "spec.runtime.nodeSelector.pool"),
    "too many nodeSelector labels": (runtime(nodeSelector={f"k{i}": "v" for i in range(33)}), "spec.runtime.nodeSelector"),
    "toleration Exists with a value": (runtime(tolerations=[{"key": "k", "operator": "Exists", "value": "v"}]),
                                       "spec.runtime.tolerations[].value must be empty when operator is Exists"),
    "toleration without key": (runtime(tolerations=[{"operator": "Equal", "value": "v"}]),
                               "spec.runtime.tolerations[].key may be empty only with operator Exists"),
    "toleration bad key": (runtime(tolerations=[{"key": "a b", "operator": "Exists"}]), "spec.runtime.tolerations[].key must be a label key"),
    "toleration seconds without NoExecute": (runtime(tolerations=[{"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 5}]),
                                             "spec.runtime.tolerations[].tolerationSeconds needs effect NoExecute"),
    "toleration bad operator": (runtime(tolerations=[{"key": "k", "operator": "In"}]), "spec.runtime.tolerations[0].operator"),
    "toleration bad effect": (runtime(tolerations=[{"key": "k", "operator": "Exists", "effect": "Evict"}]), "spec.runtime.tolerations[0].effect"),
    "too many tolerations": (runtime(tolerations=[{"key": "k", "operator": "Exists"}] * 33), "spec.runtime.tolerations"),
    "affinity weight 0": (runtime(affinity={"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 0, "preference": {"matchExpressions": [{"key": "k", "operator": "Exists"}]}}]}}),
        "spec.runtime.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight"),
    "affinity bad operator": (runtime(affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "k", "operator": "Near"}]}]}}}), "matchExpressions[0].operator"),
    "affinity without topologyKey": (runtime(affinity={"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"a": "b"}}}]}}), "topologyKey: Required value"),
    "affinity unknown field": (runtime(affinity={"nodeAffinity": {"required": {}}}), 'unknown field "spec.runtime.affinity.nodeAffinity.required"'),
    "bad priorityClassName": (runtime(priorityClassName="High_Priority"), "spec.runtime.priorityClassName must be a DNS subdomain"),
    # TLS and NetworkPolicy.
    "tls without secretName": (manifest("iris", tls={}), "spec.tls.secretName: Required value"),
    "bad tls secretName": (manifest("iris", tls={"secretName": "My_Cert"}), "spec.tls.secretName must be a Secret name"),
    "allowFrom peer without selectors": (manifest("iris", networkPolicy={"enabled": True, "allowFrom": [{}]}),
                                         "spec.networkPolicy.allowFrom[] needs a namespaceSelector, a podSelector or both"),
    "allowFrom bad selector operator": (manifest("iris", networkPolicy={"enabled": True, "allowFrom": [
        {"podSelector": {"matchExpressions": [{"key": "a", "operator": "Equals"}]}}]}), "spec.networkPolicy.allowFrom[0].podSelector.matchExpressions[0].operator"),
    "too many allowFrom peers": (manifest("iris", networkPolicy={"allowFrom": [{"podSelector": {}}] * 17}), "spec.networkPolicy.allowFrom"),
    # Autoscaling.
    "min above max": (manifest("iris", autoscaling=autoscaling(minReplicas=5, maxReplicas=3)),
                      "spec.autoscaling.minReplicas must not be greater than spec.autoscaling.maxReplicas"),
    "zero with hpa": (manifest("iris", autoscaling=autoscaling(minReplicas=0)),
                      "spec.autoscaling.minReplicas 0 needs spec.autoscaling.engine keda"),
    "two targets": (manifest("iris", autoscaling=autoscaling(target={"cpuUtilization": 70, "inFlightRequestsPerPod": 8}), runtime=CPU_REQUEST),
                    "spec.autoscaling.target must set exactly one of cpuUtilization, inFlightRequestsPerPod and requestsPerSecondPerPod"),
    "no target": (manifest("iris", autoscaling=autoscaling(target={})), "spec.autoscaling.target must set exactly one"),
    "cpu without a request": (manifest("iris", autoscaling=autoscaling(target={"cpuUtilization": 70})),
                              "spec.autoscaling.target.cpuUtilization needs spec.runtime.resources.requests.cpu"),
    "cpu with only a memory request": (manifest("iris", autoscaling=autoscaling(target={"cpuUtilization": 70}),
                                                runtime={"resources": {"requests": {"memory": "1Gi"}}}),
                                       "spec.autoscaling.target.cpuUtilization needs spec.runtime.resources.requests.cpu"),
    "cpu to zero with keda": (manifest("iris", autoscaling=autoscaling(target={"cpuUtilization": 70}, minReplicas=0, engine="keda"), runtime=CPU_REQUEST),
                              "spec.autoscaling.minReplicas 0 needs an inFlightRequestsPerPod or requestsPerSecondPerPod target"),
    "no maxReplicas": (manifest("iris", autoscaling={"target": {"inFlightRequestsPerPod": 8}}), "spec.autoscaling.maxReplicas: Required value"),
    "unknown engine": (manifest("iris", autoscaling=autoscaling(engine="knative")), "spec.autoscaling.engine"),
    "too many autoscaling replicas": (manifest("iris", autoscaling=autoscaling(maxReplicas=101)), "spec.autoscaling.maxReplicas"),
    "zero target": (manifest("iris", autoscaling=autoscaling(target={"requestsPerSecondPerPod": 0})),
                    "spec.autoscaling.target.requestsPerSecondPerPod"),
    "bad policy type": (manifest("iris", autoscaling=autoscaling(behavior={"scaleUp": {"policies": [{"type": "Nodes", "value": 1, "periodSeconds": 15}]}})),
                        "spec.autoscaling.behavior.scaleUp.policies[0].type"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_rejected_with_a_message_naming_the_field(
    crd: Cluster, namespace: str, case: str
) -> None:
    body, expected = BAD_INPUTS[case]
    code, output = dry_run(crd, namespace, body, "--validate=strict")
    assert code != 0, f"{case} was accepted:\n{output}"
    assert expected in output, output


def test_a_minimal_model_deployment_is_accepted_and_defaulted(crd: Cluster, namespace: str) -> None:
    body = with_model(uri="pvc://models/iris/model.skops", version="2026.01-rc1", sha256=SHA)
    code, output = dry_run(crd, namespace, body)
    assert code == 0, output
    spec = json.loads(output)["spec"]
    assert spec["replicas"] == 1
    assert spec["model"]["format"] == "joblib"
    assert spec["runtime"] == {"workers": 1}
    assert spec["auth"]["enabled"] is True
    assert spec["monitoring"] == {"serviceMonitor": {"enabled": True, "interval": "30s"}}


def test_the_longest_allowed_names_are_accepted(crd: Cluster, namespace: str) -> None:
    code, output = dry_run(crd, namespace, manifest("m" * 40, auth={"clients": [{"name": "c" * 15}]}))
    assert code == 0, output


def test_unknown_fields_fail_strict_validation(crd: Cluster, namespace: str) -> None:
    body = manifest("iris")
    body["spec"]["model"]["bucket"] = "models"
    code, output = dry_run(crd, namespace, body, "--validate=strict")
    assert code != 0
    assert 'unknown field "spec.model.bucket"' in output


def test_kubectl_explain_teaches_every_field(crd: Cluster) -> None:
    model = crd.kubectl("explain", "mdep.spec.model").stdout
    for field in ("uri", "version", "sha256", "format", "storageSecretRef"):
        assert field in model
    assert "pvc://<claim>/<path>" in model
    recursive = crd.kubectl("explain", "modeldeployments", "--recursive").stdout
    assert "serviceMonitor" in recursive
    assert "clientSecrets" in recursive
    crd_json = crd.get_json("crd", "modeldeployments.modeldeploy.io")
    version = crd_json["spec"]["versions"][0]

    def undescribed(schema: dict[str, Any], path: str) -> list[str]:
        missing = [] if schema.get("description") or path in ("", ".metadata") else [path]
        for name, child in (schema.get("properties") or {}).items():
            missing += undescribed(child, f"{path}.{name}")
        if "items" in schema:
            missing += undescribed(schema["items"], f"{path}[]")
        return missing

    assert undescribed(version["schema"]["openAPIV3Schema"], "") == []
    assert crd_json["spec"]["names"]["shortNames"] == ["mdep"]
    assert crd_json["spec"]["names"]["categories"] == ["ml"]
    assert version["subresources"]["scale"]["labelSelectorPath"] == ".status.selector"
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Ready",
        "Version",
        "Replicas",
        "URL",
        "Rollout",
        "Age",
    ]


def test_every_string_list_and_map_is_bounded(crd: Cluster) -> None:
    schema = crd.get_json("crd", "modeldeployments.modeldeploy.io")["spec"]["versions"][0]["schema"][
        "openAPIV3Schema"
    ]

    def unbounded(node: dict[str, Any], path: str) -> list[str]:
        found = []
        kind = node.get("type")
        if (
            kind == "string"
            and "maxLength" not in node
            and "enum" not in node
            and path not in (".apiVersion", ".kind")
        ):
            found.append(path)
        if kind == "array" and "maxItems" not in node:
            found.append(path)
        if kind == "object" and "additionalProperties" in node and "maxProperties" not in node:
            found.append(path)
        for name, child in (node.get("properties") or {}).items():
            found += unbounded(child, f"{path}.{name}")
        if "items" in node:
            found += unbounded(node["items"], f"{path}[]")
        return found

    assert unbounded(schema, "") == []


def test_the_example_is_valid(crd: Cluster, namespace: str) -> None:
    example = REPO_ROOT / "examples" / "iris.yaml"
    result = crd.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-n", namespace, "-f", str(example), check=False
    )
    assert result.returncode == 0, result.stderr


def test_skops_needs_no_digest(crd: Cluster, namespace: str) -> None:
    code, output = dry_run(crd, namespace, with_model(uri="s3://bucket/m.skops", version="1", format="skops"))
    assert code == 0, output


def test_scheduling_tls_and_network_policy_fields_are_accepted_and_kept(crd: Cluster, namespace: str) -> None:
    scheduling = {
        "nodeSelector": {"modeldeploy.dev/node": "real", "pool": "gpu"},
        "tolerations": [
            {"key": "modeldeploy.dev/node", "operator": "Equal", "value": "real", "effect": "NoSchedule"},
            {"operator": "Exists"},
            {"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30},
        ],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "gpu", "operator": "In", "values": ["a100", "h100"]}]}]},
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 10, "preference": {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n1"]}]}}],
            },
            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": {
                "topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "iris"}},
                "matchLabelKeys": ["pod-template-hash"]}}]},
        },
        "priorityClassName": "model-serving.high",
    }  # fmt: skip
    network_policy = {
        "enabled": True,
        "allowFrom": [{"namespaceSelector": {"matchLabels": {"team": "web"}}}, {"podSelector": {}}],
    }
    body = manifest("iris", runtime=scheduling, tls={"secretName": "iris-tls"}, networkPolicy=network_policy)
    code, output = dry_run(crd, namespace, body, "--validate=strict")
    assert code == 0, output
    spec = json.loads(output)["spec"]
    assert {key: spec["runtime"][key] for key in scheduling} == scheduling
    assert spec["tls"] == {"secretName": "iris-tls"}
    assert spec["networkPolicy"] == network_policy
    code, output = dry_run(crd, namespace, manifest("iris"))
    assert json.loads(output)["spec"]["networkPolicy"] == {"enabled": False}, "closed only when asked"
