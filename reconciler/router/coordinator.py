"""The scaling coordinator: one router instance turns everyone's load into replica counts.

Several router instances serve traffic; each knows only its own load. The instance holding the
coordinator Lease (`leaderelection`, run by the serve process) runs a `Coordinator`: every
`polling_interval` of each autoscaled deployment it collects the load reports of all instances
(its own directly, its peers' over HTTP at `LOAD_PATH` on their admin ports; peers come from
the headless admin Service's EndpointSlices in-cluster via `router.discovery`, or a static
list), sums them (`merge`), reads the current replica count from the Deployment's scale
subresource, asks the deployment's
`autoscaler.Autoscaler`, and writes a changed count back through the scale subresource
(`kube.set_scale`, conditional on the count it read). Each decision is logged and handed to an
`on_decision` hook; `Gauges` exports the last ones (desired / current replicas, utilization).

The data contract between instances is `local_report` (what an instance serves at LOAD_PATH,
JSON) and `parse_report` (what the coordinator reads back). A peer that does not answer within
`REPORT_TIMEOUT` is left out of that round: its load is missing, which can only delay a scale-up
by one interval or, if it stays away for the whole minute, allow a scale-down.

`start_in_cluster` puts the pieces together for one router instance in a cluster: the peer
watcher, the Lease candidacy and the coordinator, stopped together by `Scaling.stop`.

Why pull, and not push to the coordinator: the instances need not know who leads, a new leader
has everyone's load at its first tick, and a dead peer simply drops out. Nothing in the data
path waits for the coordinator; the balancing itself stays per instance.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import core, registry

from reconciler import kube, leaderelection
from reconciler.render import workloadobjects
from reconciler.router import autoscaler, discovery, metrics

log = logging.getLogger(__name__)

LOAD_PATH = "/internal/load"
REPORT_TIMEOUT = 0.5  # seconds a peer has to answer; the polling interval is usually 1 s
MAX_SLEEP = 1.0  # the loop wakes at least this often, to notice leadership and new targets
AUTOSCALED = workloadobjects.AUTOSCALED


# --- What to scale ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """An autoscaled deployment: the apps/v1 Deployment `name` in `namespace`."""

    name: str
    namespace: str
    settings: autoscaler.Settings


class ScaleLike(Protocol):
    @property
    def type(self) -> str: ...
    @property
    def min_instances(self) -> int: ...
    @property
    def max_instances(self) -> int: ...
    @property
    def target_utilization_percentage(self) -> int: ...
    @property
    def polling_interval(self) -> int | float: ...


class DeploymentLike(Protocol):
    """A router.yaml deployment as the router's config module types it."""

    @property
    def name(self) -> str: ...
    @property
    def namespace(self) -> str | None: ...
    @property
    def scale_settings(self) -> ScaleLike: ...


def targets_of(deployments: Iterable[DeploymentLike], default_namespace: str) -> list[Target]:
    """The deployments the router autoscales (scale type target_utilization; fixed ones keep
    the count the reconciler gives them)."""
    found = []
    for deployment in deployments:
        scale = deployment.scale_settings
        if scale.type != AUTOSCALED:
            continue
        settings = autoscaler.Settings(
            min_instances=scale.min_instances,
            max_instances=scale.max_instances,
            target_utilization_percentage=scale.target_utilization_percentage,
            polling_interval=float(scale.polling_interval),
        )
        namespace = deployment.namespace or default_namespace
        found.append(Target(deployment.name, namespace, settings))
    return found


# --- Load reports between instances -------------------------------------------------------------


def local_report(instance: str, loads: Mapping[str, autoscaler.Sample]) -> dict[str, Any]:
    """What an instance serves at LOAD_PATH (as JSON): its own load per deployment.

    `loads` from the balancer: `{name: autoscaler.Sample.of(pool.load())}`."""
    return {
        "instance": instance,
        "deployments": {
            name: {"busy": sample.busy, "queued": sample.queued, "ready": sample.ready}
            for name, sample in sorted(loads.items())
        },
    }


