"""Repos built from the product's public ML CLI v2 examples validate and render as published.

`tests/fixtures/public-examples/` (its README says what each repo reproduces) holds the shapes
of the `Azure/azureml-examples` files users copy: the Kubernetes blue/green endpoint with its
`model-1` / `model-2` folders (folder models, two conda files, a stray scoring script), an MLflow
model deployed with no code (its model folder with `MLmodel`, `conda.yaml`, `requirements.txt`,
and an unreferenced environment folder), and command jobs with curated environments, blob
inputs, two `job.yml` in different folders and a workspace compute file. No test edits them;
the cluster tests (`tests/cluster/test_public_examples_on_cluster.py`) score them.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from reconciler import objects, source
from reconciler.model import curated, repo, workloads
from reconciler.render import render, workloadobjects

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "public-examples"
APP = workloadobjects.APP_DIR


def load(name: str) -> tuple[repo.Loaded, list[objects.Object]]:
    snapshot = source.DirectorySnapshot(FIXTURES / name)
    loaded = repo.load(snapshot)
    assert loaded.errors == [], "\n".join(map(str, loaded.errors))
    return loaded, render.render_repo(loaded.repo, snapshot, "rev").objects


def find(rendered: list[objects.Object], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in rendered if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def pod(deployment: dict[str, Any]) -> dict[str, Any]:
    return dict(deployment["spec"]["template"]["spec"])


def test_the_kubernetes_blue_green_example_keeps_each_model_folder_under_the_model_dir() -> None:
    loaded, rendered = load("kubernetes-blue-green")
    assert sorted(loaded.repo.deployments) == ["blue", "green"]
    for name in ("blue", "green"):
        model = find(rendered, "ConfigMap", f"{name}-model")
        (volume,) = [v for v in pod(find(rendered, "Deployment", name))["volumes"]
                     if v["name"] == "model-files-0"]  # fmt: skip
        # The published score.py loads $AZUREML_MODEL_DIR/model/sklearn_regression_model.pkl.
        key = "model__sklearn_regression_model.pkl"
        assert volume["configMap"]["items"] == [
            {"key": key, "path": "model/sklearn_regression_model.pkl"}
        ]
        pickled = base64.b64decode(model["binaryData"][key])
        model_file = "cli/endpoints/online/model-1/model/sklearn_regression_model.pkl"
        assert pickled == (FIXTURES / "kubernetes-blue-green" / model_file).read_bytes()


def test_a_conda_file_becomes_the_servers_environment_before_it_starts() -> None:
    _, rendered = load("kubernetes-blue-green")
    spec = pod(find(rendered, "Deployment", "blue"))
    init = {container["name"]: container for container in spec["initContainers"]}
    assert sorted(init) == ["fetch-model", workloadobjects.PREPARE_ENVIRONMENT]
    prepare = init[workloadobjects.PREPARE_ENVIRONMENT]
    # Made by the deployment's own image (the example's openmpi image carries conda) ...
    assert prepare["image"] == "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"
    script = prepare["command"][2]
    assert f"env create -p {APP}/conda-env/" in script
    assert workloadobjects.MODEL_SERVER_REQUIREMENT in script
    # ... into a folder named by the file's digest, and the server runs from it.
    [server] = spec["containers"]
    prefix = script.split("env create -p ")[1].split()[0]
    assert server["command"][0] == f"{prefix}/bin/azmlinfsrv"
    env = {e["name"]: e["value"] for e in server["env"]}
    assert env[workloadobjects.CONDA_ENV_VAR] == f"{APP}/environment/conda.yaml"
    # The unreferenced second conda file is nobody's environment.
    conda = find(rendered, "ConfigMap", "blue-conda")
    assert list(conda["data"]) == ["conda.yaml"]


def test_an_mlflow_model_with_no_code_gets_the_reconcilers_script_and_the_models_conda_file():
    loaded, rendered = load("mlflow-no-code")
    deployment = loaded.repo.deployments["sklearn-deployment"]
    assert deployment.mlflow_no_code
    assert deployment.image == workloads.MLFLOW_IMAGE
    assert deployment.conda_file == (
        "cli/endpoints/online/ncd/sklearn-diabetes/model/conda.yaml"  # MLmodel's env
    )
    code = find(rendered, "ConfigMap", "sklearn-deployment-code")
    script = (FIXTURES.parents[2] / "templates" / workloadobjects.MLFLOW_SCRIPT).read_text()
    assert code["data"] == {"score.py": script}
    [server] = pod(find(rendered, "Deployment", "sklearn-deployment"))["containers"]
    assert server["command"][1:3] == ["--entry_script", f"{APP}/code/score.py"]
    # The Azure VM size of a managed endpoint runs on the default instance type, with a warning.
    [warning] = [p for p in loaded.problems if p.field == "instance_type"]
    assert warning.severity.value == "warning" and "Standard_DS3_v2" in warning.message


def test_curated_environments_and_public_blob_inputs_of_the_job_examples_resolve() -> None:
    loaded, rendered = load("jobs")
    images = {job.manifest.path: job.image for job in loaded.repo.jobs.values()}
    assert images == {
        "cli/jobs/basics/hello-iris-file.yml": f"{curated.REGISTRY}/sklearn-1.5:latest",
        "cli/jobs/basics/hello-world.yml": "library/python:latest",
        "cli/jobs/single-step/lightgbm/iris/job.yml": f"{curated.REGISTRY}/lightgbm-3.3:latest",
        "cli/jobs/single-step/scikit-learn/iris/job.yml": f"{curated.REGISTRY}/sklearn-1.5:latest",
    }
    # The public wasbs:// blob is fetched anonymously over https into the pod before the
    # command runs, and the command gets its path there.
    [svm] = [j for j in loaded.repo.jobs.values() if "scikit-learn" in j.manifest.path]
    [csv] = [i for i in svm.inputs if i.name == "iris_csv"]
    url = "https://azuremlexamples.blob.core.windows.net/datasets/iris.csv"
    assert csv.remote == url and not csv.folder
    spec = job_pod(rendered, svm.name)
    workspace, fetch = spec["initContainers"]
    assert workspace["name"] == "prepare-workspace" and fetch["name"] == "fetch-inputs"
    # The job's code is copied into its writable working folder, where ./outputs is.
    assert "cp -R /code/. /workspace/" in workspace["command"][2]
    assert spec["containers"][0]["workingDir"] == "/workspace"
    assert f"curl -fsSL -o /inputs/iris_csv/iris.csv {url}" in fetch["command"][2]
    assert "--iris-csv /inputs/iris_csv/iris.csv" in spec["containers"][0]["command"][2]


def job_pod(rendered: list[objects.Object], name: str) -> dict[str, Any]:
    spec = find(rendered, "Job", name)["spec"]
    template = spec["tasks"][0]["template"] if "tasks" in spec else spec["template"]
    return dict(template["spec"])


@pytest.mark.parametrize(
    ("reference", "image"),
    [
        ("azureml:AzureML-sklearn-1.0-ubuntu20.04-py38-cpu@latest",
         f"{curated.REGISTRY}/sklearn-1.0-ubuntu20.04-py38-cpu:latest"),
        ("azureml:AzureML-lightgbm-3.3:12", f"{curated.REGISTRY}/lightgbm-3.3:12"),
        ("azureml://registries/azureml/environments/sklearn-1.5/labels/latest",
         f"{curated.REGISTRY}/sklearn-1.5:latest"),
        ("azureml://registries/azureml/environments/tensorflow-2.16-cuda12/versions/7",
         f"{curated.REGISTRY}/tensorflow-2.16-cuda12:7"),
    ],
)  # fmt: skip
def test_each_spelling_of_a_curated_environment_names_its_published_image(
    reference: str, image: str
) -> None:
    assert curated.resolve(reference) == curated.Resolved(image)


def test_an_unknown_curated_environment_is_an_error_naming_the_nearest(tmp_path: Path) -> None:
    (tmp_path / "extension.yaml").write_text((FIXTURES / "jobs" / "extension.yaml").read_text())
    (tmp_path / "job.yml").write_text(
        "$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json\n"
        "command: echo hi\n"
        "environment: azureml:AzureML-sklearn-1.55@latest\n"
    )
    (tmp_path / "built.yml").write_text(
        "$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json\n"
        "name: built\n"
        "command: echo hi\n"
        "environment:\n"
        "  build:\n"
        "    path: docker-context\n"
    )
    loaded = repo.load(source.DirectorySnapshot(tmp_path))
    found = {(Path(p.file).name, p.line, p.field): p.message for p in loaded.errors}
    assert set(found) == {("job.yml", 3, "environment"), ("built.yml", 5, "environment.build")}
    assert "(did you mean sklearn-1.5?)" in found[("job.yml", 3, "environment")]
    assert "give environment.image" in found[("built.yml", 5, "environment.build")]
