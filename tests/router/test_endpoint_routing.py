"""Endpoints end to end on real sockets: the traffic split, the deployment header, mirror
copies, endpoint auth, Host routing, health, and a split changed under load.

Backends are `backend.py` processes; the router runs in the test's event loop (see harness).
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
from pathlib import Path
from typing import Any

import aiohttp

from reconciler.router import config as routerconfig
from reconciler.router import proxy, served, tokens
from tests.router import harness
from tests.router.harness import deployment, run, running, score_url, session, write_config

ENDPOINT_KEY = "e" * 43
DEPLOYMENT_KEY = "d" * 43
SIGNING = "s" * 43
ANSWERED_BY = served.DEPLOYMENT_HEADER


def endpoint(
    name: str,
    traffic: dict[str, int],
    mirror: dict[str, int] | None = None,
    auth: dict[str, Any] | None = None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "traffic": traffic, "auth": auth or {"mode": "none"}}
    if mirror:
        entry["mirror_traffic"] = mirror
    return entry


def endpoint_url(base: str, name: str, query: str = "") -> str:
    return f"{base}/api/v1/endpoint/{name}/score" + (f"?{query}" if query else "")


async def fire(
    client: aiohttp.ClientSession,
    url: str,
    count: int,
    concurrency: int = 16,
    headers: dict[str, str] | None = None,
) -> tuple[collections.Counter[str], list[float]]:
    """Send `count` requests, `concurrency` at a time; every one must be answered 200. The
    deployments that answered (by the router's header, checked against the backend's own
    answer) and each request's latency."""
    answered: collections.Counter[str] = collections.Counter()
    latencies: list[float] = []
    todo = iter(range(count))

    async def worker() -> None:
        for _ in todo:
            began = time.perf_counter()
            async with client.post(url, data=b'{"x": 1}', headers=headers) as response:
                body = await response.read()
                latencies.append(time.perf_counter() - began)
                assert response.status == 200, body
                name = response.headers[ANSWERED_BY]
                assert json.loads(body)["backend"] == name
                answered[name] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return answered, latencies


def write(path: Path, deployments: list[dict[str, Any]], **top: Any) -> Path:
    """`write_config` with admission control off: the test's client shares the router's event
    loop, so the loop's lag under these loads is the test's own, not the router's."""
    return write_config(path, deployments, **{"overload_lag_ms": 0, **top})


def blue_green(
    tmp_path: Path,
    blue: harness.BackendProcess,
    green: harness.BackendProcess,
    *endpoints: dict[str, Any],
    **top: Any,
) -> Path:
    """Deployments named as their backends' names say (blue, green), plus `endpoints`."""
    return write(
        tmp_path / "router.yaml",
        [
            deployment(blue.name, [blue.url], max_concurrent_requests_per_instance=64),
            deployment(green.name, [green.url], max_concurrent_requests_per_instance=64),
        ],
        endpoints=list(endpoints),
        **top,
    )


def assert_idle(router: proxy.Router) -> None:
    for name, pool in router.table.pools().items():
        assert pool.in_flight == 0 and pool.queued == 0, name


