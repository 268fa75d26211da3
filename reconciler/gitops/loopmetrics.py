"""Prometheus metrics of the GitOps loop (`reconciler sync` / `reconciler controller`).

One `ControllerMetrics` per process, on its own registry (served at `/metrics` by
`httpserver`), so tests can run several loops in one process. Names follow Prometheus
conventions and Flux's where they overlap (`..._duration_seconds`, a `result` label). The loop
(`controller`) is the only writer; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import prometheus_client as prom

PREFIX = "mlext_reconciler"


class ControllerMetrics:
    """Every metric the loop exports."""

    def __init__(self) -> None:
        self.registry = prom.CollectorRegistry()
        r = self.registry
        self.reconcile_duration = prom.Histogram(
            f"{PREFIX}_reconcile_duration_seconds",
            "Time of one reconcile (fetch, load, render, plan, apply, prune), by result.",
            ["result"],
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.reconciles = prom.Counter(
            f"{PREFIX}_reconciles",
            "Reconciles by result: success, failed (an extension failed), invalid (the revision "
            "did not validate; nothing applied), error (git or API error), skipped (not leader).",
            ["result"],
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

    def observe_extensions(
        self,
        managed: Mapping[str, int],
        drifted: Mapping[str, int],
        pruned: Mapping[str, int],
        suspended: Iterable[str],
    ) -> None:
        """Per-extension figures after one reconcile."""
        for name, count in managed.items():
            self.managed.labels(name).set(count)
        for name, count in drifted.items():
            self.drifted.labels(name).set(count)
        for name, count in pruned.items():
            if count:
                self.pruned.labels(name).inc(count)
        held = set(suspended)
        for name in set(managed) | held:
            self.suspended.labels(name).set(1 if name in held else 0)

    def exposition(self) -> bytes:
        """The text format served at /metrics."""
        return bytes(prom.generate_latest(self.registry))
