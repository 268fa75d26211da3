"""The GitOps loop on a commit that trips a file limit (issue 27, item 3), on the real control
plane: a symlink to a host file, one to /dev/zero and a symlink loop, committed to the followed
repo, make the revision invalid like any other problem. The loop answers `invalid` (not `error`),
records the problems naming each file, applies nothing, and nothing of the host file reaches its
output or the cluster.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import git
import pytest
from click.testing import CliRunner

from reconciler import kube, objects
from reconciler.cli import main as cli
from tests.helpers import example_repo

pytestmark = pytest.mark.cluster
HOST_FILE = Path("/etc/passwd")
HOST_TEXT = HOST_FILE.read_text().splitlines()[0]


def sync_once(kubeconfig: str | None, root: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "reconciler", "sync", "--repo", str(root), "--once"]
    command += ["--cache-dir", str(cache)]
    if kubeconfig:
        command += ["--kubeconfig", kubeconfig]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


def test_a_hostile_commit_is_an_invalid_revision_and_the_loop_reports_it(
    tmp_path: Path, namespace: str, cluster_kubeconfig: str | None, cluster: kube.Cluster
) -> None:
    name = f"h{namespace[-6:]}"
    root = example_repo(tmp_path, name, namespace, jobs=False)
    work_tree = git.Repo.init(root, initial_branch="main")
    work_tree.git.add(A=True)
    good = work_tree.index.commit("first").hexsha
    applied = sync_once(cluster_kubeconfig, root, tmp_path / "cache")
    assert applied.stdout == f"success: revision {good}\n", applied.stderr
    model = objects.reference(objects.Key("v1", "ConfigMap", namespace, "blue-model"))
    before = kube.get(cluster, model)
    assert before is not None

    model_file = root / "deployments" / "model" / "model.json"  # blue and green load it
    model_file.unlink()
    model_file.symlink_to(HOST_FILE)
    (root / "zero.yaml").symlink_to("/dev/zero")
    (root / "loop.yaml").symlink_to("loop.yaml")
    work_tree.git.add(A=True)
    hostile = work_tree.index.commit("hostile").hexsha
    done = sync_once(cluster_kubeconfig, root, tmp_path / "cache")
    assert (done.returncode, done.stdout) == (1, f"invalid: revision {hostile} 4 problems\n")
    assert HOST_TEXT not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr

    options = ["--kubeconfig", cluster_kubeconfig] if cluster_kubeconfig else []
    status = CliRunner().invoke(cli.main, ["status", "--output", "json", *options])
    (found,) = [s for s in json.loads(status.output) if s["name"] == name]
    reasons = "\n".join(found["reasons"])
    leak = "model/model.json: the symlink deployments/model/model.json -> /etc/passwd leads"
    assert reasons.count(leak) == 2, reasons  # blue's model.local_path, green's spec.model.path
    assert "zero.yaml: the symlink zero.yaml -> /dev/zero leads outside the repo" in reasons
    assert "loop.yaml: more than 40 symlinks in a row at loop.yaml: a symlink loop" in reasons
    assert HOST_TEXT not in status.output
    after = kube.get(cluster, model)
    assert after is not None and after["data"] == before["data"]  # nothing applied
