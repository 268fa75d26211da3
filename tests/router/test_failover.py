"""Failover without replay: a backend dying under load costs only the requests it had already
received (answered 502, never sent again), every other request is served, nothing runs twice
(counted by the backends' execution logs); a dead backend is probed back in."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.router import upstream
from tests.router import harness
from tests.router.harness import deployment, run, running, score_url, session, write_config


def executions(log: Path) -> tuple[Counter[str], Counter[str]]:
    """What a backend's execution log says: how often each request ID started and ended."""
    started: Counter[str] = Counter()
    ended: Counter[str] = Counter()
    if log.exists():
        for line in log.read_text().splitlines():
            event, _, rid = line.partition(" ")
            (started if event == "start" else ended)[rid] += 1
    return started, ended


def test_killing_a_backend_under_load_loses_nothing_that_had_not_reached_it_and_runs_nothing_twice(
    tmp_path: Path, spawn: Callable[..., harness.BackendProcess]
) -> None:
    logs = [tmp_path / f"k{i}.log" for i in range(3)]
    # The victim is a slow replica (every request takes 1.5 s), so it dies holding requests.
    hold = [["--hold-ms", "1500"], [], []]
    started = [spawn(f"k{i}", 0, "--log", str(logs[i]), *hold[i]) for i in range(3)]
    path = write_config(
        tmp_path / "router.yaml",
        [
            deployment(
                "m",
                [b.url for b in started],
                max_concurrent_requests_per_instance=8,
                max_queue_wait_ms=20_000,
                request_timeout_ms=20_000,
            )
        ],
        # The test stops the event loop on purpose, which admission control would take for
        # overload and answer with some 503s: off here (tests/router/test_admission.py has it).
        overload_lag_ms=0,
    )
    total = 400

    async def scenario() -> tuple[dict[str, int], dict[str, str], int]:
        async with running(path) as (router, base), session() as client:
            status: dict[str, int] = {}
            served_by: dict[str, str] = {}

            async def one(i: int) -> None:
                rid = f"r{i}"
                # Each request takes a while, so several are on the victim when it dies.
                async with client.post(
                    score_url(base, "m", "sleep_ms=30"),
                    data=b"x" * (i % 500 + 1),
                    headers={"X-Request-Id": rid},
                ) as response:
                    status[rid] = response.status
                    if response.status == 200:
                        served_by[rid] = (await response.json())["backend"]

            async def killer() -> int:
                pool = router.table.pool("m")
                assert pool is not None
                victim = next(b for b in pool.backends if b.url == started[0].url)
                while victim.in_flight < 5:  # with requests on the victim
                    await asyncio.sleep(0.001)
                # Stop the router (this loop) for a moment, so that every request it has
                # written to the victim is read and logged there; then kill the victim while the
                # loop is still stopped. Requests the router had picked the victim for but not
                # yet written to it are then exactly the ones that "had not reached it".
                time.sleep(0.2)
                on_victim = victim.in_flight
                started[0].kill()
                return on_victim

            async def load() -> None:
                tasks = []
                for i in range(total):  # an open stream of arrivals, not one burst
                    tasks.append(asyncio.create_task(one(i)))
                    await asyncio.sleep(0.0005)
                await asyncio.gather(*tasks)

            results = await asyncio.gather(killer(), load())
            # Requests were given the dead victim after the kill (its freed slots, before it
            # was marked down): refused, never written, sent elsewhere.
            assert router.metrics.retried.get("m", 0) > 0
            pool = router.table.pool("m")
            assert pool is not None
            assert pool.in_flight == 0 and pool.queued == 0
            victim = next(b for b in pool.backends if b.url == started[0].url)
            assert not victim.up
            return status, served_by, results[0]

    status, served_by, on_victim = run(scenario())
    assert len(status) == total and on_victim >= 5
    runs = [executions(log) for log in logs]
    ran: Counter[str] = Counter()
    for begun, _ in runs:
        ran.update(begun)
    # No request was executed twice, by the same backend or by two.
    assert max(ran.values()) == 1
    # Every success was run exactly once, by the backend that answered it.
    for rid, name in served_by.items():
        assert runs[int(name[1:])][0][rid] == 1
    # The victim's unfinished requests are exactly the failures: each got a 502, none was
    # replayed elsewhere; every request that had not reached it was served.
    victim_started, victim_ended = runs[0]
    cut = set(victim_started) - set(victim_ended)
    failed = {rid for rid, code in status.items() if code != 200}
    assert failed == cut and len(cut) > 0
    assert {status[rid] for rid in failed} == {502}
    assert len(served_by) == total - len(cut)


