"""Cluster DNS and pod routes on a real node (issue 28).

On the ``real_node`` fixture's plane: an HTTP server (socat, in the node's Debian image) runs in a
pod behind a Service ``web``; a pod on the real node resolves ``web`` and
``web.<ns>.svc.cluster.local`` to the Service's ClusterIP through CoreDNS at 10.96.0.10 and gets
the server's answer by name; a name the cluster does not have is NXDOMAIN at once; a name outside
the cluster resolves in the pod as it does on the host. The host reaches the server's pod IP
directly (one route per node, made by the node's start). On a plane of two real nodes, a pod on
one reaches a pod on the other by its IP and by Service name (routes between the nodes), the host
reaches pods on both, and the plane's stop leaves no route behind.
"""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from reconciler.localcluster import (
    build,
    clusterdns,
    hostdocker,
    hostroutes,
    plane,
    podnetwork,
    realnode,
)
from reconciler.localcluster import realnodeconfig as rc
from reconciler.localcluster.config import default_nodes
from tests.cluster.kubehelpers import wait_until
from tests.cluster.realnodes import RealNodeFixture
from tests.cluster.test_real_node_on_cluster import finished, job, run_job

pytestmark = pytest.mark.cluster

# Answers any request with one fixed page, once it has read the request line: a server that
# answered and closed first would leave a late request unread, and the kernel's reset for it can
# wipe the answer from the client's buffer before the client reads it.
SERVER = """cat >/tmp/serve <<'EOF'
#!/bin/sh
read -r request
printf 'HTTP/1.0 200 OK\\r\\n\\r\\nhello from web\\n'
EOF
chmod +x /tmp/serve
exec socat TCP-LISTEN:8080,fork,reuseaddr EXEC:/tmp/serve
"""
# A name whose lookup needs DNS outside the cluster (the Go module proxy the project builds from).
EXTERNAL_NAME = "proxy.golang.org"


def start_web(
    api: client.ApiClient, image: str, node_selector: dict[str, str]
) -> tuple[str, Any, Any]:
    """A namespace with the ``web`` server pod Ready behind the ``web`` Service (with an
    endpoint): (namespace, the pod, the Service)."""
    core = client.CoreV1Api(api)
    ns = f"t-dns-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": ns}})
    wait_until(lambda: core.list_namespaced_service_account(ns).items, bool, "service account")
    labels = {"app": "web"}
    core.create_namespaced_pod(
        ns,
        {
            "metadata": {"name": "web", "labels": labels},
            "spec": {
                "nodeSelector": node_selector,
                "tolerations": [rc.REAL_NODE_TOLERATION],
                "containers": [
                    {
                        "name": "web",
                        "image": image,
                        "imagePullPolicy": "Never",
                        "command": ["sh", "-c", SERVER],
                        "ports": [{"containerPort": 8080}],
                        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                    }
                ],
            },
        },
    )
    svc = core.create_namespaced_service(
        ns,
        {
            "metadata": {"name": "web"},
            "spec": {"selector": labels, "ports": [{"port": 8080, "targetPort": 8080}]},
        },
    )
    pod = wait_until(
        lambda: core.read_namespaced_pod("web", ns),
        lambda p: any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or []),
        "the web pod to be Ready",
        timeout=120,
    )
    discovery = client.DiscoveryV1Api(api)
    wait_until(
        lambda: (
            discovery.list_namespaced_endpoint_slice(
                ns, label_selector="kubernetes.io/service-name=web"
            ).items
        ),
        lambda items: any(e.addresses for s in items for e in s.endpoints or []),
        "an endpoint of the web Service",
    )
    return ns, pod, svc


@pytest.fixture(scope="module")
def web(real_node: RealNodeFixture) -> Iterator[tuple[str, Any, Any]]:
    """``start_web`` on the real node of the ``real_node`` plane."""
    ns, pod, svc = start_web(
        real_node.api, real_node.pod_image, {rc.REAL_NODE_LABEL[0]: rc.REAL_NODE_LABEL[1]}
    )
    yield ns, pod, svc
    client.CoreV1Api(real_node.api).delete_namespace(ns, propagation_policy="Background")


