"""`reconciler job status` on the local plane, whose kwok nodes run no containers (issue 26,
item 8).

kwok marks a batch Job's pod Running, then Succeeded with exit code 0, and the Job controller
calls the Job Complete: the status used to say `succeeded` for a command nothing ran. With
volcano, the volcano controller itself sits on a kwok node, nothing ever turns the Job into
pods, and the status used to say `pending` forever. Both now say that the plane cannot run them,
and why. The test applies the bundled example (its two jobs) with volcano, reads the status,
switches volcano off, applies again and waits for the batch Jobs to be Complete before reading
it once more: the GPU job (train-mnist) is on a kwok GPU node and was not run, while the CPU job
(jobs-hello) ran for real on the plane's real node and succeeded.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler import kube
from reconciler.cli import main as cli
from reconciler.localcluster.config import PlaneState
from tests.cluster.kubehelpers import wait_until
from tests.helpers import example_repo, set_config

pytestmark = pytest.mark.cluster
JOBS = ("jobs-hello", "train-mnist")


def states(root: Path, kubeconfig: str | None) -> dict[str, tuple[str, str]]:
    """Each job's (state, detail) as `reconciler job status` prints them."""
    options = ["--kubeconfig", kubeconfig] if kubeconfig else []
    result = CliRunner().invoke(cli.main, ["job", "status", str(root), *options])
    assert result.exit_code == 0, result.output
    found = {}
    for line in result.stdout.splitlines()[1:]:
        name, state, *detail = line.split(maxsplit=2)
        found[name] = (state, detail[0] if detail else "")
    return found


def apply(root: Path, kubeconfig: str | None) -> None:
    options = ["--kubeconfig", kubeconfig] if kubeconfig else []
    applied = CliRunner().invoke(cli.main, ["apply", str(root), *options])
    assert applied.exit_code == 0, applied.output


def job_complete(cluster: kube.Cluster, namespace: str, name: str) -> bool:
    ref = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": name, "namespace": namespace}}  # fmt: skip
    live = kube.get(cluster, ref) or {}
    conditions = (live.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Complete" and c["status"] == "True" for c in conditions)


def test_jobs_on_kwok_nodes_are_not_run_with_volcano_or_without(
    tmp_path: Path,
    namespace: str,
    cluster_kubeconfig: str | None,
    cluster: kube.Cluster,
    local_plane: PlaneState | None,
) -> None:
    if local_plane is None:
        pytest.skip("needs the local plane's kwok nodes (USE_EXISTING_CLUSTER is set)")
    root = example_repo(tmp_path, f"j{namespace[-6:]}", namespace)
    apply(root, cluster_kubeconfig)
    # With volcano (the default): its controller's pod lands on a kwok node, so no PodGroup.
    waiting = wait_until(
        lambda: states(root, cluster_kubeconfig),
        lambda found: all(found.get(job, ("",))[0] == "not-run" for job in JOBS),
        "the volcano jobs to be reported not-run",
    )
    for job in JOBS:
        detail = waiting[job][1]
        assert detail.startswith("volcano made no PodGroup for it: volcano-controllers runs on "
                                 "kwok node kwok-"), detail  # fmt: skip
        assert detail.endswith(", which runs no containers"), detail

    # Without volcano: batch Jobs, which kwok "completes".
    set_config(root, "enableTraining: true", "enableTraining: true\n    installVolcano: false")
    apply(root, cluster_kubeconfig)
    for job in JOBS:
        wait_until(lambda job=job: job_complete(cluster, namespace, job), bool,
                   f"{job}'s pod to complete and the Job controller the Job")  # fmt: skip
    found = states(root, cluster_kubeconfig)
    # hello ran for real: the plane puts the project's CPU job pods on its real node.
    state, detail = found["jobs-hello"]
    assert (state, detail.split(" (")[0]) == ("succeeded", "exit code 0"), detail
    assert found["train-mnist"] == (
        "not-run",
        "node kwok-gpu-0 is a kwok node that runs no containers",  # its instance type's node
    )
