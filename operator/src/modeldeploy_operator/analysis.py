"""Judging a canary step from the runtime's own metrics (pure).

Each pod's ``/metrics`` text is reduced to ``PodCounters`` (inference requests, failed ones, the
latency histogram); a step is judged on the deltas since it began, summed over the canary's pods
and over the stable pods. Parsing uses prometheus-client's text parser.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from modeldeploy_operator.rollout_spec import CanaryAnalysis

# The runtime's metric names (runtime/src/modeldeploy_runtime/serving/metrics.py).
REQUESTS_METRIC = "modeldeploy_requests"  # counter; the parser strips _total from the family name
DURATION_METRIC = "modeldeploy_request_duration_seconds"
INFERENCE_PROTOCOLS = frozenset({"v1", "v2"})  # "none" is a 404 on an unknown path
MODEL_REJECTED_CODE = 400  # the runtime's answer to features the model does not take
# Two tails both under this are equally fast at the histogram's resolution: the ratio uses at least it.
LATENCY_FLOOR_SECONDS = 0.01
P99 = 0.99


def is_failure(code: int) -> bool:
    """A failed inference request: a server error or a request the model rejected."""
    return code >= 500 or code == MODEL_REJECTED_CODE


@dataclass(frozen=True)
class PodCounters:
    """One pod's cumulative counters (or a delta of them)."""

    requests: float = 0.0
    errors: float = 0.0
    buckets: Mapping[str, float] = field(default_factory=dict)  # le -> cumulative count

    def to_json(self) -> dict[str, Any]:
        return {"requests": self.requests, "errors": self.errors, "buckets": dict(self.buckets)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PodCounters:
        return cls(
            float(data.get("requests", 0)),
            float(data.get("errors", 0)),
            {str(le): float(count) for le, count in (data.get("buckets") or {}).items()},
        )

    def minus(self, earlier: PodCounters) -> PodCounters:
        """The increase since ``earlier``; a counter that went down was reset (the pod restarted)."""
        if self.requests < earlier.requests:
            return self
        buckets = {le: count - earlier.buckets.get(le, 0.0) for le, count in self.buckets.items()}
        return PodCounters(self.requests - earlier.requests, self.errors - earlier.errors, buckets)

    def plus(self, other: PodCounters) -> PodCounters:
        les = set(self.buckets) | set(other.buckets)
        buckets = {le: self.buckets.get(le, 0.0) + other.buckets.get(le, 0.0) for le in les}
        return PodCounters(self.requests + other.requests, self.errors + other.errors, buckets)


def counters_from_text(text: str) -> PodCounters:
    """A runtime's ``/metrics`` page reduced to its inference counters."""
    requests = errors = 0.0
    buckets: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == REQUESTS_METRIC:
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels.get("protocol") in INFERENCE_PROTOCOLS:
                    requests += sample.value
                    if is_failure(int(sample.labels.get("code", "0"))):
                        errors += sample.value
        elif family.name == DURATION_METRIC:
            for sample in family.samples:
                if sample.name.endswith("_bucket") and sample.labels.get("protocol") in INFERENCE_PROTOCOLS:
                    le = sample.labels["le"]
                    buckets[le] = buckets.get(le, 0.0) + sample.value
    return PodCounters(requests, errors, buckets)


def delta(now: Mapping[str, PodCounters], baseline: Mapping[str, PodCounters]) -> PodCounters:
    """The sum over pods of each pod's increase since the baseline (a new pod counts from zero)."""
    total = PodCounters()
    for pod, counters in now.items():
        total = total.plus(counters.minus(baseline.get(pod, PodCounters())))
    return total


def quantile(q: float, buckets: Mapping[str, float]) -> float | None:
    """``histogram_quantile`` as Prometheus computes it (linear within a bucket); None without data."""
    ordered = sorted((math.inf if le == "+Inf" else float(le), count) for le, count in buckets.items())
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # beyond the last finite bucket: its bound, as Prometheus does
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


@dataclass(frozen=True)
class Figures:
    """One step's measurements so far."""

    requests: int
    errors: int
    stable_requests: int
    canary_p99: float | None
    stable_p99: float | None

    @property
    def error_ratio(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def latency_ratio(self) -> float | None:
        if self.canary_p99 is None or self.stable_p99 is None:
            return None
        return max(self.canary_p99, LATENCY_FLOOR_SECONDS) / max(self.stable_p99, LATENCY_FLOOR_SECONDS)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "requests": self.requests,
            "errors": self.errors,
            "errorRatio": round(self.error_ratio, 4),
            "stableRequests": self.stable_requests,
        }
        if self.canary_p99 is not None:
            out["canaryP99Seconds"] = round(self.canary_p99, 6)
        if self.stable_p99 is not None:
            out["stableP99Seconds"] = round(self.stable_p99, 6)
        if self.latency_ratio is not None:
            out["latencyRatio"] = round(self.latency_ratio, 3)
        return out


def measure(
    canary: Mapping[str, PodCounters],
    stable: Mapping[str, PodCounters],
    baseline_canary: Mapping[str, PodCounters],
    baseline_stable: Mapping[str, PodCounters],
) -> Figures:
    canary_delta = delta(canary, baseline_canary)
    stable_delta = delta(stable, baseline_stable)
    return Figures(
        requests=round(canary_delta.requests),
        errors=round(canary_delta.errors),
        stable_requests=round(stable_delta.requests),
        canary_p99=quantile(P99, canary_delta.buckets),
        stable_p99=quantile(P99, stable_delta.buckets),
    )


class Verdict(Enum):
    WAIT = "Wait"  # too few requests yet
    PASS = "Pass"  # noqa: S105 - a verdict, not a password
    FAIL = "Fail"


def judge(figures: Figures, analysis: CanaryAnalysis) -> tuple[Verdict, str]:
    """The verdict on a step and a message with the figures against the thresholds."""
    if figures.requests < analysis.min_requests:
        return Verdict.WAIT, f"{figures.requests}/{analysis.min_requests} canary requests so far"
    errors = (
        f"error ratio {figures.error_ratio:.3f} ({figures.errors}/{figures.requests} requests failed)"
        f" against maxErrorRatio {analysis.max_error_ratio:g}"
    )
    if figures.error_ratio > analysis.max_error_ratio:
        return Verdict.FAIL, errors
    ratio = figures.latency_ratio
    if ratio is None or figures.stable_requests == 0:
        latency = "latency not compared (no stable requests in the step)"
    else:
        latency = (
            f"p99 latency ratio {ratio:.2f} (canary {_ms(figures.canary_p99)}, stable {_ms(figures.stable_p99)})"
            f" against maxLatencyRatio {analysis.max_latency_ratio:g}"
        )
        if ratio > analysis.max_latency_ratio:
            return Verdict.FAIL, latency
    return Verdict.PASS, f"{errors}; {latency}"


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.1f} ms"
