"""The autoscaling rule (`router.autoscaler`) and the coordinator that drives it
(`router.coordinator`), with an injected clock: minutes of load run in microseconds, nothing
sleeps. The coordinator's writes go to an in-memory scaler here; against the real scale
subresource they are tested in tests/cluster/test_router_scaling_on_cluster.py.
"""

from __future__ import annotations

import http.server
import itertools
import json
import math
import random
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import prometheus_client
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler import kube
from reconciler.router import autoscaler, coordinator, metrics
from tests import helpers


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def settings(
    low: int = 1, high: int = 20, target: int = 70, interval: float = 1.0
) -> autoscaler.Settings:
    return autoscaler.Settings(low, high, target, interval)


def scaler_at(clock: FakeClock, **kwargs: int | float) -> autoscaler.Autoscaler:
    return autoscaler.Autoscaler("blue", settings(**kwargs), clock)  # type: ignore[arg-type]


def load(value: float, ready: int | None = None) -> autoscaler.Sample:
    return autoscaler.Sample(busy=value, queued=0, ready=ready)


# --- The rule ---------------------------------------------------------------------------------


def test_utilization_counts_busy_and_queued_per_current_replica() -> None:
    clock = FakeClock()
    decision = scaler_at(clock).observe(autoscaler.Sample(busy=4, queued=3), current=4)
    assert decision.utilization == pytest.approx(7 / 4)
    # ceil(7 / 0.7) = 10: exactly enough replicas to be back at 70 %.
    assert (decision.desired, decision.direction) == (10, "up")
    assert "above target 70%" in decision.reason


def test_load_exactly_at_target_is_not_above_it() -> None:
    clock = FakeClock()
    assert scaler_at(clock).observe(load(7.0), current=10).desired == 10
    # Just above: one more replica at least, even where ceil(load / target) would round to it.
    assert scaler_at(clock).observe(load(7.01), current=10).desired == 11


def test_scale_up_is_immediate_and_scale_down_waits_a_minute_below_target() -> None:
    clock = FakeClock()
    rule = scaler_at(clock)
    assert rule.observe(load(14), current=10).desired == 20
    # Now at 20 with almost no load: nothing for 59 s of evaluations every second...
    for _ in range(60):
        decision = rule.observe(load(1), current=20)
        assert decision.desired == 20, decision
        clock.advance(1)
    # ...and at the 60th second below target, straight down to what the peak needs.
    decision = rule.observe(load(1), current=20)
    assert (decision.desired, decision.direction) == (2, "down")
    assert "below target 70% for 60s" in decision.reason


def test_scale_down_sizes_for_the_peak_of_the_minute() -> None:
    clock = FakeClock()
    rule = scaler_at(clock)
    for second in range(61):
        decision = rule.observe(load(4.0 if second == 30 else 1.0), current=10)
        clock.advance(1)
    assert decision.desired == math.ceil(4.0 / 0.7)  # 6, not the 2 the last sample needs


def test_the_peak_is_of_the_last_minute_only() -> None:
    clock = FakeClock()
    rule = scaler_at(clock)
    # 100 s just under target at 10 replicas (it could lose one: ceil(6.2 / 0.7) = 9)...
    for _ in range(100):
        decision = rule.observe(load(6.2), current=10)
        clock.advance(1)
    assert decision.desired == 9
    # ...then 61 s of little load at 9: sized for that minute, not for the 6.2 before it.
    for _ in range(61):
        decision = rule.observe(load(1), current=9)
        clock.advance(1)
    assert decision.desired == 2


def test_a_moment_above_target_restarts_the_minute() -> None:
    clock = FakeClock()
    rule = scaler_at(clock, high=10)  # at max: the moment above target cannot scale up
    for _ in range(50):
        rule.observe(load(1), current=10)
        clock.advance(1)
    assert rule.observe(load(9), current=10).desired == 10  # above target, at max_instances
    for _ in range(60):  # the minute counts from the first evaluation below target again
        clock.advance(1)
        assert rule.observe(load(1), current=10).desired == 10
    clock.advance(1)
    assert rule.observe(load(1), current=10).desired == 2


def test_each_step_down_waits_its_own_minute() -> None:
    clock = FakeClock()
    rule = scaler_at(clock)
    for _ in range(60):
        rule.observe(load(3), current=12)
        clock.advance(1)
    assert rule.observe(load(3), current=12).desired == 5
    # The deployment is at 5 now; the load drops further: another full minute first.
    for _ in range(60):
        clock.advance(1)
        assert rule.observe(load(0.5), current=5).desired == 5
    clock.advance(1)
    assert rule.observe(load(0.5), current=5).desired == 1


