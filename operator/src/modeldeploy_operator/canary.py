"""The canary rollout's state machine (pure: the clock, the scraped counters and the observed
Deployments are passed in).

The state lives in ``status.rollout`` (``RolloutState``), so a restarted operator resumes the same
step with the same baseline. ``decide`` maps (spec, state, what is observed, counters) to the next
state and to what the children must be: the model the stable Deployment runs, the canary's
replicas and model, and the HTTPRoute weight.

Phases: Idle (no canary) -> Progressing (canary pods brought to the step's weight; the baseline is
read once they are ready) -> Paused (the step's pause runs, the canary is judged every interval)
-> the next step's Progressing, ... -> Promoting (the stable Deployment rolls to the new model;
the canary keeps serving until it is done) -> Idle. A failed verdict or the abort annotation:
Aborted (the canary at 0 replicas) until the spec changes or the retry annotation is set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

from modeldeploy_operator.analysis import PodCounters, Verdict, judge, measure
from modeldeploy_operator.constants import (
    ANNOTATION_ABORT,
    ANNOTATION_PROMOTE,
    ANNOTATION_RETRY_ROLLOUT,
    EVENT_CANARY_PROMOTED,
    EVENT_CANARY_STEP,
)
from modeldeploy_operator.model import ModelDeployment, ModelSpec
from modeldeploy_operator.rollout_spec import CanarySpec

_T = TypeVar("_T")
IDLE = "Idle"
PROGRESSING = "Progressing"
PAUSED = "Paused"
PROMOTING = "Promoting"
ABORTED = "Aborted"
CANARY = "canary"
STABLE = "stable"
# How soon to look again while canary pods start or the stable pods roll (a child's event comes sooner).
WAIT_FOR_PODS_SECONDS = 5.0
MANUAL_ANNOTATIONS = (ANNOTATION_PROMOTE, ANNOTATION_ABORT, ANNOTATION_RETRY_ROLLOUT)


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _format(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment is not None else None


def model_json(model: ModelSpec) -> dict[str, Any]:
    return model.model_dump(by_alias=True, exclude_none=True)


def model_of(data: Mapping[str, Any] | None) -> ModelSpec | None:
    return ModelSpec.model_validate(data) if data else None


Samples = Mapping[str, Mapping[str, PodCounters]]  # "canary"/"stable" -> pod name -> counters


@dataclass(frozen=True)
class RolloutState:
    """``status.rollout``, parsed."""

    phase: str = IDLE
    step: int = 0  # counted from 1; 0 when no canary runs
    step_started_at: datetime | None = None
    stable_model: ModelSpec | None = None
    canary_model: ModelSpec | None = None
    baseline: Mapping[str, Mapping[str, PodCounters]] | None = None
    analysis: Mapping[str, Any] = field(default_factory=dict)
    aborted_generation: int | None = None
    message: str = ""

    @classmethod
    def from_status(cls, status: Mapping[str, Any]) -> RolloutState:
        data = status.get("rollout") or {}
        baseline = data.get("baseline")
        return cls(
            phase=data.get("phase", IDLE),
            step=int(data.get("step", 0)),
            step_started_at=_time(data.get("stepStartedAt")),
            stable_model=model_of(data.get("stableModel")),
            canary_model=model_of(data.get("canaryModel")),
            baseline=None
            if baseline is None
            else {
                side: {pod: PodCounters.from_json(c) for pod, c in (baseline.get(side) or {}).items()}
                for side in (CANARY, STABLE)
            },
            analysis=dict(data.get("analysis") or {}),
            aborted_generation=data.get("abortedGeneration"),
            message=data.get("message", ""),
        )


@dataclass(frozen=True)
class Observed:
    """What the canary decision reads from the cluster."""

    stable_replicas: int  # the stable Deployment's replicas as observed (an autoscaler may set them)
    stable_rolled_out: bool  # the stable Deployment runs its desired template on every replica
    canary_ready: bool  # the canary Deployment has its desired template and replicas, all ready


@dataclass(frozen=True)
class Plan:
    """The next state and what the children must be."""

    state: RolloutState
    stable_model: ModelSpec
    canary_model: ModelSpec | None = None  # None: no canary Deployment
    canary_replicas: int = 0
    desired_weight: int = 0
    weight: int = 0  # achieved
    wants_samples: bool = False  # decide() needs the counters (call it again with them)
    requeue_after: float | None = None
    notes: tuple[tuple[str, str, str], ...] = ()  # (type, reason, message) Events
    handled_annotations: tuple[str, ...] = ()
    aborted: bool = False


def canary_replicas(weight: int, stable_replicas: int) -> int:
    """Canary pods whose share of all ready pods is closest to ``weight`` percent, at least one."""
    if stable_replicas <= 0:
        return 1
    exact = weight * stable_replicas / (100 - weight)
    candidates = {max(1, int(exact)), max(1, int(exact) + 1)}
    return min(sorted(candidates), key=lambda c: abs(100 * c / (stable_replicas + c) - weight))


def achieved_weight(canary: int, stable_replicas: int) -> int:
    total = canary + stable_replicas
    return round(100 * canary / total) if total else 0


def to_status(plan: Plan, canary: CanarySpec | None, steps_total: int) -> dict[str, Any]:
    """``status.rollout`` for ``plan``."""
    state = plan.state
    out: dict[str, Any] = {
        "phase": state.phase,
        "step": state.step,
        "steps": steps_total,
        "stableVersion": plan.stable_model.version,
        "desiredWeight": plan.desired_weight,
        "weight": plan.weight,
        "canaryReplicas": plan.canary_replicas,
        "stableModel": model_json(state.stable_model or plan.stable_model),
    }
    if state.canary_model is not None:
        out["canaryVersion"] = state.canary_model.version
        out["canaryModel"] = model_json(state.canary_model)
    if state.step_started_at is not None:
        out["stepStartedAt"] = _format(state.step_started_at)
    if state.baseline is not None:
        out["baseline"] = {
            side: {pod: c.to_json() for pod, c in pods.items()} for side, pods in state.baseline.items()
        }
    if state.analysis:
        out["analysis"] = dict(state.analysis)
    if state.aborted_generation is not None:
        out["abortedGeneration"] = state.aborted_generation
    if state.message:
        out["message"] = state.message[:2048]
    return out


class RolloutStateError(ValueError):
    """``status.rollout`` lacks a field its phase needs (it was edited by hand)."""


def _required(value: _T | None, where: str) -> _T:
    if value is None:
        raise RolloutStateError(f"{where} is missing")
    return value


def _annotation(md: ModelDeployment, key: str) -> bool:
    return bool(md.annotations.get(key))


class _Decider:
    def __init__(self, md: ModelDeployment, state: RolloutState, observed: Observed, now: datetime) -> None:
        self.md, self.state, self.observed, self.now = md, state, observed, now
        self.canary = _required(md.spec.rollout.canary, "spec.rollout.canary")
        # Every request annotation is consumed by the reconcile that sees it, acted on or not, so a
        # stale one never acts on a later canary.
        self.handled = [key for key in MANUAL_ANNOTATIONS if _annotation(md, key)]

    def plan(self, state: RolloutState, **fields: Any) -> Plan:
        return Plan(state=state, handled_annotations=tuple(self.handled), **fields)

    def idle(self, stable: ModelSpec, message: str = "", **fields: Any) -> Plan:
        return self.plan(
            RolloutState(IDLE, stable_model=stable, message=message), stable_model=stable, **fields
        )

    def sized(self, state: RolloutState, step: int) -> dict[str, Any]:
        weight = self.canary.steps[step - 1].weight
        replicas = canary_replicas(weight, self.observed.stable_replicas)
        achieved = (
            weight if self.canary.http_route else achieved_weight(replicas, self.observed.stable_replicas)
        )
        return {
            "stable_model": _required(state.stable_model, "status.rollout.stableModel"),
            "canary_model": state.canary_model,
            "canary_replicas": replicas,
            "desired_weight": weight,
            "weight": achieved,
        }

    def start(self, stable: ModelSpec, target: ModelSpec) -> Plan:
        state = RolloutState(PROGRESSING, step=1, stable_model=stable, canary_model=target)
        note = ("Normal", EVENT_CANARY_STEP, f"canary of version {target.version} started (step 1)")
        return self.progressing(
            replace(state, message=f"step 1/{len(self.canary.steps)}: starting canary pods"), (note,)
        )

    def progressing(self, state: RolloutState, notes: tuple[tuple[str, str, str], ...] = ()) -> Plan:
        sized = self.sized(state, state.step)
        if not self.observed.canary_ready:
            message = f"step {state.step}/{len(self.canary.steps)}: waiting for {sized['canary_replicas']} canary pod(s)"
            return self.plan(
                replace(state, message=message), requeue_after=WAIT_FOR_PODS_SECONDS, notes=notes, **sized
            )
        return self.plan(state, wants_samples=True, notes=notes, **sized)

    def abort(self, state: RolloutState, message: str) -> Plan:
        aborted = replace(
            state, phase=ABORTED, aborted_generation=self.md.generation, message=message, baseline=None
        )
        # The Warning Event is the Degraded transition's (reason CanaryAborted, this message).
        stable = _required(state.stable_model, "status.rollout.stableModel")
        return self.plan(aborted, stable_model=stable, canary_model=state.canary_model, aborted=True)

    def promote(self, state: RolloutState, why: str) -> Plan:
        canary_model = _required(state.canary_model, "status.rollout.canaryModel")
        promoted = replace(state, phase=PROMOTING, stable_model=canary_model, baseline=None, message=why)
        note = ("Normal", EVENT_CANARY_PROMOTED, why)
        return self.promoting(promoted, (note,))

    def promoting(self, state: RolloutState, notes: tuple[tuple[str, str, str], ...] = ()) -> Plan:
        stable = _required(state.stable_model, "status.rollout.stableModel")
        if self.observed.stable_rolled_out and not notes:
            return self.idle(stable, f"version {stable.version} promoted")
        return self.plan(
            state,
            stable_model=stable,
            canary_model=state.canary_model,
            canary_replicas=canary_replicas(self.canary.steps[-1].weight, self.observed.stable_replicas),
            requeue_after=WAIT_FOR_PODS_SECONDS,
            notes=notes,
        )

    def decide(self, samples: Samples | None) -> Plan:  # noqa: PLR0911 - one return per transition
        md, state = self.md, self.state
        target = md.spec.model
        stable = state.stable_model
        if stable is None:  # nothing is known to be serving: the first model is deployed as usual
            return self.idle(target)
        if state.phase == ABORTED:
            retry = _annotation(md, ANNOTATION_RETRY_ROLLOUT)
            if state.aborted_generation == md.generation and not retry:
                return self.plan(state, stable_model=stable, canary_model=state.canary_model, aborted=True)
            state = RolloutState(IDLE, stable_model=stable)
        if state.phase == PROMOTING:
            if target == stable:
                return self.promoting(state)
            state = RolloutState(IDLE, stable_model=stable)  # a newer model came during the promotion
        if target == stable:
            return self.idle(stable)
        if state.phase == IDLE or state.canary_model != target:
            return self.start(stable, target)
        if _annotation(md, ANNOTATION_ABORT):
            return self.abort(
                state, f"canary of version {target.version} aborted by the {ANNOTATION_ABORT} annotation"
            )
        if _annotation(md, ANNOTATION_PROMOTE):
            return self.promote(
                state, f"version {target.version} promoted by the {ANNOTATION_PROMOTE} annotation"
            )
        if state.phase == PROGRESSING:
            plan = self.progressing(state)
            if not plan.wants_samples or samples is None:
                return plan
            paused = replace(
                state, phase=PAUSED, step_started_at=self.now, baseline=samples, analysis={},
                message=self._step_message(state.step, "pause started"),
            )  # fmt: skip
            return replace(plan, state=paused, wants_samples=False, requeue_after=self._next_look(paused))
        return self.paused(state, samples)

    def _step_message(self, step: int, what: str) -> str:
        return f"step {step}/{len(self.canary.steps)} at weight {self.canary.steps[step - 1].weight}: {what}"

    def _next_look(self, state: RolloutState) -> float:
        interval = self.canary.analysis.interval_seconds
        started = _required(state.step_started_at, "status.rollout.stepStartedAt")
        pause_left = self.canary.steps[state.step - 1].pause_seconds - (self.now - started).total_seconds()
        return max(0.5, min(interval, pause_left) if pause_left > 0 else interval)

    def paused(self, state: RolloutState, samples: Samples | None) -> Plan:
        sized = self.sized(state, state.step)
        started = _required(state.step_started_at, "status.rollout.stepStartedAt")
        baseline = _required(state.baseline, "status.rollout.baseline")
        last = _time(state.analysis.get("lastAnalysisAt")) or started
        elapsed = (self.now - started).total_seconds()
        step = self.canary.steps[state.step - 1]
        due = (
            self.now - last
        ).total_seconds() >= self.canary.analysis.interval_seconds or elapsed >= step.pause_seconds
        if not due:
            return self.plan(state, requeue_after=self._next_look(state), **sized)
        if samples is None:
            return self.plan(state, wants_samples=True, **sized)
        figures = measure(
            samples.get(CANARY, {}), samples.get(STABLE, {}),
            baseline.get(CANARY, {}), baseline.get(STABLE, {}),
        )  # fmt: skip
        verdict, text = judge(figures, self.canary.analysis)
        analysis = {**figures.to_json(), "verdict": verdict.value, "lastAnalysisAt": _format(self.now)}
        state = replace(state, analysis=analysis)
        if verdict is Verdict.FAIL:
            version = _required(state.canary_model, "status.rollout.canaryModel").version
            return self.abort(state, f"canary of version {version} aborted at step {state.step}: {text}")
        if verdict is Verdict.PASS and elapsed >= step.pause_seconds:
            if state.step == len(self.canary.steps):
                return self.promote(
                    state, f"version {self.md.spec.model.version} promoted after step {state.step}: {text}"
                )
            following = replace(
                state, phase=PROGRESSING, step=state.step + 1, step_started_at=None, baseline=None,
                message=f"step {state.step} passed: {text}",
            )  # fmt: skip
            note = (
                "Normal",
                EVENT_CANARY_STEP,
                f"step {state.step} passed, step {state.step + 1} begins: {text}",
            )
            return self.progressing(following, (note,))
        waiting = "pause running" if elapsed < step.pause_seconds else "waiting for requests"
        state = replace(state, message=self._step_message(state.step, f"{waiting}; {text}"))
        return self.plan(state, requeue_after=self._next_look(state), **sized)


def decide(
    md: ModelDeployment,
    state: RolloutState,
    observed: Observed,
    now: datetime,
    samples: Samples | None = None,
) -> Plan:
    """The next rollout state for a Canary ModelDeployment (call again with ``samples`` when the plan
    ``wants_samples``)."""
    return _Decider(md, state, observed, now).decide(samples)


def rolling_update_plan(md: ModelDeployment) -> Plan:
    """strategy RollingUpdate: the stable Deployment runs spec.model, no canary."""
    return Plan(state=RolloutState(IDLE, stable_model=md.spec.model), stable_model=md.spec.model)
