"""Leader election on a ``coordination.k8s.io/v1`` Lease (client-go's algorithm, in asyncio).

Every replica runs an elector. The leader renews the Lease every retry period; a standby reads it
as often and takes it over (an update guarded by ``resourceVersion``, so two standbys cannot both
win) once nobody renewed it for the lease duration. Timing, on the replicas' own monotonic clocks
(never the Lease's timestamps, so clock skew between nodes cannot matter):

- The leader may write while ``now < last successful renewal + renew deadline``; a renewal that
  fails or hangs past that moment stops its writes even before it returns.
- A standby counts the lease duration from a moment no later than one retry period before it
  saw the holder's last renewal (the start of its previous look, which still saw the older
  record), so it takes over within ``lease duration`` of the leader's death instead of
  ``lease duration + retry period`` (client-go's bound). It is safe because the leader stopped
  writing ``renew deadline`` after its renewal, and ``renew deadline < lease duration - retry
  period`` (config.py enforces it).
- On a clean shutdown the leader empties the Lease's holder, and a standby takes over at its next
  look (within one retry period) instead of waiting for the lease to expire.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from modeldeploy_operator.config import OperatorConfig
from modeldeploy_operator.kube import Kube, KubeError, load_api_client
from modeldeploy_operator.resources import LEASE, Resource

logger = logging.getLogger(__name__)

RELEASE_ATTEMPTS = 3
LeadershipListener = Callable[[bool], None]  # called with True on taking the lead, False on losing it


class LeaseAPI(Protocol):
    """The calls the elector makes (``kube.Kube`` with a short request timeout)."""

    def get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any] | None: ...

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]: ...

    def replace(self, obj: Mapping[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class LeaseSettings:
    name: str
    namespace: str
    identity: str
    duration: float
    renew_deadline: float
    retry_period: float

    @classmethod
    def from_config(cls, config: OperatorConfig) -> LeaseSettings:
        return cls(
            name=config.lease_name,
            namespace=config.lease_namespace or (config.namespaces[0] if config.namespaces else "default"),
            identity=config.identity or _host_identity(),
            duration=config.lease_duration_seconds,
            renew_deadline=config.renew_deadline_seconds,
            retry_period=config.retry_period_seconds,
        )


def _host_identity() -> str:
    """Outside a pod: the host name plus a random suffix, so two processes never share one."""
    return f"{socket.gethostname()}_{secrets.token_hex(4)}"


def format_micro_time(moment: datetime) -> str:
    """A metav1.MicroTime: RFC 3339 with microseconds, in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build_lease_spec(
    previous: Mapping[str, Any] | None, settings: LeaseSettings, now: datetime, *, holder: str
) -> dict[str, Any]:
    """The Lease's spec once ``holder`` ("" to release) renews or takes it at ``now``."""
    previous = previous or {}
    changes_hands = previous.get("holderIdentity") != holder
    transitions = int(previous.get("leaseTransitions") or 0)
    return {
        "holderIdentity": holder or None,
        "leaseDurationSeconds": max(1, round(settings.duration)) if holder else 1,
        "acquireTime": format_micro_time(now) if changes_hands else previous.get("acquireTime"),
        "renewTime": format_micro_time(now),
        "leaseTransitions": transitions + 1 if changes_hands and holder else transitions,
    }


