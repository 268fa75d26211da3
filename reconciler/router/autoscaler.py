"""The autoscaling rule for one model deployment, as a pure state machine.

The product's rule: `docs/domain.md#the-inference-router`.

Sits under the router's coordinator (`router.coordinator`), which feeds it one load `Sample`
per deployment every `polling_interval` together with the replica count read from the
Deployment's scale subresource, and writes back whatever `Decision` it returns. No I/O here and
no sleeping: time comes from an injected clock, so tests drive minutes of load in microseconds.

    utilization = (replicas busy with a request + requests queued in the router) / current replicas

- Above `target_utilization_percentage`: scale up at once (the first evaluation that sees it,
  i.e. within one polling interval; the ML CLI default interval is 1 s) to
  `ceil(load / target)`, at least one more than now.
- Below it: scale down only once every evaluation for `SCALE_DOWN_AFTER_SECONDS` (60 s) was
  below target at the current size, to `ceil(peak load of that last minute / target)`. The
  minute restarts whenever the replica count changes, so each step down waits its own minute.
- Always within [min_instances, max_instances] (and never below 1: a deployment scaled to zero
  could not serve the request that would scale it back up). A count outside the bounds (a
  hand edit, changed settings) is brought back at once.
- While the replicas added by our last scale-up are not ready yet (pending pods: the cluster
  may be full, and the router never adds nodes), it does not stack another scale-up on top,
  for at most `SCALE_UP_SETTLE_SECONDS`; after that the missing replicas count as stuck.

Hysteresis comes from the asymmetry: a scale-up sizes for the load it saw, so load that keeps
oscillating within that band stays below target and causes nothing; a scale-down sizes for the
peak of a whole minute, so it does not undershoot into the next scale-up.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

SCALE_DOWN_AFTER_SECONDS = 60.0
SCALE_UP_SETTLE_SECONDS = 120.0
DEFAULT_TARGET_UTILIZATION = 70
DEFAULT_POLLING_INTERVAL = 1.0
# Load is a float (fractional busy replicas); compare with a little slack so that load exactly
# at target (7 of 10 at 70 %) is "at target", not above it by a rounding error.
_EPSILON = 1e-9


@dataclass(frozen=True)
class Settings:
    """A deployment's `scale_settings` (type target_utilization), as router.yaml carries them."""

    min_instances: int
    max_instances: int
    target_utilization_percentage: int = DEFAULT_TARGET_UTILIZATION
    polling_interval: float = DEFAULT_POLLING_INTERVAL

    def __post_init__(self) -> None:
        if self.min_instances < 0 or self.max_instances < max(self.min_instances, 1):
            raise ValueError(
                f"scale bounds [{self.min_instances}, {self.max_instances}] are not a range"
            )
        if not 0 < self.target_utilization_percentage <= 100:
            raise ValueError("target_utilization_percentage must be in 1..100")
        if self.polling_interval <= 0:
            raise ValueError("polling_interval must be positive")

    @property
    def lowest(self) -> int:
        return max(self.min_instances, 1)

    def clamp(self, replicas: int) -> int:
        return min(max(replicas, self.lowest), self.max_instances)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Settings:
        """From a router.yaml `scale_settings` mapping (defaults as the ML CLI's)."""
        return cls(
            min_instances=int(raw.get("min_instances", 1)),
            max_instances=int(raw.get("max_instances", raw.get("min_instances", 1))),
            target_utilization_percentage=int(
                raw.get("target_utilization_percentage", DEFAULT_TARGET_UTILIZATION)
            ),
            polling_interval=float(raw.get("polling_interval", DEFAULT_POLLING_INTERVAL)),
        )


class LoadLike(Protocol):
    """What the balancer reports per deployment (`router.balancer.Pool.load()` returns this
    shape: busy replicas, queued requests, backends it can route to)."""

    @property
    def busy(self) -> float: ...

    @property
    def queued(self) -> int: ...

    @property
    def backends(self) -> int: ...


@dataclass(frozen=True)
class Sample:
    """The load on one deployment at one moment, summed over every router instance.

    `busy`: replicas busy with a request (fractional when a replica takes several concurrent
    requests); `queued`: requests waiting in the routers; `ready`: replicas the routers can
    reach, None when unknown."""

    busy: float
    queued: int
    ready: int | None = None

    @property
    def load(self) -> float:
        return max(self.busy, 0.0) + max(self.queued, 0)

    @classmethod
    def of(cls, load: LoadLike) -> Sample:
        """The adapter from the balancer's `Load(busy, queued, backends)`."""
        return cls(busy=float(load.busy), queued=int(load.queued), ready=int(load.backends))