def fetch(address: str, port: int = 8080) -> bytes:
    """One HTTP/1.0 GET from this host; the whole answer."""
    with socket.create_connection((address, port), timeout=5) as conn:
        conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := conn.recv(4096):
            data += chunk
    return data


def test_coredns_runs_on_the_real_node_behind_kube_dns(real_node: RealNodeFixture) -> None:
    core = client.CoreV1Api(real_node.api)
    svc = core.read_namespaced_service(clusterdns.SERVICE_NAME, clusterdns.NAMESPACE)
    assert svc.spec.cluster_ip == clusterdns.SERVICE_IP == "10.96.0.10"
    pods = core.list_namespaced_pod(clusterdns.NAMESPACE, label_selector="k8s-app=kube-dns").items
    assert [p.spec.node_name for p in pods] == [real_node.node.name]
    assert all(p.status.phase == "Running" for p in pods)


def test_a_pod_resolves_a_service_by_short_and_full_name_and_reaches_it(
    real_node: RealNodeFixture, web: tuple[str, Any, Any]
) -> None:
    ns, _pod, svc = web
    fqdn = f"web.{ns}.svc.cluster.local"
    script = (
        "cat /etc/resolv.conf; echo ---; "
        "getent hosts web; getent hosts " + fqdn + "; echo ---; "
        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | socat -t5 - TCP:web:8080; echo ---; "
        "s=$(date +%s%N); getent hosts nosuch." + ns + ".svc.cluster.local; "
        "echo nosuch=$? ms=$(( ($(date +%s%N) - s) / 1000000 ))"
    )
    end, pod, seconds = run_job(real_node.api, ns, real_node, "resolve", script)
    log = client.CoreV1Api(real_node.api).read_namespaced_pod_log(pod.metadata.name, ns)
    assert end == "Complete", log
    resolv, names, answer, missing = log.split("---\n")
    # The kubelet gave the pod the cluster's resolver and search list.
    assert f"nameserver {clusterdns.SERVICE_IP}" in resolv
    assert f"search {ns}.svc.cluster.local svc.cluster.local cluster.local" in resolv
    # Both names are the Service's ClusterIP, answered by CoreDNS from the API server.
    lines = names.splitlines()
    assert len(lines) == 2 and all(line.split()[0] == svc.spec.cluster_ip for line in lines), names
    assert lines[1].split()[1] == fqdn
    # Through the Service's address (kube-proxy) to the server pod.
    assert answer.startswith("HTTP/1.0 200 OK") and "hello from web" in answer
    # A name the cluster does not have: NXDOMAIN (getent exit 2), not a resolver timeout.
    status = dict(item.split("=") for item in missing.split())
    assert status["nosuch"] == "2" and int(status["ms"]) < 2000, missing
    print(f"\nJob resolving and fetching by Service name: {seconds:.1f}s")


def test_a_name_outside_the_cluster_resolves_in_a_pod_as_on_the_host(
    real_node: RealNodeFixture, web: tuple[str, Any, Any]
) -> None:
    ns = web[0]
    try:
        socket.getaddrinfo(EXTERNAL_NAME, 443)
    except socket.gaierror:
        pytest.skip(f"this host cannot resolve {EXTERNAL_NAME} either")
    end, pod, _ = run_job(real_node.api, ns, real_node, "external", f"getent hosts {EXTERNAL_NAME}")
    log = client.CoreV1Api(real_node.api).read_namespaced_pod_log(pod.metadata.name, ns)
    assert end == "Complete", log
    assert EXTERNAL_NAME in log and ipaddress.ip_address(log.split()[0])


