"""A discrete-event simulation of one autoscaled deployment behind the router, on a fake clock.

Replays a request trace (`router.traces`) through the router's own scaling code: the balancer's
`Pool` picks the replica (fewest in flight, `max_concurrent` slots each), the coordinator
(`router.coordinator.Coordinator`, with the `autoscaler.Autoscaler` inside it) is ticked every
`polling_interval` of simulated time with the load the balancer reports, and its writes to the
"scale subresource" (`_SimScaler`) create or delete simulated pods. Nothing here sleeps or does
I/O: simulated time costs only the work of its events, so an hour of traffic runs in well under
a second, and the same inputs give the same result.

What is modelled, and how it maps to the real thing:

- A request arriving when a replica has a free slot starts at once; otherwise it waits in the
  router's FIFO queue: 429 when `max_queue_length` are already waiting, 503 after
  `max_queue_wait` (the balancer's `QueueFull` / `QueueTimeout`). A slot that frees up goes to
  the head of the queue. A request longer than `request_timeout` is answered 504 at the
  timeout, and its slot frees then (as `proxy` releases the backend).
- A scale-up creates pods that become ready (join the pool) `start_delay` seconds later.
- A scale-down deletes pods the way a ReplicaSet picks them: not-ready ones first, then the
  most recently ready. A deleted pod leaves the pool at once and finishes its requests.
- Replica-seconds count every pod from its creation to its deletion (or, when it still had
  requests, to its last one's end): starting and draining pods use their resources too.

Events at the same instant run in this order: pods becoming ready, requests ending, queue
timeouts, arrivals, then the coordinator's tick, so a tick sees the state after that instant.
`run` returns a `Result`: the outcome of every request, one `Point` per tick, every scaling
change, and the pods' replica-seconds; `summarize` turns it into the `Summary` the command
prints (served and dropped requests, waits, replica-seconds against the sizing formula's).
"""

from __future__ import annotations

import collections
import enum
import heapq
import itertools
import math
import statistics
from dataclasses import dataclass
from typing import Any

from reconciler.router import autoscaler, balancer, coordinator, sizing, traces

DEPLOYMENT = "simulated"
NAMESPACE = "simulation"
RATE_WINDOW_S = 10.0  # the window the summary measures rates over (peak rps, the formula)


class Outcome(enum.Enum):
    SERVED = "served"
    QUEUE_FULL = "queue_full"  # 429
    QUEUE_TIMEOUT = "queue_timeout"  # 503
    BACKEND_TIMEOUT = "backend_timeout"  # 504

    @property
    def dropped(self) -> bool:
        """Turned away by the router without reaching a replica (429 or 503)."""
        return self in (Outcome.QUEUE_FULL, Outcome.QUEUE_TIMEOUT)


@dataclass(frozen=True)
class Config:
    """Everything the simulation needs besides the trace (seconds, not milliseconds)."""

    scale: autoscaler.Settings
    max_concurrent: int = 1
    max_queue_length: int = 1000
    max_queue_wait: float = 0.5
    request_timeout: float = 5.0
    start_delay: float = 30.0
    initial_replicas: int | None = None  # None: the lowest the settings allow
    until: float = 0.0  # simulate at least this long, even after the last request ended

    def __post_init__(self) -> None:
        if self.max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        if self.max_queue_length < 0:
            raise ValueError("max_queue_length must not be negative")
        if self.max_queue_wait < 0 or self.request_timeout <= 0 or self.start_delay < 0:
            raise ValueError("queue wait and start delay must be >= 0, the timeout > 0")
        if self.initial_replicas is not None and self.initial_replicas < 1:
            raise ValueError("initial_replicas must be at least 1")

    @property
    def first_replicas(self) -> int:
        return self.initial_replicas or self.scale.lowest


@dataclass
class Handled:
    """What became of one request: its outcome, and when it started on a replica (None when it
    never did)."""

    request: traces.Request
    outcome: Outcome | None = None
    started: float | None = None
    ended: float | None = None

    @property
    def wait(self) -> float | None:
        """Seconds in the router's queue (None for a 429, which never queued)."""
        if self.started is not None:
            return self.started - self.request.at
        if self.outcome is Outcome.QUEUE_TIMEOUT and self.ended is not None:
            return self.ended - self.request.at
        return None