async def until(condition: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def test_a_90_10_split_over_1000_requests_is_exactly_900_and_100(
    tmp_path: Path, spawn: Any
) -> None:
    blue, green = spawn("blue"), spawn("green")
    path = blue_green(tmp_path, blue, green, endpoint("mnist", {"blue": 90, "green": 10}))

    async def scenario() -> None:
        async with running(path) as (router, base), session() as client:
            answered, _ = await fire(client, endpoint_url(base, "mnist"), 1000)
            assert answered == {"blue": 900, "green": 100}
            metrics = (await (await client.get(f"{harness.admin(router)}/metrics")).read()).decode()
            assert (
                'mlext_router_endpoint_requests_total{deployment="blue",endpoint="mnist"} 900.0'
                in (metrics)
            )
            # The endpoint's requests count as their deployments' too.
            assert 'mlext_router_requests_total{code="200",deployment="green"} 100.0' in metrics
            assert_idle(router)

    run(scenario())


def test_the_deployment_header_targets_one_of_the_endpoints_deployments_only(
    tmp_path: Path, spawn: Any
) -> None:
    blue, green, other = spawn("blue"), spawn("green"), spawn("other")
    path = write(
        tmp_path / "router.yaml",
        [deployment(b.name, [b.url]) for b in (blue, green, other)],
        endpoints=[
            endpoint("mnist", {"blue": 100, "green": 0}, mirror={"other": 10}),
            endpoint("dark", {"blue": 0, "green": 0}),
        ],
    )

    async def scenario() -> None:
        async with running(path) as (router, base), session() as client:
            # A deployment with no traffic, or only mirrored traffic, can be called by name.
            for name in ("green", "other", "blue"):
                answered, _ = await fire(
                    client, endpoint_url(base, "mnist"), 20, 4, {ANSWERED_BY: name}
                )
                assert answered == {name: 20}
            async with client.post(
                endpoint_url(base, "dark"), headers={ANSWERED_BY: "nosuch"}
            ) as response:
                assert response.status == 404
                assert "no deployment named 'nosuch'" in (await response.text())
            # All weights 0: only the header routes; the answer says how.
            async with client.post(endpoint_url(base, "dark")) as response:
                assert response.status == 503
                assert ANSWERED_BY in (await response.json())["error"]["message"]
            async with client.post(
                endpoint_url(base, "dark"), headers={ANSWERED_BY: "green"}
            ) as response:
                assert response.status == 200
                assert response.headers[ANSWERED_BY] == "green"
            # A deployment of the router that is not the endpoint's is refused by name.
            async with client.post(
                endpoint_url(base, "dark"), headers={ANSWERED_BY: "other"}
            ) as response:
                assert response.status == 404
            async with client.post(endpoint_url(base, "nosuch")) as response:
                assert response.status == 404
            async with client.get(endpoint_url(base, "mnist")) as response:
                assert response.status == 405
            # Health: a deployment with traffic has a live backend; "dark" has none with traffic.
            async with client.get(f"{base}/api/v1/endpoint/mnist") as response:
                assert response.status == 200
                assert await response.json() == {"status": "Healthy"}
            async with client.get(f"{base}/api/v1/endpoint/dark") as response:
                assert response.status == 503
            blue.kill()  # the next request finds it gone and takes it out
            async with client.post(score_url(base, "blue")) as response:
                assert response.status in (502, 503)  # refused, or no backend left
            async with client.get(f"{base}/api/v1/endpoint/mnist") as response:
                assert response.status == 503
            assert_idle(router)

    run(scenario())


def test_mirror_copies_arrive_and_a_slow_mirror_never_delays_the_caller(
    tmp_path: Path, spawn: Any
) -> None:
    blue = spawn("blue")
    green = spawn("green", 0, "--hold-ms", "1000")  # every copy takes a second to answer
    path = blue_green(tmp_path, blue, green, endpoint("mnist", {"blue": 100}, mirror={"green": 10}))

    async def scenario() -> None:
        async with running(path) as (router, base), session() as client:
            answered, latencies = await fire(client, endpoint_url(base, "mnist"), 300, 8)
            # Live answers come from blue only, never delayed by green's second.
            assert answered == {"blue": 300}
            latencies.sort()
            p99 = latencies[int(len(latencies) * 0.99) - 1]
            assert p99 < 0.5, p99
            # Exactly 10 % of the requests were copied to green, which served every copy (the
            # last ones are still on their way: the callers did not wait for them).
            copies = router.metrics.copies
            await until(lambda: sum(copies.values()) == 30, "the copies' answers", 20)
            assert copies == {("mnist", "green", "answered"): 30}
            async with client.get(f"{green.url}/stats") as response:
                assert (await response.json())["count"] == 30
            metrics = (await (await client.get(f"{harness.admin(router)}/metrics")).read()).decode()
            family = (
                'mlext_router_mirror_requests_total{deployment="green",endpoint="mnist",outcome='
            )
            assert family + '"answered"} 30.0' in metrics
            # The copies' answers are not green's live requests.
            assert 'mlext_router_requests_total{code="200",deployment="green"}' not in metrics
            assert_idle(router)

    run(scenario())


def test_a_mirror_copy_never_queues_and_a_streamed_body_is_not_copied(
    tmp_path: Path, spawn: Any
) -> None:
    blue = spawn("blue")
    green = spawn("green", 0, "--hold-ms", "3000")
    path = write(
        tmp_path / "router.yaml",
        [deployment("blue", [blue.url]), deployment("green", [green.url])],
        endpoints=[endpoint("mnist", {"blue": 100}, mirror={"green": 50})],
        retry_buffer_bytes=1024,  # bodies over 1 KiB stream through, unbuffered
    )

    async def scenario() -> None:
        async with running(path) as (router, base), session() as client:
            url = endpoint_url(base, "mnist")
            # 50 %: requests 1, 3, 5 ... get a copy. 1 streams (no copy); 3 is copied and holds
            # green's only slot for 3 s; 5 finds green busy (its copy is dropped, not queued).
            for body in (b"x" * 100_000, b"{}", b"{}", b"{}", b"{}"):
                began = time.perf_counter()
                async with client.post(url, data=body) as response:
                    assert response.status == 200
                    assert (await response.json())["bytes"] == len(body)
                assert time.perf_counter() - began < 1.0
            await until(lambda: router.table.pools()["green"].in_flight == 1, "the one copy")
            assert router.table.pools()["green"].queued == 0
            async with client.get(f"{green.url}/stats") as response:
                stats = await response.json()
            assert stats["count"] == 1
            assert router.metrics.copies == {("mnist", "green", "dropped"): 2}

    run(scenario())


def test_changing_the_split_under_load_loses_no_request_and_the_new_ratio_holds(
    tmp_path: Path, spawn: Any
) -> None:
    blue, green = spawn("blue"), spawn("green")
    path = blue_green(tmp_path, blue, green, endpoint("mnist", {"blue": 100, "green": 0}))

    async def scenario() -> None:
        async with running(path) as (router, base), session() as client:
            url = endpoint_url(base, "mnist", "sleep_ms=20")  # requests in flight at the swap
            before = router.table.endpoints["mnist"]
            load = asyncio.create_task(fire(client, url, 600, 16))
            await until(lambda: router.table.pools()["blue"].in_flight > 0, "the load")
            blue_green(tmp_path, blue, green, endpoint("mnist", {"blue": 90, "green": 10}))
            await until(lambda: router.table.endpoints["mnist"] is not before, "the reload")
            answered, _ = await load  # every request answered 200 (fire checks)
            assert sum(answered.values()) == 600 and answered["green"] > 0
            # The pools were kept: the same objects, nothing left in flight.
            assert_idle(router)
            # The new split is exact over any 1,000 consecutive requests from here on.
            after, _ = await fire(client, endpoint_url(base, "mnist"), 1000)
            assert after == {"blue": 900, "green": 100}
            # A reload that leaves the split alone keeps its place in the cycle.
            plan, config = router.table.endpoints["mnist"].plan, router.config
            blue_green(
                tmp_path, blue, green, endpoint("mnist", {"blue": 90, "green": 10}), cname="x.test"
            )
            await until(lambda: router.config is not config, "the second reload")
            assert router.table.endpoints["mnist"].plan is plan

    run(scenario())


def test_endpoint_auth_takes_the_endpoints_keys_not_the_deployments(
    tmp_path: Path, backends: list[harness.BackendProcess]
) -> None:
    keyed = {"mode": "key", "keys": [DEPLOYMENT_KEY]}
    path = write(
        tmp_path / "router.yaml",
        [deployment("blue", [backends[0].url], auth=keyed)],
        endpoints=[
            endpoint("mnist", {"blue": 100}, auth={"mode": "key", "keys": [ENDPOINT_KEY]}),
            endpoint("signed", {"blue": 100}, auth={"mode": "token", "signing_key": SIGNING}),
        ],
    )

    def bearer(credential: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {credential}"}

    async def status(client: aiohttp.ClientSession, url: str, credential: str | None) -> int:
        headers = bearer(credential) if credential else None
        async with client.post(url, data=b"{}", headers=headers) as response:
            await response.read()
            if response.status == 401:
                assert response.headers["WWW-Authenticate"] == "Bearer"
            return response.status

    async def scenario() -> None:
        async with running(path) as (router, base), session() as client:
            on_endpoint, on_deployment = endpoint_url(base, "mnist"), score_url(base, "blue")
            assert await status(client, on_endpoint, ENDPOINT_KEY) == 200
            assert await status(client, on_endpoint, DEPLOYMENT_KEY) == 401
            assert await status(client, on_endpoint, None) == 401
            assert await status(client, on_deployment, DEPLOYMENT_KEY) == 200
            assert await status(client, on_deployment, ENDPOINT_KEY) == 401
            # Token mode: a token's audience is the endpoint; one for the deployment is refused.
            for_endpoint = tokens.issue("signed", SIGNING, 60).access_token
            for_deployment = tokens.issue("blue", SIGNING, 60).access_token
            signed = endpoint_url(base, "signed")
            assert await status(client, signed, for_endpoint) == 200
            assert await status(client, signed, for_deployment) == 401
            assert router.metrics.routed[("mnist", "")] == 2  # the refused ones, by no deployment

    run(scenario())


def test_the_host_name_selects_the_endpoint_when_cname_is_set(tmp_path: Path, spawn: Any) -> None:
    blue, green = spawn("blue"), spawn("green")
    path = blue_green(
        tmp_path,
        blue,
        green,
        endpoint("mnist", {"blue": 100}),
        endpoint("fraud", {"green": 100}),
        cname="ml.example.test",
    )

    async def scenario() -> None:
        async with running(path) as (router, base), session() as client:
            for host, name in (
                ("mnist.ml.example.test", "blue"),
                ("FRAUD.ml.example.test:8443", "green"),
            ):
                answered, _ = await fire(client, f"{base}/score", 4, 2, {"Host": host})
                assert answered == {name: 4}
                async with client.get(f"{base}/", headers={"Host": host}) as response:
                    assert response.status == 200
                    assert await response.json() == {"status": "Healthy"}
            for host in ("other.ml.example.test", "mnist.example.test", "127.0.0.1"):
                async with client.post(f"{base}/score", headers={"Host": host}) as response:
                    assert response.status == 404
            # The paths of other routes are not taken over by the Host.
            async with client.post(
                score_url(base, "green"), headers={"Host": "mnist.ml.example.test"}
            ) as response:
                assert (await response.json())["backend"] == "green"
            assert_idle(router)

    run(scenario())


def test_admission_control_refuses_endpoint_scoring_but_never_its_health(
    tmp_path: Path, backends: list[harness.BackendProcess]
) -> None:
    path = write(
        tmp_path / "router.yaml",
        [deployment("blue", [backends[0].url])],
        endpoints=[endpoint("mnist", {"blue": 100})],
        cname="ml.example.test",
    )
    router = proxy.Router(routerconfig.load(path))
    router.admission.shed_fraction = 0.5
    # An even half of the scoring requests is refused (the first is taken: a full credit).
    refused = [router.dispatcher.refuse(b"/api/v1/endpoint/mnist/score?x=1") for _ in range(10)]
    assert refused[1:] == [False, True] * 4 + [False]
    assert router.metrics.routed[("mnist", "")] == 4
    # Host not read yet: with cname set, /score is some endpoint's.
    host_routed = [router.dispatcher.refuse(b"/score") for _ in range(10)]
    assert host_routed.count(True) == 5
    assert router.metrics.routed[("", "")] == 5
    for url in (b"/api/v1/endpoint/mnist", b"/api/v1/endpoint/nosuch/score", b"/", b"/metrics"):
        assert not any(router.dispatcher.refuse(url) for _ in range(4)), url
