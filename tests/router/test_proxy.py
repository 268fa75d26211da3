"""The router end to end on real sockets: routing, balancing, auth, limits, timeouts, metrics.

Backends are real processes (`backend.py`); the router runs in the test's event loop so the
tests can also check its pools. Every test ends by checking that no request is left counted as
in flight.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import aiohttp

from reconciler.router import proxy, tokens
from tests.router import harness
from tests.router.harness import deployment, run, running, score_url, session, write_config

KEY = "p" * 43
SECOND = "s" * 43
SIGNING = "t" * 43


def assert_idle(router: proxy.Router) -> None:
    for name, pool in router.table.pools().items():
        assert pool.in_flight == 0, name
        assert pool.queued == 0, name
        assert all(b.in_flight == 0 for b in pool.backends), name


async def _json(response: aiohttp.ClientResponse) -> Any:
    return json.loads(await response.read())


def test_requests_are_spread_over_backends_and_streamed_back(
    tmp_path: Path, backends: list[harness.BackendProcess]
) -> None:
    path = write_config(
        tmp_path / "router.yaml",
        [
            deployment(
                "m",
                [backends[0].url, backends[1].url],
                auth={"mode": "key", "keys": [KEY, SECOND]},
            )
        ],
    )

    async def scenario() -> None:
        async with running(path) as (router, base), session() as client:
            served: list[str] = []
            for i in range(20):
                async with client.post(
                    score_url(base, "m", f"n={i}"),
                    data=b'{"x": 1}',
                    headers={
                        "Authorization": f"Bearer {KEY if i % 2 else SECOND}",
                        "X-Test": "passed",
                        "Connection": "keep-alive, X-Drop",
                        "X-Drop": "hop",
                    },
                ) as response:
                    assert response.status == 200
                    body = await _json(response)
                    served.append(body["backend"])
                    assert response.headers["X-Backend"] == body["backend"]
                    assert body["bytes"] == 8
                    assert body["path"] == f"/score?n={i}"
                    assert body["x_test"] == "passed"
                    assert body["authorization"] is None  # the key stays at the router
                    assert body["host"].startswith("127.0.0.1:")
            assert set(served) == {"b0", "b1"}
            assert served.count("b0") == served.count("b1")
            # A large response that arrives in pieces is streamed, byte for byte.
            async with client.post(
                score_url(base, "m", "size=3000000&stream=1"),
                headers={"Authorization": f"Bearer {KEY}"},
            ) as response:
                assert response.status == 200
                data = await response.read()
            assert data == bytes(i % 251 for i in range(3000000))
            assert_idle(router)

    run(scenario())


def test_fewest_in_flight_backend_is_chosen(
    tmp_path: Path, backends: list[harness.BackendProcess]
) -> None:
    path = write_config(
        tmp_path / "router.yaml",
        [
            deployment(
                "m", [backends[0].url, backends[1].url], max_concurrent_requests_per_instance=4
            )
        ],
    )

    async def scenario() -> None:
        async with running(path) as (router, base), session() as client:
            pool = router.table.pool("m")
            assert pool is not None
            slow = asyncio.create_task(client.post(score_url(base, "m", "sleep_ms=600")))
            while pool.in_flight == 0:
                await asyncio.sleep(0.005)
            busy = next(b for b in pool.backends if b.in_flight == 1)
            # While one backend holds a slow request, every quick one goes to the other.
            for _ in range(6):
                async with client.post(score_url(base, "m")) as response:
                    assert (await _json(response))["backend"] != _name(busy.url, backends)
            response = await slow
            assert response.status == 200
            response.release()
            assert_idle(router)

    run(scenario())


def _name(url: str, backends: list[harness.BackendProcess]) -> str:
    return next(b.name for b in backends if b.url == url)


def test_auth_modes(tmp_path: Path, backends: list[harness.BackendProcess]) -> None:
    path = write_config(
        tmp_path / "router.yaml",
        [
            deployment("keyed", [backends[0].url], auth={"mode": "key", "keys": [KEY]}),
            deployment("signed", [backends[0].url], auth={"mode": "token", "signing_key": SIGNING}),
            deployment("open", [backends[0].url]),
        ],
    )
    good = tokens.issue("signed", SIGNING, 600).access_token
    expired = tokens.issue("signed", SIGNING, 60, now=1_000_000_000).access_token
    other = tokens.issue("keyed", SIGNING, 600).access_token

    async def status(client: aiohttp.ClientSession, url: str, auth: str | None) -> int:
        headers = {"Authorization": auth} if auth is not None else {}
        async with client.post(url, data=b"{}", headers=headers) as response:
            if response.status == 401:
                assert response.headers["WWW-Authenticate"] == "Bearer"
                assert (await _json(response))["error"]["code"] == "Unauthorized"
            return response.status

    async def scenario() -> None:
        async with running(path) as (router, base), session() as client:
            keyed, signed = score_url(base, "keyed"), score_url(base, "signed")
            assert await status(client, keyed, f"Bearer {KEY}") == 200
            assert await status(client, keyed, None) == 401
            assert await status(client, keyed, "Bearer wrong") == 401
            assert await status(client, keyed, KEY) == 401
            assert await status(client, signed, f"Bearer {good}") == 200
            assert await status(client, signed, f"Bearer {expired}") == 401
            assert await status(client, signed, f"Bearer {other}") == 401
            assert await status(client, signed, f"Bearer {KEY}") == 401
            assert await status(client, score_url(base, "open"), None) == 200
            assert_idle(router)

    run(scenario())


def test_unknown_deployments_routes_and_methods(
    tmp_path: Path, backends: list[harness.BackendProcess]
) -> None:
    path = write_config(tmp_path / "router.yaml", [deployment("m", [backends[0].url])])

    async def scenario() -> None:
        async with running(path) as (_, base), session() as client:
            async with client.post(score_url(base, "nope")) as response:
                assert response.status == 404
                assert response.content_type == "application/json"
                assert "nope" in (await _json(response))["error"]["message"]
            async with client.get(f"{base}/elsewhere") as response:
                assert response.status == 404
            async with client.get(score_url(base, "m")) as response:
                assert response.status == 405
            async with client.get(f"{base}/api/v1/service/m/") as response:
                assert response.status == 200
            for probe in ("/healthz", "/readyz"):
                async with client.get(f"{base}{probe}") as response:
                    assert response.status == 200

    run(scenario())


async def _raw_exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    writer.close()
    return head


def test_bodies_over_the_limit_get_413_without_being_read(
    tmp_path: Path, backends: list[harness.BackendProcess]
) -> None:
    path = write_config(
        tmp_path / "router.yaml",
        [deployment("m", [backends[0].url])],
        max_body_bytes=100_000,
        retry_buffer_bytes=10_000,
    )

    async def chunks(total: int) -> Any:
        for _ in range(total // 5000):
            yield b"x" * 5000

    async def scenario() -> None:
        async with running(path) as (router, base), session() as client:
            # Declared too large: refused from the headers alone; no body byte is ever sent.
            head = await _raw_exchange(
                router.port,
                b"POST /api/v1/service/m/score HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: 200000000\r\n\r\n",
            )
            assert head.startswith(b"HTTP/1.1 413")
            # Chunked, over the limit: counted while streaming to the backend, then cut off.
            async with client.post(score_url(base, "m"), data=chunks(150_000)) as response:
                assert response.status == 413
            # Chunked and under the limit but over the retry buffer: streamed through whole.
            payload = b"".join([b"x" * 5000] * 18)
            async with client.post(score_url(base, "m"), data=chunks(90_000)) as response:
                assert response.status == 200
                body = await _json(response)
                assert body["bytes"] == 90_000
                assert body["sha256"] == hashlib.sha256(payload).hexdigest()
            # Declared length over the retry buffer: streamed with its Content-Length.
            async with client.post(score_url(base, "m"), data=payload) as response:
                assert (await _json(response))["bytes"] == 90_000
            assert_idle(router)

    run(scenario())


def test_the_default_limit_is_100_mb(
    tmp_path: Path, backends: list[harness.BackendProcess]
) -> None:
    path = write_config(tmp_path / "router.yaml", [deployment("m", [backends[0].url])])

    async def scenario() -> None:
        async with running(path) as (router, _):
            request = (
                b"POST /api/v1/service/m/score HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
            )
            over = await _raw_exchange(router.port, request % (100 * 1024 * 1024 + 1))
            assert over.startswith(b"HTTP/1.1 413")

    run(scenario())


def test_slow_backends_get_504_and_busy_deployments_503_or_429(
    tmp_path: Path, backends: list[harness.BackendProcess]
) -> None:
    path = write_config(
        tmp_path / "router.yaml",
        [
            deployment("slow", [backends[2].url], request_timeout_ms=200),
            deployment("queued", [backends[2].url], max_queue_wait_ms=100),
            deployment("unqueued", [backends[2].url], max_queue_length=0),
        ],
    )

    async def scenario() -> None:
        async with running(path) as (router, base), session() as client:
            async with client.post(score_url(base, "slow", "sleep_ms=2000")) as response:
                assert response.status == 504
            for name, code in (("queued", 503), ("unqueued", 429)):
                pool = router.table.pool(name)
                assert pool is not None
                holder = asyncio.create_task(client.post(score_url(base, name, "sleep_ms=500")))
                while pool.in_flight == 0:
                    await asyncio.sleep(0.005)
                began = time.perf_counter()
                async with client.post(score_url(base, name)) as response:
                    assert response.status == code
                    # Load answers say when to come back.
                    assert response.headers["Retry-After"] == "1"
                waited = time.perf_counter() - began
                if code == 503:  # max_queue_wait_ms, counted from the request's arrival
                    assert 0.1 <= waited < 0.45
                else:  # no queue: refused at once
                    assert waited < 0.1
                (await holder).release()
            assert_idle(router)

    run(scenario())


def test_health_of_a_deployment_follows_its_backends(
    tmp_path: Path, backends: list[harness.BackendProcess]
) -> None:
    dead = "http://127.0.0.1:9"  # discard port: nothing listens
    path = write_config(
        tmp_path / "router.yaml",
        [deployment("live", [dead, backends[0].url]), deployment("dead", [dead])],
    )

    async def scenario() -> None:
        async with running(path) as (router, base), session() as client:
            for _ in range(4):  # the dead backend is found out and skipped
                async with client.post(score_url(base, "live")) as response:
                    assert response.status == 200
            async with client.post(score_url(base, "dead")) as response:
                assert response.status in (502, 503)
            async with client.get(f"{base}/api/v1/service/live/") as response:
                assert response.status == 200
            async with client.get(f"{base}/api/v1/service/dead/") as response:
                assert response.status == 503
            assert_idle(router)

    run(scenario())


def test_metrics_count_requests_by_deployment_and_code(
    tmp_path: Path, backends: list[harness.BackendProcess]
) -> None:
    path = write_config(
        tmp_path / "router.yaml",
        [deployment("m", [backends[0].url], auth={"mode": "key", "keys": [KEY]})],
    )

    async def scenario() -> str:
        async with running(path) as (router, base), session() as client:
            for auth in (KEY, KEY, "bad"):
                async with client.post(
                    score_url(base, "m"), headers={"Authorization": f"Bearer {auth}"}
                ) as response:
                    await response.read()
            async with client.get(f"{harness.admin(router)}/metrics") as response:
                assert response.status == 200
                return await response.text()

    text = run(scenario())
    assert 'mlext_router_requests_total{code="200",deployment="m"} 2.0' in text
    assert 'mlext_router_requests_total{code="401",deployment="m"} 1.0' in text
    assert 'mlext_router_request_duration_seconds_count{deployment="m"} 3.0' in text
    assert 'mlext_router_overhead_seconds_bucket{deployment="m",le="0.001"}' in text
    assert 'mlext_router_queued_requests{deployment="m"} 0.0' in text
    assert 'mlext_router_in_flight_requests{deployment="m"} 0.0' in text
    assert f'mlext_router_backend_up{{backend="{backends[0].url}",deployment="m"}} 1.0' in text
    # Every name under the one prefix, as the controller's are under theirs.
    names = {line.split("{")[0].split()[0] for line in text.splitlines() if line[:1] != "#"}
    assert names and all(name.startswith("mlext_router_") for name in names), names


def test_clients_that_leave_early_release_their_backend(
    tmp_path: Path, backends: list[harness.BackendProcess]
) -> None:
    path = write_config(
        tmp_path / "router.yaml", [deployment("m", [backends[1].url], max_queue_wait_ms=2000)]
    )

    async def leave(port: int, query: str) -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"POST /api/v1/service/m/score?{query} HTTP/1.1\r\nHost: x\r\n"
            "Content-Length: 2\r\n\r\n{}".encode()
        )
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()

    async def scenario() -> None:
        async with running(path) as (router, base), session() as client:
            pool = router.table.pool("m")
            assert pool is not None
            await leave(router.port, "sleep_ms=300")  # leaves while its backend works
            await leave(router.port, "sleep_ms=10")  # leaves while queued behind it
            assert pool.in_flight == 1 and pool.queued == 1
            await asyncio.sleep(0.5)
            assert_idle(router)
            async with client.post(score_url(base, "m")) as response:
                assert response.status == 200
            stats = await (await client.get(f"{backends[1].url}/stats")).json()
            assert stats["in_flight"] == 0

    run(scenario())


def test_a_timeout_mid_response_cuts_the_connection(
    tmp_path: Path, backends: list[harness.BackendProcess]
) -> None:
    path = write_config(
        tmp_path / "router.yaml", [deployment("m", [backends[0].url], request_timeout_ms=300)]
    )

    async def scenario() -> str:
        async with running(path) as (router, base), session() as client:
            async with client.post(
                score_url(base, "m", "size=2000000&stream=1&chunk_sleep_ms=50")
            ) as response:
                assert response.status == 200  # the head was relayed before the deadline
                try:
                    await response.read()
                except aiohttp.ClientPayloadError:
                    pass
                else:
                    raise AssertionError("a cut response must not look complete")
            assert_idle(router)
            async with client.get(f"{harness.admin(router)}/metrics") as response:
                return await response.text()

    assert 'mlext_router_requests_total{code="504",deployment="m"} 1.0' in run(scenario())
