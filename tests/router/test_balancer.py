"""The balancing core: fewest in flight, the bounded FIFO queue, membership, exact counts."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.router import balancer

A, B, C = "http://a:1", "http://b:1", "http://c:1"


def pool(urls: list[str], max_concurrent: int = 1, max_queue: int = 10) -> balancer.Pool:
    made = balancer.Pool(max_concurrent, max_queue)
    made.set_backends(urls)
    return made


def take(p: balancer.Pool) -> balancer.Backend:
    backend = p.try_acquire()
    assert backend is not None
    return backend


def test_fewest_in_flight_wins() -> None:
    p = pool([A, B, C], max_concurrent=3)
    first = take(p)
    second = take(p)
    third = take(p)
    assert {first.url, second.url, third.url} == {A, B, C}  # one each before any gets two
    p.release(second)
    assert take(p) is second  # the only backend with fewer in flight


def test_equal_backends_take_turns() -> None:
    p = pool([A, B], max_concurrent=4)
    seen = []
    for _ in range(4):
        backend = take(p)
        seen.append(backend.url)
        p.release(backend)
    assert seen.count(A) == 2 and seen.count(B) == 2


def test_busy_backends_are_not_chosen() -> None:
    p = pool([A, B])
    take(p)
    take(p)
    assert p.try_acquire() is None
    assert p.load() == balancer.Load(busy=2.0, queued=0, backends=2)


def test_queue_is_fifo_and_gets_released_slots() -> None:
    async def scenario() -> list[str]:
        p = pool([A])
        held = take(p)
        order: list[str] = []

        async def wait(tag: str) -> None:
            backend = await p.acquire(5)
            order.append(tag)
            await asyncio.sleep(0)
            p.release(backend)

        tasks = [asyncio.create_task(wait(t)) for t in "xyz"]
        await asyncio.sleep(0)
        assert p.load().queued == 3
        assert p.try_acquire() is None  # a newcomer does not overtake the queue
        p.release(held)
        await asyncio.gather(*tasks)
        assert p.load() == balancer.Load(busy=0.0, queued=0, backends=1)
        return order

    assert asyncio.run(scenario()) == ["x", "y", "z"]


def test_queue_full_and_queue_timeout() -> None:
    async def scenario() -> None:
        p = pool([A], max_queue=1)
        take(p)
        waiting = asyncio.create_task(p.acquire(0.05))
        await asyncio.sleep(0)
        with pytest.raises(balancer.QueueFull):
            await p.acquire(1)
        with pytest.raises(balancer.QueueTimeout):
            await waiting
        assert p.queued == 0

    asyncio.run(scenario())


def test_cancelled_waiter_leaves_the_queue_and_loses_no_slot() -> None:
    async def scenario() -> None:
        p = pool([A])
        held = take(p)
        waiter = asyncio.create_task(p.acquire(5))
        await asyncio.sleep(0)
        p.release(held)  # handed to the waiter ...
        waiter.cancel()  # ... which is cancelled before it runs again
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert p.in_flight == 0
        assert take(p).url == A

    asyncio.run(scenario())


def test_down_backends_are_skipped_and_come_back_to_waiters() -> None:
    async def scenario() -> None:
        p = pool([A, B])
        a = next(b for b in p.backends if b.url == A)
        assert p.mark_down(a) is True
        assert p.mark_down(a) is False  # the change is reported once
        busy_b = take(p)
        assert busy_b.url == B
        waiter = asyncio.create_task(p.acquire(5))
        await asyncio.sleep(0)
        assert p.mark_up(a) is True
        assert (await waiter) is a
        assert p.load().backends == 2

    asyncio.run(scenario())


def test_release_on_a_down_backend_keeps_counts_exact() -> None:
    p = pool([A])
    a = take(p)
    p.mark_down(a)
    p.release(a)
    assert a.in_flight == 0
    assert p.try_acquire() is None
    p.mark_up(a)
    assert take(p) is a


def test_set_backends_keeps_objects_and_counts() -> None:
    p = pool([A, B], max_concurrent=2)
    a = next(b for b in p.backends if b.url == A)
    take(p)
    take(p)  # one on each
    p.set_backends([A, C])
    assert next(b for b in p.backends if b.url == A) is a
    assert a.in_flight == 1
    gone = [b for b in (a,) if not b.in_pool]
    assert gone == []
    assert {b.url for b in p.backends} == {A, C}
    # The removed backend's request still releases cleanly, and it is never chosen again.
    assert take(p).url == C
    assert p.load().busy == 1.0  # A:1 + C:1 over max 2


def test_removed_backend_release() -> None:
    p = pool([A])
    a = take(p)
    p.set_backends([B])
    assert not a.in_pool
    p.release(a)
    assert a.in_flight == 0
    assert take(p).url == B


def test_busy_is_slots_over_max_concurrent() -> None:
    p = pool([A, B], max_concurrent=4)
    for _ in range(3):
        take(p)
    assert p.load() == balancer.Load(busy=0.75, queued=0, backends=2)


def test_configure_changes_limits_without_losing_counts() -> None:
    async def scenario() -> None:
        p = pool([A], max_concurrent=1)
        a = take(p)
        waiter = asyncio.create_task(p.acquire(5))
        await asyncio.sleep(0)
        p.configure(max_concurrent=2, max_queue=10)
        assert (await waiter) is a  # the new slot served the queue at once
        assert a.in_flight == 2
        p.configure(max_concurrent=1, max_queue=10)
        p.release(a)
        assert p.try_acquire() is None  # still at the lowered limit
        p.release(a)
        assert take(p) is a

    asyncio.run(scenario())


def test_release_without_acquire_is_a_bug() -> None:
    p = pool([A])
    with pytest.raises(RuntimeError):
        p.release(p.backends[0])


def test_parse_backend() -> None:
    b = balancer.parse_backend("http://[::1]:8080/v1/")
    assert (b.host, b.port, b.prefix) == ("::1", 8080, "/v1")
    b = balancer.parse_backend("http://svc")
    assert (b.host, b.port, b.prefix) == ("svc", 80, "")


@given(st.lists(st.sampled_from(["take", "release", "down", "up", "resize"]), max_size=80))
def test_counts_stay_exact_under_any_sequence(ops: list[str]) -> None:
    p = pool([A, B, C], max_concurrent=2)
    held: list[balancer.Backend] = []
    for i, op in enumerate(ops):
        backends = p.backends
        if op == "take":
            free = [b for b in backends if b.up and b.in_flight < p.max_concurrent]
            fewest = min((b.in_flight for b in free), default=None)
            backend = p.try_acquire()
            # Least loaded first, and None only when every backend is busy or down.
            assert (backend is None) == (fewest is None)
            if backend is not None:
                assert backend.up and backend.in_flight == fewest + 1  # type: ignore[operator]
                held.append(backend)
        elif op == "release" and held:
            p.release(held.pop(0))
        elif op == "down":
            p.mark_down(backends[i % 3])
        elif op == "up":
            p.mark_up(backends[i % 3])
        elif op == "resize":
            p.configure(max_concurrent=1 + i % 3, max_queue=10)
        for backend in p.backends:
            assert backend.in_flight == sum(1 for h in held if h is backend)
    for backend in held:
        p.release(backend)
    assert p.in_flight == 0
    # Nothing leaked from the free lists either: every slot of every backend can be taken.
    for backend in p.backends:
        p.mark_up(backend)
    taken = [p.try_acquire() for _ in range(3 * p.max_concurrent)]
    assert None not in taken
    assert p.try_acquire() is None