def test_bounds_hold_whatever_the_load() -> None:
    clock = FakeClock()
    rule = scaler_at(clock, low=3, high=5)
    assert rule.observe(load(1000), current=3).desired == 5
    assert rule.observe(load(1000), current=5).desired == 5
    assert "max_instances 5" in rule.observe(load(1000), current=5).reason
    for _ in range(70):
        decision = rule.observe(load(0), current=5)
        clock.advance(1)
    assert decision.desired == 3  # never below min_instances


def test_a_count_outside_the_bounds_is_brought_back_at_once() -> None:
    clock = FakeClock()
    rule = scaler_at(clock, low=2, high=6)
    hand_scaled = rule.observe(load(0), current=20)
    assert (hand_scaled.desired, hand_scaled.direction) == (6, "down")
    assert "outside [2, 6]" in hand_scaled.reason
    assert rule.observe(load(0), current=0).desired == 2


def test_never_scales_to_zero() -> None:
    clock = FakeClock()
    rule = scaler_at(clock, low=0, high=4)
    for _ in range(200):
        decision = rule.observe(load(0), current=4)
        clock.advance(1)
    assert decision.desired == 1


def test_does_not_stack_scale_ups_on_replicas_that_are_not_ready_yet() -> None:
    clock = FakeClock()
    rule = scaler_at(clock)
    assert rule.observe(load(3.5, ready=2), current=2).desired == 5
    # The three new replicas are pending; the queue grows meanwhile.
    clock.advance(1)
    waiting = rule.observe(load(8, ready=2), current=5)
    assert waiting.desired == 5 and "waiting for 3 replicas" in waiting.reason
    clock.advance(1)
    assert rule.observe(load(8, ready=5), current=5).desired == 12  # ready: size for the load
    # Replicas that stay pending (a full cluster) hold further scale-ups for the settle time.
    clock.advance(1)
    assert rule.observe(load(12, ready=5), current=12).desired == 12
    clock.advance(autoscaler.SCALE_UP_SETTLE_SECONDS)
    assert rule.observe(load(12, ready=5), current=12).desired == 18


def test_sample_adapts_the_balancers_load() -> None:
    @dataclass
    class Load:
        busy: float
        queued: int
        backends: int

    assert autoscaler.Sample.of(Load(1.5, 2, 3)) == autoscaler.Sample(1.5, 2, 3)


def test_settings_reject_nonsense() -> None:
    with pytest.raises(ValueError):
        autoscaler.Settings(5, 3)
    with pytest.raises(ValueError):
        autoscaler.Settings(1, 3, target_utilization_percentage=0)
    parsed = autoscaler.Settings.from_mapping({"min_instances": 3, "max_instances": 15})
    assert parsed == autoscaler.Settings(3, 15, 70, 1.0)


def _noisy_run(seed: int, centers: list[float], band: float) -> list[int]:
    """Replica counts, one per second, while the load wanders randomly within
    centers[second] +- band; the deployment starts at 10 replicas."""
    rng = random.Random(seed)
    clock = FakeClock()
    rule = scaler_at(clock, low=1, high=50)
    current, history = 10, []
    for center in centers:
        value = max(center + rng.uniform(-band, band), 0.0)
        current = rule.observe(load(value), current=current).desired
        history.append(current)
        clock.advance(1)
    return history


def _changes(history: list[int]) -> int:
    return sum(1 for a, b in itertools.pairwise(history) if a != b)


@pytest.mark.parametrize("seed", range(8))
def test_no_flapping_under_noise(seed: int) -> None:
    # Ten minutes of load that oscillates +-20 % around the target of a 10-replica deployment.
    history = _noisy_run(seed, [7.0] * 600, band=1.4)
    assert _changes(history) <= 3, history
    # It settles where the top of the band sits at or below target, and never scales down.
    assert history[-1] == autoscaler.replicas_for(8.4, 70) == 12
    assert history == sorted(history)


@pytest.mark.parametrize("seed", range(4))
def test_noisy_load_that_steps_down_scales_down_in_spaced_steps(seed: int) -> None:
    history = _noisy_run(seed, [14.0] * 300 + [3.0] * 300, band=1.0)
    assert history[299] == autoscaler.replicas_for(15.0, 70)  # sized for the top of the band
    assert history[-1] == autoscaler.replicas_for(4.0, 70)
    steps = [second for second in range(300, 600) if history[second] != history[second - 1]]
    assert 1 <= len(steps) <= 3
    assert all(b - a >= 60 for a, b in itertools.pairwise(steps))


