"""The name of a job that gives none (from its path in the repo), and duplicate names: every
problem of every document in one run, the duplicate's own problems too."""

import hashlib
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler import source
from reconciler.model import manifests, repo
from reconciler.render import render
from tests.helpers import EXTENSION, errors, load, write_repo

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def iris_job(model: str) -> str:
    """`cli/jobs/single-step/*/iris/job.yml` of the public examples, as published (no name)."""
    return f"""
        $schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json
        code: src
        command: >-
          python main.py
          --iris-csv ${{{{inputs.iris_csv}}}}
        inputs:
          iris_csv:
            type: uri_file
            path: wasbs://datasets@azuremlexamples.blob.core.windows.net/iris.csv
        environment: azureml:AzureML-sklearn-1.0-ubuntu20.04-py38-cpu@latest
        compute: azureml:cpu-cluster
        display_name: iris-{model}
        experiment_name: iris-{model}
        description: Train a {model} model on the iris data.
        """


def test_two_job_ymls_in_different_folders_get_different_names(tmp_path: Path) -> None:
    root = write_repo(
        tmp_path,
        {
            "extension.yaml": EXTENSION,
            "cli/jobs/single-step/scikit-learn/iris/job.yml": iris_job("scikit-learn"),
            "cli/jobs/single-step/scikit-learn/iris/src/main.py": "print('svm')\n",
            "cli/jobs/single-step/lightgbm/iris/job.yml": iris_job("lightgbm"),
            "cli/jobs/single-step/lightgbm/iris/src/main.py": "print('lightgbm')\n",
        },
    )
    loaded = load(root)
    # The environment and the blob input are other rules' (test_public_examples.py): here,
    # only that no name collides or is refused.
    assert [p for p in loaded.problems if p.field == "name" or "duplicate" in p.message] == []
    assert {name: job.manifest.path for name, job in loaded.repo.jobs.items()} == {
        "cli-jobs-single-step-scikit-learn-iris-job": (
            "cli/jobs/single-step/scikit-learn/iris/job.yml"
        ),
        "cli-jobs-single-step-lightgbm-iris-job": "cli/jobs/single-step/lightgbm/iris/job.yml",
    }


def test_the_objects_of_a_job_are_named_after_its_name(tmp_path: Path) -> None:
    root = write_repo(
        tmp_path,
        {
            "extension.yaml": EXTENSION,
            "jobs/svm/iris/job.yml": nameless_job("code: src\n"),
            "jobs/svm/iris/src/main.py": "print('svm')\n",
            "jobs/lightgbm/iris/job.yml": nameless_job("code: src\n"),
            "jobs/lightgbm/iris/src/main.py": "print('lightgbm')\n",
        },
    )
    loaded = load(root)
    assert loaded.errors == []
    rendered = render.render_repo(loaded.repo, source.DirectorySnapshot(root), "rev").objects
    assert sorted(o["metadata"]["name"] for o in rendered if o["kind"] == "Job") == [
        "jobs-lightgbm-iris-job",
        "jobs-svm-iris-job",
    ]
    code = {
        o["metadata"]["name"]: o["data"]["main.py"]
        for o in rendered
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-code")
    }
    assert code == {
        "jobs-svm-iris-job-code": "print('svm')\n",
        "jobs-lightgbm-iris-job-code": "print('lightgbm')\n",
    }


def digest(path: str) -> str:
    return hashlib.sha256(path.encode()).hexdigest()[:8]


