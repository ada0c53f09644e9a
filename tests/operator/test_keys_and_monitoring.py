"""API keys (rotation with a grace period, no plaintext outside the client Secret) and the
ServiceMonitor (created when its CRD exists, deleted when disabled)."""

from __future__ import annotations

import json

from modeldeploy_runtime.apikeys import KeyVerifier, parse_keys_file
from tests.conftest import Cluster
from tests.operator.conftest import StartOperator
from tests.operator.factories import manifest
from tests.operator.helpers import condition, get, secret_text, wait_status
from tests.support import wait_until

GRACE_SECONDS = 6


def hashes(cluster: Cluster, namespace: str) -> KeyVerifier:
    text = secret_text(cluster, namespace, "iris-apikeys", "keys.json")
    assert text is not None
    return KeyVerifier(parse_keys_file(text))


def client_key(cluster: Cluster, namespace: str) -> str | None:
    return secret_text(cluster, namespace, "iris-client-billing", "api-key")


def changed_key(cluster: Cluster, namespace: str, *old: str) -> str | None:
    key = client_key(cluster, namespace)
    return key if key is not None and key not in old else None


def test_rotation_keeps_the_old_key_valid_for_the_grace_period_and_never_leaks_a_key(
    crd: Cluster, namespace: str, start_operator: StartOperator
) -> None:
    operator = start_operator(MODELDEPLOY_KEY_ROTATION_GRACE_SECONDS=str(GRACE_SECONDS))
    crd.apply(manifest("iris"), "-n", namespace)
    first = wait_until("the billing client's key", lambda: client_key(crd, namespace))
    assert first.startswith("mdk_")
    assert hashes(crd, namespace).verify(first) == "billing"

    # Rotation by annotation: a new key at once, the old one still accepted, the annotation consumed.
    crd.kubectl("annotate", "mdep", "iris", "-n", namespace, "modeldeploy.io/rotate=billing")
    second = wait_until("a rotated key", lambda: changed_key(crd, namespace, first))
    verifier = hashes(crd, namespace)
    assert verifier.verify(second) == "billing"
    assert verifier.verify(first) == "billing", "the old key must stay valid during the grace period"
    assert len(verifier) == 2
    body = get(crd, namespace, "mdep", "iris")
    assert body is not None
    assert "modeldeploy.io/rotate" not in body["metadata"].get("annotations", {})
    # After the grace period the old key is gone from the hashes file.
    wait_until("the old key retired", lambda: len(hashes(crd, namespace)) == 1, timeout=GRACE_SECONDS + 15)
    assert hashes(crd, namespace).verify(first) is None
    assert hashes(crd, namespace).verify(second) == "billing"

    # Rotation by deleting the client Secret.
    crd.kubectl("delete", "secret", "iris-client-billing", "-n", namespace)
    third = wait_until("a key in a recreated Secret", lambda: changed_key(crd, namespace, second))
    verifier = hashes(crd, namespace)
    assert verifier.verify(third) == "billing"
    assert verifier.verify(second) == "billing"

    events = crd.get_json(
        "events", "-n", namespace, "--field-selector", "involvedObject.kind=ModelDeployment"
    )["items"]
    assert sum(e["reason"] == "APIKeyRotated" for e in events) == 2
    assert any(e["reason"] == "APIKeyRetired" for e in events)

    # No plaintext key (nor its secret part) anywhere but the client Secret.
    places = {
        "hashes Secret": crd.kubectl("get", "secret", "iris-apikeys", "-n", namespace, "-o", "json").stdout,
        "decoded hashes file": secret_text(crd, namespace, "iris-apikeys", "keys.json") or "",
        "ModelDeployment": crd.kubectl(
            "get", "mdep", "iris", "-n", namespace, "-o", "json", "--show-managed-fields"
        ).stdout,
        "Events": json.dumps(events),
        "operator log": operator.logs(),
    }
    for key in (first, second, third):
        secret_part = key.split("_")[2]
        for place, text in places.items():
            assert secret_part not in text, f"a plaintext key leaked into the {place}"


def test_service_monitor_follows_its_crd_and_the_enabled_flag(
    service_monitor_crd: Cluster, namespace: str, start_operator: StartOperator
) -> None:
    crd = service_monitor_crd
    start_operator()
    crd.apply(manifest("iris", monitoring={"serviceMonitor": {"interval": "15s"}}), "-n", namespace)
    monitor = wait_until("the ServiceMonitor", lambda: get(crd, namespace, "servicemonitor", "iris"))
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s"}]
    assert monitor["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/component": "model-server",
        "modeldeploy.io/model-deployment": "iris",
    }
    assert monitor["metadata"]["ownerReferences"][0]["kind"] == "ModelDeployment"
    wait_status(
        crd,
        namespace,
        "iris",
        "Monitoring=True",
        check=lambda b: (condition(b, "Monitoring") or {}).get("reason") == "ServiceMonitorApplied",
    )

    crd.kubectl("delete", "servicemonitor", "iris", "-n", namespace)
    wait_until(
        "the deleted ServiceMonitor restored",
        lambda: get(crd, namespace, "servicemonitor", "iris"),
        timeout=15,
    )

    patch = '{"spec":{"monitoring":{"serviceMonitor":{"enabled":false}}}}'
    crd.kubectl("patch", "mdep", "iris", "-n", namespace, "--type=merge", "-p", patch)
    wait_until("the ServiceMonitor deleted", lambda: get(crd, namespace, "servicemonitor", "iris") is None)
    wait_status(
        crd,
        namespace,
        "iris",
        "Monitoring=False/Disabled",
        check=lambda b: (condition(b, "Monitoring") or {}).get("reason") == "Disabled",
    )
