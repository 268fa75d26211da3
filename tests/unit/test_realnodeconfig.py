"""Real nodes' pure parts, without Docker or a plane: names and address ranges per plane, the
``docker run`` shape, the config files, the build command lines, digests and the build cache.

``tests/cluster/test_real_node_on_cluster.py`` runs all of it for real.
"""

from __future__ import annotations

import ipaddress
import json
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from reconciler.localcluster import build, hostdocker, nodebuild, nodeimage, nodepins
from reconciler.localcluster import realnodeconfig as rc
from reconciler.localcluster.build import BuildError
from reconciler.localcluster.config import Layout, Ports, apiserver_args

STATE = Path("/work/.cache/localcluster")
PID = rc.plane_id(STATE)


# -- names and address ranges -------------------------------------------------------------------


def test_the_plane_id_is_stable_and_differs_between_state_folders() -> None:
    assert rc.plane_id(STATE) == PID
    assert len(PID) == 10 and int(PID, 16) >= 0
    assert rc.plane_id(Path("/tmp/other-plane")) != PID
    assert rc.network_name(PID) == f"mlext-{PID}"
    assert rc.container_name(PID, rc.node_name(0)) == f"mlext-{PID}-real-node-0"
    assert rc.forwarder_name(PID) == f"mlext-{PID}-apiserver"


@given(st.text(min_size=1, max_size=40))
def test_node_pod_ranges_are_disjoint_inside_the_planes_range_and_apart_from_kwoks(
    folder: str,
) -> None:
    pid = rc.plane_id(Path("/") / folder)
    plane_range = rc.plane_pod_range(pid)
    nodes = [rc.node_pod_range(plane_range, i) for i in range(rc.MAX_REAL_NODES)]
    assert all(n.subnet_of(plane_range) for n in nodes)
    assert len({str(n) for n in nodes}) == len(nodes)
    assert plane_range.subnet_of(rc.POD_SUPERNET)
    assert not plane_range.overlaps(ipaddress.ip_network("10.244.0.0/16"))  # kwok's pod range
    assert not plane_range.overlaps(ipaddress.ip_network("10.96.0.0/16"))  # the service range


def test_a_plane_has_at_most_sixteen_real_nodes() -> None:
    assert rc.MAX_REAL_NODES == 16
    with pytest.raises(ValueError, match="at most 16"):
        rc.node_pod_range(rc.plane_pod_range(PID), 16)


# -- docker run -----------------------------------------------------------------------------


