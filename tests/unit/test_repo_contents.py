"""What a manifests repo holds besides manifests, as Flux and Argo CD users
expect: YAML with none of a manifest's markers is skipped with a note, a document that tries to
be a manifest and fails stays an error, and files a manifest uses as data are not manifests.
Which files are read at all: test_source_files.py.
"""

from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import main as cli
from reconciler.model import problems, repo
from tests.helpers import BROKEN, EXTENSION, GITHUB_WORKFLOW, load, write_repo

JOB = """
$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json
name: train
command: echo hi
environment: {image: python:3.11}
"""
# A conda file as the public examples write them (`model-1/environment/`).
CONDA = """
name: regression-env
channels:
  - conda-forge
dependencies:
  - python=3.12
  - scikit-learn=1.7.0
  - pip:
    - azureml-inference-server-http
"""
# `cli/resources/compute/cluster-minimal.yml`, with the published trailing space.
COMPUTE = (
    "$schema: https://azuremlschemas.azureedge.net/latest/amlCompute.schema.json \n"
    "name: minimal-example\n"
    "type: amlcompute\n"
    "size: STANDARD_DS3_v2\n"
    "min_instances: 0\n"
    "max_instances: 2\n"
)


def where(loaded: repo.Loaded, root: Path) -> list[tuple[str, int, str, str]]:
    """(file below root, line, field, severity) of every problem."""
    return [
        (p.file.removeprefix(f"{root}/"), p.line, p.field, p.severity.value)
        for p in loaded.problems
    ]


def test_yaml_with_no_manifest_markers_is_skipped_with_a_note(tmp_path: Path) -> None:
    root = write_repo(
        tmp_path,
        {
            "extension.yaml": EXTENSION,
            "jobs/train.yml": JOB,
            "environment/conda.yaml": CONDA,  # nothing points at it
            "cli/resources/compute/cluster-minimal.yml": COMPUTE,
            "azure-pipelines.yml": GITHUB_WORKFLOW,  # CI YAML outside a hidden folder
            "settings.yaml": "a: 1\n---\n- x\n- y\n---\njust text\n",
            "empty.yaml": "# nothing yet\n",
        },
    )
    loaded = load(root)
    assert loaded.valid
    assert list(loaded.repo.jobs) == ["train"]
    assert where(loaded, root) == [
        ("azure-pipelines.yml", 1, "", "note"),
        ("cli/resources/compute/cluster-minimal.yml", 1, "$schema", "note"),
        ("empty.yaml", 0, "", "note"),
        ("environment/conda.yaml", 1, "", "note"),
        ("settings.yaml", 1, "", "note"),
        ("settings.yaml", 3, "", "note"),
        ("settings.yaml", 6, "", "note"),
    ]
    messages = {(p.file.removeprefix(f"{root}/"), p.line): p.message for p in loaded.problems}
    assert messages[("cli/resources/compute/cluster-minimal.yml", 1)] == (
        "amlCompute ($schema https://azuremlschemas.azureedge.net/latest/amlCompute.schema.json) "
        "is no manifest: a $schema this reconciler does not deploy (it deploys command jobs, "
        "online deployments and online endpoints), skipped; a workload runs on the extension "
        "its compute names"
    )
    assert messages[("environment/conda.yaml", 1)].startswith(
        "a conda environment file that no manifest points at (environment.conda_file): none of "
        "a manifest's markers (a kind, an apiVersion, the $schema of a command job"
    )
    assert messages[("settings.yaml", 3)] == "a list, not a mapping: no manifest, skipped"
    assert messages[("settings.yaml", 6)] == "a string, not a mapping: no manifest, skipped"
    assert messages[("empty.yaml", 0)] == "no YAML document (empty, or only comments): skipped"


def test_validate_shows_the_notes_and_passes(tmp_path: Path) -> None:
    root = write_repo(
        tmp_path, {"extension.yaml": EXTENSION, "compute.yml": COMPUTE, "conda.yml": CONDA}
    )
    result = CliRunner().invoke(cli.main, ["validate", str(root)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split(": ")[:3] for line in lines[:2]] == [
        [f"{root}/compute.yml:1", "$schema", "note"],
        [f"{root}/conda.yml:1", "note", "a conda environment file that no manifest points at "
         "(environment.conda_file)"],
    ]  # fmt: skip
    assert lines[2] == (
        f"{root} is valid: 1 extension, 0 instance types, 0 jobs, 0 deployments, 0 endpoints"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A kind this reconciler does not know.
        ("apiVersion: v1\nkind: ConfigMap\n", "m.yaml:2: kind: unknown kind 'ConfigMap'"),
        # An apiVersion and no kind.
        ("apiVersion: gitops.mlext.io/v1alpha1\nmetadata: {name: x}\n",
         "m.yaml:1: kind: required field is missing"),
        # A job type that does not run here, by its $schema or its fields.
        ("$schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json\n"
         "type: pipeline\njobs: {}\n", "m.yaml:2: type: a pipeline job cannot run"),
        ("$schema: https://azuremlschemas.azureedge.net/latest/sweepJob.schema.json\n",
         "m.yaml:1: $schema: a sweep job cannot run"),
        ("jobs:\n  train: {command: python train.py}\nsettings: {}\n",
         "m.yaml:1: jobs: a pipeline job cannot run"),
        # The shape of a deployment, with no name.
        ("endpoint_name: e\nmodel: {path: m}\n", "m.yaml:1: name: required field is missing"),
        ("deployments:\n  - environment: {image: p}\n",
         "m.yaml:2: deployments[0].name: required field is missing"),
        # The envelope without kind and apiVersion.
        ("metadata: {name: x}\nspec: {command: echo}\n",
         "m.yaml:1: not a manifest this reconciler knows: give a kind"),
        # A list of manifests.
        ("- kind: Extension\n", "m.yaml:1: a manifest must be a mapping, not a list"),
    ],
)  # fmt: skip
def test_a_document_that_tries_to_be_a_manifest_stays_an_error(
    tmp_path: Path, text: str, expected: str
) -> None:
    root = write_repo(tmp_path, {"m.yaml": text})
    found = [str(p).removeprefix(f"{root}/") for p in load(root).errors]
    assert [line[: len(expected)] for line in found] == [expected]