@st.composite
def _events(draw: st.DrawFn) -> list[tuple[float, float, int, int | None, int | None]]:
    step = st.tuples(
        st.floats(0, 30),  # seconds since the previous evaluation
        st.floats(0, 200, allow_nan=False),  # busy
        st.integers(0, 200),  # queued
        st.one_of(st.none(), st.integers(0, 60)),  # ready
        st.one_of(st.none(), st.integers(0, 60)),  # a hand edit of the replica count
    )
    return draw(st.lists(step, min_size=1, max_size=120))


@given(
    low=st.integers(0, 10),
    span=st.integers(0, 30),
    target=st.integers(1, 100),
    start=st.integers(0, 60),
    events=_events(),
)
def test_property_desired_within_bounds_and_no_early_scale_down(
    low: int,
    span: int,
    target: int,
    start: int,
    events: list[tuple[float, float, int, int | None, int | None]],
) -> None:
    high = max(low, 1) + span
    clock = FakeClock()
    rule = autoscaler.Autoscaler("blue", autoscaler.Settings(low, high, target), clock)
    current = start
    calm_since = clock.now  # since the count last changed or the load was last above target
    for delay, busy, queued, ready, hand_edit in events:
        clock.advance(delay)
        if hand_edit is not None and hand_edit != current:
            current, calm_since = hand_edit, clock.now
        sample = autoscaler.Sample(busy, queued, ready)
        decision = rule.observe(sample, current)
        assert max(low, 1) <= decision.desired <= high
        in_bounds = max(low, 1) <= current <= high
        if autoscaler.above_target(sample.load, current, target):
            calm_since = clock.now
        elif decision.direction == "down" and in_bounds:
            assert clock.now - calm_since >= autoscaler.SCALE_DOWN_AFTER_SECONDS
        if decision.desired != current:
            current, calm_since = decision.desired, clock.now


# --- The coordinator ----------------------------------------------------------------------------


class MemoryScaler:
    """Deployments' replica counts, as the scale subresource keeps them."""

    def __init__(self, **replicas: int) -> None:
        self.replicas = dict(replicas)
        self.writes: list[tuple[str, int]] = []
        self.before_next_write: list[Callable[[], None]] = []

    def current(self, namespace: str, name: str) -> int | None:
        return self.replicas.get(name)

    def scale(self, namespace: str, name: str, replicas: int, expected: int) -> bool:
        if self.before_next_write:
            self.before_next_write.pop(0)()
        if expected != self.replicas[name]:
            return False
        self.replicas[name] = replicas
        self.writes.append((name, replicas))
        return True

    def hand_scale(self, name: str, replicas: int) -> None:
        self.replicas[name] = replicas


class Instance:
    """One router instance's load, set by the test."""

    def __init__(self) -> None:
        self.loads: dict[str, autoscaler.Sample] = {}

    def __call__(self) -> Mapping[str, autoscaler.Sample]:
        return dict(self.loads)


def target(name: str = "blue", **kwargs: int | float) -> coordinator.Target:
    return coordinator.Target(name, "models", settings(**kwargs))  # type: ignore[arg-type]


def test_merge_adds_busy_and_queued_and_takes_the_highest_ready() -> None:
    merged = coordinator.merge(
        [
            {"blue": autoscaler.Sample(1.5, 2, 3), "green": autoscaler.Sample(1, 0, None)},
            {"blue": autoscaler.Sample(0.5, 1, 4)},
            {},
        ]
    )
    assert merged == {
        "blue": autoscaler.Sample(2.0, 3, 4),
        "green": autoscaler.Sample(1.0, 0, None),
    }


def test_reports_round_trip_through_json() -> None:
    loads = {"blue": autoscaler.Sample(1.5, 2, 3), "green": autoscaler.Sample(0.0, 0, None)}
    payload = json.loads(json.dumps(coordinator.local_report("router-0", loads)))
    assert payload["instance"] == "router-0"
    assert coordinator.parse_report(payload) == loads
    garbage: object
    for garbage in ([], {"deployments": []}, {"deployments": {"blue": {"busy": "x"}}}):
        with pytest.raises(ValueError):
            coordinator.parse_report(garbage)