def _pairs(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


def test_the_node_container_has_every_capability_but_sys_resource_and_no_privileged() -> None:
    args = rc.node_run_args(PID, STATE, "real-node-0", "img:1", Path("/bin-dir"), Path("/img"))
    assert args[:2] == ["run", "-d"] and "--privileged" not in args
    assert _pairs(args, "--cap-add") == ["ALL"] and _pairs(args, "--cap-drop") == ["SYS_RESOURCE"]
    assert set(_pairs(args, "--security-opt")) == {
        "seccomp=unconfined",
        "apparmor=unconfined",
        "systempaths=unconfined",
    }
    assert _pairs(args, "--device") == ["/dev/kmsg"]
    assert _pairs(args, "--cgroupns") == ["private"]
    assert _pairs(args, "--network") == [rc.network_name(PID)]
    assert "--init" in args
    files = rc.node_layout(STATE, "real-node-0")
    assert set(_pairs(args, "-v")) == {
        f"{files.containerd}:/var/lib/containerd",
        f"{files.etc}:{rc.NODE_ETC}:ro",
        f"{files.logs}:{rc.NODE_LOGS}",
        f"/bin-dir:{rc.NODE_BIN}:ro",
        f"/img:{rc.NODE_IMAGES}:ro",
    }
    assert set(_pairs(args, "--label")) == {
        f"{rc.PLANE_LABEL}={PID}",
        f"{rc.STATE_DIR_LABEL}={STATE}",
        f"{rc.ROLE_LABEL}=node",
    }
    assert args[-3:] == ["img:1", "/bin/bash", f"{rc.NODE_ETC}/entrypoint.sh"]


def test_the_forwarder_listens_on_the_gateway_and_dials_loopback() -> None:
    args = rc.forwarder_run_args(PID, STATE, "img:1", "172.18.0.1", 6443)
    assert _pairs(args, "--network") == ["host"]
    assert args[-3:] == [
        "socat",
        "TCP-LISTEN:6443,bind=172.18.0.1,fork,reuseaddr",
        "TCP:127.0.0.1:6443",
    ]


def test_the_network_is_the_planes_own_and_labelled_with_its_pod_range_claim() -> None:
    args = rc.network_create_args(PID, STATE)
    assert args[-1] == rc.network_name(PID) and f"{rc.PLANE_LABEL}={PID}" in args
    claimed = rc.network_create_args(PID, STATE, ipaddress.ip_network("10.245.32.0/20"))
    assert f"{rc.POD_RANGE_LABEL}=10.245.32.0/20" in claimed


# -- config files ---------------------------------------------------------------------------


def test_containerd_config_restricts_oom_score_and_pins_the_local_pause_image() -> None:
    doc = tomllib.loads(rc.containerd_config("mlext.local/pause:3.10.2"))
    assert doc["version"] == 3
    runtime = doc["plugins"]["io.containerd.cri.v1.runtime"]
    assert runtime["restrict_oom_score_adj"] is True
    runc = runtime["containerd"]["runtimes"]["runc"]
    assert runc["runtime_type"] == "io.containerd.runc.v2"
    assert runc["options"] == {"BinaryName": nodepins.RUNC_PATH, "SystemdCgroup": False}
    assert runtime["cni"] == {"bin_dirs": [nodepins.CNI_BIN_DIR], "conf_dir": f"{rc.NODE_ETC}/cni"}
    images = doc["plugins"]["io.containerd.cri.v1.images"]
    assert images["snapshotter"] == "overlayfs"
    assert images["pinned_images"] == {"sandbox": "mlext.local/pause:3.10.2"}


def test_kubelet_config_accepts_cgroup_v1_with_cgroupfs_and_registers_tainted() -> None:
    pod_range = rc.node_pod_range(rc.plane_pod_range(PID), 0)
    cfg = rc.kubelet_config(pod_range, "10.96.0.10")
    assert cfg["clusterDNS"] == ["10.96.0.10"] and cfg["clusterDomain"] == "cluster.local"
    assert cfg["failCgroupV1"] is False and cfg["cgroupDriver"] == "cgroupfs"
    assert cfg["podCIDR"] == str(pod_range)
    assert cfg["registerWithTaints"] == [rc.REAL_NODE_TAINT]
    assert cfg["authentication"]["anonymous"] == {"enabled": False}
    assert cfg["authorization"] == {"mode": "Webhook"}
    assert cfg["containerRuntimeEndpoint"] == f"unix://{rc.CONTAINERD_SOCKET}"
    assert yaml.safe_load(yaml.safe_dump(cfg)) == cfg
    args = rc.kubelet_args("real-node-3")
    assert "--hostname-override=real-node-3" in args
    assert f"--node-labels={rc.REAL_NODE_LABEL[0]}={rc.REAL_NODE_LABEL[1]}" in args


def test_the_taint_and_the_toleration_match() -> None:
    taint, tol = rc.REAL_NODE_TAINT, rc.REAL_NODE_TOLERATION
    assert (tol["key"], tol["value"], tol["effect"]) == (
        taint["key"],
        taint["value"],
        taint["effect"],
    )
    assert tol["operator"] == "Equal"


def test_kube_proxy_leaves_conntrack_alone_and_knows_the_planes_pod_range() -> None:
    cfg = rc.kube_proxy_config("real-node-0", rc.plane_pod_range(PID))
    assert cfg["mode"] == "iptables" and cfg["hostnameOverride"] == "real-node-0"
    assert cfg["clusterCIDR"] == str(rc.plane_pod_range(PID))
    assert cfg["conntrack"]["maxPerCore"] == 0


def test_cni_config_hands_out_the_nodes_range_behind_a_bridge() -> None:
    pod_range = rc.node_pod_range(rc.plane_pod_range(PID), 2)
    doc = json.loads(json.dumps(rc.cni_config(pod_range)))
    bridge, portmap = doc["plugins"]
    assert bridge["type"] == "bridge" and bridge["ipMasq"] is True
    assert bridge["ipam"]["ranges"] == [[{"subnet": str(pod_range)}]]
    assert portmap["type"] == "portmap"


def test_the_entrypoint_remounts_then_starts_containerd_kubelet_and_kube_proxy_in_order() -> None:
    script = rc.entrypoint_script("real-node-0", "pause.tar")
    steps = [
        "mount -o remount,rw /sys",
        "mount -o remount,bind,rw",
        "mount --make-rshared /",
        "containerd --config",
        f"ctr -n k8s.io images import {rc.NODE_IMAGES}/pause.tar",
        "kubelet --config",
        "kube-proxy --config",
        "wait -n",
    ]
    positions = [script.index(step) for step in steps]
    assert positions == sorted(positions)
    assert "--hostname-override=real-node-0" in script


def test_node_kubeconfigs_check_the_servers_certificate_for_localhost() -> None:
    doc = {"clusters": [{"name": "c", "cluster": {"server": "https://172.18.0.1:6443"}}]}
    out = rc.with_tls_server_name(doc)
    assert out["clusters"][0]["cluster"]["tls-server-name"] == "localhost"
    assert "tls-server-name" not in doc["clusters"][0]["cluster"]  # the input is left alone
    assert rc.node_server("172.18.0.1", 6443) == "https://172.18.0.1:6443"


def test_the_api_server_prefers_a_kubelets_internal_ip_and_has_a_client_certificate() -> None:
    args = apiserver_args(Layout(STATE), Ports(1, 2, 3, 4, 5))
    assert "--kubelet-preferred-address-types=InternalIP,Hostname" in args
    assert any(a.startswith("--kubelet-client-certificate=") for a in args)


def test_rbac_binds_kubelets_and_the_api_server_and_the_endpoint_slice_names_the_forwarder() -> (
    None
):
    bindings = {b["metadata"]["name"]: b for b in rc.rbac_objects()}
    nodes = bindings["mlext:real-nodes"]
    assert nodes["roleRef"]["name"] == "system:node"
    assert nodes["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:nodes"}
    ]
    assert bindings["mlext:apiserver-kubelet-client"]["roleRef"]["name"] == (
        "system:kubelet-api-admin"
    )
    eps = rc.kubernetes_endpoint_slice("172.18.0.1", 6443)
    assert eps["metadata"]["labels"]["kubernetes.io/service-name"] == "kubernetes"
    assert eps["endpoints"][0]["addresses"] == ["172.18.0.1"]
    assert eps["ports"] == [{"name": "https", "port": 6443, "protocol": "TCP"}]