@dataclass(frozen=True)
class Point:
    """The deployment at one coordinator tick.

    offered_rps: arrivals per second since the previous tick; offered_work: the replicas those
    arrivals keep busy (sum of durations / interval / max_concurrent); utilization, desired and
    current: the autoscaler's decision (current is the count it read); ready: replicas in the
    pool; busy, queued: what the balancer reported; dropped: 429s and 503s since the last tick.
    """

    t: float
    offered_rps: float
    offered_work: float
    utilization: float
    desired: int
    current: int
    ready: int
    busy: float
    queued: int
    dropped: int


@dataclass(frozen=True)
class Change:
    """A replica count the coordinator wrote."""

    t: float
    before: int
    after: int
    reason: str


@dataclass
class _Pod:
    number: int  # in creation order
    url: str
    created: float
    ready_at: float
    ready: bool = False
    deleted: float | None = None
    ended: float | None = None  # deleted and drained


@dataclass
class Result:
    """One run: every request's fate, one point per tick, every write of the replica count;
    `end` is when the run stopped (the last tick) and `replica_seconds` what the pods used."""

    trace: traces.Trace
    config: Config
    handled: list[Handled]
    points: list[Point]
    changes: list[Change]
    end: float
    replica_seconds: float
    pods_created: int


class _SimScaler:
    """The coordinator's `Scaler`: the Deployment's replica count, owned by the simulation."""

    def __init__(self, sim: _Simulation, replicas: int) -> None:
        self.sim = sim
        self.replicas = replicas

    def current(self, namespace: str, name: str) -> int | None:
        return self.replicas

    def scale(self, namespace: str, name: str, replicas: int, expected: int) -> bool:
        if expected != self.replicas:
            return False
        before, self.replicas = self.replicas, replicas
        self.sim.resize(before, replicas)
        return True


# Event kinds, in the order they run at the same instant.
_READY, _END, _EXPIRE, _ARRIVE, _TICK = range(5)