LONG = "experiments/2024/q3/customer-churn/gradient-boosted-trees/hyperparameters/baseline.yaml"


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("hello.yml", "hello"),
        ("jobs/hello.yml", "jobs-hello"),
        ("jobs/Train_Model.yml", "jobs-train-model"),
        ("My Jobs/v1.2/--train--.yaml", "my-jobs-v1-2-train"),
        ("cli/jobs/single-step/lightgbm/iris/job.yml", "cli-jobs-single-step-lightgbm-iris-job"),
        # Longer than a DNS label: its first 54 characters, `-` and 8 hex digits of the path's
        # SHA-256.
        (LONG, f"experiments-2024-q3-customer-churn-gradient-boosted-tr-{digest(LONG)}"),
        ("_/__.yml", f"job-{digest('_/__.yml')}"),
    ],
)
def test_a_nameless_job_is_named_after_its_path(path: str, name: str) -> None:
    assert manifests.name_from_path(path) == name
    assert len(name) <= 63


def test_long_paths_that_share_a_beginning_get_different_names() -> None:
    first = manifests.name_from_path(LONG)
    second = manifests.name_from_path(LONG.replace("baseline", "tuned"))
    assert first != second and first[:54] == second[:54]
    assert len(first) == len(second) == 63


@given(st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=6))
def test_every_path_gives_a_dns_label_of_at_most_63_characters(parts: list[str]) -> None:
    name = manifests.name_from_path("/".join(parts) + ".yml")
    assert DNS_LABEL.match(name) and len(name) <= 63


def nameless_job(extra: str = "") -> str:
    return (
        "$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json\n"
        "command: echo hi\n"
        "environment: {image: python:3.11}\n" + extra
    )


def test_a_duplicate_and_the_documents_other_problems_are_all_reported(tmp_path: Path) -> None:
    # `a-b/job.yml` and `a/b-job.yml` are both named `a-b-job`; each has its own problems.
    root = write_repo(
        tmp_path,
        {
            "extension.yaml": EXTENSION,
            "a-b/job.yml": nameless_job("code: missing-src\n"),
            "a/b-job.yml": nameless_job("code: nope\nresources: {instance_type: huge}\n"),
        },
    )
    assert [line.removeprefix(f"{root}/") for line in errors(load(root))] == [
        f"a-b/job.yml:4: code: no such file or folder: {root}/a-b/missing-src",
        "a/b-job.yml:1: name: duplicate Job named 'a-b-job': also declared at "
        f"{root}/a-b/job.yml:1 (a job without a name is named after its path in the repo: "
        "give one of them a name)",
        f"a/b-job.yml:4: code: no such file or folder: {root}/a/nope",
        "a/b-job.yml:5: resources.instance_type: no instance type named 'huge' (known: "
        "defaultinstancetype)",
    ]


def test_a_duplicate_deployment_is_checked_against_the_endpoints_too(tmp_path: Path) -> None:
    deployment = (
        "$schema: https://azuremlschemas.azureedge.net/latest/"
        "kubernetesOnlineDeployment.schema.json\n"
        "name: blue\n"
        "environment: {image: python:3.11}\n"
    )
    root = write_repo(
        tmp_path,
        {
            "extension.yaml": EXTENSION,
            "one/blue.yml": deployment,
            "two/blue.yml": deployment + "endpoint_name: nowhere\n",
        },
    )
    loaded = load(root)
    assert [line.removeprefix(f"{root}/") for line in errors(loaded)] == [
        f"two/blue.yml:2: name: duplicate Deployment named 'blue': also declared at "
        f"{root}/one/blue.yml:2",
        "two/blue.yml:4: endpoint_name: no endpoint named 'nowhere' is declared (declared: "
        "none): declare it (an OnlineEndpoint document), or leave endpoint_name out for an "
        "endpoint of the deployment's own name",
    ]
    # The first of the name is the one in the repo.
    assert loaded.repo.deployments["blue"].manifest.path == "one/blue.yml"


def test_a_job_keeps_the_name_it_gives(tmp_path: Path) -> None:
    root = write_repo(
        tmp_path,
        {"extension.yaml": EXTENSION, "jobs/train/job.yml": nameless_job("name: train\n")},
    )
    loaded = repo.load(source.DirectorySnapshot(root))
    assert loaded.errors == [] and list(loaded.repo.jobs) == ["train"]
