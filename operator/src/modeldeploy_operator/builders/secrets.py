"""The API-key Secrets (pure): the hashes file for the runtime, one plaintext Secret per client."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

from modeldeploy_operator.builders.meta import (
    client_secret_name,
    hashes_secret_name,
    metadata,
    with_desired_hash,
)
from modeldeploy_operator.constants import (
    APIKEYS_FILE_KEY,
    CLIENT_KEY_DATA_KEY,
    COMPONENT_API_KEYS,
    COMPONENT_CLIENT_KEY,
    LABEL_CLIENT,
)
from modeldeploy_operator.model import ModelDeployment
from modeldeploy_operator.resources import SECRET
from modeldeploy_runtime.apikeys import HashedKey, render_keys_file


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def build_hashes_secret(md: ModelDeployment, keys: Iterable[HashedKey]) -> dict[str, Any]:
    """``<name>-apikeys``: the runtime's keys file. Salted hashes only, never a plaintext key."""
    secret = {
        "apiVersion": SECRET.api_version,
        "kind": SECRET.kind,
        "metadata": metadata(md, hashes_secret_name(md.name), COMPONENT_API_KEYS),
        "type": "Opaque",
        "data": {APIKEYS_FILE_KEY: _b64(render_keys_file(keys))},
    }
    return with_desired_hash(secret)


def build_client_secret(md: ModelDeployment, client: str, plaintext: str) -> dict[str, Any]:
    """``<name>-client-<client>``: the plaintext key under ``api-key``, for in-cluster callers to mount.

    No desired-hash annotation here: a hash of the key would be a cheap offline oracle for it.
    """
    return {
        "apiVersion": SECRET.api_version,
        "kind": SECRET.kind,
        "metadata": metadata(
            md, client_secret_name(md.name, client), COMPONENT_CLIENT_KEY, **{LABEL_CLIENT: client}
        ),
        "type": "Opaque",
        "data": {CLIENT_KEY_DATA_KEY: _b64(plaintext)},
    }
