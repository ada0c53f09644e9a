"""The API-key Secrets of one ModelDeployment: stale client Secrets go, the keys are planned
(keyring.py) from what the Secrets hold, then the hashes Secret is written before any client
Secret, so a new key is accepted before any client can hold it."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from modeldeploy_operator.builders import build_client_secret, build_hashes_secret
from modeldeploy_operator.builders.meta import client_secret_name, hashes_secret_name
from modeldeploy_operator.children import Children, Outcome, needs_apply
from modeldeploy_operator.constants import (
    APIKEYS_FILE_KEY,
    CLIENT_KEY_DATA_KEY,
    COMPONENT_CLIENT_KEY,
    LABEL_CLIENT,
    LABEL_COMPONENT,
)
from modeldeploy_operator.events import key_rotation_notes
from modeldeploy_operator.keyring import KeyPlan, plan_keys
from modeldeploy_operator.model import ModelDeployment
from modeldeploy_operator.ownership import is_ours
from modeldeploy_operator.resources import SECRET
from modeldeploy_runtime.apikeys import HashedKey, KeysFileError, MintedKey, parse_keys_file

logger = logging.getLogger(__name__)


def _secret_text(secret: dict[str, Any] | None, key: str) -> str | None:
    if secret is None:
        return None
    raw = (secret.get("data") or {}).get(key)
    if not raw:
        return None
    try:
        return base64.b64decode(raw).decode()
    except (ValueError, UnicodeDecodeError):
        return None


def _delete_stale_client_secrets(children: Children, md: ModelDeployment, outcome: Outcome) -> None:
    """The client Secrets of clients no longer in spec.auth.clients."""
    wanted = md.client_names
    for secret in children.store.owned(SECRET, md.namespace, md.name):
        labels = secret["metadata"].get("labels") or {}
        if (
            labels.get(LABEL_COMPONENT) == COMPONENT_CLIENT_KEY
            and labels.get(LABEL_CLIENT) not in wanted
            and is_ours(secret, md)
        ):
            children.delete(SECRET, md.namespace, secret["metadata"]["name"], outcome)


def _observed_hashes(md: ModelDeployment, hashes_secret: dict[str, Any] | None) -> list[HashedKey]:
    text = _secret_text(hashes_secret, APIKEYS_FILE_KEY)
    if text is None:
        return []
    try:
        return parse_keys_file(text)
    except KeysFileError as error:
        logger.warning(
            "%s/%s: the hashes Secret is unreadable (%s); rebuilding it", md.namespace, md.name, error
        )
        return []


def reconcile_keys(
    children: Children,
    md: ModelDeployment,
    now: datetime,
    outcome: Outcome,
    *,
    grace: timedelta,
    mint: Callable[[str], MintedKey],
) -> KeyPlan:
    """Write the key Secrets ``md`` needs; the plan says which clients hold which key."""
    _delete_stale_client_secrets(children, md, outcome)
    if not md.spec.auth.enabled:
        children.delete_if_ours(md, SECRET, hashes_secret_name(md.name), outcome)
        return KeyPlan(hashes=(), plaintexts={})
    wanted = md.client_names
    hashes_writable, hashes_secret = children.child(md, SECRET, hashes_secret_name(md.name), outcome)
    client_secrets = {
        client: children.child(md, SECRET, client_secret_name(md.name, client), outcome) for client in wanted
    }
    if not hashes_writable or not all(writable for writable, _ in client_secrets.values()):
        return KeyPlan(hashes=(), plaintexts={})  # a key Secret is someone else's: no key is issued
    observed_hashes = _observed_hashes(md, hashes_secret)
    plaintexts = {
        client: _secret_text(observed, CLIENT_KEY_DATA_KEY)
        for client, (_, observed) in client_secrets.items()
    }
    plan = plan_keys(
        wanted,
        plaintexts,
        observed_hashes,
        rotate=md.rotate_clients,
        # Delivered: its client Secret holds a key (or the status listed that Secret). The status
        # lags the Secret by the status debounce, so it alone would drop a key still in use.
        delivered=frozenset(
            client
            for client in wanted
            if plaintexts.get(client) is not None
            or client_secret_name(md.name, client) in (md.status.get("clientSecrets") or ())
        ),
        now=now,
        grace=grace,
        mint=mint,
    )
    # The hashes first: a new key must be accepted before any client can hold it.
    desired_hashes = build_hashes_secret(md, plan.hashes)
    if needs_apply(desired_hashes, hashes_secret):
        children.apply(desired_hashes, outcome)
    for client, plaintext in plan.plaintexts.items():
        desired = build_client_secret(md, client, plaintext)
        if needs_apply(desired, client_secrets[client][1]):
            children.apply(desired, outcome)
    previous_clients = {entry.client for entry in observed_hashes}
    outcome.notes += key_rotation_notes(plan, previous_clients, now, grace)
    return plan
