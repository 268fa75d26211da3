"""The local control plane's kubectl and crash / relaunch of one component, without a plane.

No Kubernetes process is started here: kill and relaunch are exercised on a stand-in process (a
Python interpreter that sleeps) recorded in a state file the way ``plane.start`` records the
real components. ``tests/cluster/test_controlplane.py`` does the same against the real plane.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli.main import main
from reconciler.localcluster import build, config, plane


def _stand_in(state_dir: Path, code: str = "import time; time.sleep(600)") -> list[str]:
    # The state folder in the command line is what makes plane.is_ours recognise the process.
    return [sys.executable, "-c", code, str(state_dir)]


def _record(
    state_dir: Path,
    commands: dict[str, list[str]],
    pids: dict[str, int] | None = None,
    die_with_parent: bool = True,
) -> None:
    layout = config.Layout(state_dir)
    ports = config.Ports.from_list(plane.free_ports(5))
    state = config.PlaneState(
        version="v1.36.3",
        state_dir=str(state_dir),
        kubeconfig=str(layout.admin_kubeconfig),
        server=config.apiserver_url(ports),
        binary="/nonexistent/controlplane",
        ports={k: int(v) for k, v in vars(ports).items()},
        # A PID that cannot exist: recorded but not running, as after a crash.
        pids=pids if pids is not None else dict.fromkeys(commands, 999_999_999),
        commands=commands,
        die_with_parent=die_with_parent,
    )
    layout.state_file.write_text(state.to_json())


def _pid(state_dir: Path, component: str) -> int:
    state = plane.read_state(state_dir)
    assert state is not None
    return state.pids[component]


def test_kubectl_is_a_component_of_the_one_binary() -> None:
    binaries = build.Binaries("v1.36.3", Path("/cache/controlplane"), Path("/cache/stages.yaml"))
    assert binaries.kubectl() == ["/cache/controlplane", "kubectl"]
    assert binaries.kubectl("get", "nodes", "-o", "json") == [
        "/cache/controlplane",
        "kubectl",
        "get",
        "nodes",
        "-o",
        "json",
    ]
    assert binaries.command("etcd", "--version") == ["/cache/controlplane", "etcd", "--version"]


def test_go_mod_pins_kubectl_at_the_kubernetes_release() -> None:
    go_mod = (build.source_dir() / "go.mod").read_text()
    kubernetes = build.pinned_kubernetes_version(go_mod)  # v1.36.3
    assert build.pinned_versions(go_mod)["k8s.io/kubectl"] == "v0" + kubernetes[2:]  # v0.36.3
    assert f"k8s.io/kubectl => k8s.io/kubectl v0{kubernetes[2:]}" in go_mod


def test_state_records_command_lines_and_reads_older_state_files() -> None:
    state = config.PlaneState(
        version="v1.36.3",
        state_dir="/s",
        kubeconfig="/s/kubeconfig",
        server="https://127.0.0.1:1",
        binary="/b",
        ports={"apiserver": 1},
        pids={"etcd": 10},
        commands={"etcd": ["/b", "etcd", "--data-dir=/s/etcd"]},
        die_with_parent=True,
    )
    assert config.PlaneState.from_json(state.to_json()) == state
    older = json.loads(state.to_json())
    del older["commands"], older["die_with_parent"]
    again = config.PlaneState.from_json(json.dumps(older))
    assert again.commands == {}
    assert again.die_with_parent is False


def test_kill_and_relaunch_one_component(tmp_path: Path) -> None:
    # kwok has no health endpoint: relaunched counts as healthy once started.
    _record(tmp_path, {"kwok": _stand_in(tmp_path)})
    try:
        with pytest.raises(plane.PlaneError, match="not running"):
            plane.kill("kwok", tmp_path)

        first = plane.relaunch("kwok", tmp_path)
        assert _pid(tmp_path, "kwok") == first
        assert plane.is_ours(first, tmp_path)
        with pytest.raises(plane.PlaneError, match="still running"):
            plane.relaunch("kwok", tmp_path)

        assert plane.kill("kwok", tmp_path) == first
        assert not plane.is_ours(first, tmp_path)
        st = plane.status(tmp_path)
        assert [(c.name, c.alive) for c in st.components] == [("kwok", False)]
        with pytest.raises(plane.PlaneError, match="not running"):
            plane.restart("kwok", tmp_path)  # restart = kill + relaunch: nothing to kill

        second = plane.relaunch("kwok", tmp_path)
        third = plane.restart("kwok", tmp_path)
        assert len({first, second, third}) == 3
        assert _pid(tmp_path, "kwok") == third
        assert plane.is_ours(third, tmp_path)
        assert not plane.is_ours(second, tmp_path)
        log = config.Layout(tmp_path).log("kwok").read_text()
        assert log.count("relaunched by reconciler.localcluster") == 3
    finally:
        plane.stop(tmp_path)
    assert not plane.is_ours(third, tmp_path)


def test_relaunched_from_a_short_lived_thread_the_component_lives_as_long_as_the_process(
    tmp_path: Path,
) -> None:
    # A test may relaunch the API server from a threading.Timer. The parent-death signal is tied
    # to the thread that forks, so the component must not die when that thread ends, but still
    # die with the process. A child Python process plays the test run here.
    _record(tmp_path, {"kwok": _stand_in(tmp_path)}, die_with_parent=True)
    script = f"""
