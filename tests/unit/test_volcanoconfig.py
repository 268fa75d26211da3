"""volcano on the local plane, the pure part (``localcluster.volcanoconfig``): the pin agrees
with the images the extension renders, the scheduler's configuration with the extension's, and
the command lines run what the plane needs (its own kubeconfig, no leader election, loopback
health ports, gates and controllers for the kinds the extension serves)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from reconciler.localcluster import build, volcano
from reconciler.localcluster import volcanoconfig as vc
from reconciler.localcluster.config import Layout
from reconciler.model import components

GOLDEN = Path(__file__).parent / "golden" / "quickstart.yaml"
PORTS = {"controller-manager-healthz": 40001, "scheduler-healthz": 40002}


def test_the_pinned_version_is_the_one_the_extension_renders() -> None:
    version = volcano.pinned_version()
    images = [c.image for c in components.COMPONENTS if c.name.startswith("volcano-")]
    assert len(images) == 3
    assert all(image.endswith(f":{version}") for image in images), (version, images)


def test_the_build_module_copies_volcanos_replace_lines() -> None:
    """`go build` in controlplane/volcano resolves k8s.io/* as volcano's own go.mod does."""
    go_mod = (build.source_dir() / vc.SOURCE_SUBDIR / "go.mod").read_text()
    assert "k8s.io/client-go => k8s.io/client-go v0.30.2" in go_mod
    assert vc.pinned_version(go_mod) == "v1.10.0"


def test_pinned_version_reads_a_require_line_or_block() -> None:
    assert vc.pinned_version("require volcano.sh/volcano v1.10.0\n") == "v1.10.0"
    assert vc.pinned_version("require (\n\tvolcano.sh/volcano v1.9.0\n)\n") == "v1.9.0"


def test_the_scheduler_configuration_is_the_extensions() -> None:
    docs = [d for d in yaml.safe_load_all(GOLDEN.read_text()) if d]
    (conf,) = [
        d["data"]["volcano-scheduler.conf"]
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "volcano-scheduler-configmap"
    ]
    assert conf == vc.SCHEDULER_CONF


def test_build_command_builds_both_programs_into_one_folder() -> None:
    cmd = vc.build_command("go", Path("/out"), "v1.10.0")
    assert cmd[:2] == ["go", "build"]
    assert "-o" in cmd and cmd[cmd.index("-o") + 1] == "/out/"
    assert cmd[-2:] == list(vc.PACKAGES)
    assert "volcano.sh/volcano/pkg/version.Version=v1.10.0" in cmd[cmd.index("-ldflags") + 1]


def test_command_lines(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    cmds = vc.commands(Path("/bin/dir"), layout, PORTS, ["/plane/bin", "kubectl"])
    assert set(cmds) == set(vc.COMPONENTS)
    sched = cmds[vc.SCHEDULER][2]
    manager = cmds[vc.CONTROLLER_MANAGER][2]
    for line in (sched, manager):
        assert f"--kubeconfig={tmp_path}/kubeconfigs/volcano.kubeconfig" in line
        assert "--leader-elect=false" in line
        assert "--feature-gates=QueueCommandSync=false,ResourceTopology=false" in line
    served = (
        f"/plane/bin kubectl --kubeconfig={tmp_path}/kubeconfigs/volcano.kubeconfig get --raw "
        "/apis/batch.volcano.sh/v1alpha1 >/dev/null 2>&1 && "
    )
    assert sched.startswith(f"while :; do until {served}")
    assert "; done; /bin/dir/vc-scheduler " in sched
    assert "--healthz-address=127.0.0.1:40002" in sched
    assert f"--scheduler-conf={tmp_path}/volcano/volcano-scheduler.conf" in sched
    assert "--controllers=job-controller,pg-controller,queue-controller,gc-controller" in manager
    assert "--healthz-address=127.0.0.1:40001" in manager
    assert vc.health_urls(PORTS)[vc.SCHEDULER] == "http://127.0.0.1:40002/healthz"


def test_supervised_waits_for_the_condition_then_runs_the_command_again_when_it_exits(
    tmp_path: Path,
) -> None:
    """The shell loop starts the program only once the condition holds (here it fails twice
    first), and again, after the condition, each time it exits (three runs of a program that
    counts its runs and exits 7, then stops the loop)."""
    counter = tmp_path / "runs"
    checks = tmp_path / "checks"
    script = tmp_path / "count.sh"
    script.write_text(
        f'echo x >> {counter}\n[ "$(wc -l < {counter})" -ge 3 ] && kill $PPID\nexit 7\n'
    )
    # The condition fails twice, then holds.
    served = f'echo c >> {checks}; [ "$(wc -l < {checks})" -ge 3 ]'
    cmd = vc.supervised(["sh", str(script)], served)
    cmd[2] = cmd[2].replace(f"sleep {vc.RESTART_DELAY}", "sleep 0")
    cmd[2] = cmd[2].replace(f"sleep {vc.SERVED_POLL}", "sleep 0")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
    assert counter.read_text().count("x") == 3
    assert checks.read_text().count("c") == 5  # 2 failed, then 1 before each of the 3 runs
    assert proc.stdout.count("exited with code 7; starting again") == 2


def test_the_rendered_crds_have_the_subresources_of_volcanos_own() -> None:
    """vc-scheduler writes a PodGroup's status with a plain update: with a status subresource
    the API server dropped it and no volcano Job left Pending. Jobs and Queues have one."""
    docs = [d for d in yaml.safe_load_all(GOLDEN.read_text()) if d]
    subresources = {
        d["metadata"]["name"]: d["spec"]["versions"][0]["subresources"]
        for d in docs
        if d["kind"] == "CustomResourceDefinition" and "volcano.sh" in d["metadata"]["name"]
    }
    assert subresources == {
        "jobs.batch.volcano.sh": {"status": {}},
        "podgroups.scheduling.volcano.sh": {},
        "queues.scheduling.volcano.sh": {"status": {}},
    }
