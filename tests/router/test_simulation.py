"""The autoscaler simulation (`router.simulation`) and its traces (`router.traces`): pure, on a
simulated clock, driving the real coordinator and autoscaler. The command and its PNGs are in
test_simulate_cli.py."""

from __future__ import annotations

import bisect
import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.router import autoscaler, simulation, traces

Outcome = simulation.Outcome


def trace_of(*pairs: tuple[float, float], name: str = "t") -> traces.Trace:
    return traces.Trace(name, tuple(sorted(traces.Request(at, d) for at, d in pairs)))


def uniform(
    rate: float, seconds: float, duration: float, start: float = 0.0
) -> list[tuple[float, float]]:
    """Requests `1 / rate` apart from `start` for `seconds`, each taking `duration`."""
    count = round(rate * seconds)
    return [(start + i / rate, duration) for i in range(count)]


def config(
    low: int = 1, high: int = 20, interval: float = 1.0, **kwargs: float
) -> simulation.Config:
    return simulation.Config(autoscaler.Settings(low, high, 70, interval), **kwargs)  # type: ignore[arg-type]


def spec_at(result: simulation.Result, t: float) -> int:
    """The Deployment's replica count after the coordinator's last write at or before `t`."""
    times = [c.t for c in result.changes]
    i = bisect.bisect_right(times, t)
    return result.changes[i - 1].after if i else result.config.first_replicas


def check_invariants(result: simulation.Result) -> None:
    cfg = result.config
    scale = cfg.scale
    # Conserved: every request offered has exactly one outcome.
    assert all(h.outcome is not None for h in result.handled)
    summary = simulation.summarize(result)
    assert (
        summary.served + summary.queue_full + summary.queue_timeout + summary.backend_timeout
        == summary.offered
        == len(result.trace.requests)
    )
    # Within bounds, always.
    for point in result.points:
        assert scale.lowest <= point.desired <= scale.max_instances, point
        assert scale.lowest <= point.current <= scale.max_instances, point
        assert 0 <= point.ready <= point.current
        # A pod is ready start_delay after the write that created it, never sooner. (A point
        # holds the load read before that tick's own write: with no delay, bound by current.)
        created_by = point.t - cfg.start_delay
        assert point.ready <= (spec_at(result, created_by) if cfg.start_delay else point.current)
    # The queue: no request starts before it arrives or after its wait limit, and queued
    # requests start in arrival order (nobody overtakes the queue).
    starts = []
    for handled in result.handled:
        if handled.started is not None:
            wait = handled.started - handled.request.at
            assert -1e-9 <= wait <= cfg.max_queue_wait + 1e-9
            starts.append(handled.started)
        if handled.outcome is Outcome.QUEUE_TIMEOUT:
            assert handled.wait == pytest.approx(cfg.max_queue_wait)
    assert starts == sorted(starts)
    assert result.replica_seconds >= scale.lowest * result.end - 1e-6


# --- The rules as the simulation plays them ---------------------------------------------------


def test_constant_load_below_capacity_drops_nothing_and_scales_nothing() -> None:
    # One request a second of 0.5 s on 2 replicas: at most one busy, 50 % < 70 %.
    result = simulation.run(trace_of(*uniform(1, 300, 0.5)), config(low=2, high=5))
    summary = simulation.summarize(result)
    check_invariants(result)
    assert (summary.served, summary.dropped, summary.queued_longer) == (300, 0, 0)
    assert summary.wait_max == 0.0 and result.changes == []
    assert summary.replica_seconds == pytest.approx(2 * result.end)


@pytest.mark.parametrize(("interval", "step_at"), [(1.0, 60.0), (10.0, 65.0)])
def test_a_step_scales_up_within_the_polling_interval_and_is_ready_after_the_start_delay(
    interval: float, step_at: float
) -> None:
    delay = 20.0
    quiet = uniform(0.25, step_at, 1.0)  # one request every 4 s: 2 replicas are plenty
    busy = uniform(6, 120, 1.0, start=step_at)  # then six in flight all the time
    result = simulation.run(
        trace_of(*quiet, *busy), config(low=2, high=20, interval=interval, start_delay=delay)
    )
    check_invariants(result)
    first_up = next(c for c in result.changes if c.after > c.before)
    assert step_at <= first_up.t <= step_at + interval
    assert first_up.before == 2
    before_ready = [p for p in result.points if first_up.t <= p.t < first_up.t + delay]
    assert before_ready and all(p.ready == 2 for p in before_ready)
    at_ready = next(p for p in result.points if p.t >= first_up.t + delay)
    assert at_ready.ready >= first_up.after