class _Simulation:
    """The state of one run: the event queue, the pods, the balancer's pool, the router's queue
    and the coordinator driving the autoscaler on this object's clock."""

    def __init__(self, trace: traces.Trace, config: Config) -> None:
        self.trace = trace
        self.config = config
        self.now = 0.0
        self.pool = balancer.Pool(config.max_concurrent, config.max_queue_length)
        self.pods: list[_Pod] = []
        self.live: list[_Pod] = []  # not deleted, in creation order
        self.by_url: dict[str, _Pod] = {}
        self.records = [Handled(r) for r in trace.requests]
        self.waiting: collections.deque[int] = collections.deque()
        self.waiting_count = 0
        self.backend_of: dict[int, balancer.Backend] = {}
        self.busy_on: collections.Counter[str] = collections.Counter()  # requests per pod URL
        self.dropped = 0  # 429s and 503s so far
        self.events: list[tuple[float, int, int, int]] = []
        self.seq = itertools.count()
        self.open = len(trace.requests)  # requests without an outcome yet
        self.changes: list[Change] = []
        self.scaler = _SimScaler(self, config.first_replicas)
        self.coordinator = coordinator.Coordinator(self.scaler, self.local_load, clock=self.clock)
        self.coordinator.configure([coordinator.Target(DEPLOYMENT, NAMESPACE, config.scale)])
        for _ in range(config.first_replicas):
            pod = self.new_pod(ready_at=0.0)
            pod.ready = True
        self.sync_pool()

    # -- the clock and the load the coordinator reads ------------------------------------------

    def clock(self) -> float:
        return self.now

    def local_load(self) -> dict[str, autoscaler.Sample]:
        load = self.pool.load()
        return {DEPLOYMENT: autoscaler.Sample(load.busy, self.waiting_count, load.backends)}

    # -- pods ----------------------------------------------------------------------------------

    def new_pod(self, ready_at: float) -> _Pod:
        number = len(self.pods)
        pod = _Pod(number, f"http://pod-{number}:80", self.now, ready_at)
        self.pods.append(pod)
        self.live.append(pod)
        self.by_url[pod.url] = pod
        return pod

    def resize(self, before: int, after: int) -> None:
        if after > before:
            for _ in range(after - before):
                pod = self.new_pod(self.now + self.config.start_delay)
                self.push(pod.ready_at, _READY, len(self.pods) - 1)
        else:
            # A ReplicaSet deletes not-ready pods first, then the ones ready for the shortest
            # time, then the newest (it does not know which pods are busy).
            ranked = sorted(self.live, key=lambda p: (p.ready, -p.ready_at, -p.number))
            doomed = ranked[: before - after]
            for pod in doomed:
                pod.deleted = self.now
                self.live.remove(pod)
                if not self.busy_on[pod.url]:
                    pod.ended = self.now
        self.sync_pool()

    def sync_pool(self) -> None:
        self.pool.set_backends(p.url for p in self.live if p.ready)
        self.serve_queue()

    # -- requests ------------------------------------------------------------------------------

    def push(self, at: float, kind: int, index: int) -> None:
        heapq.heappush(self.events, (at, kind, next(self.seq), index))

    def start(self, index: int, backend: balancer.Backend) -> None:
        record = self.records[index]
        record.started = self.now
        self.backend_of[index] = backend
        self.busy_on[backend.url] += 1
        duration = record.request.duration
        if duration > self.config.request_timeout:
            record.outcome = Outcome.BACKEND_TIMEOUT
            self.push(self.now + self.config.request_timeout, _END, index)
        else:
            record.outcome = Outcome.SERVED
            self.push(self.now + duration, _END, index)

    def arrive(self, index: int) -> None:
        backend = self.pool.try_acquire() if not self.waiting_count else None
        if backend is not None:
            self.start(index, backend)
        elif self.waiting_count >= self.config.max_queue_length:
            self.finish(index, Outcome.QUEUE_FULL)
        else:
            self.waiting.append(index)
            self.waiting_count += 1
            self.push(self.now + self.config.max_queue_wait, _EXPIRE, index)

    def end(self, index: int) -> None:
        backend = self.backend_of.pop(index)
        self.pool.release(backend)
        record = self.records[index]
        record.ended = self.now
        self.open -= 1
        self.busy_on[backend.url] -= 1
        pod = self.by_url[backend.url]
        if pod.deleted is not None and not self.busy_on[pod.url]:
            pod.ended = self.now
        self.serve_queue()

    def expire(self, index: int) -> None:
        record = self.records[index]
        if record.outcome is None:  # still waiting: not served in time
            self.waiting_count -= 1
            self.finish(index, Outcome.QUEUE_TIMEOUT)

    def finish(self, index: int, outcome: Outcome) -> None:
        record = self.records[index]
        record.outcome = outcome
        record.ended = self.now
        self.open -= 1
        if outcome.dropped:
            self.dropped += 1

    def serve_queue(self) -> None:
        while self.waiting:
            index = self.waiting[0]
            if self.records[index].outcome is not None:  # timed out meanwhile
                self.waiting.popleft()
                continue
            backend = self.pool.try_acquire()
            if backend is None:
                return
            self.waiting.popleft()
            self.waiting_count -= 1
            self.start(index, backend)

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> Result:
        for index, request in enumerate(self.trace.requests):
            self.push(request.at, _ARRIVE, index)
        self.push(0.0, _TICK, -1)
        points: list[Point] = []
        last_tick = 0.0
        arrivals: list[float] = []  # the durations of the requests since the last tick
        dropped_before = 0
        interval = self.config.scale.polling_interval
        while self.events:
            at, kind, _, index = heapq.heappop(self.events)
            self.now = at
            if kind == _READY:
                self.pods[index].ready = self.pods[index].deleted is None
                self.sync_pool()
            elif kind == _END:
                self.end(index)
            elif kind == _EXPIRE:
                self.expire(index)
            elif kind == _ARRIVE:
                arrivals.append(self.trace.requests[index].duration)
                self.arrive(index)
            else:
                load = self.local_load()[DEPLOYMENT]
                decisions = self.coordinator.tick()
                span = self.now - last_tick
                for decision in decisions:
                    points.append(
                        Point(
                            t=self.now,
                            offered_rps=len(arrivals) / span if span else 0.0,
                            offered_work=(
                                sum(arrivals) / span / self.config.max_concurrent if span else 0.0
                            ),
                            utilization=decision.utilization,
                            desired=decision.desired,
                            current=decision.current,
                            ready=load.ready or 0,
                            busy=load.busy,
                            queued=load.queued,
                            dropped=self.dropped - dropped_before,
                        )
                    )
                    if decision.direction != "none":
                        self.changes.append(
                            Change(self.now, decision.current, decision.desired, decision.reason)
                        )
                dropped_before = self.dropped
                arrivals.clear()
                last_tick = self.now
                if self.open or self.now < max(self.config.until, self.trace.end):
                    self.push(self.now + interval, _TICK, -1)
        self.coordinator.stop()
        end = self.now
        replica_seconds = sum(
            (p.ended if p.ended is not None else end) - p.created for p in self.pods
        )
        return Result(
            trace=self.trace,
            config=self.config,
            handled=self.records,
            points=points,
            changes=self.changes,
            end=end,
            replica_seconds=replica_seconds,
            pods_created=len(self.pods),
        )


