"""The pure parts of `reconciler score` and `reconciler router top`: what they read from the
cluster (router ConfigMaps, EndpointSlices, pods as the render makes them) and what they print.
"""

from __future__ import annotations

import base64
import json

from reconciler import objects, source
from reconciler.cli import routertop, score
from reconciler.render import render
from reconciler.router import tokens
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


METRICS_BEFORE = """
router_requests_total{code="200",deployment="blue"} 100.0
router_requests_total{code="401",deployment="blue"} 2.0
"""
METRICS_AFTER = """
# TYPE router_requests_total counter
router_requests_total{code="200",deployment="blue"} 150.0
router_requests_total{code="401",deployment="blue"} 2.0
router_requests_total{code="200",deployment="green"} 4.0
router_queue_depth{deployment="blue"} 3.0
router_in_flight{deployment="blue"} 2.0
router_backends{deployment="blue",state="up"} 2.0
router_backends{deployment="blue",state="down"} 1.0
router_utilization{deployment="blue"} 2.5
router_desired_replicas{deployment="blue"} 4.0
router_current_replicas{deployment="blue"} 2.0
"""


def test_router_top_rows_from_two_reads() -> None:
    before = routertop.parse(METRICS_BEFORE)
    after = routertop.parse(METRICS_AFTER)
    blue, green = routertop.rows(before, after, 5.0)
    assert blue == routertop.Row("blue", 2, 4, 2, 2.5, 3, 2, 10.0)
    assert green == routertop.Row("green", None, None, 0, None, 0, 0, 0.8)
    text = routertop.table([blue, green])
    assert text.splitlines()[1].split() == ["blue", "2", "4", "2", "250%", "3", "2", "10.0"]
    # Two routers: queue, in flight and rate add up.
    merged = routertop.merge([after, after])
    assert routertop.rows(before, merged, 1.0)[0].queued == 6
    assert json.dumps(text)  # printable as it is
