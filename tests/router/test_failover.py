"""Failover: a backend dying under load costs no request; a dead backend is probed back in."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from tests.router import harness
from tests.router.harness import deployment, run, running, score_url, session, write_config


def test_killing_a_backend_under_load_fails_no_request(
    tmp_path: Path, spawn: Callable[..., harness.BackendProcess]
) -> None:
    started = [spawn(f"k{i}") for i in range(3)]
    path = write_config(
        tmp_path / "router.yaml",
        [
            deployment(
                "m",
                [b.url for b in started],
                max_concurrent_requests_per_instance=20,
                max_queue_wait_ms=10_000,
                request_timeout_ms=10_000,
            )
        ],
    )

    async def scenario() -> tuple[Counter[int], Counter[str]]:
        async with running(path) as (router, base), session() as client:
            codes: Counter[int] = Counter()
            served: Counter[str] = Counter()

            async def one(i: int) -> None:
                # Each request takes a while, so many are on the victim when it dies.
                async with client.post(
                    score_url(base, "m", "sleep_ms=40"), data=b"x" * (i % 500)
                ) as response:
                    codes[response.status] += 1
                    if response.status == 200:
                        served[(await response.json())["backend"]] += 1

            async def killer() -> None:
                pool = router.pool("m")
                assert pool is not None
                victim = next(b for b in pool.backends if b.url == started[0].url)
                while victim.in_flight < 10:  # mid-way, with requests on the victim
                    await asyncio.sleep(0.002)
                await asyncio.to_thread(started[0].kill)

            tasks = [asyncio.create_task(one(i)) for i in range(200)]
            await asyncio.gather(killer(), *tasks)
            pool = router.pool("m")
            assert pool is not None
            assert pool.in_flight == 0 and pool.queued == 0
            victim = next(b for b in pool.backends if b.url == started[0].url)
            assert not victim.up
            return codes, served

    codes, served = run(scenario())
    assert codes == Counter({200: 200})
    assert served["k1"] > 0 and served["k2"] > 0


def test_a_dead_backend_is_probed_back_in(
    tmp_path: Path, spawn: Callable[..., harness.BackendProcess]
) -> None:
    first = spawn("p0")
    other = spawn("p1")
    path = write_config(tmp_path / "router.yaml", [deployment("m", [first.url, other.url])])

    async def scenario() -> None:
        async with running(path, probe_interval=0.05) as (router, base), session() as client:
            pool = router.pool("m")
            assert pool is not None
            port = first.port
            first.kill()
            for _ in range(6):  # refused connections take it out; nobody notices
                async with client.post(score_url(base, "m")) as response:
                    assert response.status == 200
                    assert (await response.json())["backend"] == "p1"
            down = next(b for b in pool.backends if b.port == port)
            assert not down.up
            await asyncio.to_thread(spawn, "p0-again", port)
            for _ in range(200):
                if down.up:
                    break
                await asyncio.sleep(0.02)
            assert down.up
            served = set()
            for _ in range(6):
                async with client.post(score_url(base, "m")) as response:
                    served.add((await response.json())["backend"])
            assert served == {"p0-again", "p1"}
            assert pool.in_flight == 0

    run(scenario())