def blue(**paths: str) -> str:
    """The public example's blue deployment, its paths relative to `kubernetes/`."""
    return f"""
        $schema: https://azuremlschemas.azureedge.net/latest/kubernetesOnlineDeployment.schema.json
        name: blue
        type: kubernetes
        model:
          path: {paths["model"]}
        code_configuration:
          code: {paths["code"]}
          scoring_script: score.py
        environment:
          conda_file: {paths["conda"]}
          image: python:3.11
        """


def test_files_a_manifest_uses_as_data_are_not_read_as_manifests(tmp_path: Path) -> None:
    root = write_repo(
        tmp_path,
        {
            "extension.yaml": EXTENSION,
            "kubernetes/blue.yml": blue(
                model="../model-1/model/",
                code="../model-1/onlinescoring/",
                conda="../model-1/environment/conda.yaml",
            ),
            "model-1/model/model.pkl": b"\x80\x04N.",
            "model-1/model/broken.yaml": BROKEN,  # in the model folder
            "model-1/onlinescoring/score.py": "def init():\n    pass\n",
            "model-1/onlinescoring/settings.yaml": BROKEN,  # in the code folder
            "model-1/environment/conda.yaml": CONDA,  # the conda file
            "model-1/environment/conda-managedidentity.yaml": CONDA,  # nothing points at it
            # An MLflow model folder, its conda.yaml beside MLmodel.
            "ncd/deployment.yml": """
                $schema: https://azuremlschemas.azureedge.net/latest/kubernetesOnlineDeployment.schema.json
                name: green
                model: {path: sklearn-diabetes/model}
                code_configuration: {code: sklearn-diabetes/src, scoring_script: score.py}
                environment: {image: python:3.11}
                """,
            "ncd/sklearn-diabetes/model/MLmodel": "flavors: {}\n",
            "ncd/sklearn-diabetes/model/conda.yaml": CONDA,
            "ncd/sklearn-diabetes/model/requirements.txt": "mlflow\n",
            "ncd/sklearn-diabetes/src/score.py": "def init():\n    pass\n",
            # A job whose code folder holds its parameters.
            "jobs/train.yml": JOB + "code: src\n",
            "jobs/src/params.yaml": "learning_rate: 0.1\n",
        },
    )
    loaded = load(root)
    unreferenced = "model-1/environment/conda-managedidentity.yaml"
    assert where(loaded, root) == [(unreferenced, 1, "", "note")]
    assert sorted(loaded.repo.deployments) == ["blue", "green"]


def test_a_folder_holding_the_manifest_itself_is_read(tmp_path: Path) -> None:
    # `code: .`: the job's own folder is its code, and still holds manifests.
    root = write_repo(
        tmp_path,
        {
            "extension.yaml": EXTENSION,
            "jobs/train.yml": JOB + "code: .\n",
            "jobs/evaluate.yml": JOB.replace("name: train", "name: evaluate"),
            "jobs/params.yaml": "learning_rate: 0.1\n",
        },
    )
    loaded = load(root)
    assert sorted(loaded.repo.jobs) == ["evaluate", "train"]
    assert where(loaded, root) == [("jobs/params.yaml", 1, "", "note")]


def test_a_manifest_inside_another_manifests_data_is_a_warning(tmp_path: Path) -> None:
    root = write_repo(
        tmp_path,
        {
            "extension.yaml": EXTENSION,
            "jobs/train.yml": JOB + "code: ../shared\n",
            "shared/evaluate.yml": JOB.replace("name: train", "name: evaluate"),
        },
    )
    loaded = load(root)
    assert list(loaded.repo.jobs) == ["train"]
    [warning] = loaded.problems
    assert (warning.severity, str(warning)) == (
        problems.Severity.WARNING,
        f"{root}/shared/evaluate.yml:2: name: warning: not read as a manifest (Job 'evaluate'): "
        f"the file is in shared/, the code of Job 'train' ({root}/jobs/train.yml:5: code), "
        "which is data; move it out of there to apply it",
    )
