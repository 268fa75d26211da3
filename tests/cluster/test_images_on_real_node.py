"""Images without a registry, on a real node (issue 28): the project's image and stand-ins.

The project's image is built from the repo's Dockerfile (on the Python base made from Debian's
packages, where ``python:3.11-slim`` cannot be pulled) under the name the render gives the router,
and a pod of it runs ``reconciler --version``. The stand-in for the curated sklearn environment
the public examples use, and those for ``python:3.11-slim`` and the openmpi image the repo's
manifests use, are loaded into the real node under those names; a pod of each starts and
imports the pinned model server (and scikit-learn), and the plane records them as stand-ins,
which ``cluster status`` says. The render's ``prepare-environment`` init container of the repo's
blue deployment makes its conda environment with the stand-in's ``micromamba``, and the model
server starts from it.
"""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from kubernetes import client

from reconciler import source
from reconciler.cli import main as cli
from reconciler.localcluster import localimages
from reconciler.localcluster import realnodeconfig as rc
from reconciler.localcluster.standins import RECIPES
from reconciler.model import curated, repo
from reconciler.render import render, workloadobjects
from tests import tools
from tests.cluster.kubehelpers import wait_until
from tests.cluster.realnodes import RealNodeFixture

pytestmark = pytest.mark.cluster

SKLEARN = curated.resolve("azureml:AzureML-sklearn-1.5@latest").image or ""
PYTHON = "python:3.11-slim"
OPENMPI = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"  # the repo's blue's image


@pytest.fixture(scope="module")
def provided(real_node: RealNodeFixture) -> list[localimages.Provided]:
    """The project's image and three stand-ins, built (or found) and loaded into the real node."""
    began = time.monotonic()
    images = [
        localimages.ensure_project_image(),
        *localimages.ensure_images([SKLEARN, PYTHON, OPENMPI]),
    ]
    built = time.monotonic() - began
    loaded = localimages.load(Path(real_node.plane.state_dir), images, [real_node.node])
    print(f"\nimages built in {built:.0f}s; loaded: " + ", ".join(
        f"{p.name} {p.load_seconds}s" for p in loaded
    ))  # fmt: skip
    return loaded


@pytest.fixture
def namespace(real_namespace: str) -> str:
    """This module's pods run on the real node's plane."""
    return real_namespace


def run_to_end(
    real_node: RealNodeFixture, namespace: str, container: dict[str, Any]
) -> tuple[Any, str]:
    """A pod of ``container`` on the real node, run to its end: (the pod, its log)."""
    core = client.CoreV1Api(real_node.api)
    name = f"p-{uuid.uuid4().hex[:6]}"
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "nodeSelector": {rc.REAL_NODE_LABEL[0]: rc.REAL_NODE_LABEL[1]},
                "tolerations": [rc.REAL_NODE_TOLERATION],
                "containers": [{"name": "main", **container}],
            },
        },
    )
    pod = wait_until(
        lambda: core.read_namespaced_pod(name, namespace),
        lambda p: p.status.phase in ("Succeeded", "Failed"),
        f"pod {name} to end",
        timeout=180,
    )
    return pod, core.read_namespaced_pod_log(name, namespace)


def test_the_project_image_runs_reconciler_in_a_pod(
    namespace: str, real_node: RealNodeFixture, provided: list[localimages.Provided]
) -> None:
    image = localimages.project_image()
    assert image in {p.name for p in provided}
    # As the render writes the router's container: the image by name, the default pull policy
    # (IfNotPresent for a version tag), the Dockerfile's entrypoint `reconciler`.
    pod, log = run_to_end(real_node, namespace, {"image": image, "args": ["--version"]})
    assert pod.status.phase == "Succeeded", log
    # The commit was handed to the image's build (`RECONCILER_COMMIT`), so it is known there.
    version = re.escape(image.rsplit(":", 1)[1])
    assert re.fullmatch(rf"reconciler {version} \(commit [0-9a-f]{{7}}\)", log.strip()), log
    (status,) = pod.status.container_statuses
    assert status.image.endswith(image)


def test_the_curated_sklearn_stand_in_starts_with_the_model_server(
    namespace: str, real_node: RealNodeFixture, provided: list[localimages.Provided]
) -> None:
    script = (
        "import importlib.metadata as m, sklearn, azureml_inference_server_http; "
        "print(m.version('azureml-inference-server-http'), sklearn.__version__)"
    )
    # `:latest` would make the kubelet pull (Always): the image is there, so IfNotPresent.
    container = {
        "image": SKLEARN,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python3", "-c", script],
    }
    pod, log = run_to_end(real_node, namespace, container)
    assert pod.status.phase == "Succeeded", log
    assert log.split() == [workloadobjects.MODEL_SERVER_VERSION, "1.5.2"]
    assert pod.spec.node_name == real_node.node.name