def run(trace: traces.Trace, config: Config) -> Result:
    """Replay `trace` against a deployment with `config`; see the module docstring."""
    return _Simulation(trace, config).run()


# --- The summary --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """The numbers `reconciler router simulate` prints (times in seconds)."""

    trace: str
    seconds: float
    offered: int
    served: int
    queue_full: int
    queue_timeout: int
    backend_timeout: int
    slow_wait: float
    queued_longer: int  # requests that waited more than slow_wait in the queue
    wait_p50: float
    wait_p99: float
    wait_max: float
    scale_ups: int
    scale_downs: int
    max_replicas: int
    replica_seconds: float
    peak_rps: float  # over RATE_WINDOW_S windows
    mean_request_seconds: float
    formula_replicas: int  # sizing.replicas at the peak rate
    formula_replicas_in_bounds: int  # the same, within [min_instances, max_instances]
    formula_replica_seconds: float  # that many (in bounds) for the whole run
    windowed_formula_replica_seconds: float  # the formula applied to each window's own rate

    @property
    def dropped(self) -> int:
        return self.queue_full + self.queue_timeout

    def as_json(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["dropped"] = self.dropped
        return data


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]


def summarize(result: Result, slow_wait: float = 1.0) -> Summary:
    """The summary of a run; `slow_wait` is the queue wait counted as too long (1 s)."""
    config = result.config
    scale = config.scale
    counts = collections.Counter(h.outcome for h in result.handled)
    waits = [h.wait for h in result.handled if h.outcome is Outcome.SERVED and h.wait is not None]
    all_waits = [h.wait for h in result.handled if h.wait is not None]
    durations = [r.duration for r in result.trace.requests]
    mean_seconds = statistics.fmean(durations) if durations else 0.0
    windows = max(1, math.ceil(result.end / RATE_WINDOW_S))
    per_window = [0] * windows
    for request in result.trace.requests:
        per_window[min(windows - 1, int(request.at // RATE_WINDOW_S))] += 1
    rates = [n / RATE_WINDOW_S for n in per_window]
    peak = max(rates)

    def formula(rps: float) -> int:
        return sizing.replicas(
            rps, mean_seconds, scale.target_utilization_percentage, config.max_concurrent
        )

    needed = formula(peak)
    fixed = scale.clamp(needed)
    last_window = result.end - (windows - 1) * RATE_WINDOW_S
    windowed = sum(
        scale.clamp(formula(rate)) * (RATE_WINDOW_S if i < windows - 1 else last_window)
        for i, rate in enumerate(rates)
    )
    replicas_seen = [config.first_replicas] + [c.after for c in result.changes]
    return Summary(
        trace=result.trace.name,
        seconds=result.end,
        offered=len(result.handled),
        served=counts[Outcome.SERVED],
        queue_full=counts[Outcome.QUEUE_FULL],
        queue_timeout=counts[Outcome.QUEUE_TIMEOUT],
        backend_timeout=counts[Outcome.BACKEND_TIMEOUT],
        slow_wait=slow_wait,
        queued_longer=sum(1 for w in all_waits if w > slow_wait),
        wait_p50=_percentile(waits, 0.50),
        wait_p99=_percentile(waits, 0.99),
        wait_max=max(waits, default=0.0),
        scale_ups=sum(1 for c in result.changes if c.after > c.before),
        scale_downs=sum(1 for c in result.changes if c.after < c.before),
        max_replicas=max(replicas_seen),
        replica_seconds=result.replica_seconds,
        peak_rps=peak,
        mean_request_seconds=mean_seconds,
        formula_replicas=needed,
        formula_replicas_in_bounds=fixed,
        formula_replica_seconds=fixed * result.end,
        windowed_formula_replica_seconds=windowed,
    )