@dataclass(frozen=True)
class Decision:
    """One evaluation: how many replicas the deployment has and should have, and why.

    `utilization` is (busy + queued) / current as a ratio (0.7 is 70 %)."""

    deployment: str
    current: int
    desired: int
    utilization: float
    reason: str
    at: float = field(default=0.0, compare=False)

    @property
    def direction(self) -> str:
        """One of "up", "down" or "none"."""
        if self.desired > self.current:
            return "up"
        if self.desired < self.current:
            return "down"
        return "none"


def utilization(load: float, replicas: int) -> float:
    """(busy + queued) / replicas; with no replica any load is infinite utilization."""
    if replicas <= 0:
        return math.inf if load > 0 else 0.0
    return load / replicas


def replicas_for(load: float, target_percentage: int) -> int:
    """The fewest replicas that carry `load` at or below the target utilization."""
    return math.ceil(load * 100 / target_percentage - _EPSILON)


def above_target(load: float, replicas: int, target_percentage: int) -> bool:
    return load * 100 > target_percentage * replicas + _EPSILON


class Autoscaler:
    """The scaling state of one deployment: the low-load window and the last scale-up.

    `observe` is the only step: give it the load and the current replica count, get the
    decision. Not thread-safe; the coordinator calls it from one thread."""

    def __init__(
        self,
        deployment: str,
        settings: Settings,
        clock: Callable[[], float] = time.monotonic,
        *,
        scale_down_after: float = SCALE_DOWN_AFTER_SECONDS,
        settle: float = SCALE_UP_SETTLE_SECONDS,
    ) -> None:
        self.deployment = deployment
        self.settings = settings
        self._clock = clock
        self._scale_down_after = scale_down_after
        self._settle = settle
        self._seen_current: int | None = None
        self._below_since: float | None = None  # start of the current run of low evaluations
        # (time, load) of that run's evaluations in the last scale_down_after seconds.
        self._window: collections.deque[tuple[float, float]] = collections.deque()
        self._last_up: float | None = None

    def reconfigure(self, settings: Settings) -> None:
        """New scale settings (a config reload); the low-load window carries over."""
        self.settings = settings

    def reset(self) -> None:
        """Forget the history: a new coordinator watches its own minute before scaling down."""
        self._seen_current = None
        self._below_since = None
        self._window.clear()
        self._last_up = None

    def observe(self, sample: Sample, current: int) -> Decision:
        now = self._clock()
        settings = self.settings
        load = sample.load
        ratio = utilization(load, current)

        def decide(desired: int, reason: str) -> Decision:
            return Decision(self.deployment, current, desired, ratio, reason, now)

        if current != self._seen_current:
            # A new size (ours or anyone's) is a new regime: the low-load minute starts over.
            self._seen_current = current
            self._below_since = None

        bounded = settings.clamp(current)
        if bounded != current:
            self._below_since = None
            return decide(
                bounded,
                f"{current} replicas is outside [{settings.lowest}, {settings.max_instances}]",
            )

        target = settings.target_utilization_percentage
        if above_target(load, current, target):
            self._below_since = None
            if current >= settings.max_instances:
                return decide(current, f"above target at max_instances {settings.max_instances}")
            if self._waiting_for_ready(sample, current, now):
                return decide(
                    current,
                    f"above target, waiting for {current - (sample.ready or 0)} "
                    "replicas of the last scale-up to become ready",
                )
            desired = settings.clamp(max(current + 1, replicas_for(load, target)))
            self._last_up = now
            return decide(desired, f"utilization {ratio:.0%} above target {target}%")

        if self._below_since is None:
            self._below_since = now
            self._window.clear()
        self._window.append((now, load))
        while self._window[0][0] < now - self._scale_down_after:
            self._window.popleft()
        below_for = now - self._below_since
        if below_for < self._scale_down_after:
            return decide(current, f"at or below target {target}% for {below_for:.0f}s")
        peak = max(seen for _, seen in self._window)
        desired = settings.clamp(replicas_for(peak, target))
        if desired >= current:
            return decide(current, f"peak load {peak:g} of the last minute needs {current}")
        return decide(desired, f"below target {target}% for {below_for:.0f}s (peak load {peak:g})")

    def _waiting_for_ready(self, sample: Sample, current: int, now: float) -> bool:
        if sample.ready is None or sample.ready >= current or self._last_up is None:
            return False
        return now - self._last_up < self._settle
