"""The routers' `/metrics` pages read back, as `router top` shows them: pure, no I/O.

`read` turns one router instance's exposition text (`router.metrics`' names, parsed with
`prometheus_client`'s parser) into a `Page`. `sample` turns two reads of every instance, an
interval apart, into one `Row` per deployment, merging the instances the way each figure is
made:

- Requests, errors and latency are per instance: each instance's counters and histogram
  buckets rise by what it answered, so the rise is taken per instance (a restarted instance's
  counters start again from zero, as Prometheus' `rate` reads a reset) and the rises are added.
  The latency quantiles come from the added bucket counts (`quantile`, Prometheus'
  `histogram_quantile`), never from averaging each instance's quantiles.
- Queued and in-flight requests are per instance too, and add up.
- Backends are not: every instance routes to the same pods, so a backend (its URL) counts once,
  as up when any instance has it up.
- Replicas, desired replicas and utilization are the scaling coordinator's (the only instance
  that exports them): utilization is the very `autoscaler.Decision.utilization` the autoscaler
  acted on at its last polling interval, (busy + queued) / current replicas over every
  instance's load report; `None` for a deployment it does not scale.

An error is an answer with a 5xx status (the router's own 503 and 504 included); 4xx answers are
the client's (a wrong key, a client that left) and count as requests only.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from prometheus_client import parser

from reconciler.router import metrics


@dataclass
class Page:
    """One router instance's figures at one read, by deployment."""

    requests: dict[str, dict[str, float]] = field(default_factory=dict)  # code -> answers
    latency: dict[str, dict[float, float]] = field(default_factory=dict)  # le -> cumulative
    queued: dict[str, float] = field(default_factory=dict)
    in_flight: dict[str, float] = field(default_factory=dict)
    backends: dict[str, dict[str, bool]] = field(default_factory=dict)  # backend URL -> up
    utilization: dict[str, float] = field(default_factory=dict)
    desired: dict[str, float] = field(default_factory=dict)
    current: dict[str, float] = field(default_factory=dict)

    def deployments(self) -> set[str]:
        return {
            *self.requests, *self.latency, *self.queued, *self.in_flight, *self.backends,
            *self.utilization, *self.desired, *self.current,
        }  # fmt: skip


@dataclass(frozen=True)
class Row:
    """One deployment over one interval, over every router instance read. The field names
    are `router top -o json`'s."""

    deployment: str
    replicas: int | None
    desired_replicas: int | None
    backends_up: int
    utilization_ratio: float | None
    queued_requests: int
    in_flight_requests: int
    requests_per_second: float
    error_ratio: float | None  # None: no answer in the interval
    latency_p50_seconds: float | None
    latency_p99_seconds: float | None


@dataclass(frozen=True)
class Sample:
    """What one refresh of `router top` shows."""

    at: datetime.datetime
    interval_seconds: float
    routers_read: int
    routers_answered: int
    rows: list[Row]

    def as_dict(self) -> dict[str, Any]:
        """`router top -o json`: stable field names, units in them, UTC time."""
        return {
            "time": self.at.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z"),
            "interval_seconds": round(self.interval_seconds, 3),
            "routers": {"read": self.routers_read, "answered": self.routers_answered},
            "deployments": [asdict(row) for row in self.rows],
        }


_GAUGES = {
    metrics.QUEUED: "queued",
    metrics.IN_FLIGHT: "in_flight",
    metrics.UTILIZATION: "utilization",
    metrics.DESIRED_REPLICAS: "desired",
    metrics.CURRENT_REPLICAS: "current",
}


def read(text: str) -> Page:
    """One router instance's metrics page; samples of other names are left out."""
    page = Page()
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            deployment = sample.labels.get("deployment")
            if deployment is None:
                continue
            value = float(sample.value)
            if sample.name == f"{metrics.REQUESTS}_total":
                codes = page.requests.setdefault(deployment, {})
                code = sample.labels.get("code", "")
                codes[code] = codes.get(code, 0.0) + value
            elif sample.name == f"{metrics.REQUEST_DURATION}_bucket":
                page.latency.setdefault(deployment, {})[float(sample.labels["le"])] = value
            elif sample.name == metrics.BACKEND_UP:
                page.backends.setdefault(deployment, {})[sample.labels["backend"]] = value > 0
            elif sample.name in _GAUGES:
                getattr(page, _GAUGES[sample.name])[deployment] = value
    return page


def quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The `q` quantile of a histogram's cumulative `buckets` (upper bound -> count, +Inf
    included), interpolated linearly within the bucket it falls in, as Prometheus'
    `histogram_quantile` does; None when the histogram holds nothing. In the +Inf bucket it is
    the highest finite bound (nothing better is known)."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank and count > below:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def _rise(before: float | None, after: float) -> float:
    """A counter's rise between two reads; a counter lower than before was reset (the
    instance restarted) and rose by all it holds now."""
    if before is None or after < before:
        return after
    return after - before


def sample(
    before: Mapping[str, Page],
    after: Mapping[str, Page],
    seconds: float,
    at: datetime.datetime,
    routers_read: int,
) -> Sample:
    """Every deployment over the `seconds` between two reads of the instances (by URL; an
    instance missing from either read is left out of the rates, not counted as a reset)."""
    names = sorted(set().union(*(page.deployments() for page in after.values())))
    requests: dict[str, float] = dict.fromkeys(names, 0.0)
    errors: dict[str, float] = dict.fromkeys(names, 0.0)
    latency: dict[str, dict[float, float]] = {name: {} for name in names}
    for url, page in after.items():
        old = before.get(url)
        if old is None:
            continue
        for name in names:
            was = old.requests.get(name, {})
            for code, count in page.requests.get(name, {}).items():
                rise = _rise(was.get(code), count)
                requests[name] += rise
                if code.startswith("5"):
                    errors[name] += rise
            buckets = page.latency.get(name, {})
            was_buckets = old.latency.get(name, {})
            reset = any(count < was_buckets.get(le, 0.0) for le, count in buckets.items())
            merged = latency[name]
            for le, count in buckets.items():
                rise = count if reset else count - was_buckets.get(le, 0.0)
                merged[le] = merged.get(le, 0.0) + rise

    rows = []
    for name in names:
        up: set[str] = set()
        for page in after.values():
            up.update(backend for backend, is_up in page.backends.get(name, {}).items() if is_up)
        total = requests[name]
        rows.append(
            Row(
                deployment=name,
                replicas=_int(_coordinator(after.values(), "current", name)),
                desired_replicas=_int(_coordinator(after.values(), "desired", name)),
                backends_up=len(up),
                utilization_ratio=_coordinator(after.values(), "utilization", name),
                queued_requests=int(sum(p.queued.get(name, 0.0) for p in after.values())),
                in_flight_requests=int(sum(p.in_flight.get(name, 0.0) for p in after.values())),
                requests_per_second=total / seconds if seconds > 0 else 0.0,
                error_ratio=errors[name] / total if total > 0 else None,
                latency_p50_seconds=quantile(0.5, latency[name]),
                latency_p99_seconds=quantile(0.99, latency[name]),
            )
        )
    return Sample(at, seconds, routers_read, len(after), rows)


def _coordinator(pages: Iterable[Page], figure: str, name: str) -> float | None:
    """A coordinator's gauge, from the one instance that exports it (`coordinator.Gauges`:
    the one leading)."""
    for page in pages:
        figures: dict[str, float] = getattr(page, figure)
        if name in figures:
            return figures[name]
    return None


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)
