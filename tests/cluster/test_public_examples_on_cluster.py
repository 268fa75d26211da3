"""The public examples' shapes score on the local plane as published (issue 26).

`tests/fixtures/public-examples/` holds repos built from the shapes of the product's public ML
CLI v2 examples (see its README): the Kubernetes blue/green endpoint with its `model-1` /
`model-2` folders and conda files, and an MLflow model deployed with no code. The tests copy a
repo, point the one manifest this project adds (`extension.yaml`) at the test's namespace, apply
it with `--wait` and score each deployment through the router with the example's own sample
request. Nothing of the published YAML is edited. The router and model pods run on the plane's
real node under the kubelet, in the images the manifests name (local stand-ins where no registry
serves them); each model pod's environment comes from its conda file, made by the render's
`prepare-environment` init container (the packages installed from PyPI, hence the long waits).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import main as cli
from reconciler.localcluster import realnodeconfig as rc
from reconciler.render import workloadobjects
from tests.cluster.realpods import Pods

pytestmark = pytest.mark.cluster

FIXTURES = Path(__file__).parents[1] / "fixtures" / "public-examples"
ONLINE = Path("cli") / "endpoints" / "online"
# What the regression model (weights 1..10, no intercept) answers for the two sample rows.
BLUE_ANSWER = [385.0, 220.0]
GREEN_ANSWER = [0.5, 0.5]  # the green script's fixed answer, as the published one's
# The MLflow model: weights 1..10 and intercept 0.5 over the sample's ten columns.
MLFLOW_ANSWER = [385.5, 258.5]


def copy_repo(tmp_path: Path, fixture: str, name: str, namespace: str) -> Path:
    """The fixture repo in `tmp_path`, its extension named `name` and installed into
    `namespace` (the published files as they are)."""
    root = tmp_path / fixture
    shutil.copytree(FIXTURES / fixture, root)
    extension = root / "extension.yaml"
    text = extension.read_text().replace("name: azureml-extension", f"name: {name}")
    text = text.replace("spec:\n", f"spec:\n  releaseNamespace: {namespace}\n", 1)
    extension.write_text(text)
    return root


def score(pods: Pods, deployment: str, request: Path, kubeconfig: str | None) -> object:
    """`reconciler score`: client -> the router pod (its IP, routed from the host) -> a model
    pod (its IP, from the router's pod)."""
    options = ["--kubeconfig", kubeconfig] if kubeconfig else []
    scored = CliRunner().invoke(cli.main, ["score", deployment, "--data", str(request), *options])
    assert scored.exit_code == 0, scored.output + pods.describe()
    return json.loads(scored.output)


def test_the_kubernetes_blue_green_example_scores_with_its_folder_models_and_conda_files(
    tmp_path: Path, namespace: str, cluster_kubeconfig: str | None, pods: Pods
) -> None:
    root = copy_repo(tmp_path, "kubernetes-blue-green", f"p{namespace[-6:]}", namespace)
    pods.apply(root, cluster_kubeconfig, timeout="10m")  # pip installs on a first run
    request = root / ONLINE / "kubernetes" / "sample-request.json"
    # blue's score.py loads $AZUREML_MODEL_DIR/model/sklearn_regression_model.pkl: the folder
    # model kept its name, and scikit-learn came from the conda file's conda packages.
    assert score(pods, "blue", request, cluster_kubeconfig) == pytest.approx(BLUE_ANSWER)
    assert score(pods, "green", request, cluster_kubeconfig) == GREEN_ANSWER
    [pod] = pods.model_pods("blue")
    assert pod.node == rc.node_name(0), pod  # placed on the real node by the plane
    log = pods.log(pod.name, workloadobjects.PREPARE_ENVIRONMENT)
    assert "scikit-learn==1.7.0.*" in log and "python=3.12: the local plane runs" in log


def test_an_mlflow_model_deployed_with_no_code_scores_the_documented_request(
    tmp_path: Path, namespace: str, cluster_kubeconfig: str | None, pods: Pods
) -> None:
    root = copy_repo(tmp_path, "mlflow-no-code", f"m{namespace[-6:]}", namespace)
    pods.apply(root, cluster_kubeconfig, timeout="12m")  # mlflow is a large install
    request = root / ONLINE / "ncd" / "sample-request-sklearn.json"
    answer = score(pods, "sklearn-deployment", request, cluster_kubeconfig)
    assert answer == pytest.approx(MLFLOW_ANSWER)
