"""The API-key core shared by the operator (minting) and the runtime (verification)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from modeldeploy_runtime.apikeys import (
    KeysFileError,
    KeyVerifier,
    hash_key,
    mint_key,
    parse_key,
    parse_keys_file,
    render_keys_file,
)


def test_minted_key_has_prefix_public_id_and_256_bit_secret() -> None:
    minted = mint_key("billing")
    prefix, key_id, secret = minted.plaintext.split("_")
    assert prefix == "mdk"
    assert key_id == minted.hashed.key_id
    assert len(bytes.fromhex(secret)) == 32
    assert mint_key("billing").plaintext != minted.plaintext


def test_hashes_file_never_contains_the_plaintext_or_secret() -> None:
    minted = mint_key("billing")
    rendered = render_keys_file([minted.hashed])
    secret = minted.plaintext.split("_")[2]
    assert minted.plaintext not in rendered
    assert secret not in rendered
    assert json.loads(rendered)["keys"][0]["client"] == "billing"


def test_verifier_accepts_each_valid_key_and_names_its_client() -> None:
    billing, search = mint_key("billing"), mint_key("search")
    verifier = KeyVerifier(parse_keys_file(render_keys_file([billing.hashed, search.hashed])))
    assert verifier.verify(billing.plaintext) == "billing"
    assert verifier.verify(search.plaintext) == "search"


@pytest.mark.parametrize(
    "presented",
    [
        "",
        "Bearer",
        "mdk_",
        "mdk_zz_zz",
        "mdk_" + "0" * 16 + "_" + "0" * 64,  # well-formed, unknown id
        "xyz_" + "a" * 16 + "_" + "a" * 64,
    ],
)
def test_verifier_refuses_missing_malformed_and_unknown_keys(presented: str) -> None:
    verifier = KeyVerifier([mint_key("billing").hashed])
    assert verifier.verify(presented) is None


def test_verifier_refuses_a_wrong_secret_for_a_known_id() -> None:
    minted = mint_key("billing")
    _, key_id, secret = minted.plaintext.split("_")
    tampered_secret = ("0" if secret[0] != "0" else "1") + secret[1:]
    verifier = KeyVerifier([minted.hashed])
    assert verifier.verify(f"mdk_{key_id}_{tampered_secret}") is None


def test_expired_key_is_refused_after_its_grace_period() -> None:
    minted = mint_key("billing")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    expiring = replace(minted.hashed, expires_at=now + timedelta(minutes=5))
    verifier = KeyVerifier(parse_keys_file(render_keys_file([expiring])))
    assert verifier.verify(minted.plaintext, now=now) == "billing"
    assert verifier.verify(minted.plaintext, now=now + timedelta(minutes=5)) is None


def test_rehashing_with_the_same_salt_is_stable() -> None:
    minted = mint_key("billing")
    assert hash_key(minted.plaintext, "billing", salt=minted.hashed.salt) == minted.hashed
    assert parse_key(minted.plaintext) == tuple(minted.plaintext.split("_")[1:])


ID = "0123456789abcdef"


def _entry(**fields: str) -> str:
    """A keys file with one entry, well-formed except for ``fields``."""
    entry = {"id": ID, "client": "c", "salt": "00" * 16, "sha256": "ab" * 32, **fields}
    return json.dumps({"version": 1, "keys": [entry]})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not JSON"),
        ("[]", '"version": 1'),
        ('{"version": 1}', '"keys" list'),
        ('{"version": 1, "keys": [{"id": "a"}]}', "keys[0].id must be 16 lower-case hexadecimal"),
        (f'{{"version": 1, "keys": [{{"id": "{ID}"}}]}}', "keys[0].client"),
        (_entry(salt="not-hex"), "keys[0].salt must be an even number of lower-case hexadecimal characters"),
        (_entry(salt="abc"), "keys[0].salt must be an even number"),
        (_entry(sha256="x"), "keys[0].sha256 must be 64 lower-case hexadecimal characters (got 'x')"),
        (_entry(expiresAt="soon"), "expiresAt"),
    ],
)
def test_malformed_keys_file_is_reported_with_the_field(text: str, message: str) -> None:
    with pytest.raises(KeysFileError, match=re.escape(message)):
        parse_keys_file(text)


def test_a_hand_written_entry_with_hex_fields_is_accepted() -> None:
    [key] = parse_keys_file(_entry())
    assert (key.key_id, key.salt) == (ID, "00" * 16)
