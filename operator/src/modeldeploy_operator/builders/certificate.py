"""The cert-manager Certificate issuing spec.tls.secretName when spec.tls.issuerRef is set (pure)."""

from __future__ import annotations

from typing import Any

from modeldeploy_operator.builders.meta import metadata, with_desired_hash
from modeldeploy_operator.constants import COMPONENT_SERVER
from modeldeploy_operator.model import ModelDeployment
from modeldeploy_operator.resources import CERTIFICATE


def build_certificate(md: ModelDeployment) -> dict[str, Any] | None:
    """The Certificate for the Service's in-cluster names, or None without spec.tls.issuerRef."""
    tls = md.spec.tls
    if tls is None or tls.issuer_ref is None:
        return None
    certificate = {
        "apiVersion": CERTIFICATE.api_version,
        "kind": CERTIFICATE.kind,
        "metadata": metadata(md, md.name, COMPONENT_SERVER),
        "spec": {
            "secretName": tls.secret_name,
            "issuerRef": {
                "name": tls.issuer_ref.name,
                "kind": tls.issuer_ref.kind,
                "group": tls.issuer_ref.group,
            },
            "dnsNames": [md.name, f"{md.name}.{md.namespace}", f"{md.name}.{md.namespace}.svc"],
            "usages": ["server auth", "digital signature", "key encipherment"],
            "privateKey": {"rotationPolicy": "Always"},
        },
    }
    return with_desired_hash(certificate)
