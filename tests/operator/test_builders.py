"""Builders are pure: golden YAML per shape, plus the properties that must never regress."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from modeldeploy_operator.builders import (
    build_certificate,
    build_client_secret,
    build_deployment,
    build_hashes_secret,
    build_network_policy,
    build_service,
    build_service_monitor,
)
from modeldeploy_operator.builders.deployment import runtime_commands
from modeldeploy_operator.builders.meta import selector_string
from modeldeploy_operator.builders.service import service_url
from modeldeploy_operator.children import needs_apply
from modeldeploy_operator.config import OperatorConfig
from modeldeploy_operator.constants import ANNOTATION_DESIRED_HASH
from modeldeploy_operator.model import parse_model_uri
from modeldeploy_runtime.apikeys import HashedKey
from tests.operator.factories import SHA256, md

GOLDEN = Path(__file__).parent / "golden"
CONFIG = OperatorConfig(runtime_image="registry.example/model-runtime:test")
SHA = "a" * 64


def check_golden(name: str, obj: dict[str, Any]) -> None:
    path = GOLDEN / f"{name}.yaml"
    rendered = yaml.safe_dump(obj, sort_keys=True)
    if os.environ.get("MODELDEPLOY_UPDATE_GOLDEN") == "1":
        path.write_text(rendered)
    assert rendered == path.read_text(), (
        f"{path} differs; MODELDEPLOY_UPDATE_GOLDEN=1 rewrites it after review"
    )


SCHEDULING = {
    "nodeSelector": {"modeldeploy.dev/pool": "gpu"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                    {"key": "pool", "value": "ml", "effect": "NoExecute", "tolerationSeconds": 60}],
    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "podAffinityTerm": {"topologyKey": "topology.kubernetes.io/zone",
                                            "labelSelector": {"matchLabels": {"modeldeploy.io/model-deployment": "iris"}}}}]}},
    "priorityClassName": "model-serving",
    "env": [{"name": "EMPTY", "value": ""}, {"name": "LOG_LEVEL", "value": "info"}],
}  # fmt: skip
NETWORK_POLICY = {
    "enabled": True,
    "allowFrom": [{"namespaceSelector": {"matchLabels": {"team": "web"}}, "podSelector": {"matchLabels": {"app": "shop"}}},
                  {"podSelector": {"matchExpressions": [{"key": "role", "operator": "In", "values": ["batch"]}]}}],
}  # fmt: skip

CASES = {
    "deployment-s3-auth": md(model={"uri": "s3://models/iris/3/model.joblib", "version": "3", "sha256": SHA,
                                    "storageSecretRef": {"name": "s3-creds"}},
                             replicas=2, runtime={"workers": 2, "resources": {"requests": {"cpu": "250m"}},
                                                  "env": [{"name": "LOG_LEVEL", "value": "debug"}]}),
    "deployment-pvc-noauth": md(model={"uri": "pvc://models/iris/model.skops", "version": "v1", "format": "skops"},
                                auth={"enabled": False}),
    "deployment-file": md(model={"uri": "file:///models/iris.joblib", "version": "1", "sha256": SHA}, runtime={"image": "my/img:2"}),
    "deployment-scheduling-tls": md(runtime=SCHEDULING, tls={"secretName": "iris-tls"}),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_deployment_matches_golden(case: str) -> None:
    check_golden(case, build_deployment(CASES[case], CONFIG))


def test_service_servicemonitor_and_secrets_match_golden() -> None:
    deployment = md()
    check_golden("service", build_service(deployment))
    check_golden("servicemonitor", build_service_monitor(deployment))
    key = HashedKey("0123456789abcdef", "billing", "00" * 16, "f" * 64)
    check_golden("hashes-secret", build_hashes_secret(deployment, [key]))
    check_golden(
        "client-secret", build_client_secret(deployment, "billing", "mdk_0123456789abcdef_" + "1" * 64)
    )
    with_tls = md(tls={"secretName": "iris-tls"})
    check_golden("service-tls", build_service(with_tls))
    check_golden("networkpolicy", build_network_policy(md(networkPolicy=NETWORK_POLICY), CONFIG))
    issued = md(tls={"secretName": "iris-tls", "issuerRef": {"name": "ca"}})
    check_golden("certificate", build_certificate(issued) or {})
    assert build_certificate(with_tls) is None


def test_every_container_meets_the_restricted_pod_security_standard() -> None:
    deployment = build_deployment(CASES["deployment-s3-auth"], CONFIG)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    containers = pod["initContainers"] + pod["containers"]
    assert [c["name"] for c in containers] == ["fetch-model", "runtime"]
    for container in containers:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["readOnlyRootFilesystem"] is True
        assert context["runAsNonRoot"] is True
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_rollout_strategy_and_probes() -> None:
    spec = build_deployment(md(), CONFIG)["spec"]
    assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    container = spec["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["lifecycle"]["preStop"] == {"sleep": {"seconds": CONFIG.prestop_sleep_seconds}}
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] > CONFIG.prestop_sleep_seconds
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [
        ("http", 8080),
        ("metrics", 9090),
    ]


def test_keys_are_a_directory_volume_never_env_or_subpath() -> None:
    pod = build_deployment(md(), CONFIG)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert {"name": "apikeys", "secret": {"secretName": "iris-apikeys", "defaultMode": 0o440}} in pod[
        "volumes"
    ]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "apikeys")
    assert mount == {"name": "apikeys", "mountPath": "/var/run/modeldeploy/apikeys", "readOnly": True}
    assert "subPath" not in str(pod)
    assert "env" not in container or all("apikeys" not in str(v) for v in container["env"])
    assert container["args"][-2:] == ["--auth-keys-file", "/var/run/modeldeploy/apikeys/keys.json"]


def test_runtime_command_contract() -> None:
    deployment = md(model={"uri": "https://example.com/m/model.joblib?x=1", "version": "7", "sha256": SHA})
    location = parse_model_uri(deployment.spec.model.uri, model_dir="/model")
    commands = runtime_commands(deployment, location)
    assert commands.fetch == [
        "fetch",
        "--uri",
        "https://example.com/m/model.joblib?x=1",
        "--dest",
        "/model",
        "--sha256",
        SHA,
    ]
    assert commands.serve == [
        "serve", "--model-uri", "/model/model.joblib", "--model-name", "iris", "--model-version", "7",
        "--model-sha256", SHA, "--model-format", "joblib", "--port", "8080", "--metrics-port", "9090",
        "--workers", "1", "--auth-keys-file", "/var/run/modeldeploy/apikeys/keys.json",
    ]  # fmt: skip
    no_auth = md(auth={"enabled": False}, model={"uri": "file:///m.joblib", "version": "1", "sha256": SHA})
    serve = runtime_commands(no_auth, parse_model_uri("file:///m.joblib", model_dir="/model")).serve
    assert "--auth-keys-file" not in serve
    assert serve[2] == "/m.joblib"


def test_version_or_digest_change_changes_the_pod_template_but_keys_do_not() -> None:
    base = build_deployment(md(), CONFIG)["spec"]["template"]
    bumped = build_deployment(
        md(model={"uri": "s3://models/iris/3/model.joblib", "version": "4", "sha256": SHA256}), CONFIG
    )
    digest = build_deployment(
        md(model={"uri": "s3://models/iris/3/model.joblib", "version": "3", "sha256": SHA}), CONFIG
    )
    assert bumped["spec"]["template"]["metadata"]["annotations"]["modeldeploy.io/model-version"] == "4"
    assert digest["spec"]["template"]["metadata"]["annotations"]["modeldeploy.io/model-sha256"] == SHA
    templates = [base, bumped["spec"]["template"], digest["spec"]["template"]]
    pairs = [(a, b) for i, a in enumerate(templates) for b in templates[i + 1 :]]
    assert len(pairs) == 3
    assert all(a != b for a, b in pairs)  # base, bumped and digest: every pair differs
    with_other_client = build_deployment(md(auth={"clients": [{"name": "other"}]}), CONFIG)["spec"][
        "template"
    ]
    assert with_other_client == base


def test_children_are_labelled_owned_and_hashed() -> None:
    deployment = md()
    for child in (
        build_deployment(deployment, CONFIG),
        build_service(deployment),
        build_service_monitor(deployment),
    ):
        labels = child["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == "iris"
        assert labels["app.kubernetes.io/managed-by"] == "modeldeploy-operator"
        assert labels["modeldeploy.io/model-deployment"] == "iris"
        assert {
            "app.kubernetes.io/name",
            "app.kubernetes.io/version",
            "app.kubernetes.io/component",
            "app.kubernetes.io/part-of",
        } <= set(labels)
        owner = child["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["controller"]) == ("ModelDeployment", "iris", True)
        assert len(child["metadata"]["annotations"][ANNOTATION_DESIRED_HASH]) == 16
    assert (
        selector_string(deployment)
        == "app.kubernetes.io/component=model-server,modeldeploy.io/model-deployment=iris"
    )


def test_builders_are_deterministic() -> None:
    assert build_deployment(md(), CONFIG) == build_deployment(md(), CONFIG)
    assert build_deployment(md(), CONFIG) != build_deployment(md(), OperatorConfig(runtime_image="other:1"))


def test_tls_mounts_the_secret_and_switches_probes_port_name_and_url_to_https() -> None:
    with_tls = md(tls={"secretName": "iris-tls"})
    pod = build_deployment(with_tls, CONFIG)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert {"name": "tls", "secret": {"secretName": "iris-tls", "defaultMode": 0o440}} in pod["volumes"]
    assert {"name": "tls", "mountPath": "/var/run/modeldeploy/tls", "readOnly": True} in container[
        "volumeMounts"
    ]
    assert container["env"][:2] == [
        {"name": "MODELDEPLOY_TLS_CERT", "value": "/var/run/modeldeploy/tls/tls.crt"},
        {"name": "MODELDEPLOY_TLS_KEY", "value": "/var/run/modeldeploy/tls/tls.key"},
    ]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["scheme"] == "HTTPS"
        assert container[probe]["httpGet"]["port"] == "https"
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [
        ("https", 8080),
        ("metrics", 9090),
    ]
    service_ports = build_service(with_tls)["spec"]["ports"]
    assert [(p["name"], p["targetPort"]) for p in service_ports] == [
        ("https", "https"),
        ("metrics", "metrics"),
    ]
    assert service_url(with_tls) == "https://iris.ml.svc:8080"
    # The metrics port stays plain HTTP, and the ServiceMonitor says so.
    endpoint = build_service_monitor(with_tls)["spec"]["endpoints"][0]
    assert (endpoint["port"], endpoint["scheme"]) == ("metrics", "http")
    plain = build_deployment(md(), CONFIG)["spec"]["template"]["spec"]["containers"][0]
    assert "scheme" not in plain["readinessProbe"]["httpGet"]
    assert "env" not in plain


def test_scheduling_fields_reach_the_pod_spec_as_given() -> None:
    pod = build_deployment(md(runtime=SCHEDULING), CONFIG)["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == SCHEDULING["nodeSelector"]
    assert pod["tolerations"] == SCHEDULING["tolerations"]
    assert pod["affinity"] == SCHEDULING["affinity"]
    assert pod["priorityClassName"] == "model-serving"
    plain = build_deployment(md(), CONFIG)["spec"]["template"]["spec"]
    assert not {"nodeSelector", "tolerations", "affinity", "priorityClassName"} & set(plain)


def test_an_empty_env_value_is_rendered_as_the_api_server_stores_it() -> None:
    desired = build_deployment(md(runtime={"env": [{"name": "EMPTY", "value": ""}]}), CONFIG)
    container = desired["spec"]["template"]["spec"]["containers"][0]
    assert container["env"] == [{"name": "EMPTY"}]
    # The API server drops an empty value; what it stores must count as "as desired".
    stored = copy.deepcopy(desired)
    for var in stored["spec"]["template"]["spec"]["containers"][0]["env"]:
        if var.get("value") == "":
            del var["value"]
    assert not needs_apply(desired, stored)


def test_a_network_policy_without_callers_admits_none_to_the_serving_port() -> None:
    rules = build_network_policy(md(networkPolicy={"enabled": True}), CONFIG)["spec"]["ingress"]
    # No rule with an empty "from" (which would admit everyone): only the monitoring namespace.
    assert rules == [
        {
            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
            "ports": [{"port": "metrics", "protocol": "TCP"}],
        }
    ]
    no_monitoring = OperatorConfig(monitoring_namespace="")
    assert build_network_policy(md(networkPolicy={"enabled": True}), no_monitoring)["spec"]["ingress"] == []
    other = OperatorConfig(monitoring_namespace="prometheus")
    rules = build_network_policy(md(networkPolicy=NETWORK_POLICY, tls={"secretName": "t"}), other)["spec"][
        "ingress"
    ]
    assert rules[0]["ports"] == [{"port": "https", "protocol": "TCP"}]
    assert rules[1]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "prometheus"
    }
