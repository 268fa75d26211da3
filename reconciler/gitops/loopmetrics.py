"""Prometheus metrics of the GitOps loop (`reconciler sync` / `reconciler controller`).

One `ControllerMetrics` per process, on its own registry (served at `/metrics` by
`httpserver`), so tests can run several loops in one process. Names follow Prometheus
conventions (the unit last: `_seconds`, `_bytes`; counters end in `_total`, which
prometheus_client adds) and Flux's where they overlap (`..._reconcile_duration_seconds`, a
`result` label); the per-extension state follows kube-state-metrics (one series per state, 1 for
the state the extension is in). An extension that leaves (the repo, and then the cluster, or to
another source) leaves every series that names it. The loop (`controller`) is the only writer;
nothing here does I/O.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

import prometheus_client as prom
from prometheus_client import core as prom_core
from prometheus_client import registry as prom_registry

from reconciler.engine import record

PREFIX = "mlext_reconciler"
PROVISIONING_STATES = (record.PENDING, record.SUCCEEDED, record.FAILED)
_DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


@dataclass(frozen=True)
class Extension:
    """One extension's figures after a reconcile that planned it."""

    state: str  # its provisioningState: Pending | Succeeded | Failed
    seconds: float  # planning and carrying it out
    managed: int  # objects in its inventory
    drifted: int
    pruned: int
    suspended: bool