def test_python_slim_is_the_model_server_stand_in_under_the_manifests_name(
    namespace: str, real_node: RealNodeFixture, provided: list[localimages.Provided]
) -> None:
    # The manifests' pull policy (none: IfNotPresent for a version tag), the manifests' name.
    script = f"command -v {workloadobjects.MODEL_SERVER}; python --version"
    pod, log = run_to_end(real_node, namespace, {"image": PYTHON, "command": ["sh", "-c", script]})
    assert pod.status.phase == "Succeeded", log
    assert log.split() == [f"/opt/venv/bin/{workloadobjects.MODEL_SERVER}", "Python", "3.11.2"]


def test_the_plane_records_which_images_are_stand_ins_and_cluster_status_says_so(
    real_node: RealNodeFixture, provided: list[localimages.Provided]
) -> None:
    record = {p.name: p for p in localimages.loaded(Path(real_node.plane.state_dir))}
    assert record[SKLEARN].standin and record[SKLEARN].recipe == "sklearn"
    assert record[PYTHON].standin and record[PYTHON].recipe == "modelserver"
    assert record[PYTHON].local == localimages.ensure_images([PYTHON])[0].local
    assert not record[localimages.project_image()].standin
    shown = CliRunner().invoke(
        cli.main, ["cluster", "status", "--state-dir", real_node.plane.state_dir]
    )
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert f"  {SKLEARN}  STAND-IN: {record[SKLEARN].local} ({RECIPES['sklearn'].what})" in lines
    assert f"  {PYTHON}  STAND-IN: {record[PYTHON].local} ({RECIPES['modelserver'].what})" in lines
    assert f"  {localimages.project_image()}" in lines


def test_the_renders_prepare_environment_step_makes_the_conda_environment_on_a_stand_in(
    namespace: str, real_node: RealNodeFixture, provided: list[localimages.Provided]
) -> None:
    # The repo's blue deployment as rendered: the public examples' openmpi image with a conda
    # file, whose prepare-environment init container calls micromamba (the stand-in's) before
    # the server. Its tag is `latest`: the node has it loaded, so it is not pulled.
    snapshot = source.DirectorySnapshot(tools.ROOT / "manifests")
    rendered = render.render_repo(repo.load(snapshot).repo, snapshot, "rev").objects
    (blue,) = [o for o in rendered if o["kind"] == "Deployment" and o["metadata"]["name"] == "blue"]
    pod = blue["spec"]["template"]["spec"]
    (prepare,) = [
        c for c in pod["initContainers"] if c["name"] == workloadobjects.PREPARE_ENVIRONMENT
    ]
    volumes = [v for v in pod["volumes"] if v["name"] in ("conda", "environment")]
    (conda,) = [
        o for o in rendered
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == volumes[0]["configMap"]["name"]
    ]  # fmt: skip
    core = client.CoreV1Api(real_node.api)
    core.create_namespaced_config_map(
        namespace, {**conda, "metadata": {"name": conda["metadata"]["name"]}}
    )
    server = pod["containers"][0]["command"][0]
    name = "prepare"
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "nodeSelector": {rc.REAL_NODE_LABEL[0]: rc.REAL_NODE_LABEL[1]},
                "tolerations": [rc.REAL_NODE_TOLERATION],
                "volumes": volumes,
                "initContainers": [{**prepare, "imagePullPolicy": "IfNotPresent"}],
                "containers": [
                    {
                        "name": "main",
                        "image": prepare["image"],
                        "imagePullPolicy": "IfNotPresent",
                        "command": [server, "--help"],
                        "volumeMounts": prepare["volumeMounts"],
                    }
                ],
            },
        },
    )
    began = time.monotonic()
    done = wait_until(
        lambda: core.read_namespaced_pod(name, namespace),
        lambda p: (
            p.status.phase in ("Succeeded", "Failed")
            or bool(p.status.container_statuses and p.status.container_statuses[0].state.terminated)
        ),
        "the pod with the prepare-environment step to end",
        timeout=300,
    )
    log = core.read_namespaced_pod_log(name, namespace, container="main")
    init_log = core.read_namespaced_pod_log(name, namespace, container=prepare["name"])
    (init,) = done.status.init_container_statuses
    assert init.state.terminated.exit_code == 0, init_log
    assert "--entry_script" in log, log
    print(f"\nconda environment made and the server started in {time.monotonic() - began:.1f}s")