def test_targets_are_the_autoscaled_deployments() -> None:
    @dataclass
    class Scale:
        type: str
        min_instances: int = 1
        max_instances: int = 3
        target_utilization_percentage: int = 70
        polling_interval: int = 1

    @dataclass
    class Deployment:
        name: str
        namespace: str | None
        scale_settings: Scale

    found = coordinator.targets_of(
        [
            Deployment("blue", None, Scale("target_utilization")),
            Deployment("green", "other", Scale("target_utilization", 2, 9, 50, 10)),
            Deployment("fixed", None, Scale("fixed")),
        ],
        default_namespace="models",
    )
    assert found == [
        coordinator.Target("blue", "models", autoscaler.Settings(1, 3, 70, 1.0)),
        coordinator.Target("green", "other", autoscaler.Settings(2, 9, 50, 10.0)),
    ]


def test_scale_up_within_one_polling_interval_of_a_load_step() -> None:
    clock = FakeClock()
    scaler, local = MemoryScaler(blue=2), Instance()
    decisions: list[autoscaler.Decision] = []
    coord = coordinator.Coordinator(scaler, local, clock=clock, on_decision=decisions.append)
    coord.configure([target(interval=2.0)])
    local.loads["blue"] = load(1.0)
    step_at = None
    while clock.now < 1030:  # the serve loop wakes often; here every 0.1 s of fake time
        if step_at is None and clock.now >= 1012.05:
            local.loads["blue"] = load(5.0)
            step_at = clock.now
        coord.tick()
        if scaler.writes:
            break
        clock.advance(0.1)
    assert step_at is not None and scaler.writes == [("blue", 8)]
    assert clock.now - step_at <= 2.0
    assert decisions[-1].direction == "up" and decisions[-1].current == 2
    # Evaluated once per polling interval, not on every wake-up.
    assert len(decisions) == pytest.approx((clock.now - 1000) / 2.0, abs=1)


def test_coordinator_sums_every_instances_load() -> None:
    clock = FakeClock()
    scaler, local = MemoryScaler(blue=4), Instance()
    local.loads["blue"] = autoscaler.Sample(1.0, 0, 4)
    peers = {
        "http://10.0.0.2:8080": {"blue": autoscaler.Sample(1.0, 1, 4)},
        "http://10.0.0.3:8080": {"blue": autoscaler.Sample(1.0, 2, 4)},
    }
    coord = coordinator.Coordinator(
        scaler, local, peers=lambda: sorted(peers), fetch=peers.__getitem__, clock=clock
    )
    coord.configure([target()])
    [decision] = coord.tick()
    assert decision.utilization == pytest.approx(6 / 4)
    assert scaler.replicas["blue"] == math.ceil(6 / 0.7)
    coord.stop()


