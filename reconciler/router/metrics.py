"""The router's Prometheus metrics, served at `/metrics` (prometheus_client exposition).

Each server owns its `CollectorRegistry`, so several routers in one process (tests) never share or
collide. The per-request path makes one call, `request_done`, that only adds to plain counters of
the deployment (a dict lookup, a bisect, a few additions): prometheus_client's own Counter and
Histogram take a lock per update, a cost on every request that plain numbers avoid. Everything runs
on the event loop thread, so the plain numbers need no lock; a collector turns them into metric
families when Prometheus scrapes. Queue depth, requests in flight and backends are read from the
pools at scrape time too.

Endpoints add two small counters: requests by endpoint and the deployment chosen for them
(`deployment=""`: none was, the request was refused or unroutable; `endpoint=""`: a Host-routed
request refused before its Host was read), and mirror copies by outcome (`answered`, `failed`,
`dropped`: no free backend at once, or a streamed body). The copies' answers are not counted
among the deployment's requests.

Every name is `PREFIX` (`mlext_router`, beside the controller's `mlext_reconciler` in
`gitops.loopmetrics`) and ends in its unit as Prometheus names do (`_seconds`, `_total` for
counters, `_ratio`, `_requests`, `_replicas`); the constants below are the names, and
`router top` (`cli/routertop`, through `router.readings`) reads them back by these constants.
The coordinator registers the autoscaler's gauges (utilization, desired and current replicas)
on `Metrics.registry` under `UTILIZATION`, `DESIRED_REPLICAS` and `CURRENT_REPLICAS`.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping

import prometheus_client
from prometheus_client import core, registry

from reconciler.router import balancer

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST

# Whole requests take milliseconds to seconds; the router's own share takes microseconds to
# milliseconds, so it gets finer buckets.
TOTAL_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
OVERHEAD_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5,
)  # fmt: skip

PREFIX = "mlext_router"
# Counters (the exposition adds `_total`), by deployment (and code, endpoint, outcome).
REQUESTS = f"{PREFIX}_requests"
RETRIES = f"{PREFIX}_retries"
ENDPOINT_REQUESTS = f"{PREFIX}_endpoint_requests"
MIRROR_REQUESTS = f"{PREFIX}_mirror_requests"
# Histograms, by deployment.
REQUEST_DURATION = f"{PREFIX}_request_duration_seconds"
OVERHEAD = f"{PREFIX}_overhead_seconds"
# Gauges read from the pools at scrape time, by deployment (and backend).
QUEUED = f"{PREFIX}_queued_requests"
IN_FLIGHT = f"{PREFIX}_in_flight_requests"
BACKEND_UP = f"{PREFIX}_backend_up"
# The autoscaler's gauges, by deployment, on the coordinating instance only: utilization as a
# ratio (busy + queued over current replicas; above 1 when overloaded), the replicas it wants
# and the ones the Deployment has.
UTILIZATION = f"{PREFIX}_utilization_ratio"
DESIRED_REPLICAS = f"{PREFIX}_desired_replicas"
CURRENT_REPLICAS = f"{PREFIX}_current_replicas"


class _Histogram:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return buckets


class _Series:
    """What one deployment has answered."""

    __slots__ = ("codes", "overhead", "total")

    def __init__(self) -> None:
        self.codes: dict[int, int] = {}
        self.total = _Histogram(TOTAL_BUCKETS)
        self.overhead = _Histogram(OVERHEAD_BUCKETS)


class Metrics:
    """The metrics of one router server."""

    def __init__(self, pools: Callable[[], Mapping[str, balancer.Pool]]) -> None:
        self.registry = registry.CollectorRegistry()
        self._series: dict[str, _Series] = {}
        # Per deployment: requests sent to another backend after one provably never got them.
        self.retried: dict[str, int] = {}
        # (endpoint, deployment chosen) -> requests; (endpoint, deployment, outcome) -> copies.
        self.routed: dict[tuple[str, str], int] = {}
        self.copies: dict[tuple[str, str, str], int] = {}
        self.registry.register(_RequestCollector(self._series, self.retried))
        self.registry.register(_EndpointCollector(self.routed, self.copies))
        self.registry.register(_PoolCollector(pools))

    def request_done(self, deployment: str, code: int, total: float, backend: float) -> None:
        """Count one answered request; `backend` is the seconds spent with backends."""
        series = self._series.get(deployment)
        if series is None:
            series = self._series[deployment] = _Series()
        codes = series.codes
        codes[code] = codes.get(code, 0) + 1
        series.total.observe(total)
        series.overhead.observe(total - backend if total > backend else 0.0)

    def refused(self, deployment: str) -> None:
        """Count one request refused by admission control (a 503 with no time to record)."""
        series = self._series.get(deployment)
        if series is None:
            series = self._series[deployment] = _Series()
        series.codes[503] = series.codes.get(503, 0) + 1

    def retry(self, deployment: str) -> None:
        """Count one request sent again (a refused or stale connection: nothing was written)."""
        self.retried[deployment] = self.retried.get(deployment, 0) + 1

    def endpoint_routed(self, endpoint: str, deployment: str) -> None:
        """Count one scoring request of an endpoint, by the deployment chosen ("" for none)."""
        key = (endpoint, deployment)
        self.routed[key] = self.routed.get(key, 0) + 1

    def mirrored(self, endpoint: str, deployment: str, outcome: str) -> None:
        """Count one mirror copy: answered, failed or dropped."""
        key = (endpoint, deployment, outcome)
        self.copies[key] = self.copies.get(key, 0) + 1

    def forget_endpoint(self, endpoint: str) -> None:
        """Drop a removed endpoint's counts."""
        for key in [k for k in self.routed if k[0] == endpoint]:
            del self.routed[key]
        for copy in [k for k in self.copies if k[0] == endpoint]:
            del self.copies[copy]

    def forget(self, deployment: str) -> None:
        """Drop a removed deployment's series, so they do not linger after a reload."""
        self._series.pop(deployment, None)
        self.retried.pop(deployment, None)

    def exposition(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)