import threading, time
from pathlib import Path
from reconciler.localcluster import plane
state_dir = Path({str(tmp_path)!r})
pids = []
worker = threading.Thread(target=lambda: pids.append(plane.relaunch("kwok", state_dir)))
worker.start()
worker.join()
deadline = time.monotonic() + 1.0
while time.monotonic() < deadline:  # the thread is gone: the component must stay
    assert plane.is_ours(pids[0], state_dir), "killed when the starting thread ended"
    time.sleep(0.05)
print(pids[0])
"""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
        )
        assert proc.returncode == 0, proc.stderr
        pid = int(proc.stdout.strip())
        deadline = time.monotonic() + 10
        while plane.is_ours(pid, tmp_path):  # the process ended: so does the component
            assert time.monotonic() < deadline, f"pid {pid} outlived the process that started it"
            time.sleep(0.05)
    finally:
        plane.stop(tmp_path)


def test_relaunch_reports_a_component_that_exits(tmp_path: Path) -> None:
    _record(
        tmp_path,
        {"kube-scheduler": _stand_in(tmp_path, "import sys; print('no config'); sys.exit(3)")},
    )
    with pytest.raises(plane.PlaneError) as err:
        plane.relaunch("kube-scheduler", tmp_path, timeout=30)
    assert "kube-scheduler exited with code 3" in str(err.value)
    assert "no config" in str(err.value)  # the last lines of its log
    plane.stop(tmp_path)


def test_relaunch_that_never_gets_healthy_leaves_nothing_running(tmp_path: Path) -> None:
    # Nothing answers on the recorded /healthz port: the wait times out, the process is killed.
    _record(tmp_path, {"kube-scheduler": _stand_in(tmp_path)})
    with pytest.raises(plane.PlaneError, match="timed out"):
        plane.relaunch("kube-scheduler", tmp_path, timeout=0.5)
    pid = _pid(tmp_path, "kube-scheduler")
    assert not plane.is_ours(pid, tmp_path)
    assert plane.stop(tmp_path) is False


def test_kill_and_relaunch_refuse_what_they_cannot_do(tmp_path: Path) -> None:
    with pytest.raises(plane.PlaneError, match="unknown component"):
        plane.kill("kubelet", tmp_path)
    with pytest.raises(plane.PlaneError, match="no plane"):
        plane.relaunch("etcd", tmp_path)
    _record(tmp_path, {"etcd": _stand_in(tmp_path)})
    with pytest.raises(plane.PlaneError, match="has not started kwok"):
        plane.relaunch("kwok", tmp_path)
    _record(tmp_path, {}, pids={"etcd": 999_999_999})
    with pytest.raises(plane.PlaneError, match="did not record its command lines"):
        plane.relaunch("etcd", tmp_path)


def test_cluster_kubectl_without_a_plane_says_so(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["cluster", "kubectl", "--state-dir", str(tmp_path), "--", "get", "nodes"]
    )
    assert result.exit_code == 1
    assert "no cluster running" in result.output
