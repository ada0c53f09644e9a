"""API keys: minting, hashing, the hashes file, and constant-time verification.

This module is the one implementation shared by the operator (which mints keys and writes the
hashes Secret) and the runtime (which verifies requests against that file). It depends only on
the standard library so the operator can use it without the serving stack.

A key looks like ``mdk_<key id>_<secret>``: the ``mdk_`` prefix lets secret scanners spot leaks,
the public key id lets the runtime find the one hash to compare without scanning, and the
secret carries 256 bits of randomness. The hashes file stores, per key id, a random salt and
``SHA-256(salt || secret)``; verification is one hash and one ``hmac.compare_digest``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

KEY_PREFIX = "mdk"
KEY_ID_BYTES = 8
SECRET_BYTES = 32  # 256-bit
SALT_BYTES = 16
HASHES_FILE_VERSION = 1

_KEY_ID_LENGTH = KEY_ID_BYTES * 2
_SECRET_LENGTH = SECRET_BYTES * 2
_HEX = frozenset("0123456789abcdef")


class KeysFileError(ValueError):
    """The hashes file is not in the expected format; the message says what is wrong."""


@dataclass(frozen=True)
class HashedKey:
    """What the runtime knows about one key: never the key itself."""

    key_id: str
    client: str
    salt: str
    sha256: str
    expires_at: datetime | None = None

    def to_json(self) -> dict[str, str]:
        entry = {"id": self.key_id, "client": self.client, "salt": self.salt, "sha256": self.sha256}
        if self.expires_at is not None:
            entry["expiresAt"] = self.expires_at.astimezone(UTC).isoformat()
        return entry


@dataclass(frozen=True)
class MintedKey:
    """A freshly minted key: ``plaintext`` goes to the client Secret, ``hashed`` to the runtime."""

    plaintext: str
    hashed: HashedKey


def _digest(salt_hex: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt_hex) + secret.encode("ascii")).hexdigest()


def hash_key(plaintext: str, client: str, *, salt: str | None = None) -> HashedKey:
    """Hash an existing key (e.g. one read back from a client Secret)."""
    parsed = parse_key(plaintext)
    if parsed is None:
        raise ValueError(f"not a modeldeploy API key (expected {KEY_PREFIX}_<16 hex>_<64 hex>)")
    key_id, secret = parsed
    salt_hex = salt if salt is not None else secrets.token_hex(SALT_BYTES)
    return HashedKey(key_id=key_id, client=client, salt=salt_hex, sha256=_digest(salt_hex, secret))


def mint_key(client: str) -> MintedKey:
    plaintext = f"{KEY_PREFIX}_{secrets.token_hex(KEY_ID_BYTES)}_{secrets.token_hex(SECRET_BYTES)}"
    return MintedKey(plaintext=plaintext, hashed=hash_key(plaintext, client))


def parse_key(presented: str) -> tuple[str, str] | None:
    """Split a presented key into (key id, secret), or None when it is not shaped like one."""
    parts = presented.split("_")
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        return None
    key_id, secret = parts[1], parts[2]
    if len(key_id) != _KEY_ID_LENGTH or len(secret) != _SECRET_LENGTH:
        return None
    if not (set(key_id) <= _HEX and set(secret) <= _HEX):
        return None
    return key_id, secret


def render_keys_file(keys: Iterable[HashedKey]) -> str:
    """The hashes file as stored in the ``<name>-apikeys`` Secret; stable output for stable input."""
    entries = sorted((key.to_json() for key in keys), key=lambda entry: (entry["client"], entry["id"]))
    return json.dumps({"version": HASHES_FILE_VERSION, "keys": entries}, indent=2, sort_keys=True) + "\n"


# What each hex field of an entry must look like, checked at parse time so that a bad hand-written
# file is one error at start rather than a failure on every request that presents the key.
_HEX_FIELDS: dict[str, tuple[str, re.Pattern[str]]] = {
    "id": (
        f"{_KEY_ID_LENGTH} lower-case hexadecimal characters",
        re.compile(rf"[0-9a-f]{{{_KEY_ID_LENGTH}}}"),
    ),
    "salt": ("an even number of lower-case hexadecimal characters", re.compile(r"(?:[0-9a-f]{2})+")),
    "sha256": ("64 lower-case hexadecimal characters", re.compile(r"[0-9a-f]{64}")),
}


def _parse_entry(entry: object, position: int) -> HashedKey:
    if not isinstance(entry, Mapping):
        raise KeysFileError(f"keys[{position}] must be an object")
    fields: dict[str, str] = {}
    for name in ("id", "client", "salt", "sha256"):
        value = entry.get(name)
        if not isinstance(value, str) or not value:
            raise KeysFileError(f"keys[{position}].{name} must be a non-empty string")
        expected = _HEX_FIELDS.get(name)
        if expected is not None and not expected[1].fullmatch(value):
            raise KeysFileError(f"keys[{position}].{name} must be {expected[0]} (got {value!r})")
        fields[name] = value
    expires_raw = entry.get("expiresAt")
    expires_at = None
    if expires_raw is not None:
        try:
            expires_at = datetime.fromisoformat(str(expires_raw))
        except ValueError:
            raise KeysFileError(f"keys[{position}].expiresAt must be an ISO 8601 time") from None
        if expires_at.tzinfo is None:
            raise KeysFileError(f"keys[{position}].expiresAt must carry a time zone")
    return HashedKey(fields["id"], fields["client"], fields["salt"], fields["sha256"], expires_at)


def parse_keys_file(text: str) -> list[HashedKey]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise KeysFileError(f"keys file is not JSON: {error.msg} at line {error.lineno}") from None
    if not isinstance(document, Mapping) or document.get("version") != HASHES_FILE_VERSION:
        raise KeysFileError(f'keys file must be an object with "version": {HASHES_FILE_VERSION}')
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise KeysFileError('keys file must have a "keys" list')
    return [_parse_entry(entry, position) for position, entry in enumerate(entries)]


_DUMMY = HashedKey(key_id="0" * _KEY_ID_LENGTH, client="", salt="00" * SALT_BYTES, sha256="0" * 64)


class KeyVerifier:
    """Verifies presented keys against a set of hashed keys, in constant time per key."""

    def __init__(self, keys: Iterable[HashedKey]) -> None:
        self._by_id = {key.key_id: key for key in keys}

    def __len__(self) -> int:
        return len(self._by_id)

    def verify(self, presented: str, now: datetime | None = None) -> str | None:
        """The client name the key belongs to, or None for a missing, unknown, wrong or expired key."""
        parsed = parse_key(presented)
        key_id, secret = parsed if parsed is not None else (_DUMMY.key_id, "0" * _SECRET_LENGTH)
        stored = self._by_id.get(key_id)
        candidate = stored if stored is not None and parsed is not None else _DUMMY
        # Always hash and compare, so the time taken does not reveal whether the key id exists.
        matches = hmac.compare_digest(_digest(candidate.salt, secret), candidate.sha256)
        if not matches or candidate is _DUMMY:
            return None
        if candidate.expires_at is not None and (now or datetime.now(UTC)) >= candidate.expires_at:
            return None
        return candidate.client
