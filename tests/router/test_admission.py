"""Admission control: the rule (pure), and shedding on real sockets when the router's loop lags.

The rule's tests feed lags to `admission.Admission`; the socket test makes the router's own
event loop fall behind (a CPU-bound job on it) and checks that scoring requests are refused fast
with 503 + Retry-After, health and metrics never, and that everything is admitted again once the
loop has caught up. The queue timeout counted from arrival is in test_proxy's queue tests.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.router import admission
from tests.router import harness
from tests.router.harness import deployment, run, running, score_url, session, write_config


def test_no_request_is_refused_while_the_loop_keeps_up() -> None:
    rule = admission.Admission(0.005)
    for _ in range(100):
        rule.observe(0.001)
    assert all(rule.admit() for _ in range(1000))
    assert rule.refused == 0


def test_a_late_tick_or_two_is_a_pause_not_overload() -> None:
    rule = admission.Admission(0.005)
    rule.observe(0.3)  # a reload, a GC pause
    rule.observe(0.2)
    rule.observe(0.0)
    assert rule.shed_fraction == 0.0
    assert all(rule.admit() for _ in range(100))


def test_sustained_lag_refuses_a_growing_even_share_and_recovers_slowly() -> None:
    rule = admission.Admission(0.005)
    for _ in range(admission.LATE_TICKS + 9):  # UP per TICK late, from the LATE_TICKS-th
        rule.observe(admission.TICK)
    assert rule.shed_fraction == pytest.approx(10 * admission.UP)
    decisions = [rule.admit() for _ in range(1000)]
    assert sum(decisions) == pytest.approx(500, abs=2)
    # Evenly spread: never two refusals in a row at one half.
    assert not any(not a and not b for a, b in itertools.pairwise(decisions))
    for _ in range(100):
        rule.observe(0.03)
    assert rule.shed_fraction == admission.MAX_SHED
    rule.observe(0.0, busy=0.5)  # the loop idled: the overload is over
    assert rule.shed_fraction == pytest.approx(admission.MAX_SHED - admission.DOWN)
    for _ in range(200):
        rule.observe(0.0, busy=0.5)
    assert rule.shed_fraction == 0.0
    assert rule.admit()


def test_at_capacity_the_share_creeps_down_and_one_late_tick_takes_it_back() -> None:
    # Busy but on time: refusing just enough. A fast fall here let the loop fall behind again
    # every few ticks, and the admitted requests' wait swung with it.
    rule = admission.Admission(0.01)
    for _ in range(admission.LATE_TICKS + 20):
        rule.observe(0.05)
    held = rule.shed_fraction
    assert held == admission.MAX_SHED
    for _ in range(10):
        rule.observe(0.002, busy=1.0)
    assert rule.shed_fraction == pytest.approx(held - 10 * admission.CREEP * 1.2)
    assert rule.shed_fraction > held - 10 * admission.DOWN
    # While it refuses, a single late tick raises the share: no LATE_TICKS to wait out.
    lowered = rule.shed_fraction
    rule.observe(0.02, busy=1.0)
    assert rule.shed_fraction == pytest.approx(min(admission.MAX_SHED, lowered + 2 * admission.UP))


def test_it_can_refuse_what_twice_its_capacity_needs() -> None:
    # At 2x offered, a refusal costing a third of a served request needs three quarters refused
    # to keep the loop on time on a whole core, more on a shared one: the cap must be above.
    rule = admission.Admission(0.01)
    for _ in range(100):
        rule.observe(0.5)
    assert rule.shed_fraction >= 0.9
    decisions = [rule.admit() for _ in range(1000)]
    assert 0 < sum(decisions) <= 100


def test_lag_while_the_loop_did_not_want_the_cpu_is_not_overload() -> None:
    rule = admission.Admission(0.005)
    for _ in range(50):
        rule.observe(0.05, busy=0.3)  # late, but neither running nor waiting to: blocked
    for _ in range(50):
        rule.observe(0.02, busy=0.9)  # a shared core's time slices, with room left: idles 10 %
    assert rule.shed_fraction == 0.0
    for _ in range(admission.LATE_TICKS):
        rule.observe(0.05, busy=0.99)
    assert rule.shed_fraction == pytest.approx(min(admission.MAX_STEP, admission.UP * 5))


def test_a_loop_far_behind_reacts_fast_but_in_bounded_steps() -> None:
    rule = admission.Admission(0.01)
    for _ in range(admission.LATE_TICKS):
        rule.observe(0.4)  # 400 ms late: one tick stands for forty, up to MAX_STEP
    assert rule.shed_fraction == pytest.approx(admission.MAX_STEP)
    for _ in range(20):
        rule.observe(0.4)
    assert rule.shed_fraction == admission.MAX_SHED


def test_zero_target_turns_it_off() -> None:
    rule = admission.Admission(0.0)
    for _ in range(50):
        rule.observe(1.0)
    assert rule.shed_fraction == 0.0


async def until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Wait for `condition`, failing the test (instead of hanging it) after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"the router was not {what} within {timeout} s"
        await asyncio.sleep(0.01)


def test_an_overloaded_router_sheds_scoring_fast_with_retry_after_and_recovers(
    tmp_path: Path, backends: list[harness.BackendProcess]
) -> None:
    path = write_config(tmp_path / "router.yaml", [deployment("m", [backends[0].url])])

    async def scenario() -> None:
        async with running(path) as (router, base), session() as client:
            async with client.post(score_url(base, "m"), data=b"{}") as response:
                assert response.status == 200
            stop = False

            async def hog() -> None:
                # CPU-bound work on the router's loop, 50 ms out of every 51: far past its
                # capacity, and its own CPU (a sleep would not count). Well above BUSY, so the
                # timer's own slack on a loaded machine cannot bring the share under it.
                while not stop:
                    end = time.perf_counter() + 0.05
                    while time.perf_counter() < end:
                        pass
                    await asyncio.sleep(0.001)

            hogging = asyncio.create_task(hog())
            await until(lambda: router.admission.shed_fraction >= 0.5, "shedding half")
            codes: list[int] = []
            for _ in range(40):
                async with client.post(score_url(base, "m"), data=b"{}") as response:
                    codes.append(response.status)
                    if response.status == 503:
                        assert response.headers["Retry-After"] == "1"
                        body = await response.json()
                        assert body["error"]["code"] == "Overloaded"
            async with client.get(f"{base}/healthz") as response:
                assert response.status == 200  # probes are never shed
            async with client.get(f"{harness.admin(router)}/metrics") as response:
                exposition = await response.text()
            stop = True
            await hogging
            assert 503 in codes and 200 in codes
            assert 'mlext_router_requests_total{code="503",deployment="m"}' in exposition
            # Caught up: the share falls back to nothing, and every request is served again.
            await until(lambda: router.admission.shed_fraction == 0.0, "shedding nothing")
            for _ in range(20):
                async with client.post(score_url(base, "m"), data=b"{}") as response:
                    assert response.status == 200

    run(scenario())