def test_the_gateway_comes_from_dockers_record_or_the_bridges_address() -> None:
    inspect = [{"IPAM": {"Config": [{"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"}]}}]
    assert rc.parse_gateway(inspect) == "172.18.0.1"
    assert rc.parse_gateway([{"IPAM": {"Config": [{"Subnet": "172.18.0.0/16"}]}}]) is None
    ip_json = [{"ifname": "br-x", "addr_info": [{"family": "inet", "local": "172.19.0.1"}]}]
    assert rc.parse_bridge_address(ip_json) == "172.19.0.1"
    assert rc.parse_bridge_address([]) is None


# -- builds ---------------------------------------------------------------------------------


def test_containerd_is_installed_static_at_the_pin_without_cgo_snapshotters() -> None:
    cmd = nodebuild.containerd_install_command("go")
    assert cmd[:2] == ["go", "install"]
    assert cmd[cmd.index("-tags") + 1] == "no_btrfs no_devmapper no_zfs"
    version = nodepins.CONTAINERD_VERSION
    assert [c for c in cmd if "@" in c] == [
        f"github.com/containerd/containerd/v2/cmd/{name}@{version}"
        for name in ("containerd", "containerd-shim-runc-v2", "ctr")
    ]
    env = nodebuild.containerd_env({"GOFLAGS": "-mod=vendor"}, Path("/out"))
    assert env["CGO_ENABLED"] == "0" and env["GOBIN"] == "/out"
    assert "-mod" not in env["GOFLAGS"]  # go install pkg@version runs outside any module