class ControllerMetrics:
    """Every metric the loop exports."""

    def __init__(self, version: str, commit: str | None) -> None:
        self.registry = prom.CollectorRegistry()
        r = self.registry
        prom.Gauge(
            f"{PREFIX}_build_info",
            "1, labelled with the version, the git commit it was built from and the Python "
            "running it.",
            ["version", "commit", "python_version"],
            registry=r,
        ).labels(version, commit or "unknown", platform.python_version()).set(1)
        self.tick_duration = prom.Histogram(
            f"{PREFIX}_tick_duration_seconds",
            "Time of one tick, the whole repo (fetch, load, render, then each extension's "
            "reconcile), by result.",
            ["result"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.reconciles = prom.Counter(
            f"{PREFIX}_reconciles",
            "Ticks by result: success, failed (an extension failed), invalid (the revision "
            "did not validate; nothing applied), error (git or API error), skipped (not leader), "
            "superseded (a newer trigger came: extensions left to the next reconcile, at once).",
            ["result"],
            registry=r,
        )
        self.reconcile_duration = prom.Histogram(
            f"{PREFIX}_reconcile_duration_seconds",
            "Time to reconcile one extension (observe, dry run, plan, record, apply, prune, "
            "health).",
            ["extension"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.ready = prom.Gauge(
            f"{PREFIX}_extension_ready",
            "1 while the extension's provisioningState is Succeeded (all components available), "
            "else 0.",
            ["extension"],
            registry=r,
        )
        self.state = prom.Gauge(
            f"{PREFIX}_extension_provisioning_state",
            "1 for the extension's provisioningState (Pending, Succeeded, Failed), 0 for the "
            "other two.",
            ["extension", "state"],
            registry=r,
        )
        self.revision = prom.Info(
            f"{PREFIX}_last_applied_revision",
            "The revision last applied in full (every extension succeeded or pending).",
            registry=r,
        )
        self.managed = prom.Gauge(
            f"{PREFIX}_managed_objects", "Objects in the inventory.", ["extension"], registry=r
        )
        self.drifted = prom.Gauge(
            f"{PREFIX}_drifted_objects",
            "Owned objects found changed or deleted in the cluster at the last reconcile of an "
            "unchanged revision (reverted unless --drift report).",
            ["extension"],
            registry=r,
        )
        self.pruned = prom.Counter(
            f"{PREFIX}_pruned_objects", "Objects deleted by prune.", ["extension"], registry=r
        )
        self.apply_errors = prom.Counter(
            f"{PREFIX}_apply_errors",
            "Objects the API server rejected (dry run or apply), by kind.",
            ["extension", "kind"],
            registry=r,
        )
        self.fetch_duration = prom.Histogram(
            f"{PREFIX}_git_fetch_duration_seconds",
            "Time to fetch the source.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.fetch_errors = prom.Counter(
            f"{PREFIX}_git_fetch_errors", "Failed fetches of the source.", registry=r
        )
        self.leader = prom.Gauge(
            f"{PREFIX}_leader", "1 while this process holds the leader lease.", registry=r
        )
        self.suspended = prom.Gauge(
            f"{PREFIX}_suspended", "1 while an extension is suspended.", ["extension"], registry=r
        )

        self.tick_requests = prom.Gauge(
            f"{PREFIX}_tick_api_requests",
            "API requests the last reconcile sent, by verb (get, list, watch, create, patch, "
            "patch-dry-run, update, delete); 0 for every verb when it was in sync.",
            ["verb"],
            registry=r,
        )
        self.api_requests = prom.Counter(
            f"{PREFIX}_api_requests",
            "API requests sent by reconciles, by verb (the cache's watches included).",
            ["verb"],
            registry=r,
        )
        self._verbs = set()
        self._per_extension = (
            self.reconcile_duration,
            self.ready,
            self.state,
            self.managed,
            self.drifted,
            self.pruned,
            self.apply_errors,
            self.suspended,
        )
        self._extensions = set()

    _verbs: set[str]
    _extensions: set[str]  # the extensions with series

    def observe_requests(self, by_verb: Mapping[str, int]) -> None:
        """One reconcile's API requests by verb (verbs of earlier ticks that it did not send
        go to 0)."""
        self._verbs |= set(by_verb)
        for verb in self._verbs:
            self.tick_requests.labels(verb).set(by_verb.get(verb, 0))
        for verb, count in by_verb.items():
            if count:
                self.api_requests.labels(verb).inc(count)

    def watch_cache(self, stats: Callable[[], tuple[int, int, Mapping[str, int]]]) -> None:
        """Export the live cache's size and restarts, computed when /metrics is scraped from
        `stats()`: (objects, bytes as compact JSON, re-lists by kind)."""
        self.registry.register(_CacheCollector(stats))

    def observe_extensions(self, seen: Mapping[str, Extension], kept: Iterable[str]) -> None:
        """Per-extension figures after one reconcile. Every series of an extension neither
        `seen` nor `kept` (left to the next reconcile) goes: it left the repo and the cluster,
        or went to another source."""
        for name, facts in seen.items():
            self.managed.labels(name).set(facts.managed)
            self.drifted.labels(name).set(facts.drifted)
            if facts.pruned:
                self.pruned.labels(name).inc(facts.pruned)
            self.suspended.labels(name).set(1 if facts.suspended else 0)
            self.reconcile_duration.labels(name).observe(facts.seconds)
            self.observe_states({name: facts.state})
        still = set(seen) | set(kept)
        for name in self._extensions - still:
            for metric in self._per_extension:
                metric.remove_by_labels({"extension": name})
        self._extensions = still

    def observe_states(self, states: Mapping[str, str]) -> None:
        """Extensions' provisioning states (a rejected revision marks them Failed)."""
        self._extensions |= set(states)
        for name, state in states.items():
            self.ready.labels(name).set(1 if state == record.SUCCEEDED else 0)
            for each in PROVISIONING_STATES:
                self.state.labels(name, each).set(1 if state == each else 0)

    def exposition(self) -> bytes:
        """The text format served at /metrics."""
        return bytes(prom.generate_latest(self.registry))


class _CacheCollector(prom_registry.Collector):
    """The live cache's figures, read at scrape time (sizing every cached object is not free)."""

    def __init__(self, stats: Callable[[], tuple[int, int, Mapping[str, int]]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[prom_core.Metric]:
        count, size, restarts = self._stats()
        yield prom_core.GaugeMetricFamily(
            f"{PREFIX}_cache_objects", "Objects in the live-state cache.", value=count
        )
        yield prom_core.GaugeMetricFamily(
            f"{PREFIX}_cache_bytes",
            "Size of the cached objects as compact JSON (what the cache keeps, not the "
            "process's memory).",
            value=size,
        )
        relists = prom_core.CounterMetricFamily(
            f"{PREFIX}_cache_relists",
            "LISTs of a kind after its first (the watch's version expired, or it failed).",
            labels=["kind"],
        )
        for kind, number in sorted(restarts.items()):
            relists.add_metric([kind], number)
        yield relists
