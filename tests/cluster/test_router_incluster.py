"""`reconciler router serve --in-cluster` end to end on a real API server (issue 9): a real
router process, discovering real backend processes from hand-made EndpointSlices, taking its keys
from a real Secret (and a regenerated one without a restart), and scaling a real Deployment
through the scale subresource from the load it carries, with only the RBAC the router's template
grants (`workloadobjects.router_rules`): it runs as a ServiceAccount bound to exactly that Role.

EndpointSlices may not hold loopback addresses, and kwok runs no containers, so the backends
listen on a non-loopback address of this machine and the slices name it, as the endpoint
controller would name pod IPs.
"""

from __future__ import annotations

import base64
import concurrent.futures
import http.server
import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from reconciler import kube, objects
from reconciler.render import workloadobjects
from reconciler.router import coordinator, discovery
from tests.cluster.kubehelpers import PAUSE_IMAGE, wait_until
from tests.router import harness

pytestmark = pytest.mark.cluster

POD = "router-test-0"
ROUTER_SERVICE = "router"
PRIMARY, SECONDARY, ROTATED = "primary-key-1", "secondary-key-1", "primary-key-2"
NEXT = "next-key"
# An endpoint in front of blue, keyed by a Secret of its own (render names it so).
ENDPOINT, ENDPOINT_SECRET, ENDPOINT_KEY = "mnist", "mnist-endpoint-auth", "endpoint-key-1"
SECRET_REFRESH = 1.0


def host_address() -> str:
    """A non-loopback IPv4 address of this machine (the one its default route leaves from)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("203.0.113.1", 9))  # no packet is sent: this only picks a route
            address = str(probe.getsockname()[0])
    except OSError as err:
        pytest.fail(f"this machine has no routable IPv4 address for EndpointSlices: {err}")
    ip = ipaddress.ip_address(address)
    if ip.is_loopback or ip.is_link_local or ip.is_unspecified:
        pytest.fail(f"this machine's IPv4 address {address} cannot be an EndpointSlice address")
    return address


@pytest.fixture
def backends() -> Iterator[list[harness.BackendProcess]]:
    host = host_address()
    started = [harness.start_backend(name, host=host) for name in ("a", "b")]
    yield started
    for backend in started:
        backend.stop()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def endpoint_slice(
    namespace: str, backend: harness.BackendProcess, service: str = "blue"
) -> objects.Object:
    """One backend as the Service's EndpointSlice, as the control plane would keep it."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service}-{backend.name}",
            "namespace": namespace,
            "labels": {
                discovery.SERVICE_NAME_LABEL: service,
                "endpointslice.kubernetes.io/managed-by": "reconciler-tests",
            },
        },
        "addressType": "IPv4",
        "ports": [
            {"name": workloadobjects.SERVICE_PORT_NAME, "port": backend.port, "protocol": "TCP"}
        ],
        "endpoints": [{"addresses": [backend.host], "conditions": {"ready": True}}],
    }


def secret(namespace: str, name: str, primary: str, secondary: str) -> objects.Object:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"primaryKey": b64(primary), "secondaryKey": b64(secondary)},
    }


def model_objects(namespace: str) -> list[objects.Object]:
    """The model deployment, its Service (no selector: the test keeps its slices), its keys."""
    return [
        secret(namespace, "blue-auth", PRIMARY, SECONDARY),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "blue", "namespace": namespace},
            "spec": {
                "ports": [
                    {"name": workloadobjects.SERVICE_PORT_NAME, "port": 80, "targetPort": 5001}
                ]
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "blue", "namespace": namespace},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "blue"}},
                "template": {
                    "metadata": {"labels": {"app": "blue"}},
                    "spec": {"containers": [{"name": "main", "image": PAUSE_IMAGE}]},
                },
            },
        },
        secret(namespace, ENDPOINT_SECRET, ENDPOINT_KEY, ENDPOINT_KEY + "-2"),
    ]


def router_identity(namespace: str) -> list[objects.Object]:
    """The router's ServiceAccount bound to the Role its template renders, nothing more."""
    rules = workloadobjects.router_rules(
        ROUTER_SERVICE, ["blue-auth", "next-auth", ENDPOINT_SECRET], ["blue"]
    )
    meta = {"name": "router", "namespace": namespace}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta,
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "router"},
            "subjects": [{"kind": "ServiceAccount", "name": "router", "namespace": namespace}],
        },
    ]