def test_a_request_the_backend_received_is_never_replayed(
    tmp_path: Path, spawn: Callable[..., harness.BackendProcess]
) -> None:
    logs = [tmp_path / f"d{i}.log" for i in range(2)]
    started = [spawn(f"d{i}", 0, "--log", str(logs[i])) for i in range(2)]
    path = write_config(tmp_path / "router.yaml", [deployment("m", [b.url for b in started])])

    async def scenario() -> list[int]:
        async with running(path) as (router, base), session() as client:
            codes = []
            for i in range(4):  # on new connections, then on kept-alive ones
                async with client.post(
                    score_url(base, "m", "drop=1"), data=b"{}", headers={"X-Request-Id": f"d{i}"}
                ) as response:
                    codes.append(response.status)
                    body = await response.json()
                    assert body["error"]["code"] == "BadGateway"
            pool = router.table.pool("m")
            assert pool is not None and pool.in_flight == 0
            return codes

    assert run(scenario()) == [502] * 4
    ran: Counter[str] = Counter()
    for log in logs:
        ran.update(executions(log)[0])
    # Each ran once: the backend closing the connection mid-request is answered, not retried.
    assert ran == Counter({f"d{i}": 1 for i in range(4)})


def test_a_kept_alive_connection_closed_by_the_backend_is_not_reused(tmp_path: Path) -> None:
    """The event loop has not yet seen the backend's FIN when the connection is picked again:
    the peek finds it closed, and the request goes out on a new connection instead."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []

    def accept() -> None:
        for _ in range(2):
            accepted.append(listener.accept()[0])

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        client = upstream.Client(loop)
        thread = threading.Thread(target=accept)
        thread.start()
        first = await client.connect("127.0.0.1", port, 1.0)
        client.park(first)
        while not accepted:
            await asyncio.sleep(0.001)
        accepted[0].close()  # the backend drops the idle connection...
        time.sleep(0.1)  # ...and the loop has not run since, so it has not noticed
        assert not first.closed
        conn = await client.connection("127.0.0.1", port, loop.time() + 1)
        assert conn is not first and not conn.reused and first.closed
        conn.send(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        thread.join(timeout=5)
        assert accepted[1].recv(100).startswith(b"POST /score")
        client.discard(conn)
        client.close()

    try:
        run(scenario())
    finally:
        for sock in (listener, *accepted):
            sock.close()


def test_a_write_refused_at_once_is_reported_as_never_sent() -> None:
    """A reset that came before the request was written shows as StaleConnection (retryable),
    not as Disconnected."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        client = upstream.Client(loop)
        conn = await client.connection("127.0.0.1", port, loop.time() + 1)
        peer, _ = listener.accept()
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()  # a reset
        time.sleep(0.1)  # not yet seen by the loop
        with pytest.raises(upstream.StaleConnection):
            conn.send(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        client.discard(conn)
        client.close()

    try:
        run(scenario())
    finally:
        listener.close()


def test_a_dead_backend_is_probed_back_in(
    tmp_path: Path, spawn: Callable[..., harness.BackendProcess]
) -> None:
    first = spawn("p0")
    other = spawn("p1")
    path = write_config(tmp_path / "router.yaml", [deployment("m", [first.url, other.url])])

    async def scenario() -> None:
        async with running(path, probe_interval=0.05) as (router, base), session() as client:
            pool = router.table.pool("m")
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
