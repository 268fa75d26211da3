"""router.yaml parsing: what render writes is accepted, mistakes are reported with file and line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from reconciler import source
from reconciler.model import repo
from reconciler.render import render
from reconciler.router import config

REPO_ROOT = Path(__file__).resolve().parents[2]


def _rendered_router_yaml() -> str:
    snapshot = source.DirectorySnapshot(str(REPO_ROOT / "manifests"))
    loaded = repo.load(snapshot)
    assert loaded.valid
    rendered = render.render_repo(loaded.repo, snapshot, snapshot.revision())
    for obj in rendered.objects:
        if obj["kind"] == "ConfigMap" and "router.yaml" in obj.get("data", {}):
            return str(obj["data"]["router.yaml"])
    raise AssertionError("the example repo renders no router config")


def _problems(text: str) -> list[str]:
    with pytest.raises(config.ConfigError) as caught:
        config.parse("router.yaml", text)
    return [str(p) for p in caught.value.problems]


def test_accepts_what_render_writes() -> None:
    cfg = config.parse("router.yaml", _rendered_router_yaml())
    assert (cfg.host, cfg.port) == ("0.0.0.0", 8080)
    blue = cfg.deployment("blue")
    assert blue is not None
    assert blue.backends is None  # discovered from its Service in-cluster
    assert (blue.service, blue.namespace, blue.port) == ("blue", "azureml", 80)
    assert blue.auth.mode == "key"
    assert blue.auth.secret == "blue-auth"
    assert blue.scale_settings.max_instances == 5
    green = cfg.deployment("green")
    assert green is not None and green.auth.mode == "token"
    assert green.scale_settings.type == "fixed"
    # The example's endpoint, as the router takes it: the split, and its own key Secret.
    mnist = cfg.endpoint("mnist")
    assert mnist is not None
    assert dict(mnist.traffic) == {"blue": 90, "green": 10}
    assert dict(mnist.mirror_traffic) == {}
    assert (mnist.auth.mode, mnist.auth.secret) == ("key", "mnist-endpoint-auth")


def test_defaults_and_limits() -> None:
    cfg = config.parse(
        "r.yaml", "listen: 127.0.0.1:0\ndeployments:\n- name: a\n  backends: [http://h:1]\n"
    )
    a = cfg.deployments[0]
    assert a.max_concurrent_requests_per_instance == 1
    assert a.request_timeout_ms == 5000
    assert a.max_queue_wait_ms == 500
    assert a.auth.mode == "none"
    assert cfg.max_body_bytes == 100 * 1024 * 1024
    assert cfg.tls is None


def test_every_problem_is_reported_with_its_line() -> None:
    text = """\