def parse_report(payload: Any) -> dict[str, autoscaler.Sample]:
    """A peer's report back into samples; ValueError when it is not a report."""
    if not isinstance(payload, Mapping) or not isinstance(payload.get("deployments"), Mapping):
        raise ValueError("not a load report: no deployments mapping")
    samples = {}
    for name, raw in payload["deployments"].items():
        if not isinstance(raw, Mapping):
            raise ValueError(f"not a load report: deployment {name!r} is not a mapping")
        try:
            busy = float(raw.get("busy") or 0.0)
            queued = int(raw.get("queued") or 0)
            ready = raw.get("ready")
            samples[str(name)] = autoscaler.Sample(
                busy, queued, None if ready is None else int(ready)
            )
        except (TypeError, ValueError) as err:
            raise ValueError(f"not a load report: deployment {name!r}: {err}") from err
    return samples


def merge(reports: Iterable[Mapping[str, autoscaler.Sample]]) -> dict[str, autoscaler.Sample]:
    """The load of the whole router: busy and queued add up over instances; ready is the
    highest any instance reports (they all see the same endpoints, some a moment later)."""
    busy: dict[str, float] = {}
    queued: dict[str, int] = {}
    ready: dict[str, int | None] = {}
    for report in reports:
        for name, sample in report.items():
            busy[name] = busy.get(name, 0.0) + sample.busy
            queued[name] = queued.get(name, 0) + sample.queued
            seen = ready.get(name)
            if sample.ready is not None:
                ready[name] = sample.ready if seen is None else max(seen, sample.ready)
            else:
                ready.setdefault(name, None)
    return {name: autoscaler.Sample(busy[name], queued[name], ready[name]) for name in busy}


