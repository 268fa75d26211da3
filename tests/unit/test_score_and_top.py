"""The pure parts of `reconciler score` and `reconciler router top`: what they read from the
cluster (router ConfigMaps, EndpointSlices, pods as the render makes them) and what they print.
"""

from __future__ import annotations

import base64
import datetime
import json
import math

import pytest

from reconciler import objects, source
from reconciler.cli import routertop, score
from reconciler.render import render
from reconciler.router import autoscaler, balancer, coordinator, metrics, readings, tokens
from tests.helpers import EXAMPLE, load


def rendered() -> list[objects.Object]:
    loaded = load(EXAMPLE)
    assert loaded.valid, loaded.problems
    return render.render_repo(loaded.repo, source.DirectorySnapshot(EXAMPLE), "x").objects


def find(found: list[objects.Object], kind: str, name: str) -> objects.Object:
    return next(o for o in found if o["kind"] == kind and o["metadata"]["name"] == name)


def as_pod(deployment: objects.Object, name: str, ip: str, ready: bool = True) -> objects.Object:
    """A pod of a rendered Deployment as the kubelet reports it."""
    template = deployment["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": deployment["metadata"]["namespace"],
                     "labels": template["metadata"]["labels"]},
        "spec": template["spec"],
        "status": {
            "phase": "Running",
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }  # fmt: skip


def test_score_finds_the_deployment_its_router_and_credential() -> None:
    found = rendered()
    maps = [o for o in found if o["metadata"]["name"] == "azureml-fe-v2-config"]
    target = score.find_target(maps, "blue")
    assert target == score.Target("blue", "azureml", "azureml", "azureml-fe-v2", "key",
                                  "blue-auth")  # fmt: skip
    assert score.find_target(maps, "nope") is None
    key = base64.b64encode(b"k1").decode()
    assert score.credential(target, {"data": {"primaryKey": key}}) == "Bearer k1"
    assert score.credential(target, None) is None
    green = score.find_target(maps, "green")
    assert green is not None and green.auth_mode == "token"
    signing = base64.b64encode(b"a-signing-key-of-at-least-32-bytes!").decode()
    bearer = score.credential(green, {"data": {"signingKey": signing}})
    assert bearer is not None
    assert tokens.Authenticator(
        "token", "green", signing_key="a-signing-key-of-at-least-32-bytes!"
    ).allows(bearer)


def endpoint_slice(name: str, port: str, endpoints: list[tuple[str, bool]]) -> objects.Object:
    return {
        "metadata": {"name": name},
        "ports": [{"name": port, "port": 8080 if port == "http" else 8443}],
        "endpoints": [
            {"addresses": [ip], "conditions": {"ready": ready}} for ip, ready in endpoints
        ],
    }


def test_score_reaches_a_ready_router_pod_at_its_ip() -> None:
    slices = [endpoint_slice("fe-abc", "http", [("10.245.16.5", False), ("10.245.16.6", True)])]
    assert score.router_url(slices) == "http://10.245.16.6:8080"
    assert score.router_url([endpoint_slice("fe", "https", [("10.245.16.7", True)])]) == (
        "https://10.245.16.7:8443"
    )
    assert score.router_url([endpoint_slice("fe", "http", [("10.245.16.5", False)])]) is None
    assert score.router_url([]) is None


def test_router_top_finds_the_ready_router_pods_admin_ports() -> None:
    found = rendered()
    router = find(found, "Deployment", "azureml-fe-v2")
    blue = find(found, "Deployment", "blue")
    pods = [
        as_pod(router, "fe-2", "10.245.16.9"),
        as_pod(router, "fe-1", "10.245.16.8"),
        as_pod(router, "fe-3", "10.245.16.10", ready=False),
        as_pod(blue, "blue-1", "10.245.16.11"),
    ]
    assert routertop.admin_urls(pods) == ["http://10.245.16.8:8081", "http://10.245.16.9:8081"]


class OneReplica:
    """A Deployment of blue with one replica, as the scale subresource shows it."""

    def current(self, namespace: str, name: str) -> int:
        return 1

    def scale(self, namespace: str, name: str, replicas: int, expected: int) -> bool:
        return True