listen: nowhere
tls: {cert: c.pem}
deployments:
- name: a
  backends: [https://h:1, "http://h:1?x=1", http://ok:2]
  max_concurrent_requests_per_instance: 0
  request_timout_ms: 5
  auth: {mode: magic}
- name: a
  backends: []
"""
    found = _problems(text)
    assert "router.yaml:1: listen: expected HOST:PORT, e.g. 0.0.0.0:8080" in found
    assert any(p.startswith("router.yaml:2: tls.key:") for p in found)
    assert any(p.startswith("router.yaml:5: deployments[0].backends[0]:") for p in found)
    assert any("deployments[0].backends[1]" in p for p in found)
    assert not any("backends[2]" in p for p in found)
    assert any(
        p.startswith("router.yaml:6: deployments[0].max_concurrent_requests_per_instance")
        for p in found
    )
    assert any(
        "deployments[0].request_timout_ms: unknown field (did you mean request_timeout_ms?)" in p
        for p in found
    )
    assert any("deployments[0].auth.mode" in p for p in found)
    assert any("router.yaml:9: deployments[1].name" in p and "twice" in p for p in found)


def test_yaml_syntax_error_is_a_problem() -> None:
    assert any("invalid YAML" in p for p in _problems("listen: [\n"))


def test_secret_values_are_never_echoed() -> None:
    found = _problems("listen: h:1\ndeployments:\n- name: a\n  auth: {mode: key, keys: [7]}\n")
    assert found and not any("7]" in p for p in found)


def test_key_files_are_read_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "primary").write_text("k-one\n")
    (tmp_path / "signing").write_text("sign-me")
    path = tmp_path / "router.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "listen": "127.0.0.1:0",
                "deployments": [
                    {"name": "a", "auth": {"mode": "key", "keys": ["inline"],
                                           "key_files": ["keys/primary"]}},
                    {"name": "b", "auth": {"mode": "token", "signing_key_file": "signing"}},
                ],
            }
        )
    )  # fmt: skip
    cfg = config.load(path)
    assert cfg.deployments[0].auth.keys == ("inline", "k-one")
    assert cfg.deployments[1].auth.signing_key == "sign-me"


def test_a_missing_key_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "router.yaml"
    path.write_text(
        "listen: 127.0.0.1:0\ndeployments:\n- name: a\n  auth: {mode: key, key_files: [nope]}\n"
    )
    with pytest.raises(config.ConfigError) as caught:
        config.load(path)
    assert "deployments[0].auth.key_files[0]" in str(caught.value)
    assert "nope" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("http://10.0.0.1:5001", True),
        ("http://svc", True),
        ("http://[::1]:8080/prefix", True),
        ("https://h:1", False),
        ("http://:80", False),
        ("http://h:99999", False),
        ("http://u:p@h:1", False),
        (5, False),
    ],
)
def test_backend_urls(url: object, ok: bool) -> None:
    assert (config.backend_url_problem(url) is None) is ok


ENDPOINTS = """\
listen: 127.0.0.1:0
deployments:
- name: blue
- name: green
- name: red
endpoints:
- name: mnist
  traffic: {blue: 90, green: 10}
  mirror_traffic: {red: 20}
  auth: {mode: key, secret: mnist-endpoint-auth}
- name: dark
  traffic: {blue: 0, green: 0}
- name: blue
  traffic: {blue: 100}
"""


def test_endpoints_are_typed_with_their_split_mirror_and_auth() -> None:
    cfg = config.parse("router.yaml", ENDPOINTS)
    mnist = cfg.endpoint("mnist")
    assert mnist == config.Endpoint(
        "mnist",
        {"blue": 90, "green": 10},
        {"red": 20},
        config.Auth("key", secret="mnist-endpoint-auth"),
    )
    assert mnist.members == {"blue", "green", "red"}
    dark = cfg.endpoint("dark")
    assert dark is not None and dark.traffic == {"blue": 0, "green": 0}  # only the header routes
    assert dark.mirror_traffic == {} and dark.auth.mode == "none"
    # An implicit endpoint has its deployment's name: endpoints and deployments are apart.
    assert cfg.endpoint("blue") is not None and cfg.endpoint("red") is None
    assert config.parse("r.yaml", "listen: h:1\n").endpoints == ()


def test_every_endpoint_problem_is_reported_with_its_line() -> None:
    text = """\
listen: 127.0.0.1:0
deployments:
- name: blue
- name: green
endpoints:
- name: mnist
  traffic: {blue: 90, gren: 10}
  mirror_traffic: {green: 60}
  mirors: {}
- name: shop
  traffic:
    blue: 80
    green: 10
  mirror_traffic: {blue: 10}
- name: neg
  traffic: {blue: -1, green: true}
- name: mnist
  auth: {mode: key, signing_key: x}
- name: a/b
- []
"""
    found = _problems(text)
    assert (
        "router.yaml:7: endpoints[0].traffic.gren: no deployment named 'gren' in deployments "
        "(did you mean green?)" in found
    )
    assert "router.yaml:8: endpoints[0].mirror_traffic.green: expected from 0 to 50, got 60" in (
        found
    )
    assert any(p.startswith("router.yaml:9: endpoints[0].mirors: unknown field") for p in found)
    assert (
        "router.yaml:11: endpoints[1].traffic: the percentages sum to 90: expected 100 (or all 0)"
        in found
    )
    assert any(
        p.startswith("router.yaml:14: endpoints[1].mirror_traffic.blue: deployment 'blue' takes")
        for p in found
    )
    assert "router.yaml:16: endpoints[2].traffic.blue: expected from 0 to 100, got -1" in found
    assert "router.yaml:16: endpoints[2].traffic.green: expected an integer, got True" in found
    assert any(p.startswith("router.yaml:17: endpoints[3].name") and "twice" in p for p in found)
    assert any(p.startswith("router.yaml:18: endpoints[3].auth.signing_key") for p in found)
    assert any(p.startswith("router.yaml:19: endpoints[4].name: expected") for p in found)
    assert any(p.startswith("router.yaml:20: endpoints[5]: expected a mapping") for p in found)


def test_an_endpoints_key_files_are_read_like_a_deployments(tmp_path: Path) -> None:
    (tmp_path / "endpoint-key").write_text("e-one\n")
    path = tmp_path / "router.yaml"
    path.write_text(
        "listen: 127.0.0.1:0\ndeployments:\n- name: a\nendpoints:\n- name: e\n  traffic: {a: 100}\n"
        "  auth: {mode: key, key_files: [endpoint-key, missing]}\n"
    )
    with pytest.raises(config.ConfigError) as caught:
        config.load(path)
    assert "endpoints[0].auth.key_files[1]" in str(caught.value)
    path.write_text(path.read_text().replace(", missing", ""))
    endpoint = config.load(path).endpoint("e")
    assert endpoint is not None and endpoint.auth.keys == ("e-one",)