def test_a_peer_that_does_not_answer_is_left_out(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    scaler, local = MemoryScaler(blue=4), Instance()
    local.loads["blue"] = load(1.0)

    def fetch(url: str) -> Mapping[str, autoscaler.Sample]:
        raise OSError("connection refused")

    coord = coordinator.Coordinator(
        scaler, local, peers=lambda: ["http://10.0.0.9:8080"], fetch=fetch, clock=clock
    )
    coord.configure([target()])
    [decision] = coord.tick()
    assert decision.utilization == pytest.approx(1 / 4)
    assert "no load report from http://10.0.0.9:8080" in caplog.text
    coord.stop()


def test_only_the_leader_scales_and_a_new_leader_watches_its_own_minute() -> None:
    clock = FakeClock()
    scaler, local = MemoryScaler(blue=10), Instance()
    local.loads["blue"] = load(1.0)
    leading = {"now": False}
    coord = coordinator.Coordinator(scaler, local, is_leader=lambda: leading["now"], clock=clock)
    coord.configure([target()])
    for _ in range(100):
        assert coord.tick() == []
        clock.advance(1)
    leading["now"] = True
    for _ in range(60):
        coord.tick()
        clock.advance(1)
    assert scaler.writes == []  # 60 evaluations, the first at 0 s: not yet a full minute
    coord.tick()
    assert scaler.writes == [("blue", 2)]


def test_leadership_lost_between_deciding_and_writing_writes_nothing() -> None:
    clock = FakeClock()
    scaler, local = MemoryScaler(blue=1), Instance()
    local.loads["blue"] = load(5.0)
    answers = iter([True, False])
    coord = coordinator.Coordinator(scaler, local, is_leader=lambda: next(answers), clock=clock)
    coord.configure([target()])
    [decision] = coord.tick()
    assert decision.direction == "up" and scaler.writes == []


def test_a_count_changed_by_someone_else_is_decided_again_next_round() -> None:
    clock = FakeClock()
    scaler, local = MemoryScaler(blue=1), Instance()
    local.loads["blue"] = load(5.0)
    coord = coordinator.Coordinator(scaler, local, clock=clock)
    coord.configure([target()])
    scaler.before_next_write.append(lambda: scaler.hand_scale("blue", 7))
    coord.tick()
    assert scaler.writes == [] and scaler.replicas["blue"] == 7
    clock.advance(1)
    [decision] = coord.tick()
    assert decision.current == 7 and scaler.writes == [("blue", 8)]


def test_missing_deployments_and_api_errors_skip_a_round() -> None:
    clock = FakeClock()
    scaler, local = MemoryScaler(blue=1), Instance()

    class Failing(MemoryScaler):
        def current(self, namespace: str, name: str) -> int | None:
            raise kube.KubeError("the API server is restarting", 503)

    coord = coordinator.Coordinator(scaler, local, clock=clock)
    coord.configure([target("blue"), target("absent")])
    assert [d.deployment for d in coord.tick()] == ["blue"]
    failing = coordinator.Coordinator(Failing(blue=1), local, clock=clock)
    failing.configure([target("blue")])
    assert failing.tick() == []


def test_reconfigure_keeps_history_and_drops_removed_deployments() -> None:
    clock = FakeClock()
    scaler, local = MemoryScaler(blue=10, green=1), Instance()
    local.loads.update(blue=load(1.0), green=load(0.0))
    coord = coordinator.Coordinator(scaler, local, clock=clock)
    coord.configure([target("blue"), target("green")])
    for _ in range(59):
        coord.tick()
        clock.advance(1)
    # A reload changes blue's bounds and removes green: blue's minute goes on.
    coord.configure([target("blue", low=3)])
    clock.advance(1)
    assert [(d.deployment, d.desired) for d in coord.tick()] == [("blue", 3)]


@pytest.fixture
def peer() -> Iterator[str]:
    """A peer instance on a real socket, serving its load report at LOAD_PATH."""
    report = coordinator.local_report("router-1", {"blue": autoscaler.Sample(2.0, 3, 4)})

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(report).encode()
            status = 200 if self.path == coordinator.LOAD_PATH else 404
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with helpers.http_server(Handler) as url:
        yield url


def test_fetch_report_over_http(peer: str) -> None:
    assert coordinator.fetch_report(peer) == {"blue": autoscaler.Sample(2.0, 3, 4)}


def test_coordinator_thread_scales_while_leading(peer: str) -> None:
    scaler, local = MemoryScaler(blue=1), Instance()
    local.loads["blue"] = autoscaler.Sample(1.0, 0, 1)
    wrote = threading.Event()
    coord = coordinator.Coordinator(
        scaler, local, peers=lambda: [peer], on_decision=lambda d: wrote.set()
    )
    coord.configure([target()])
    coord.start()
    try:
        assert wrote.wait(5)
    finally:
        coord.stop()
    assert scaler.writes[0] == ("blue", math.ceil(6 / 0.7))


def test_the_leaders_last_decisions_are_gauges_and_nobody_elses() -> None:
    clock, leading = FakeClock(), [True]
    scaler, local = MemoryScaler(blue=2), Instance()
    local.loads["blue"] = autoscaler.Sample(3.5, 0, 2)
    coord = coordinator.Coordinator(scaler, local, clock=clock, is_leader=lambda: leading[0])
    registry = prometheus_client.CollectorRegistry()
    registry.register(coordinator.Gauges(coord))
    coord.configure([target(interval=1.0)])
    coord.tick()

    def value(name: str) -> float | None:
        return registry.get_sample_value(name, {"deployment": "blue"})

    assert value(metrics.UTILIZATION) == 1.75  # the ratio it scaled on: 3.5 over 2 replicas
    assert value(metrics.DESIRED_REPLICAS) == 5
    assert value(metrics.CURRENT_REPLICAS) == 2
    # Another instance took the Lease: this one's figures are no longer the autoscaler's.
    leading[0] = False
    clock.advance(1.0)
    coord.tick()
    assert value(metrics.UTILIZATION) is value(metrics.DESIRED_REPLICAS) is None
    # Leading again, until the deployment is no longer scaled.
    leading[0] = True
    clock.advance(1.0)
    coord.tick()
    assert value(metrics.CURRENT_REPLICAS) == 5
    coord.configure([])
    assert value(metrics.CURRENT_REPLICAS) is None
