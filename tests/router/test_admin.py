"""The admin port on real sockets: metrics, load reports and probes there, none of the first two
on the scoring port, and `admin_listen` in router.yaml.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.router import config as routerconfig
from reconciler.router import coordinator
from tests.router import harness
from tests.router.harness import deployment, run, running, score_url, session, write_config

KEY = "k" * 43


def test_metrics_and_load_reports_are_on_the_admin_port_only(
    tmp_path: Path, backends: list[harness.BackendProcess]
) -> None:
    entry = deployment("m", [backends[0].url], auth={"mode": "key", "keys": [KEY]})
    path = write_config(tmp_path / "router.yaml", [entry])

    async def scenario() -> None:
        async with running(path) as (router, base), session() as client:
            admin = harness.admin(router)
            assert router.admin_port not in (None, router.port)
            headers = {"Authorization": f"Bearer {KEY}"}
            async with client.post(score_url(base, "m"), headers=headers) as response:
                assert response.status == 200
            # The scoring port: neither with nor without credentials, whatever the method.
            for route in ("/metrics", coordinator.LOAD_PATH, "/internal/other"):
                for method in ("GET", "POST", "HEAD"):
                    async with client.request(method, base + route, headers=headers) as response:
                        assert response.status == 404, (method, route)
            # The admin port.
            async with client.get(f"{admin}/metrics") as response:
                assert response.status == 200
                assert 'mlext_router_requests_total{code="200",deployment="m"} 1.0' in (
                    await response.text()
                )
            async with client.get(admin + coordinator.LOAD_PATH) as response:
                assert response.status == 200
                report = json.loads(await response.read())
            assert coordinator.parse_report(report)["m"].ready == 1
            for probe in ("/healthz", "/readyz"):
                async with client.get(admin + probe) as response:
                    assert response.status == 200
                async with client.get(base + probe) as response:
                    assert response.status == 200  # the kubelet's probes stay where they were
            # Scoring is not served on the admin port.
            async with client.post(score_url(admin, "m"), headers=headers) as response:
                assert response.status == 404
            async with client.get(admin + "/internal/other") as response:
                assert response.status == 404

    run(scenario())


def test_without_admin_listen_nothing_serves_metrics(
    tmp_path: Path, backends: list[harness.BackendProcess]
) -> None:
    path = write_config(
        tmp_path / "router.yaml", [deployment("m", [backends[0].url])], admin_listen=None
    )

    async def scenario() -> None:
        async with running(path) as (router, base), session() as client:
            assert router.admin_port is None
            for route in ("/metrics", coordinator.LOAD_PATH):
                async with client.get(base + route) as response:
                    assert response.status == 404

    run(scenario())


@pytest.mark.parametrize(
    ("admin_listen", "message"),
    [
        ("nowhere", "r.yaml:2: admin_listen: expected HOST:PORT, e.g. 0.0.0.0:8080"),
        ("0.0.0.0:x", "r.yaml:2: admin_listen: port 'x' is not a number from 0 to 65535"),
        ("0.0.0.0:8080", "r.yaml:2: admin_listen: port 8080 is listen's: use another one"),
    ],
)
def test_a_bad_admin_listen_is_a_file_line_problem(admin_listen: str, message: str) -> None:
    text = f"listen: 0.0.0.0:8080\nadmin_listen: {admin_listen!r}\n"
    with pytest.raises(routerconfig.ConfigError) as raised:
        routerconfig.parse("r.yaml", text)
    assert [str(p) for p in raised.value.problems] == [message]


def test_admin_listen_is_read() -> None:
    text = "listen: 0.0.0.0:8080\nadmin_listen: 127.0.0.1:9090\n"
    assert routerconfig.parse("r.yaml", text).admin == ("127.0.0.1", 9090)
    assert routerconfig.parse("r.yaml", "listen: 0.0.0.0:8080\n").admin is None