class _RequestCollector(registry.Collector):
    """Requests by deployment and code, total latency and the router's overhead."""

    def __init__(self, series: Mapping[str, _Series], retried: Mapping[str, int]) -> None:
        self._series = series
        self._retried = retried

    def collect(self) -> Iterable[core.Metric]:
        requests = core.CounterMetricFamily(
            REQUESTS,
            "Requests answered, by deployment and HTTP status code (499: the client left).",
            labels=["deployment", "code"],
        )
        total = core.HistogramMetricFamily(
            REQUEST_DURATION,
            "Time from a request's arrival to its answer, by deployment.",
            labels=["deployment"],
        )
        overhead = core.HistogramMetricFamily(
            OVERHEAD,
            "The router's own share of a request: total time minus time spent with backends "
            "(waiting in the queue included).",
            labels=["deployment"],
        )
        retries = core.CounterMetricFamily(
            RETRIES,
            "Requests sent to another backend because the first provably never received them "
            "(connection refused, or closed before the request was written).",
            labels=["deployment"],
        )
        for name, count in sorted(self._retried.items()):
            retries.add_metric([name], count)
        for name, series in sorted(self._series.items()):
            for code, count in sorted(series.codes.items()):
                requests.add_metric([name, str(code)], count)
            total.add_metric([name], series.total.cumulative(), series.total.sum)
            overhead.add_metric([name], series.overhead.cumulative(), series.overhead.sum)
        return [requests, retries, total, overhead]

    def describe(self) -> Iterable[core.Metric]:
        return self.collect()  # claims the names, so a clashing registration fails loudly


class _EndpointCollector(registry.Collector):
    """Endpoint requests by the deployment chosen, and mirror copies by outcome."""

    def __init__(
        self, routed: Mapping[tuple[str, str], int], copies: Mapping[tuple[str, str, str], int]
    ) -> None:
        self._routed = routed
        self._copies = copies

    def collect(self) -> Iterable[core.Metric]:
        routed = core.CounterMetricFamily(
            ENDPOINT_REQUESTS,
            "Scoring requests of an endpoint, by the deployment chosen for them (by the traffic "
            "split or the azureml-model-deployment header; empty: refused or unroutable).",
            labels=["endpoint", "deployment"],
        )
        copies = core.CounterMetricFamily(
            MIRROR_REQUESTS,
            "Mirror copies of endpoint requests, by outcome (answered, failed, or dropped: no "
            "free backend, or a streamed body).",
            labels=["endpoint", "deployment", "outcome"],
        )
        for (endpoint, deployment), count in sorted(self._routed.items()):
            routed.add_metric([endpoint, deployment], count)
        for (endpoint, deployment, outcome), count in sorted(self._copies.items()):
            copies.add_metric([endpoint, deployment, outcome], count)
        return [routed, copies]

    def describe(self) -> Iterable[core.Metric]:
        return self.collect()


class _PoolCollector(registry.Collector):
    """Requests queued and in flight per deployment, and each backend up or down, read at
    scrape time."""

    def __init__(self, pools: Callable[[], Mapping[str, balancer.Pool]]) -> None:
        self._pools = pools

    def collect(self) -> Iterable[core.Metric]:
        queued = core.GaugeMetricFamily(
            QUEUED, "Requests waiting for a free backend.", labels=["deployment"]
        )
        in_flight = core.GaugeMetricFamily(
            IN_FLIGHT, "Requests being served by a backend.", labels=["deployment"]
        )
        # One series per backend (its URL), not a count: every router instance sees the same
        # pods, and only their identity lets a reader of several instances count each pod once.
        backends = core.GaugeMetricFamily(
            BACKEND_UP,
            "1 while a backend is up (routable), 0 while down, by deployment and backend URL.",
            labels=["deployment", "backend"],
        )
        for name, pool in sorted(self._pools().items()):
            queued.add_metric([name], pool.queued)
            in_flight.add_metric([name], pool.in_flight)
            for backend in pool.backends:
                backends.add_metric([name, backend.url], 1.0 if backend.up else 0.0)
        return [queued, in_flight, backends]

    def describe(self) -> Iterable[core.Metric]:
        return self.collect()