def test_scale_up_waits_for_the_replicas_it_added_before_adding_more() -> None:
    # Load keeps growing; with a 30 s start delay each scale-up waits for the last one's pods.
    arrivals = [(i * 0.1, 1.0 + i * 0.01) for i in range(1200)]
    result = simulation.run(trace_of(*arrivals), config(high=50, start_delay=30.0))
    check_invariants(result)
    ups = [c.t for c in result.changes if c.after > c.before]
    assert len(ups) >= 2
    assert all(later - earlier >= 30.0 for earlier, later in itertools.pairwise(ups))


def test_scale_down_waits_a_minute_below_target() -> None:
    # A burst of long requests scales up; then nothing: down only after a minute of quiet.
    burst = [(0.0, 50.0)] * 8
    cfg = config(high=10, start_delay=5.0, until=300, max_queue_wait=60.0, request_timeout=100)
    result = simulation.run(trace_of(*burst), cfg)
    check_invariants(result)
    down = [c for c in result.changes if c.after < c.before]
    assert down, result.changes
    last_busy = max(h.ended or 0.0 for h in result.handled)
    assert down[0].t >= last_busy + autoscaler.SCALE_DOWN_AFTER_SECONDS - 1
    assert result.points[-1].current == 1
    assert all(h.outcome is Outcome.SERVED for h in result.handled)


def test_a_deleted_pod_finishes_its_requests_and_counts_until_then() -> None:
    # 4 replicas of 2 slots, one 150 s request on each: 2 busy of 4 is 50 %, so after a minute
    # the autoscaler goes down to ceil(2 / 0.7) = 3 and deletes a pod that is still working.
    cfg = config(high=10, initial_replicas=4, max_concurrent=2, request_timeout=200)
    result = simulation.run(trace_of(*[(0.0, 150.0)] * 4), cfg)
    check_invariants(result)
    assert [(c.t, c.before, c.after) for c in result.changes] == [(60.0, 4, 3)]
    assert all(h.outcome is Outcome.SERVED and h.ended == 150.0 for h in result.handled)
    # 3 pods for the whole 150 s, and the deleted one until its request ended (not until 60 s).
    assert result.end == 150.0 and result.replica_seconds == pytest.approx(4 * 150.0)


def test_the_queue_bound_gives_429_and_its_wait_limit_503() -> None:
    five_at_once = [(0.0, 1.0)] * 5
    cfg = config(low=1, high=1, max_queue_length=2, max_queue_wait=0.5)
    summary = simulation.summarize(simulation.run(trace_of(*five_at_once), cfg))
    assert (summary.served, summary.queue_full, summary.queue_timeout) == (1, 2, 2)


def test_a_slot_freeing_at_the_wait_limit_serves_the_request() -> None:
    # 1 replica, 3 requests of 1 s at 0: the third waits exactly 2 s, the limit, and is served.
    cfg = config(low=1, high=1, max_queue_wait=2.0)
    result = simulation.run(trace_of(*[(0.0, 1.0)] * 3), cfg)
    assert [h.wait for h in result.handled] == [0.0, 1.0, 2.0]
    summary = simulation.summarize(result, slow_wait=1.0)
    assert summary.served == 3 and summary.queued_longer == 1  # only the 2 s wait is > 1 s


def test_a_request_longer_than_the_timeout_gets_504_and_frees_its_slot() -> None:
    cfg = config(low=1, high=1, request_timeout=5.0, max_queue_wait=10.0)
    result = simulation.run(trace_of((0.0, 8.0), (1.0, 1.0)), cfg)
    slow, quick = result.handled
    assert slow.outcome is Outcome.BACKEND_TIMEOUT and slow.ended == 5.0
    assert quick.outcome is Outcome.SERVED and quick.started == 5.0


def test_replica_seconds_against_the_sizing_formula() -> None:
    # Exactly 2 requests a second of 1 s each at 50 %: the formula says ceil(2 * 1 / 0.5) = 4.
    cfg = simulation.Config(autoscaler.Settings(4, 4, 50, 1.0))
    result = simulation.run(trace_of(*uniform(2, 100, 1.0)), cfg)
    summary = simulation.summarize(result)
    assert summary.peak_rps == 2.0 and summary.mean_request_seconds == 1.0
    assert summary.formula_replicas == 4
    assert summary.formula_replica_seconds == pytest.approx(4 * result.end)
    # Fixed at 4 replicas the run uses exactly what the formula provisions.
    assert summary.replica_seconds == pytest.approx(summary.formula_replica_seconds)
    # With max_instances below what the formula needs, its replica-seconds are the bounded ones.
    capped = simulation.Config(autoscaler.Settings(1, 3, 50, 1.0))
    summary = simulation.summarize(simulation.run(trace_of(*uniform(2, 100, 1.0)), capped))
    assert (summary.formula_replicas, summary.formula_replicas_in_bounds) == (4, 3)
    assert summary.formula_replica_seconds == pytest.approx(3 * summary.seconds)


