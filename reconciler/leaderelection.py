"""Leader election on a coordination.k8s.io/v1 Lease, the way client-go's leaderelection does it.

Used by everything that runs as several replicas of which one must act: the router's scaling
coordinator (`router.coordinator`) and `reconciler sync --leader-elect` / `reconciler
controller`. The Lease goes through `kube` (get / create / update, each one bounded attempt,
updates conditional on resourceVersion); everything else here is plain Python.

The rules, as client-go has them:

- The lease records `holderIdentity`, `leaseDurationSeconds`, `acquireTime`, `renewTime` and
  `leaseTransitions`. A candidate takes it when there is none, when its holder is empty (released
  on a graceful shutdown), or when the record has not changed for `leaseDurationSeconds` as
  measured by the candidate's *own* monotonic clock since it last saw it change: the wall-clock
  times in the record are informative only, so clock skew between nodes does not matter.
- Every write is conditional on the resourceVersion read just before: a 409 means someone else
  wrote first, i.e. lost the race, and is never retried blindly; the next attempt reads again.
- The leader renews every `retry_period`. When renewals keep failing for `renew_deadline`, or
  the lease shows another holder, it stops leading. `is_leader()` also turns False by itself
  once the last successful renewal is `renew_deadline` old, even while the elector thread is
  stuck in a request: renew_deadline < lease duration, and the renewal time is taken *before*
  the request, so the old leader stops believing it leads before any candidate may take over.
- On a graceful stop the leader releases: holder "" and a 1 s duration, so a standby takes over
  at its next attempt instead of waiting out the lease.

The decision (`decide`) and the records (`claimed`, `released`) are pure functions; the
`LeaderElector` applies them, one `step()` per attempt, from a thread, with injected clocks so
tests drive it attempt by attempt.
"""

from __future__ import annotations

import datetime
import enum
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from reconciler import kube, objects

log = logging.getLogger(__name__)

# client-go's defaults for controllers.
LEASE_DURATION = 15.0
RENEW_DEADLINE = 10.0
RETRY_PERIOD = 2.0
# A candidate waits retry_period * (1 + up to JITTER) between attempts, so that candidates that
# started together do not keep colliding (client-go uses 1.2; less means a faster takeover).
JITTER = 0.5


@dataclass(frozen=True)
class Record:
    """The leader election record a Lease's spec holds."""

    holder: str
    lease_duration_seconds: int
    acquire_time: str | None = None
    renew_time: str | None = None
    transitions: int = 0


def record_of(lease: Mapping[str, Any]) -> Record:
    spec = lease.get("spec") or {}
    return Record(
        holder=str(spec.get("holderIdentity") or ""),
        lease_duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
        acquire_time=spec.get("acquireTime"),
        renew_time=spec.get("renewTime"),
        transitions=int(spec.get("leaseTransitions") or 0),
    )


def spec_of(record: Record) -> dict[str, Any]:
    return {
        "holderIdentity": record.holder,
        "leaseDurationSeconds": record.lease_duration_seconds,
        "acquireTime": record.acquire_time,
        "renewTime": record.renew_time,
        "leaseTransitions": record.transitions,
    }