def router_page(pool: balancer.Pool, answers: list[tuple[int, float]], leads: bool) -> str:
    """A router instance's /metrics as `router.metrics` writes it: `answers` (code, seconds)
    to blue; if it `leads`, with its coordinator's gauges after one decision on a load of 1.75."""
    page = metrics.Metrics(lambda: {"blue": pool})
    if leads:
        scaling = coordinator.Coordinator(
            OneReplica(), lambda: {"blue": autoscaler.Sample(1.75, 0, 1)}
        )
        scaling.configure([coordinator.Target("blue", "models", autoscaler.Settings(1, 5))])
        scaling.tick()
        page.registry.register(coordinator.Gauges(scaling))
    for code, seconds in answers:
        page.request_done("blue", code, seconds, seconds)
    return page.exposition().decode()


def test_router_top_counts_a_pod_once_and_adds_what_each_router_answered() -> None:
    pools = []
    for up in (True, True, False):  # three routers before one pod; one sees it down
        pool = balancer.Pool()
        pool.set_backends(["http://10.0.0.7:5001"])
        pool.backends[0].up = up
        pools.append(pool)
    before = {f"r{i}": readings.read(router_page(pools[i], [], False)) for i in range(3)}
    fast, slow = [(200, 0.004)] * 90, [(500, 0.7)] * 10
    after = {
        "r0": readings.read(router_page(pools[0], fast, True)),  # the coordinator
        "r1": readings.read(router_page(pools[1], slow, False)),
        "r2": readings.read(router_page(pools[2], [], False)),
    }
    at = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    found = readings.sample(before, after, 2.0, at, 3)
    [blue] = found.rows
    assert blue.backends_up == 1  # not 2 (or 3): the same pod behind every router
    assert blue.requests_per_second == 50.0  # 100 answers over two routers, in 2 s
    assert blue.error_ratio == 0.1
    # The utilization and replicas are the autoscaler's own decision, as it exported them:
    # 1.75 busy on 1 replica wants ceil(1.75 / 0.7) = 3.
    assert (blue.utilization_ratio, blue.replicas, blue.desired_replicas) == (1.75, 1, 3)
    # Quantiles of the buckets added over routers: r0's p99 alone would be 5 ms, r1's p50 0.7 s.
    assert blue.latency_p50_seconds is not None and 0.0025 < blue.latency_p50_seconds <= 0.005
    assert blue.latency_p99_seconds is not None and 0.5 < blue.latency_p99_seconds <= 1.0
    assert found.as_dict()["time"] == "2026-01-02T03:04:05Z"
    assert json.loads(json.dumps(found.as_dict()))["deployments"][0]["backends_up"] == 1

    lines = routertop.table(found).splitlines()
    assert lines[0].startswith("2026-01-02 ") and lines[0].endswith("routers 3/3")
    assert lines[1].split() == [
        "DEPLOYMENT", "REPLICAS", "DESIRED", "BACKENDS", "UTIL", "QUEUE", "IN-FLIGHT", "RPS",
        "ERR", "P50", "P99",
    ]  # fmt: skip
    assert lines[2].split()[:9] == ["blue", "1", "3", "1", "175%", "0", "0", "50.0", "10.0%"]


def test_router_top_reads_a_restarted_router_as_a_reset_and_a_missing_one_as_absent() -> None:
    pool = balancer.Pool()
    pool.set_backends(["http://10.0.0.7:5001"])
    busy = readings.read(router_page(pool, [(200, 0.01)] * 40, False))
    restarted = readings.read(router_page(pool, [(200, 0.01)] * 4, False))
    at = datetime.datetime.now(datetime.UTC)
    [row] = readings.sample({"r0": busy}, {"r0": restarted, "r1": busy}, 1.0, at, 3).rows
    assert row.requests_per_second == 4.0  # r1 has no earlier read: not a rise of 40
    [idle] = readings.sample({"r0": busy}, {"r0": busy}, 1.0, at, 1).rows
    assert (idle.requests_per_second, idle.error_ratio, idle.latency_p50_seconds) == (0, None, None)
    assert routertop.table(readings.Sample(at, 1.0, 1, 1, [idle])).splitlines()[2].split()[-3:] == [
        "-", "-", "-",
    ]  # fmt: skip


def test_quantiles_interpolate_within_buckets_as_histogram_quantile_does() -> None:
    buckets = {0.1: 10.0, 0.2: 20.0, math.inf: 20.0}
    assert readings.quantile(0.5, buckets) == 0.1
    assert readings.quantile(0.75, buckets) == pytest.approx(0.15)
    assert readings.quantile(0.99, {0.1: 5.0, math.inf: 10.0}) == 0.1  # in +Inf: the last bound
    assert readings.quantile(0.5, {0.1: 0.0, math.inf: 0.0}) is None
    assert readings.quantile(0.5, {0.5: 4.0, 1.0: 4.0, math.inf: 4.0}) == 0.25