def test_same_inputs_same_result() -> None:
    trace = traces.generate(traces.BUNDLED["spike"])
    first = simulation.run(trace, config())
    second = simulation.run(trace, config())
    assert first.points == second.points and first.changes == second.changes


@pytest.mark.parametrize("name", sorted(traces.BUNDLED))
def test_every_bundled_trace_keeps_the_invariants(name: str) -> None:
    result = simulation.run(traces.resolve(name), config(start_delay=30.0))
    check_invariants(result)
    assert any(c.after > c.before for c in result.changes)  # each one makes it scale


arrivals = st.lists(
    st.tuples(
        st.floats(0, 120, allow_nan=False).map(lambda x: round(x, 2)),
        st.floats(0.01, 10, allow_nan=False).map(lambda x: round(x, 2)),
    ),
    max_size=300,
)


@settings(max_examples=60, deadline=None)
@given(
    pairs=arrivals,
    low=st.integers(0, 3),
    extra=st.integers(0, 8),
    interval=st.sampled_from([0.5, 1.0, 3.0, 10.0]),
    delay=st.sampled_from([0.0, 5.0, 30.0]),
    concurrent=st.integers(1, 3),
    queue=st.integers(0, 20),
    wait=st.sampled_from([0.0, 0.5, 2.0]),
    timeout=st.sampled_from([1.0, 5.0]),
)
def test_invariants_hold_for_any_trace_and_settings(
    pairs: list[tuple[float, float]],
    low: int,
    extra: int,
    interval: float,
    delay: float,
    concurrent: int,
    queue: int,
    wait: float,
    timeout: float,
) -> None:
    cfg = simulation.Config(
        autoscaler.Settings(low, max(low, 1) + extra, 70, interval),
        max_concurrent=concurrent,
        max_queue_length=queue,
        max_queue_wait=wait,
        request_timeout=timeout,
        start_delay=delay,
    )
    check_invariants(simulation.run(trace_of(*pairs), cfg))


# --- Traces --------------------------------------------------------------------------------------


def test_a_trace_file_round_trips_and_rows_need_not_be_sorted() -> None:
    text = "timestamp_s,duration_s\n# a comment\n2.5,0.3\n\n0,1.25\n"
    trace = traces.parse("dir/mine.csv", text)
    assert trace.name == "mine"
    assert trace.requests == (traces.Request(0.0, 1.25), traces.Request(2.5, 0.3))
    assert traces.parse("again.csv", traces.dumps(trace)).requests == trace.requests


def test_every_bad_row_is_reported_with_its_line() -> None:
    text = "timestamp_s,duration_s\n1,1\nsoon,1\n2,0\n-1,2\n3\n4,inf\n"
    with pytest.raises(traces.TraceError) as caught:
        traces.parse("load.csv", text)
    assert [str(p) for p in caught.value.problems] == [
        "load.csv:3: timestamp_s: 'soon' is not a number",
        "load.csv:4: duration_s: must be > 0, got 0",
        "load.csv:5: timestamp_s: must be >= 0, got -1",
        "load.csv:6: expected 2 columns, got 1",
        "load.csv:7: duration_s: 'inf' is not a finite number",
    ]


def test_a_file_without_the_header_is_rejected() -> None:
    with pytest.raises(traces.TraceError) as caught:
        traces.parse("x.csv", "0,1\n1,1\n")
    assert str(caught.value) == "x.csv:1: header: expected timestamp_s,duration_s, got 0,1"
    with pytest.raises(traces.TraceError, match=r"x\.csv:1: header"):
        traces.parse("x.csv", "")


def test_bundled_traces_are_deterministic_and_follow_their_rate_curves() -> None:
    for bundled in traces.BUNDLED.values():
        trace = traces.generate(bundled)
        assert trace == traces.generate(bundled) and trace.end < bundled.seconds
        expected = sum(bundled.rate(t + 0.5) for t in range(int(bundled.seconds)))
        assert len(trace.requests) == pytest.approx(expected, rel=0.1), bundled.name
        mean = sum(r.duration for r in trace.requests) / len(trace.requests)
        assert mean == pytest.approx(traces.MEAN_DURATION_S, rel=0.1)
    step = traces.generate(traces.BUNDLED["step"])
    during = sum(1 for r in step.requests if 100 <= r.at < 300)
    assert during == pytest.approx(8 * 200, rel=0.1)


def test_resolve_takes_a_name_or_a_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text("timestamp_s,duration_s\n0,1\n", encoding="utf-8")
    assert traces.resolve(str(path)).requests == (traces.Request(0.0, 1.0),)
    assert traces.resolve("ramp").name == "ramp"
    with pytest.raises(traces.TraceError, match=r"nothing\.csv: cannot read"):
        traces.resolve(str(tmp_path / "nothing.csv"))