def microtime(moment: datetime.datetime) -> str:
    """A Kubernetes MicroTime (RFC 3339 with microseconds, UTC)."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Observation:
    """A record as this observer last saw it, and when (its monotonic clock) it first saw it
    in that form: the lease expires `lease_duration_seconds` after that."""

    record: Record
    at: float

    def expired(self, now: float, default_duration: float) -> bool:
        duration = self.record.lease_duration_seconds or default_duration
        return now >= self.at + duration


def observe(previous: Observation | None, record: Record, now: float) -> Observation:
    """The new observation: unchanged if the record is the same, else the record as of `now`."""
    if previous is not None and previous.record == record:
        return previous
    return Observation(record, now)


class Action(enum.Enum):
    CREATE = "create"  # there is no lease: create it, holding it
    ACQUIRE = "acquire"  # free or expired: take it over
    RENEW = "renew"  # ours: renew it
    FOLLOW = "follow"  # someone else holds it and it is live: wait


def decide(
    observation: Observation | None, identity: str, now: float, default_duration: float
) -> Action:
    """What a candidate does given the lease it sees (None: there is no lease)."""
    if observation is None:
        return Action.CREATE
    holder = observation.record.holder
    if holder == identity:
        return Action.RENEW
    if not holder or observation.expired(now, default_duration):
        return Action.ACQUIRE
    return Action.FOLLOW


def claimed(
    previous: Record | None, identity: str, duration_seconds: int, wall_now: datetime.datetime
) -> Record:
    """The record that makes (or keeps) `identity` the holder: a renewal keeps the acquire time
    and the transition count, a takeover counts one more transition."""
    now = microtime(wall_now)
    if previous is None:
        return Record(identity, duration_seconds, now, now, 0)
    if previous.holder == identity:
        return Record(
            identity, duration_seconds, previous.acquire_time or now, now, previous.transitions
        )
    return Record(identity, duration_seconds, now, now, previous.transitions + 1)


def released(previous: Record, wall_now: datetime.datetime) -> Record:
    """The record a leader leaves on a graceful stop: no holder, and a 1 s duration for
    observers that only look at expiry."""
    now = microtime(wall_now)
    return Record("", 1, now, now, previous.transitions)


def lease_object(
    namespace: str, name: str, record: Record, base: Mapping[str, Any] | None = None
) -> objects.Object:
    """The Lease to write: `base` (the lease as read, keeping its metadata and resourceVersion)
    with the record as its spec."""
    metadata = dict((base or {}).get("metadata") or {})
    metadata.update({"name": name, "namespace": namespace})
    metadata.pop("managedFields", None)
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": spec_of(record),
    }


class LeaseStore(Protocol):
    """Lease reads and conditional writes; a lost race raises kube.KubeError with status 409."""

    def get(self, namespace: str, name: str) -> objects.Object | None: ...

    def create(self, lease: objects.Object) -> objects.Object: ...

    def update(self, lease: objects.Object) -> objects.Object: ...


class KubeLeases:
    """The LeaseStore on the API server: one bounded attempt per call."""

    def __init__(self, cluster: kube.Cluster, timeout: float = kube.BOUNDED_TIMEOUT) -> None:
        self.cluster = cluster
        self.timeout = timeout

    def get(self, namespace: str, name: str) -> objects.Object | None:
        return kube.get_lease(self.cluster, namespace, name, timeout=self.timeout)

    def create(self, lease: objects.Object) -> objects.Object:
        return kube.create_lease(self.cluster, lease, timeout=self.timeout)

    def update(self, lease: objects.Object) -> objects.Object:
        return kube.update_lease(self.cluster, lease, timeout=self.timeout)


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


Callback = Callable[[], None]


class LeaderElector:
    """One candidate for one Lease. `start()` runs it in a daemon thread; `stop()` ends it
    (releasing the lease when leading, unless `release=False`). The callbacks run on the
    elector's thread and must return quickly: start or stop work elsewhere."""

    def __init__(
        self,
        store: LeaseStore,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_duration: float = LEASE_DURATION,
        renew_deadline: float = RENEW_DEADLINE,
        retry_period: float = RETRY_PERIOD,
        on_started_leading: Callback | None = None,
        on_stopped_leading: Callback | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime.datetime] = _utcnow,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if not identity:
            raise ValueError("a leader election candidate needs an identity")
        if not lease_duration > renew_deadline > retry_period * (1 + JITTER) > 0:
            raise ValueError(
                "need lease_duration > renew_deadline > retry_period * "
                f"{1 + JITTER} > 0, got {lease_duration}, {renew_deadline}, {retry_period}"
            )
        self.store = store
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.duration_seconds = math.ceil(lease_duration)
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._on_started = on_started_leading
        self._on_stopped = on_stopped_leading
        self._clock = clock
        self._wall_clock = wall_clock
        self._jitter = jitter
        self._lock = threading.Lock()
        self._leading = False
        self._last_renew: float | None = None  # when the last successful renewal was sent
        self._observation: Observation | None = None
        self._lease: objects.Object | None = None  # as last read or written
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- state ---------------------------------------------------------------------------

    def is_leader(self) -> bool:
        """True while this candidate holds the lease with a renewal younger than
        renew_deadline."""
        with self._lock:
            if not self._leading or self._last_renew is None:
                return False
            return self._clock() - self._last_renew < self.renew_deadline

    def leader(self) -> str | None:
        """The holder this candidate last saw (None: none seen, or the lease is free)."""
        with self._lock:
            if self._observation is None:
                return None
            return self._observation.record.holder or None

    # --- one attempt -----------------------------------------------------------------------

    def step(self) -> float:
        """Try to acquire or renew once, update the state, run the callbacks; returns the
        seconds to wait before the next attempt."""
        started = self._clock()
        try:
            holding = self._try_acquire_or_renew(started)
        except kube.KubeError as err:
            if err.status == 409:
                log.debug("lease %s/%s: lost a race (%s)", self.namespace, self.name, err)
            else:
                log.warning("lease %s/%s: %s", self.namespace, self.name, err)
            holding = False
        became = lost = False
        with self._lock:
            if holding:
                self._last_renew = started
                became = not self._leading
                self._leading = True
            elif self._leading:
                holder = self._observation.record.holder if self._observation else ""
                taken = bool(holder) and holder != self.identity
                stale = self._last_renew is None or (
                    self._clock() - self._last_renew >= self.renew_deadline
                )
                if taken or stale:
                    self._leading = False
                    lost = True
            leading = self._leading
        if became:
            log.info("lease %s/%s: %s is the leader", self.namespace, self.name, self.identity)
            if self._on_started:
                self._on_started()
        if lost:
            log.warning("lease %s/%s: %s lost the lease", self.namespace, self.name, self.identity)
            if self._on_stopped:
                self._on_stopped()
        if leading:
            return self.retry_period
        return self.retry_period * (1 + JITTER * self._jitter())

    def _try_acquire_or_renew(self, started: float) -> bool:
        lease = self.store.get(self.namespace, self.name)
        seen = self._clock()
        if lease is None:
            with self._lock:
                self._observation = None
            record = claimed(None, self.identity, self.duration_seconds, self._wall_clock())
            written = self.store.create(lease_object(self.namespace, self.name, record))
            self._wrote(written)
            return True
        record = record_of(lease)
        with self._lock:
            self._lease = lease
            self._observation = observe(self._observation, record, seen)
            action = decide(self._observation, self.identity, seen, self.lease_duration)
        if action is Action.FOLLOW:
            return False
        if action is Action.ACQUIRE:
            log.info(
                "lease %s/%s: %s takes over from %r",
                self.namespace,
                self.name,
                self.identity,
                record.holder,
            )
        new = claimed(record, self.identity, self.duration_seconds, self._wall_clock())
        written = self.store.update(lease_object(self.namespace, self.name, new, lease))
        self._wrote(written)
        return True

    def _wrote(self, lease: objects.Object) -> None:
        with self._lock:
            self._lease = lease
            self._observation = Observation(record_of(lease), self._clock())

    def release(self) -> bool:
        """Stop leading and give the lease up if the lease as last seen names this candidate
        (holder ""); True when released."""
        with self._lock:
            lease = self._lease
            was_leading = self._leading
            self._leading = False
        done = False
        try:
            if lease is not None and record_of(lease).holder == self.identity:
                record = released(record_of(lease), self._wall_clock())
                try:
                    written = self.store.update(
                        lease_object(self.namespace, self.name, record, lease)
                    )
                except kube.KubeError as err:
                    # 409: someone wrote it since, so it is not ours to release any more.
                    log.warning("lease %s/%s: release failed: %s", self.namespace, self.name, err)
                else:
                    self._wrote(written)
                    done = True
                    log.info(
                        "lease %s/%s: released by %s", self.namespace, self.name, self.identity
                    )
        finally:
            if was_leading and self._on_stopped:
                self._on_stopped()
        return done

    # --- the thread --------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the elector is already running")
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"leader-election-{self.name}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        delay = 0.0
        while not self._stop.wait(delay):
            try:
                delay = self.step()
            except Exception:  # a callback's bug must not end the election
                log.exception("lease %s/%s: election step failed", self.namespace, self.name)
                delay = self.retry_period

    def stop(self, release: bool = True, timeout: float = 10.0) -> None:
        """End the election thread. `release`: give the lease up so a standby takes over at
        once; without it (as if the process died) the lease runs out by itself."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if release:
            self.release()
            return
        with self._lock:
            was_leading = self._leading
            self._leading = False
        if was_leading and self._on_stopped:
            self._on_stopped()
