"""The real nodes' pod network and cluster DNS, pure parts: how a plane claims a pod range that
no other plane or host route uses, the routes from the host and between nodes, and CoreDNS's
objects and build line. ``tests/cluster/test_cluster_dns_and_pod_routes.py`` runs them for real.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from reconciler.localcluster import clusterdns, nodebuild, nodepins, podnetwork
from reconciler.localcluster import realnodeconfig as rc
from reconciler.localcluster.config import SERVICE_CIDR

PID = rc.plane_id(Path("/work/.cache/localcluster"))
ALL_RANGES = list(rc.POD_SUPERNET.subnets(new_prefix=rc.PLANE_POD_PREFIX))


def net(text: str) -> ipaddress.IPv4Network:
    out = ipaddress.ip_network(text)
    assert isinstance(out, ipaddress.IPv4Network)
    return out


def test_a_plane_gets_its_preferred_range_when_it_is_free() -> None:
    assert podnetwork.choose_plane_range(PID, set()) == rc.plane_pod_range(PID)


@given(st.sets(st.integers(0, len(ALL_RANGES) - 1), max_size=len(ALL_RANGES) - 1))
def test_a_plane_never_takes_a_claimed_or_routed_range(taken_indexes: set[int]) -> None:
    taken = {ALL_RANGES[i] for i in taken_indexes}
    chosen = podnetwork.choose_plane_range(PID, taken)
    assert chosen in ALL_RANGES and chosen not in taken
    assert podnetwork.choose_plane_range(PID, taken) == chosen  # deterministic


def test_a_route_inside_a_range_makes_it_busy_and_a_full_supernet_is_an_error() -> None:
    preferred = rc.plane_pod_range(PID)
    one_node = list(preferred.subnets(new_prefix=24))[3]
    assert podnetwork.choose_plane_range(PID, {one_node}) != preferred
    with pytest.raises(podnetwork.NoFreePodRange, match="cluster down"):
        podnetwork.choose_plane_range(PID, set(ALL_RANGES))


def test_claims_and_routes_are_read_from_docker_labels_and_ip_route_json() -> None:
    assert podnetwork.claimed_ranges(["10.245.16.0/20", "", "junk", "10.245.32.0/20\n"]) == {
        net("10.245.16.0/20"),
        net("10.245.32.0/20"),
    }
    routes = [
        {"dst": "default", "gateway": "10.0.0.1"},
        {"dst": "10.245.17.0/24", "gateway": "172.18.0.2"},
        {"dst": "172.18.0.0/16", "dev": "br-1"},
        {"dst": "10.0.0.0/8", "dev": "eth9"},  # overlaps the supernet: not free either
    ]
    assert podnetwork.routed_ranges(routes) == {net("10.245.17.0/24"), net("10.0.0.0/8")}
    assert podnetwork.routes_within(net("10.245.16.0/20"), routes) == [net("10.245.17.0/24")]


def test_the_host_routes_every_nodes_pods_and_each_node_the_others() -> None:
    nodes = {
        "real-node-0": (net("10.245.16.0/24"), "172.18.0.3"),
        "real-node-1": (net("10.245.17.0/24"), "172.18.0.4"),
    }
    assert podnetwork.host_routes(nodes) == [
        ["ip", "route", "replace", "10.245.16.0/24", "via", "172.18.0.3"],
        ["ip", "route", "replace", "10.245.17.0/24", "via", "172.18.0.4"],
    ]
    assert podnetwork.node_routes(nodes) == {
        "real-node-0": [["ip", "route", "replace", "10.245.17.0/24", "via", "172.18.0.4"]],
        "real-node-1": [["ip", "route", "replace", "10.245.16.0/24", "via", "172.18.0.3"]],
    }
    assert podnetwork.delete_route_command(net("10.245.16.0/24")) == [
        "ip", "route", "delete", "10.245.16.0/24",
    ]  # fmt: skip


# -- cluster DNS -----------------------------------------------------------------------------


def test_kube_dns_sits_at_the_tenth_service_address_the_kubelets_are_given() -> None:
    assert clusterdns.SERVICE_IP == "10.96.0.10"
    assert ipaddress.ip_address(clusterdns.SERVICE_IP) in ipaddress.ip_network(SERVICE_CIDR)
    svc = clusterdns.service()
    assert svc["metadata"]["name"] == "kube-dns" and svc["spec"]["clusterIP"] == "10.96.0.10"
    assert {(p["port"], p["protocol"]) for p in svc["spec"]["ports"]} == {
        (53, "UDP"),
        (53, "TCP"),
    }
    assert svc["spec"]["selector"] == clusterdns.APP_LABEL


def test_coredns_runs_on_real_nodes_only_in_the_nodes_network_from_the_local_image() -> None:
    ds = clusterdns.daemon_set("mlext.local/coredns:v1")
    spec = ds["spec"]["template"]["spec"]
    assert ds["spec"]["template"]["metadata"]["labels"] == clusterdns.APP_LABEL
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "Default"
    assert spec["nodeSelector"] == {rc.REAL_NODE_LABEL[0]: rc.REAL_NODE_LABEL[1]}
    assert rc.REAL_NODE_TOLERATION in spec["tolerations"]
    (container,) = spec["containers"]
    assert container["image"] == "mlext.local/coredns:v1"
    assert container["imagePullPolicy"] == "Never"
    assert container["readinessProbe"]["httpGet"]["port"] == clusterdns.READY_PORT


def test_the_corefile_serves_the_cluster_domain_and_forwards_the_rest_to_the_node() -> None:
    text = clusterdns.corefile()
    assert "kubernetes cluster.local in-addr.arpa ip6.arpa {" in text
    assert "forward . /etc/resolv.conf" in text
    assert f"ready :{clusterdns.READY_PORT}" in text and f"health :{clusterdns.HEALTH_PORT}" in text
    assert text.count("{") == text.count("}")
    assert yaml.safe_load(yaml.safe_dump(clusterdns.config_map()))["data"]["Corefile"] == text


def test_coredns_may_read_what_its_kubernetes_plugin_watches() -> None:
    role = clusterdns.cluster_role()
    granted = {
        (g, r) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
    }
    for needed in [("", "services"), ("", "namespaces"), ("discovery.k8s.io", "endpointslices")]:
        assert needed in granted
    binding = clusterdns.cluster_role_binding()
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}
    ]
    kinds = [obj["kind"] for _path, obj in clusterdns.objects("img")]
    assert kinds.index("ServiceAccount") < kinds.index("DaemonSet")
    assert kinds.index("ConfigMap") < kinds.index("DaemonSet")


def test_coredns_is_go_installed_as_released_at_the_pinned_version() -> None:
    cmd = nodebuild.coredns_install_command("go")
    assert cmd[:2] == ["go", "install"]
    assert cmd[-1] == f"github.com/coredns/coredns@{nodepins.COREDNS_VERSION}"
    assert nodebuild.coredns_image_name() == f"mlext.local/coredns:{nodepins.COREDNS_VERSION}"
    assert nodebuild.coredns_digest() == nodebuild.coredns_digest()
