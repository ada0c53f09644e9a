"""Which API keys each client should have, given what exists (pure; the clock and RNG are passed in).

Rules, per client named in the spec (auth enabled):
- the *active* key is the plaintext in ``<name>-client-<client>``; its hash is kept (same salt) so
  an unchanged key set renders the same hashes file byte for byte and nothing is written;
- a rotation request, or a missing/unreadable client Secret, mints a new active key;
- every other key of that client stays valid until ``now + grace`` (its ``expiresAt``), then is
  dropped; keys of clients no longer listed are dropped at once (removing a client revokes it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from modeldeploy_runtime.apikeys import HashedKey, MintedKey, hash_key, parse_key


@dataclass(frozen=True)
class KeyPlan:
    hashes: tuple[HashedKey, ...]
    plaintexts: Mapping[str, str]  # client -> its active key (goes to the client Secret only)
    minted: tuple[str, ...] = ()  # clients that received a new key in this plan
    retired: tuple[str, ...] = ()  # key ids dropped because their grace period ended
    next_expiry: datetime | None = None  # when the plan must be recomputed to drop a key


def _active_hash(plaintext: str, client: str, observed: Iterable[HashedKey]) -> HashedKey:
    key_id = plaintext.split("_")[1]
    for entry in observed:
        if entry.key_id == key_id and entry.client == client:
            rehashed = hash_key(plaintext, client, salt=entry.salt)
            if rehashed.sha256 == entry.sha256:
                return rehashed  # same salt, no expiry: byte-identical entry
    return hash_key(plaintext, client)


def plan_keys(
    clients: Iterable[str],
    observed_plaintexts: Mapping[str, str | None],
    observed_hashes: Iterable[HashedKey],
    *,
    rotate: frozenset[str],
    now: datetime,
    grace: timedelta,
    mint: Callable[[str], MintedKey],
) -> KeyPlan:
    observed = list(observed_hashes)
    wanted = list(dict.fromkeys(clients))
    hashes: list[HashedKey] = []
    plaintexts: dict[str, str] = {}
    minted: list[str] = []
    retired: list[str] = []
    expiries: list[datetime] = []
    for client in wanted:
        current = observed_plaintexts.get(client)
        if client in rotate or current is None or parse_key(current) is None:
            fresh = mint(client)
            plaintexts[client] = fresh.plaintext
            active = fresh.hashed
            minted.append(client)
        else:
            plaintexts[client] = current
            active = _active_hash(current, client, observed)
        hashes.append(active)
        for entry in observed:
            if entry.client != client or entry.key_id == active.key_id:
                continue
            expires_at = entry.expires_at if entry.expires_at is not None else now + grace
            if expires_at <= now:
                retired.append(entry.key_id)
                continue
            hashes.append(HashedKey(entry.key_id, entry.client, entry.salt, entry.sha256, expires_at))
            expiries.append(expires_at)
    return KeyPlan(
        hashes=tuple(hashes),
        plaintexts=plaintexts,
        minted=tuple(minted),
        retired=tuple(retired),
        next_expiry=min(expiries) if expiries else None,
    )