def test_the_host_reaches_a_pod_ip_on_the_real_node_directly(
    real_node: RealNodeFixture, web: tuple[str, Any, Any]
) -> None:
    pod_ip = web[1].status.pod_ip
    routes = subprocess.run(
        ["ip", "-4", "route", "get", pod_ip], capture_output=True, text=True, check=True
    ).stdout
    # The node's route on the plane's Docker bridge, not the default one to the outside.
    assert " via " in routes and " dev br-" in routes, routes
    began = time.monotonic()
    data = fetch(pod_ip)
    assert data.startswith(b"HTTP/1.0 200 OK") and b"hello from web" in data
    print(f"\nhost -> pod {pod_ip}: {1000 * (time.monotonic() - began):.0f} ms")


def test_pods_on_two_real_nodes_reach_each_other_by_ip_and_service_name(
    tmp_path: Path, real_node: RealNodeFixture
) -> None:
    # A plane of its own with two real nodes (real_node has built everything).
    state_dir = (tmp_path / "plane").resolve()
    state = plane.start(build.ensure_built(), default_nodes(0, 0), state_dir, die_with_parent=True)
    api = None
    try:
        # The plane's network as a version before range claims made it: replaced, then claimed.
        pid = rc.plane_id(state_dir)
        hostdocker.docker(*rc.network_create_args(pid, state_dir))
        rc.realnodes_dir(state_dir).mkdir(parents=True)
        assert hostroutes.claimed_pod_range(pid) is None
        nodes = realnode.start_nodes(state, 2)
        realnode.load_image(state_dir, real_node.pod_image, nodes)
        api = config.new_client_from_config(config_file=state.kubeconfig)
        ns, pod, svc = start_web(
            api, real_node.pod_image, {"kubernetes.io/hostname": nodes[0].name}
        )
        assert pod.spec.node_name == nodes[0].name
        # From a pod on the other node: the server's pod IP (the route between the nodes) and
        # the Service by name (CoreDNS, kube-proxy).
        script = (
            f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | socat -t5 - TCP:{pod.status.pod_ip}:8080; "
            "echo ---; getent hosts web; echo ---; "
            # kube-proxy on this node programs a new Service within a second or two: a client
            # that tries again, as real ones do, at most 10 times.
            "for i in $(seq 10); do "
            "out=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | socat -t5 - TCP:web:8080 2>&1); "
            "case $out in *'hello from web'*) break;; esac; sleep 1; done; "
            'echo "tries=$i"; echo "$out"'
        )
        body = job("across", ns, real_node.pod_image, script)
        body["spec"]["template"]["spec"]["nodeSelector"] = {"kubernetes.io/hostname": nodes[1].name}
        client.BatchV1Api(api).create_namespaced_job(ns, body)
        end = wait_until(lambda: finished(api, ns, "across"), bool, "Job across", timeout=120)
        (client_pod,) = (
            client.CoreV1Api(api).list_namespaced_pod(ns, label_selector="job-name=across").items
        )
        log = client.CoreV1Api(api).read_namespaced_pod_log(client_pod.metadata.name, ns)
        assert end == "Complete" and client_pod.spec.node_name == nodes[1].name, log
        by_ip, resolved, by_name = log.split("---\n")
        assert "hello from web" in by_ip, log
        assert resolved.split()[0] == svc.spec.cluster_ip, log
        assert "hello from web" in by_name, log
        print(f"\nfrom the other node by Service name: {by_name.splitlines()[0]}")
        # The host reaches a pod on either node.
        assert b"hello from web" in fetch(pod.status.pod_ip)
        assert client_pod.status.pod_ip  # a pod IP from the second node's range
        plane_range = hostroutes.claimed_pod_range(rc.plane_id(state_dir))
        assert plane_range is not None
        assert ipaddress.ip_address(client_pod.status.pod_ip) in rc.node_pod_range(plane_range, 1)
        routes = [str(r) for r in podnetwork_routes(plane_range)]
        assert routes == [str(rc.node_pod_range(plane_range, i)) for i in (0, 1)]
    finally:
        if api is not None:
            api.close()
        plane.stop(state_dir)
    assert podnetwork_routes(plane_range) == []


def podnetwork_routes(plane_range: ipaddress.IPv4Network) -> list[ipaddress.IPv4Network]:
    """The host's routes into a plane's pod range."""
    return podnetwork.routes_within(plane_range, hostroutes.ip_routes())
