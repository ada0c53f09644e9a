"""``spec.rollout`` as typed values (the CRD validates and defaults; these mirror its defaults)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_DURATION = re.compile(r"([0-9]+)(s|m|h)")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}
STRATEGY_ROLLING_UPDATE = "RollingUpdate"
STRATEGY_CANARY = "Canary"


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``30s``, ``2m`` or ``1m30s`` (the CRD's pattern)."""
    parts = _DURATION.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"{text!r} is not a duration such as 30s, 2m or 1m30s")
    return float(sum(int(number) * _UNIT_SECONDS[unit] for number, unit in parts))


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")


class CanaryStep(_Spec):
    weight: int
    pause: str = "1m"

    @field_validator("pause")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @property
    def pause_seconds(self) -> float:
        return parse_duration(self.pause)


class CanaryAnalysis(_Spec):
    interval: str = "30s"
    min_requests: int = Field(default=50, alias="minRequests")
    max_error_ratio: float = Field(default=0.01, alias="maxErrorRatio")
    max_latency_ratio: float = Field(default=1.5, alias="maxLatencyRatio")

    @property
    def interval_seconds(self) -> float:
        return parse_duration(self.interval)


class ParentRef(_Spec):
    name: str
    namespace: str | None = None
    section_name: str | None = Field(default=None, alias="sectionName")


class HTTPRouteRef(_Spec):
    name: str
    parent_refs: tuple[ParentRef, ...] = Field(alias="parentRefs")


class CanarySpec(_Spec):
    steps: tuple[CanaryStep, ...]
    analysis: CanaryAnalysis = Field(default_factory=CanaryAnalysis)
    http_route: HTTPRouteRef | None = Field(default=None, alias="httpRoute")


class RolloutSpec(_Spec):
    strategy: Literal["RollingUpdate", "Canary"] = "RollingUpdate"
    canary: CanarySpec | None = None

    @property
    def is_canary(self) -> bool:
        return self.strategy == STRATEGY_CANARY and self.canary is not None
