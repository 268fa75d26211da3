"""The router's in-cluster side without a cluster: when it runs, what it follows, and the hooks
the data path gives it (`/internal/load`, `Router.set_backends`) on real sockets.

The side itself, against a real API server, is tests/cluster/test_router_incluster.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import main as cli
from reconciler.router import autoscaler, coordinator, incluster, tokens
from reconciler.router import config as routerconfig
from tests.router import harness
from tests.router.harness import deployment, run, running, score_url, session, write_config

ENV = {"POD_NAME": "router-0", "POD_NAMESPACE": "ml", "ROUTER_SERVICE": "azureml-fe-v2"}

CONFIG = """
listen: 0.0.0.0:8080
deployments:
  - name: blue
    namespace: models
    service: blue-svc
    auth: {mode: key, secret: blue-auth}
    scale_settings: {min_instances: 1, max_instances: 4}
  - name: green
    auth: {mode: token, secret: green-auth}
    scale_settings: {type: fixed, min_instances: 2, max_instances: 2}
  - name: local
    backends: [http://127.0.0.1:9000]
    auth: {mode: key, secret: local-auth, keys: [inline]}
  - name: open
    auth: {mode: none}
endpoints:
  - name: blue
    traffic: {blue: 100}
    auth: {mode: key, secret: blue-auth}
  - name: shop
    traffic: {blue: 90, green: 10}
    auth: {mode: token, secret: shop-endpoint-auth}
  - name: local
    traffic: {local: 100}
    auth: {mode: key, secret: local-auth, keys: [inline]}
"""


def parsed() -> routerconfig.RouterConfig:
    return routerconfig.parse("router.yaml", CONFIG)


@pytest.mark.parametrize(
    ("flag", "environ", "expected"),
    [
        (None, {}, False),
        (None, {"KUBERNETES_SERVICE_HOST": "10.96.0.1"}, True),
        (None, {"KUBERNETES_SERVICE_HOST": ""}, False),
        (True, {}, True),
        (False, {"KUBERNETES_SERVICE_HOST": "10.96.0.1"}, False),
    ],
)
def test_in_cluster_mode_is_the_flag_or_else_whether_this_is_a_pod(
    flag: bool | None, environ: dict[str, str], expected: bool
) -> None:
    assert incluster.wanted(flag, environ) is expected


def test_identity_comes_from_the_environment_the_template_sets() -> None:
    assert incluster.identity(ENV) == incluster.Identity("router-0", "ml", "azureml-fe-v2")
    with pytest.raises(incluster.MissingEnvironment, match="POD_NAME, ROUTER_SERVICE"):
        incluster.identity({"POD_NAMESPACE": "ml", "POD_NAME": ""})


def test_only_deployments_without_static_backends_are_discovered_and_scaled() -> None:
    cfg = parsed()
    assert incluster.discovered(cfg, "ml") == {
        "blue": incluster.Endpoints("models", "blue-svc"),
        "green": incluster.Endpoints("ml", "green"),  # the Service is named as the deployment
        "open": incluster.Endpoints("ml", "open"),
    }
    # local has static backends, green a fixed size.
    assert [(t.name, t.namespace) for t in incluster.scaled(cfg, "ml")] == [
        ("blue", "models"),
        ("open", "ml"),
    ]
    [blue] = [t for t in incluster.scaled(cfg, "ml") if t.name == "blue"]
    assert blue.settings == autoscaler.Settings(1, 4, 70, 1.0)


def test_keys_come_from_the_secret_unless_the_config_gives_them() -> None:
    # Endpoints' Secrets are in the router's namespace; an implicit endpoint (blue) shares its
    # deployment's Secret and name, told apart by the kind.
    assert incluster.secret_sources(parsed(), "ml") == {
        ("deployment", "blue"): incluster.SecretSource("models", "blue-auth", "key"),
        ("deployment", "green"): incluster.SecretSource("ml", "green-auth", "token"),
        ("endpoint", "blue"): incluster.SecretSource("ml", "blue-auth", "key"),
        ("endpoint", "shop"): incluster.SecretSource("ml", "shop-endpoint-auth", "token"),
    }


def test_secret_data_makes_the_authenticator_of_its_mode() -> None:
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    keyed = tokens.from_secret("blue", "key", {"primaryKey": b64("one"), "secondaryKey": b64("2")})
    assert keyed.allows("Bearer one") and keyed.allows("Bearer 2")
    assert not keyed.allows("Bearer three")
    signed = tokens.from_secret("green", "token", {"signingKey": b64("s" * 32)})
    token = tokens.issue("green", "s" * 32, 60).access_token
    assert signed.allows(f"Bearer {token}") and not keyed.allows(f"Bearer {token}")


# --- the CLI decides, and refuses what it cannot do ------------------------------------------


def test_serve_refuses_a_kubeconfig_outside_in_cluster_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    config = write_config(tmp_path / "router.yaml", [])
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    result = CliRunner().invoke(
        cli.main, ["router", "serve", "--config", str(config), "--kubeconfig", str(kubeconfig)]
    )
    assert result.exit_code == 2
    assert "add --in-cluster" in result.output


def test_serve_in_cluster_needs_to_know_who_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    config = write_config(tmp_path / "router.yaml", [])
    result = CliRunner().invoke(
        cli.main, ["router", "serve", "--config", str(config), "--in-cluster"]
    )
    assert result.exit_code == 2
    assert "POD_NAME, POD_NAMESPACE, ROUTER_SERVICE" in result.output


# --- the data path's hooks, on real sockets ---------------------------------------------------


def test_every_instance_reports_its_load(
    tmp_path: Path, backends: list[harness.BackendProcess]
) -> None:
    path = write_config(
        tmp_path / "router.yaml",
        [
            deployment("m", [backends[0].url, backends[1].url]),
            {"name": "idle", "auth": {"mode": "none"}},  # discovered: no backend yet
        ],
    )

    async def scenario() -> None:
        async with running(path) as (router, base), session() as client:
            router.lifecycle.instance = "router-0"
            pool = router.table.pools()["m"]

            async def slow() -> None:
                async with client.post(score_url(base, "m", "sleep_ms=500"), data=b"{}") as r:
                    assert r.status == 200

            pending = asyncio.create_task(slow())
            while pool.in_flight == 0:
                await asyncio.sleep(0.01)
            async with client.get(harness.admin(router) + coordinator.LOAD_PATH) as response:
                assert response.status == 200
                report = json.loads(await response.read())
            await pending
            assert report["instance"] == "router-0"
            assert report["deployments"] == {
                "idle": {"busy": 0.0, "queued": 0, "ready": 0},
                "m": {"busy": 1.0, "queued": 0, "ready": 2},
            }
            # What the coordinator reads back from a peer is what the instance has.
            assert coordinator.parse_report(report)["m"] == autoscaler.Sample(1.0, 0, 2)
            async with client.post(harness.admin(router) + coordinator.LOAD_PATH) as response:
                assert response.status == 404  # GET only

    run(scenario())


def test_discovered_backends_feed_the_pool_and_static_ones_win(
    tmp_path: Path, backends: list[harness.BackendProcess]
) -> None:
    path = write_config(tmp_path / "router.yaml", [{"name": "m", "auth": {"mode": "none"}}])

    async def scenario() -> None:
        async with running(path) as (router, base), session() as client:
            async with client.post(score_url(base, "m"), data=b"{}") as response:
                assert response.status == 503  # nothing discovered yet: no backend in time
            router.set_backends("m", [backends[0].url, backends[1].url])
            served = set()
            for _ in range(4):
                async with client.post(score_url(base, "m"), data=b"{}") as response:
                    assert response.status == 200
                    served.add(json.loads(await response.read())["backend"])
            assert served == {"b0", "b1"}
            router.set_backends("m", [backends[2].url])
            async with client.post(score_url(base, "m"), data=b"{}") as response:
                assert json.loads(await response.read())["backend"] == "b2"
            router.set_backends("absent", [backends[0].url])  # a deployment reloaded away
            # Static backends in the config: a late discovery result does not override them.
            write_config(path, [deployment("m", [backends[0].url])])
            assert router.reload()
            router.set_backends("m", [backends[2].url])
            assert [b.url for b in router.table.pools()["m"].backends] == [backends[0].url]

    run(scenario())