def service_account_kubeconfig(api_client: client.ApiClient, namespace: str, path: Path) -> Path:
    """A kubeconfig that authenticates as the router's ServiceAccount (a TokenRequest token)."""
    request = {"spec": {"expirationSeconds": 3600}}
    token = client.CoreV1Api(api_client).create_namespaced_service_account_token(
        "router", namespace, request
    )
    configuration = api_client.configuration
    cluster: dict[str, Any] = {"server": configuration.host}
    if configuration.ssl_ca_cert:
        cluster["certificate-authority"] = configuration.ssl_ca_cert
    if not configuration.verify_ssl:
        cluster["insecure-skip-tls-verify"] = True
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": cluster}],
        "users": [{"name": "router", "user": {"token": token.status.token}}],
        "contexts": [{"name": "router", "context": {"cluster": "test", "user": "router"}}],
        "current-context": "router",
    }
    path.write_text(yaml.safe_dump(kubeconfig))
    path.chmod(0o600)
    return path


class Router:
    """A `reconciler router serve --in-cluster` process and HTTP to it."""

    def __init__(self, tmp_path: Path, namespace: str, kubeconfig: Path) -> None:
        self.config = tmp_path / "router.yaml"
        self.configure("blue", "blue-auth")
        env = {
            **os.environ,
            "POD_NAME": POD,
            "POD_NAMESPACE": namespace,
            "ROUTER_SERVICE": ROUTER_SERVICE,
            "PYTHONWARNINGS": "error",
        }
        env.pop("KUBERNETES_SERVICE_HOST", None)
        command = [
            sys.executable, "-m", "reconciler", "router", "serve",
            "--config", str(self.config), "--kubeconfig", str(kubeconfig), "--in-cluster",
            "--secret-refresh", str(SECRET_REFRESH),
        ]  # fmt: skip
        self.log = tmp_path / "router.log"
        with self.log.open("w") as out:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        scoring = r"router listening on [\d.]+:(\d+)"
        admin = r"router admin \(metrics, load reports\) on [\d.]+:(\d+)"
        text = wait_until(
            self.output,
            lambda out: (
                bool(re.search(scoring, out) and re.search(admin, out))
                or self.process.poll() is not None
            ),
            "the router to listen",
            30,
        )
        found, found_admin = re.search(scoring, text), re.search(admin, text)
        assert found is not None and found_admin is not None, text
        self.base = f"http://127.0.0.1:{found.group(1)}"
        self.admin = f"http://127.0.0.1:{found_admin.group(1)}"  # metrics and load reports

    def configure(self, service: str, secret: str) -> None:
        """Write router.yaml for deployment blue behind `service`, keyed by `secret`."""
        config = {
            "listen": "127.0.0.1:0",
            "admin_listen": "127.0.0.1:0",
            "deployments": [
                {
                    "name": "blue",
                    "service": service,
                    "max_concurrent_requests_per_instance": 1,
                    "request_timeout_ms": 10000,
                    "max_queue_wait_ms": 10000,
                    "auth": {"mode": "key", "secret": secret},
                    "scale_settings": {
                        "type": "target_utilization",
                        "min_instances": 1,
                        "max_instances": 4,
                        "target_utilization_percentage": 70,
                        "polling_interval": 1,
                    },
                }
            ],
            "endpoints": [
                {
                    "name": ENDPOINT,
                    "traffic": {"blue": 100},
                    "auth": {"mode": "key", "secret": ENDPOINT_SECRET},
                }
            ],
        }
        # Write then rename, as a ConfigMap update does: the router never reads half a file.
        partial = self.config.with_suffix(".partial")
        partial.write_text(yaml.safe_dump(config))
        partial.replace(self.config)

    def output(self) -> str:
        return self.log.read_text()

    def request(
        self,
        method: str,
        path: str,
        key: str | None = None,
        timeout: float = 15,
        admin: bool = False,
    ) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        data = b"{}" if method == "POST" else None
        base = self.admin if admin else self.base
        request = urllib.request.Request(base + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return int(response.status), response.read()
        except urllib.error.HTTPError as err:
            return int(err.code), err.read()

    def score(self, key: str | None, query: str = "") -> tuple[int, bytes]:
        suffix = f"?{query}" if query else ""
        return self.request("POST", f"/api/v1/service/blue/score{suffix}", key)

    def load(self) -> dict[str, Any]:
        status, body = self.request("GET", coordinator.LOAD_PATH, admin=True)
        assert status == 200, body
        report: dict[str, Any] = json.loads(body)
        return report

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


class Peer:
    """Another router instance as the coordinator sees it: a load report (of no load) on its
    admin port, listed in the admin Service's EndpointSlice; it records what was asked of it."""

    def __init__(self) -> None:
        asked: list[str] = []
        self.asked = asked

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                asked.append(self.path)
                body = json.dumps({"instance": "peer", "deployments": {}}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((host_address(), 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def endpoint_slice(self, namespace: str) -> objects.Object:
        """The peer in the router's admin Service, as the control plane keeps it."""
        address, port = self.server.server_address[:2]
        service = workloadobjects.router_admin_service(ROUTER_SERVICE)
        return {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{service}-peer",
                "namespace": namespace,
                "labels": {discovery.SERVICE_NAME_LABEL: service},
            },
            "addressType": "IPv4",
            "ports": [
                {"name": workloadobjects.ROUTER_ADMIN_PORT_NAME, "port": port, "protocol": "TCP"}
            ],
            "endpoints": [{"addresses": [str(address)], "conditions": {"ready": True}}],
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def replicas(cluster: kube.Cluster, namespace: str) -> int:
    scale = kube.get_scale(cluster, namespace, "blue")
    assert scale is not None
    return int(scale["spec"]["replicas"])


def test_the_router_in_a_cluster_discovers_authenticates_and_scales(
    tmp_path: Path,
    namespace: str,
    api_client: client.ApiClient,
    cluster: kube.Cluster,
    backends: list[harness.BackendProcess],
) -> None:
    for obj in [*router_identity(namespace), *model_objects(namespace)]:
        kube.apply(cluster, obj)
    for backend in backends:
        kube.apply(cluster, endpoint_slice(namespace, backend))
    kubeconfig = service_account_kubeconfig(api_client, namespace, tmp_path / "kubeconfig")
    # The Role holds: the router's account reads its deployments' keys and no other Secret.
    kube.apply(cluster, secret(namespace, "someone-elses", "x", "y"))
    limited = kube.connect(str(kubeconfig))
    try:
        assert kube.get_secret(limited, namespace, "blue-auth") is not None
        with pytest.raises(kube.KubeError) as denied:
            kube.get_secret(limited, namespace, "someone-elses")
        assert denied.value.status == 403
    finally:
        limited.api.close()
    peer = Peer()
    kube.apply(cluster, peer.endpoint_slice(namespace))
    router = Router(tmp_path, namespace, kubeconfig)
    try:
        # Backends from the Service's EndpointSlices, keys from its Secret.
        wait_until(
            lambda: router.request("GET", "/api/v1/service/blue/")[0],
            lambda status: status == 200,
            "the discovered backends",
            20,
        )
        served = set()
        for key in (PRIMARY, SECONDARY, PRIMARY, SECONDARY):
            status, body = router.score(key)
            assert status == 200, body
            served.add(json.loads(body)["backend"])
        assert served == {"a", "b"}
        assert router.score("not-a-key")[0] == 401
        assert router.score(None)[0] == 401
        # The endpoint's keys come from its own Secret, read like the deployment's: its key
        # works on the endpoint's route, the deployment's does not.
        on_endpoint = f"/api/v1/endpoint/{ENDPOINT}/score"
        status, body = router.request("POST", on_endpoint, ENDPOINT_KEY)
        assert status == 200 and json.loads(body)["backend"] in {"a", "b"}, body
        assert router.request("POST", on_endpoint, PRIMARY)[0] == 401

        # Every instance reports its own load for the coordinator, on its admin port, where
        # the coordinator reads its peers' (found through the headless admin Service).
        report = router.load()
        assert report["instance"] == POD
        assert report["deployments"]["blue"] == {"busy": 0.0, "queued": 0, "ready": 2}
        wait_until(lambda: list(peer.asked), lambda asked: bool(asked), "a peer's load read", 10)
        assert set(peer.asked) == {coordinator.LOAD_PATH}

        # A regenerated key (`reconciler deployment regen-key` patches the Secret) works
        # within the refresh period, and the old one stops working; no restart.
        keys = model_objects(namespace)[0]
        kube.merge_patch(cluster, keys, {"data": {"primaryKey": b64(ROTATED)}})
        rotated = time.monotonic()
        wait_until(lambda: router.score(ROTATED)[0], lambda s: s == 200, "the new key", 10)
        assert time.monotonic() - rotated < SECRET_REFRESH + 5
        assert router.score(PRIMARY)[0] == 401
        assert router.score(SECONDARY)[0] == 200

        # Load: 8 requests of 1.5 s on 2 backends taking one each, for 6 s. (2 busy + 6 queued)
        # / 1 replica is far above 70 %: the router scales the Deployment through its scale
        # subresource, to ceil(load / 0.7) bounded by max_instances (maybe by way of 2, when
        # its first look came before all the requests did).
        assert replicas(cluster, namespace) == 1
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            loaded = [pool.submit(router.score, ROTATED, "sleep_ms=1500") for _ in range(8)]
            wait_until(
                lambda: replicas(cluster, namespace),
                lambda count: count == 4,
                "the router to scale the Deployment up",
                10,
            )
            scaled_after = time.monotonic() - started
            assert all(f.result()[0] == 200 for f in loaded)
        assert scaled_after < 4.5, scaled_after  # within a few polling intervals, under load
        live = kube.get(cluster, model_objects(namespace)[2])
        assert live is not None
        [entry] = [e for e in live["metadata"]["managedFields"] if e.get("subresource") == "scale"]
        assert entry["manager"] == kube.SCALER_FIELD_MANAGER
        lease = kube.get_lease(
            cluster, namespace, workloadobjects.coordinator_lease_name(ROUTER_SERVICE)
        )
        assert lease is not None and lease["spec"]["holderIdentity"] == POD
        assert router.request("GET", "/metrics")[0] == 404  # not on the scoring port
        status, metrics = router.request("GET", "/metrics", admin=True)
        assert 'mlext_router_desired_replicas{deployment="blue"} 4.0' in metrics.decode()

        # Discovery follows the slices live: one backend's slice goes, its backend with it.
        kube.delete(cluster, endpoint_slice(namespace, backends[1]))
        wait_until(
            lambda: router.load()["deployments"]["blue"]["ready"], lambda n: n == 1, "b gone", 10
        )
        for _ in range(3):
            status, body = router.score(ROTATED)
            assert status == 200 and json.loads(body)["backend"] == "a"

        # A changed config applies without a restart: another Service, keys from another Secret.
        kube.apply(cluster, secret(namespace, "next-auth", NEXT, NEXT + "-2"))
        kube.apply(cluster, endpoint_slice(namespace, backends[1], service="next"))
        router.configure("next", "next-auth")
        # Until the new Service's endpoints arrive the old ones serve: no gap without backends.
        wait_until(
            lambda: router.score(NEXT),
            lambda answer: answer[0] == 200 and json.loads(answer[1])["backend"] == "b",
            "the new config",
            10,
        )
        for _ in range(3):
            status, body = router.score(NEXT)
            assert status == 200 and json.loads(body)["backend"] == "b"
        assert router.score(ROTATED)[0] == 401
        assert replicas(cluster, namespace) == 4  # the same Deployment, still scaled
    finally:
        code = router.stop()
        peer.close()
    output = router.output()
    assert code == 0, output
    # Nothing the Role does not allow was needed, and nothing failed on the way.
    assert "forbidden" not in output.lower() and "Traceback" not in output, output
    # Stopping released the coordinator Lease, so a standby takes over at once.
    lease = kube.get_lease(
        cluster, namespace, workloadobjects.coordinator_lease_name(ROUTER_SERVICE)
    )
    assert lease is not None and lease["spec"]["holderIdentity"] == ""