def fetch_report(url: str, timeout: float = REPORT_TIMEOUT) -> dict[str, autoscaler.Sample]:
    """GET a peer's report (`url` is the peer's base URL, http or https).

    Over https the peer's certificate is not verified: it is issued for the router's public
    name, not for pod IPs, and a report carries load numbers only, no secret."""
    context = None
    if url.startswith("https:"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(url.rstrip("/") + LOAD_PATH, method="GET")
    with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
        return parse_report(json.loads(response.read()))


# --- Reading and writing replica counts ---------------------------------------------------------


class Scaler(Protocol):
    def current(self, namespace: str, name: str) -> int | None:
        """The Deployment's replica count, None when there is no such Deployment."""
        ...

    def scale(self, namespace: str, name: str, replicas: int, expected: int) -> bool:
        """Set the count if it is still `expected`; False when someone scaled in between."""
        ...


class KubeScaler:
    """The Scaler on the API server: the Deployment's scale subresource, one bounded attempt
    per call (the coordinator's next tick is the retry)."""

    def __init__(self, cluster: kube.Cluster, timeout: float = kube.BOUNDED_TIMEOUT) -> None:
        self.cluster = cluster
        self.timeout = timeout

    def current(self, namespace: str, name: str) -> int | None:
        scale = kube.get_scale(self.cluster, namespace, name, timeout=self.timeout)
        if scale is None:
            return None
        return int((scale.get("spec") or {}).get("replicas") or 0)

    def scale(self, namespace: str, name: str, replicas: int, expected: int) -> bool:
        try:
            kube.set_scale(
                self.cluster, namespace, name, replicas, expected=expected, timeout=self.timeout
            )
        except kube.KubeError as err:
            if err.status == 409:
                return False
            raise
        return True


# --- The coordinator ----------------------------------------------------------------------------

DecisionHook = Callable[[autoscaler.Decision], None]


class Gauges(registry.Collector):
    """The autoscaler's gauges of a router instance, labelled by deployment: the coordinator's
    last decision for each deployment it scales (`metrics.UTILIZATION`, a ratio,
    `metrics.DESIRED_REPLICAS`, `metrics.CURRENT_REPLICAS`), read at scrape time. Only the
    instance leading now exports them: one that lost the Lease, or a deployment no longer
    scaled, shows nothing rather than its last figures, so the routers together export one
    set, and `router top` or a dashboard never reads an old coordinator's figures."""

    def __init__(self, coordinator: Coordinator) -> None:
        self._coordinator = coordinator

    def collect(self) -> Iterable[core.Metric]:
        labels = ["deployment"]
        utilization = core.GaugeMetricFamily(
            metrics.UTILIZATION,
            "(busy replicas + queued requests) / current replicas, as the autoscaler last saw it.",
            labels=labels,
        )
        desired = core.GaugeMetricFamily(
            metrics.DESIRED_REPLICAS, "Replicas the autoscaler wants.", labels=labels
        )
        current = core.GaugeMetricFamily(
            metrics.CURRENT_REPLICAS, "Replicas the Deployment has.", labels=labels
        )
        for name, decision in sorted(self._coordinator.latest().items()):
            utilization.add_metric([name], decision.utilization)
            desired.add_metric([name], decision.desired)
            current.add_metric([name], decision.current)
        return [utilization, desired, current]

    def describe(self) -> Iterable[core.Metric]:
        return self.collect()  # claims the names, so a clashing registration fails loudly


def _always() -> bool:
    return True


def _nobody() -> Sequence[str]:
    return ()


class Coordinator:
    """Makes and applies the scaling decisions while `is_leader()` says this instance leads.

    `tick()` is one round (tests call it with an injected clock); `start()` runs rounds in a
    daemon thread until `stop()`. Losing and regaining leadership forgets every deployment's
    history, so a new coordinator watches a full minute of low load before it scales down."""

    def __init__(
        self,
        scaler: Scaler,
        local_load: Callable[[], Mapping[str, autoscaler.Sample]],
        *,
        peers: Callable[[], Sequence[str]] = _nobody,
        fetch: Callable[[str], Mapping[str, autoscaler.Sample]] = fetch_report,
        is_leader: Callable[[], bool] = _always,
        on_decision: DecisionHook | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._scaler = scaler
        self._local_load = local_load
        self._peers = peers
        self._fetch = fetch
        self._is_leader = is_leader
        self._on_decision = on_decision
        self._clock = clock
        self._lock = threading.Lock()
        self._targets: dict[str, Target] = {}
        self._scalers: dict[str, autoscaler.Autoscaler] = {}
        self._due: dict[str, float] = {}
        self._latest: dict[str, autoscaler.Decision] = {}
        self._leading = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def configure(self, targets: Iterable[Target]) -> None:
        """The deployments to scale (a config reload): a deployment that stays keeps its
        history, with its new settings; a new one is evaluated at the next tick."""
        wanted = {target.name: target for target in targets}
        with self._lock:
            for name in list(self._targets):
                if name not in wanted:
                    del self._targets[name], self._scalers[name], self._due[name]
                    self._latest.pop(name, None)
            for name, target in wanted.items():
                if name in self._scalers:
                    self._scalers[name].reconfigure(target.settings)
                else:
                    self._scalers[name] = autoscaler.Autoscaler(name, target.settings, self._clock)
                    self._due[name] = self._clock()
                self._targets[name] = target

    def tick(self) -> list[autoscaler.Decision]:
        """One round: the decisions for the deployments whose polling interval is up."""
        now = self._clock()
        if not self._is_leader():
            if self._leading:
                log.info("no longer the scaling coordinator")
                self._leading = False
                with self._lock:
                    self._latest.clear()
            return []
        with self._lock:
            if not self._leading:
                log.info("now the scaling coordinator for %d deployments", len(self._targets))
                self._leading = True
                for state in self._scalers.values():
                    state.reset()
            due = [t for name, t in self._targets.items() if self._due[name] <= now]
            for target in due:
                self._due[target.name] = now + target.settings.polling_interval
        if not due:
            return []
        load = merge(self._reports())
        decisions = []
        for target in due:
            decision = self._evaluate(target, load.get(target.name, autoscaler.Sample(0.0, 0)))
            if decision is not None:
                decisions.append(decision)
        return decisions

    def latest(self) -> dict[str, autoscaler.Decision]:
        """The last decision for each deployment scaled, while this instance leads (none
        otherwise)."""
        if not self._is_leader():
            return {}
        with self._lock:
            return dict(self._latest)

    def _reports(self) -> list[Mapping[str, autoscaler.Sample]]:
        reports = [self._local_load()]
        peers = list(self._peers())
        if not peers:
            return reports
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="load")
        futures = {url: self._pool.submit(self._fetch, url) for url in peers}
        for url, future in futures.items():
            try:
                reports.append(future.result())
            except Exception as err:  # a peer that is down or starting: left out this round
                log.warning("no load report from %s: %s", url, err)
        return reports

    def _evaluate(self, target: Target, sample: autoscaler.Sample) -> autoscaler.Decision | None:
        with self._lock:
            state = self._scalers.get(target.name)
        if state is None:  # reconfigured away meanwhile
            return None
        try:
            current = self._scaler.current(target.namespace, target.name)
        except kube.KubeError as err:
            log.warning("cannot read the scale of %s/%s: %s", target.namespace, target.name, err)
            return None
        if current is None:
            log.debug("deployment %s/%s does not exist (yet)", target.namespace, target.name)
            state.reset()
            return None
        decision = state.observe(sample, current)
        if decision.direction != "none":
            self._apply(target, decision)
        else:
            log.debug(
                "%s/%s stays at %d: %s",
                target.namespace,
                target.name,
                decision.current,
                decision.reason,
            )
        with self._lock:
            if target.name in self._targets:
                self._latest[target.name] = decision
        if self._on_decision is not None:
            self._on_decision(decision)
        return decision

    def _apply(self, target: Target, decision: autoscaler.Decision) -> None:
        where = f"{target.namespace}/{target.name}"
        if not self._is_leader():  # lost the lease while collecting reports: not ours to write
            log.info("not scaling %s: no longer the coordinator", where)
            return
        try:
            written = self._scaler.scale(
                target.namespace, target.name, decision.desired, decision.current
            )
        except kube.KubeError as err:
            log.warning("cannot scale %s to %d: %s", where, decision.desired, err)
            return
        if not written:
            log.info("%s was scaled by someone else meanwhile; deciding again next round", where)
            return
        log.info(
            "scaled %s from %d to %d replicas: %s (utilization %.0f%%)",
            where,
            decision.current,
            decision.desired,
            decision.reason,
            decision.utilization * 100,
        )

    # --- the thread --------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the coordinator is already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="scaling-coordinator", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # one bad round (a hook's bug, a malformed answer) is not fatal
                log.exception("scaling round failed")
            self._stop.wait(self._sleep())

    def _sleep(self) -> float:
        with self._lock:
            nearest = min(self._due.values(), default=self._clock() + MAX_SLEEP)
        return min(max(nearest - self._clock(), 0.05), MAX_SLEEP)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


# --- In a cluster: the lease, the peers and the coordinator together ----------------------------


@dataclass
class Scaling:
    """The scaling side of one router instance in a cluster, running."""

    coordinator: Coordinator
    elector: leaderelection.LeaderElector
    peers: discovery.EndpointWatcher

    def configure(self, targets: Iterable[Target]) -> None:
        self.coordinator.configure(targets)

    def is_coordinator(self) -> bool:
        return self.elector.is_leader()

    def stop(self) -> None:
        """Stop deciding, release the lease (a standby takes over at once), stop watching."""
        self.coordinator.stop()
        self.elector.stop(release=True)
        self.peers.stop()


def start_in_cluster(
    cluster: kube.Cluster,
    *,
    namespace: str,
    router_service: str,
    identity: str,
    local_load: Callable[[], Mapping[str, autoscaler.Sample]],
    targets: Iterable[Target],
    on_decision: DecisionHook | None = None,
    peer_service: str | None = None,
    peer_port: str | int | None = None,
    peer_scheme: str = "http",
    fetch: Callable[[str], Mapping[str, autoscaler.Sample]] = fetch_report,
    lease_name: str | None = None,
    lease_duration: float = leaderelection.LEASE_DURATION,
    renew_deadline: float = leaderelection.RENEW_DEADLINE,
    retry_period: float = leaderelection.RETRY_PERIOD,
) -> Scaling:
    """Run the scaling side of router instance `identity` (its pod name): the peers from
    the EndpointSlices of `peer_service` (default `router_service`; this pod left out), port
    `peer_port`, a candidacy for the Lease
    `lease_name` (default `<router_service>-coordinator`) in `namespace`, and a coordinator
    that decides while that candidacy leads."""
    peers = discovery.EndpointWatcher(
        cluster,
        namespace,
        peer_service or router_service,
        port=peer_port,
        scheme=peer_scheme,
        exclude_pod=identity,
    )
    elector = leaderelection.LeaderElector(
        leaderelection.KubeLeases(cluster),
        namespace,
        lease_name or workloadobjects.coordinator_lease_name(router_service),
        identity,
        lease_duration=lease_duration,
        renew_deadline=renew_deadline,
        retry_period=retry_period,
    )
    coordinator = Coordinator(
        KubeScaler(cluster),
        local_load,
        peers=peers.urls,
        fetch=fetch,
        is_leader=elector.is_leader,
        on_decision=on_decision,
    )
    coordinator.configure(targets)
    peers.start()
    elector.start()
    coordinator.start()
    return Scaling(coordinator, elector, peers)
