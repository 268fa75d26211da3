"""Fast tests of the local control plane's pure logic: no process is started, no Go is run."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography import x509

from reconciler.cli.main import main
from reconciler.localcluster import build, config, pki, plane

GO_MOD = """module mlext/controlplane

go 1.26.0

require (
\tgo.etcd.io/etcd/server/v3 v3.6.8
\tk8s.io/kubernetes v1.36.3
\tsigs.k8s.io/kwok v0.8.0
)

replace (
\tk8s.io/api => k8s.io/api v0.36.3
)
"""


def test_pinned_versions_read_require_lines_not_replaces() -> None:
    versions = build.pinned_versions(GO_MOD)
    assert versions["k8s.io/kubernetes"] == "v1.36.3"
    assert versions["sigs.k8s.io/kwok"] == "v0.8.0"
    assert "k8s.io/api" not in versions
    assert build.pinned_kubernetes_version(GO_MOD) == "v1.36.3"
    with pytest.raises(build.BuildError):
        build.pinned_kubernetes_version("module x\n")


def test_the_projects_go_mod_pins_kubernetes_and_kwok() -> None:
    versions = build.pinned_versions((build.source_dir() / "go.mod").read_text())
    assert versions["k8s.io/kubernetes"].startswith("v1.")
    assert "sigs.k8s.io/kwok" in versions


def test_source_digest_changes_with_content_not_order() -> None:
    a = build.source_digest([("go.mod", b"x"), ("main.go", b"y")])
    assert a == build.source_digest([("main.go", b"y"), ("go.mod", b"x")])
    assert a != build.source_digest([("go.mod", b"x2"), ("main.go", b"y")])


def test_ldflags_stamp_the_version() -> None:
    flags = build.ldflags("v1.36.3")
    assert "-X k8s.io/component-base/version.gitVersion=v1.36.3" in flags
    assert "-X k8s.io/component-base/version.gitMinor=36" in flags
    assert flags.startswith("-s -w")
    with pytest.raises(build.BuildError):
        build.ldflags("latest")


def test_progress_line() -> None:
    assert build.progress_line(50, 200, 125) == "compiled 50/200 packages (25%) in 2m05s"
    assert build.progress_line(3, 0, 1) == "compiled 3 packages in 0m01s"


def test_default_nodes_have_the_documented_shape() -> None:
    nodes = config.default_nodes()
    assert [n.gpus for n in nodes] == [0, 0, 0, 1]
    manifests = [config.node_manifest(n) for n in nodes]
    for m in manifests:
        assert m["status"]["capacity"]["cpu"] == "4"
        assert m["status"]["capacity"]["memory"] == "16Gi"
        assert m["metadata"]["labels"]["type"] == "kwok"
        assert "taints" not in m["spec"]
    gpu = manifests[-1]
    assert gpu["status"]["allocatable"]["nvidia.com/gpu"] == "1"
    assert gpu["metadata"]["labels"]["accelerator"] == "nvidia"
    assert "nvidia.com/gpu" not in manifests[0]["status"]["capacity"]
    assert len({m["metadata"]["name"] for m in manifests}) == 4
    assert config.default_nodes(0, 2)[1].name == "kwok-gpu-1"
    with pytest.raises(ValueError):
        config.default_nodes(-1, 0)


def test_component_commands_listen_on_loopback_only(tmp_path: Path) -> None:
    layout = config.Layout(tmp_path)
    ports = config.Ports.from_list([2001, 2002, 2003, 2004, 2005])
    cmds = config.component_commands(Path("/bin/cp"), layout, ports, tmp_path / "stages.yaml")
    assert list(cmds) == list(config.COMPONENTS)
    for name, cmd in cmds.items():
        assert cmd[:2] == ["/bin/cp", name]
        assert any(str(tmp_path) in arg for arg in cmd)  # plane.is_ours relies on this
    api = cmds["kube-apiserver"]
    assert "--secure-port=2003" in api
    assert "--bind-address=127.0.0.1" in api
    assert "--authorization-mode=RBAC" in api
    assert "--etcd-servers=http://127.0.0.1:2001" in api
    assert "--listen-client-urls=http://127.0.0.1:2001" in cmds["etcd"]
    assert "--use-service-account-credentials=true" in cmds["kube-controller-manager"]
    assert "--manage-nodes-with-label-selector=type=kwok" in cmds["kwok"]
    with pytest.raises(ValueError):
        config.Ports.from_list([1, 1, 2, 3, 4])


def test_stop_order_stops_etcd_last() -> None:
    pids = {c: i for i, c in enumerate(config.COMPONENTS)}
    waves = config.stop_order(pids)
    assert waves[-1] == ["etcd"]
    assert sorted(waves[0]) == sorted(c for c in config.COMPONENTS if c != "etcd")
    assert config.stop_order({}) == []
    assert config.stop_order({"etcd": 1}) == [["etcd"]]


def test_state_round_trips_through_json() -> None:
    state = config.PlaneState(
        version="v1.36.3",
        state_dir="/s",
        kubeconfig="/s/kubeconfig",
        server="https://127.0.0.1:1",
        binary="/b",
        ports={"apiserver": 1},
        pids={"etcd": 10},
        nodes=["n"],
        started_at=1.5,
        ready_seconds=8.0,
    )
    assert config.PlaneState.from_json(state.to_json()) == state
    with pytest.raises(ValueError):
        config.PlaneState.from_json(json.dumps([1]))


def test_pki_and_kubeconfig(tmp_path: Path) -> None:
    paths = pki.PkiPaths(tmp_path)
    pki.write_pki(paths, config.SERVICE_IP)
    ca = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(paths.apiserver_cert.read_bytes())
    server.verify_directly_issued_by(ca)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "kubernetes.default.svc" in sans.get_values_for_type(x509.DNSName)
    admin = x509.load_pem_x509_certificate(paths.client_cert(pki.ADMIN).read_bytes())
    orgs = [a.value for a in admin.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)]
    assert orgs == ["system:masters"]
    assert paths.sa_key.stat().st_mode & 0o777 == 0o600

    doc = config.kubeconfig("https://127.0.0.1:1", b"ca", b"cert", b"key", "me")
    assert doc["current-context"] == config.CLUSTER_NAME
    assert doc["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:1"


def test_free_ports_are_distinct() -> None:
    ports = plane.free_ports(5)
    assert len(set(ports)) == 5


def test_status_and_down_without_a_plane_are_harmless(tmp_path: Path) -> None:
    runner = CliRunner()
    down = runner.invoke(main, ["cluster", "down", "--state-dir", str(tmp_path)])
    assert down.exit_code == 0
    assert "no cluster running" in down.output
    st = runner.invoke(main, ["cluster", "status", "--state-dir", str(tmp_path)])
    assert st.exit_code == 1
    assert "no cluster running" in st.output
    assert not plane.stop(tmp_path)


def test_a_stale_state_file_with_dead_pids_counts_as_not_running(tmp_path: Path) -> None:
    layout = config.Layout(tmp_path)
    state = config.PlaneState(
        version="v1.36.3",
        state_dir=str(tmp_path),
        kubeconfig=str(layout.admin_kubeconfig),
        server="https://127.0.0.1:1",
        binary="/b",
        ports={},
        pids={"etcd": 999_999_999},
    )
    layout.state_file.write_text(state.to_json())
    st = plane.status(tmp_path)
    assert not st.running
    assert st.components[0].alive is False
    assert plane.stop(tmp_path) is False
    assert not layout.state_file.exists()


def _cluster_up(state_dir: Path) -> Result:
    # No real nodes: Docker has nothing to do for a plane that is not there.
    return CliRunner().invoke(
        main, ["cluster", "up", "--real-nodes", "0", "--state-dir", str(state_dir)]
    )


def _crashed_state(tmp_path: Path, ready: bool = True) -> config.PlaneState:
    """A recorded plane every component of which is gone (dead PIDs), as after a reboot."""
    layout = config.Layout(tmp_path)
    ports = config.Ports.from_list(plane.free_ports(5))
    commands = config.component_commands(Path("/nonexistent/controlplane"), layout, ports, tmp_path)
    state = config.PlaneState(
        version="v1.36.3",
        state_dir=str(tmp_path),
        kubeconfig=str(layout.admin_kubeconfig),
        server=config.apiserver_url(ports),
        binary="/nonexistent/controlplane",
        ports={k: int(v) for k, v in vars(ports).items()},
        pids={name: 999_999_990 + i for i, name in enumerate(config.COMPONENTS)},
        commands=commands,
        ready_seconds=9.0 if ready else None,
    )
    layout.state_file.write_text(state.to_json())
    (layout.etcd_data / "member").mkdir(parents=True)
    return state


def test_cluster_up_keeps_a_crashed_plane_whose_port_another_process_took(
    tmp_path: Path,
) -> None:
    state = _crashed_state(tmp_path)
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", state.ports["etcd_client"]))
    squatter.listen()
    try:
        result = _cluster_up(tmp_path)
    finally:
        squatter.close()
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        f"error: etcd is not running and another process listens on its port "
        f"{state.ports['etcd_client']}; the plane's data in {tmp_path} is kept: free the port "
        f"and run `reconciler cluster up` again, or `reconciler cluster down --state-dir "
        f"{tmp_path}` discards it"
    )
    # Nothing was replaced: the same plane is still recorded, its data still there.
    assert plane.read_state(tmp_path) == state
    assert (tmp_path / "etcd" / "member").is_dir()


def test_cluster_up_does_not_guess_about_a_start_that_never_finished(tmp_path: Path) -> None:
    state = _crashed_state(tmp_path, ready=False)
    result = _cluster_up(tmp_path)
    assert result.exit_code == 1
    assert "its start was interrupted (never ready)" in result.stderr
    assert plane.read_state(tmp_path) == state