def test_kubelet_and_kube_proxy_build_in_one_go_build_with_the_version_stamped() -> None:
    cmd = nodebuild.kube_build_command("go", Path("/out"), "v1.36.3")
    assert cmd[-2:] == ["k8s.io/kubernetes/cmd/kubelet", "k8s.io/kubernetes/cmd/kube-proxy"]
    assert cmd[cmd.index("-o") + 1] == "/out/"
    assert "gitVersion=v1.36.3" in cmd[cmd.index("-ldflags") + 1]


def test_the_control_planes_go_mod_lists_the_node_programs_as_tools() -> None:
    go_mod = (build.source_dir() / "go.mod").read_text()
    for package in nodepins.KUBE_NODE_PACKAGES:
        assert f"\t{package}\n" in go_mod.split("tool (", 1)[1]


def test_digests_change_with_their_inputs() -> None:
    assert nodebuild.kube_digest(b"mod", b"sum") == nodebuild.kube_digest(b"mod", b"sum")
    assert nodebuild.kube_digest(b"mod", b"sum") != nodebuild.kube_digest(b"mod2", b"sum")
    assert nodebuild.pause_digest(b"int main(){}") != nodebuild.pause_digest(b"int main(){ }")
    assert "-static" in nodebuild.pause_cflags()
    assert nodeimage.image_name("ab" * 32) == "mlext.local/node:abababababab"
    assert nodeimage.image_name() == nodeimage.image_name(nodeimage.image_digest())


def test_mmdebstrap_makes_a_minimal_debian_with_the_node_packages() -> None:
    cmd = nodeimage.mmdebstrap_command(Path("/tmp/rootfs.tar"))
    assert cmd[0] == "mmdebstrap" and "--variant=minbase" in cmd
    assert f"--include={','.join(nodepins.NODE_PACKAGES)}" in cmd
    assert cmd[-2:] == [nodepins.DEBIAN_SUITE, "/tmp/rootfs.tar"]
    for package in ("runc", "containernetworking-plugins", "iptables", "socat"):
        assert package in nodepins.NODE_PACKAGES


def test_the_cache_builds_once_reuses_and_rebuilds_when_the_digest_changes(tmp_path: Path) -> None:
    runs: list[str] = []

    def make(content: str) -> Callable[[Path], None]:
        def write(tmp: Path) -> None:
            runs.append(content)
            (tmp / "out").write_text(content)

        return write

    out = tmp_path / "part"
    assert nodebuild.cached_build(out, "d1", ["out"], make("one"), "part", None) is not None
    assert nodebuild.cached_build(out, "d1", ["out"], make("again"), "part", None) is None
    assert (out / "out").read_text() == "one"
    nodebuild.cached_build(out, "d2", ["out"], make("two"), "part", None)
    assert (out / "out").read_text() == "two" and runs == ["one", "two"]


def test_a_failed_build_keeps_what_was_there(tmp_path: Path) -> None:
    out = tmp_path / "part"
    nodebuild.cached_build(out, "d1", ["out"], lambda t: (t / "out").write_text("good"), "p", None)
    with pytest.raises(BuildError, match="made no out"):
        nodebuild.cached_build(out, "d2", ["out"], lambda t: None, "p", None)
    assert (out / "out").read_text() == "good"
    # The stamp still names the old digest: the next call with it builds nothing.
    assert nodebuild.cached_build(out, "d1", ["out"], lambda t: None, "p", None) is None


# -- the host -------------------------------------------------------------------------------


def test_the_host_installs_docker_and_mmdebstrap_from_debian_after_updating_the_lists() -> None:
    update, install = hostdocker.apt_commands()
    assert update == ["apt-get", "update"]
    assert install[:3] == ["apt-get", "install", "-y"]
    assert {"docker.io", "mmdebstrap", "tini"} <= set(install)
    advice = hostdocker.install_advice()
    assert "sudo apt-get install -y docker.io" in advice and "dockerd" in advice
    assert hostdocker.dockerd_command() == ["dockerd"]
