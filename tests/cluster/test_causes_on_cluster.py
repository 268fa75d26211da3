"""Why a model deployment is not healthy, as `apply --wait` and `deployment status` say it, on
the local plane's real nodes (issue 30, "true causes").

Each test applies a small repo with the CLI, its extension released into the test's namespace;
the plane's admission policy (`realplacement`) puts the deployment's pods on its real nodes,
whose kubelet, containerd and scheduler make the situations for real:

- a rollout that asks for more CPU than any node has: the new pod stays Pending with the
  scheduler's `Insufficient cpu` beside the two old ready ones (the user's case: it used to end
  "not healthy / 2/2 replicas available" with READY 2);
- an image no node has and no registry serves: `ErrImagePull` / `ImagePullBackOff`, with the
  image;
- a model server whose scoring script exits 3 in `init()`: `CrashLoopBackOff`, last exit code 3.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from reconciler.cli import main as cli
from tests.cluster.kubehelpers import wait_until
from tests.helpers import API, SMALL_DEFAULT_TYPE, write_repo

pytestmark = pytest.mark.cluster

# Small requests: the model pods share the plane's real nodes with every other test's.
INSTANCE_TYPES = yaml.safe_dump(
    {"apiVersion": "amlarc.azureml.com/v1alpha1", "kind": "InstanceTypeList",
     "items": [SMALL_DEFAULT_TYPE]}
)  # fmt: skip
SCORE = """\
def init():
    pass


def run(raw_data):
    return {"ok": True}
"""
EXIT_3 = """\
import os


def init():
    os._exit(3)


def run(raw_data):
    return {}
"""


def deployment(name: str, image: str, replicas: int = 1, resources: str = "") -> str:
    return f"""
$schema: https://azuremlschemas.azureedge.net/latest/kubernetesOnlineDeployment.schema.json
name: {name}
environment: {{image: {image}}}
code_configuration: {{code: ./score, scoring_script: score.py}}
scale_settings: {{type: target_utilization, min_instances: {replicas}, max_instances: 6}}
{resources}
"""


def repo(tmp_path: Path, namespace: str, workload: str, score: str = SCORE) -> Path:
    extension = f"""
apiVersion: {API}
kind: Extension
metadata: {{name: c{namespace[-8:]}}}
spec:
  clusterType: managedClusters
  releaseNamespace: {namespace}
  config:
    enableInference: true
    inferenceRouterServiceType: ClusterIP
    inferenceRouterHA: false
    allowInsecureConnections: true
"""
    files = {"ext.yaml": extension, "it.yaml": INSTANCE_TYPES, "deploy.yaml": workload,
             "score/score.py": score}  # fmt: skip
    return write_repo(tmp_path / "repo", files)


def run(kubeconfig: str | None, *args: str) -> tuple[int, str]:
    where = ["--kubeconfig", kubeconfig] if kubeconfig else []
    result = CliRunner().invoke(cli.main, [*args, *where])
    return result.exit_code, result.output


def status_row(kubeconfig: str | None, root: Path, name: str) -> str:
    code, out = run(kubeconfig, "deployment", "status", str(root))
    assert code == 0, out
    (row,) = [line for line in out.splitlines() if line.split()[:1] == [name]]
    return row


def test_a_rollout_pending_on_insufficient_cpu_names_the_schedulers_reason(
    tmp_path: Path, namespace: str, cluster_kubeconfig: str | None
) -> None:
    root = repo(tmp_path, namespace, deployment("big", "python:3.11-slim", replicas=2))
    code, out = run(cluster_kubeconfig, "apply", str(root), "--wait", "--timeout", "3m")
    assert code == 0, out
    assert status_row(cluster_kubeconfig, root, "big").split()[:4] == ["big", "2", "2/2", "2"]

    # The new template asks for 64 CPU: its surge pod cannot be placed; the old two serve on.
    more = "resources: {requests: {cpu: '64'}, limits: {cpu: '64'}}"
    (root / "deploy.yaml").write_text(deployment("big", "python:3.11-slim", 2, more))
    code, out = run(cluster_kubeconfig, "apply", str(root), "--wait", "--timeout", "30s")
    assert code == 1, out
    assert "not healthy after 30s" in out, out
    assert "rollout at 1 of 2 updated, 2 available; pod big-" in out, out
    assert " Pending: Unschedulable: 0/" in out and "Insufficient cpu" in out, out
    assert "2/2 replicas available" not in out, out

    row = status_row(cluster_kubeconfig, root, "big")
    name, replicas, ready, updated, _scaled_by, cause = row.split(maxsplit=5)
    assert (name, replicas, ready, updated) == ("big", "2", "2/3", "1"), row
    assert cause.startswith("pod big-") and "Pending: Unschedulable: 0/" in cause, row
    assert "Insufficient cpu" in cause, row

    code, out = run(cluster_kubeconfig, "status")
    assert "Insufficient cpu" in out, out


def test_an_image_no_node_has_is_an_image_pull_error_naming_it(
    tmp_path: Path, namespace: str, cluster_kubeconfig: str | None
) -> None:
    image = "registry.invalid/mlext/missing:1"
    root = repo(tmp_path, namespace, deployment("ghost", image))
    code, out = run(cluster_kubeconfig, "apply", str(root), "--wait", "--timeout", "40s")
    assert code == 1, out
    said = [f"container inference-server: {why}: image {image}"
            for why in ("ErrImagePull", "ImagePullBackOff")]  # fmt: skip
    assert "pod ghost-" in out and any(line in out for line in said), out
    row = wait_until(
        lambda: status_row(cluster_kubeconfig, root, "ghost"),
        lambda found: "ImagePullBackOff" in found or "ErrImagePull" in found,
        "deployment status to name the image pull error",
        60,
    )
    assert row.split()[:4] == ["ghost", "1", "0/1", "1"], row
    assert f"image {image}" in row, row


def test_a_model_server_that_exits_3_is_a_crash_loop_with_its_exit_code(
    tmp_path: Path, namespace: str, cluster_kubeconfig: str | None
) -> None:
    root = repo(tmp_path, namespace, deployment("crash", "python:3.11-slim"), EXIT_3)
    code, out = run(cluster_kubeconfig, "apply", str(root), "--wait", "--timeout", "60s")
    assert code == 1, out
    assert "container inference-server: CrashLoopBackOff: last exit code 3 (Error)" in out or (
        "container inference-server: Restarted: last exit code 3 (Error)" in out
    ), out
    row = wait_until(
        lambda: status_row(cluster_kubeconfig, root, "crash"),
        lambda found: "CrashLoopBackOff: last exit code 3 (Error)" in found,
        "deployment status to name the crash loop",
        90,
    )
    assert row.split()[:4] == ["crash", "1", "0/1", "1"], row
