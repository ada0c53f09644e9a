"""Does an observed object already carry every field we want? (pure)

Server-side apply only asserts the fields we send, so "as desired" means: every field of the
desired object is present in the observed one with an equal value (maps: a subset; lists: same
length, item by item). The API server fills in defaults and canonicalises quantities, so
``"1000m"`` and ``"1"`` are equal here. Removed fields are caught by the desired-hash annotation.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

_SUFFIXES: dict[str, Decimal | int] = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
}  # fmt: skip


def quantity_value(value: object) -> Decimal | None:
    """A Kubernetes quantity as a number, or None when ``value`` is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if not isinstance(value, str) or not value:
        return None
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if value.endswith(suffix):
            number, factor = value[: -len(suffix)], Decimal(_SUFFIXES[suffix])
            break
    else:
        number, factor = value, Decimal(1)
    try:
        return Decimal(number) * factor
    except InvalidOperation:
        return None


_QUANTITY_MAPS = frozenset({"limits", "requests"})


def _scalars_equal(desired: object, observed: object, quantities: bool) -> bool:
    if desired == observed:
        return True
    if not quantities:
        return False
    left, right = quantity_value(desired), quantity_value(observed)
    return left is not None and left == right


def contains(observed: Any, desired: Any, *, quantities: bool = False) -> bool:
    """True when ``observed`` has every field of ``desired`` with the same value.

    Quantities are compared by value only inside ``limits``/``requests`` maps.
    """
    if isinstance(desired, dict):
        if not isinstance(observed, dict):
            return False
        return all(
            key in observed and contains(observed[key], value, quantities=quantities or key in _QUANTITY_MAPS)
            for key, value in desired.items()
        )
    if isinstance(desired, list):
        if not isinstance(observed, list) or len(observed) != len(desired):
            return False
        return all(contains(o, d, quantities=quantities) for o, d in zip(observed, desired, strict=True))
    return _scalars_equal(desired, observed, quantities)