class LeaderElector:
    def __init__(
        self,
        leases: LeaseAPI,
        settings: LeaseSettings,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._leases = leases
        self.settings = settings
        self._on_change: LeadershipListener = lambda leading: None
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self._leading_until = float("-inf")  # monotonic time until which we may write
        self._leading = False  # what listeners were last told
        self._seen_record: tuple[object, ...] | None = None  # (holder, renewTime, resourceVersion)
        self._seen_since = 0.0  # the monotonic moment the lease duration of that record counts from
        self._last_look_started: float | None = None  # start of the last successful read

    def is_leading(self) -> bool:
        return self._monotonic() < self._leading_until

    @property
    def holder_seen(self) -> str | None:
        return None if self._seen_record is None else str(self._seen_record[0] or "") or None

    # -- one attempt (blocking: run in a thread) ---------------------------------------------------
    def try_acquire_or_renew(self) -> bool:
        """One look at the Lease: renew it, take it over or create it when we may. True when we
        hold it afterwards (and may write until ``renew deadline`` from the start of this look)."""
        started = self._monotonic()
        lease = self._leases.get(LEASE, self.settings.namespace, self.settings.name)
        if lease is None:
            return self._write(None, started)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        if holder and holder != self.settings.identity and not self._expired(lease, started):
            self._leading_until = float("-inf")  # someone else holds it: never write beside them
            return False
        return self._write(lease, started)

    def _expired(self, lease: Mapping[str, Any], started: float) -> bool:
        spec = lease.get("spec") or {}
        record = (spec.get("holderIdentity"), spec.get("renewTime"), lease["metadata"].get("resourceVersion"))
        now = self._monotonic()
        if record != self._seen_record:
            # The holder renewed after our previous look started (and at the latest now).
            earliest = now - self.settings.retry_period
            previous = self._last_look_started
            self._seen_record = record
            self._seen_since = now if previous is None else max(previous, earliest)
        self._last_look_started = started
        duration = float(spec.get("leaseDurationSeconds") or self.settings.duration)
        return now >= self._seen_since + duration

    def _write(self, lease: Mapping[str, Any] | None, started: float) -> bool:
        spec = build_lease_spec(
            None if lease is None else lease.get("spec"), self.settings, self._wall_clock(),
            holder=self.settings.identity,
        )  # fmt: skip
        body: dict[str, Any] = {
            "apiVersion": LEASE.api_version,
            "kind": LEASE.kind,
            "metadata": {"name": self.settings.name, "namespace": self.settings.namespace},
            "spec": spec,
        }
        try:
            if lease is None:
                stored = self._leases.create(body)
            else:
                body["metadata"]["resourceVersion"] = lease["metadata"]["resourceVersion"]
                stored = self._leases.replace(body)
        except KubeError as error:
            if error.status == 409:  # another replica wrote first: it holds the lease now
                self._leading_until = float("-inf")
                return False
            raise
        self._seen_record = None
        self._last_look_started = started
        self._leading_until = started + self.settings.renew_deadline
        logger.debug("lease %s held until %s", self.settings.name, stored["spec"].get("renewTime"))
        return True

    def release(self) -> None:
        """Empty the holder if we hold the Lease, so a standby takes over at its next look."""
        if not self.is_leading():
            return
        self._leading_until = float("-inf")
        for _ in range(RELEASE_ATTEMPTS):  # a renewal still in flight may have moved the version
            lease = self._leases.get(LEASE, self.settings.namespace, self.settings.name)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.settings.identity:
                return
            body = {
                "apiVersion": LEASE.api_version,
                "kind": LEASE.kind,
                "metadata": {
                    "name": self.settings.name,
                    "namespace": self.settings.namespace,
                    "resourceVersion": lease["metadata"]["resourceVersion"],
                },
                "spec": build_lease_spec(lease.get("spec"), self.settings, self._wall_clock(), holder=""),
            }
            try:
                self._leases.replace(body)
            except KubeError as error:
                if error.status != 409:
                    raise
                continue
            logger.info("%s released the lease %s", self.settings.identity, self.settings.name)
            return

    # -- the loop ----------------------------------------------------------------------------------
    def _tell(self) -> None:
        leading = self.is_leading()
        if leading != self._leading:
            self._leading = leading
            logger.info(
                "%s %s the lease %s/%s",
                self.settings.identity,
                "holds" if leading else "no longer holds",
                self.settings.namespace,
                self.settings.name,
            )
            self._on_change(leading)

    def next_look_in(self) -> float:
        """Seconds until the next look: a retry period, or less when the seen lease expires sooner."""
        if self.is_leading() or self._seen_record is None:
            return self.settings.retry_period
        expires_in = self._seen_since + self.settings.duration - self._monotonic()
        return max(0.0, min(self.settings.retry_period, expires_in))

    async def run(self, on_change: LeadershipListener) -> None:
        """Look at the Lease every retry period (a standby: or at the moment it expires) forever,
        telling ``on_change`` (in the event loop) when we take or lose the lead."""
        self._on_change = on_change
        while True:
            attempt = asyncio.create_task(asyncio.to_thread(self.try_acquire_or_renew))
            try:
                # A renewal that hangs must not keep us writing past the renew deadline.
                while not attempt.done():
                    await asyncio.wait({attempt}, timeout=self._time_left_or(self.settings.retry_period))
                    self._tell()
                attempt.result()
            except Exception as error:  # any failure is a failed look: the election must go on
                logger.warning("lease %s: %s: %s", self.settings.name, type(error).__name__, error)
            self._tell()
            await self._sleep_watching_deadline(self.next_look_in())

    def _time_left_or(self, default: float) -> float:
        left = self._leading_until - self._monotonic()
        return max(0.01, left) if left > 0 else default

    async def _sleep_watching_deadline(self, seconds: float) -> None:
        deadline = self._monotonic() + seconds
        while (left := deadline - self._monotonic()) > 0:
            await asyncio.sleep(min(left, self._time_left_or(left)))
            self._tell()


def build_elector(config: OperatorConfig) -> LeaderElector | None:
    """The elector of this replica (None when leader election is off), with its own connection
    whose requests time out well within the renew deadline."""
    if not config.leader_election:
        return None
    settings = LeaseSettings.from_config(config)
    timeout = (min(settings.retry_period, 5.0), settings.renew_deadline)
    return LeaderElector(Kube(load_api_client(2), request_timeout=timeout), settings)
