"""The published ML CLI v2 examples for Kubernetes validate and render as users write them.

`tests/fixtures/cliv2/` holds this project's own copies of their shapes (an online endpoint with
a blue deployment written without `$schema` and a green one with it, and the `hello-*` command
jobs), read from disk exactly as they are: no test edits them. Each field's effect is checked on
the rendered objects here; the field-by-field rules are in test_workloads.py and
test_workload_render.py.
"""

from pathlib import Path
from typing import Any

import pytest

from reconciler import objects, source
from reconciler.model import repo
from reconciler.render import render, workloadobjects

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "cliv2"
ENDPOINT_FILE = "endpoints/online/kubernetes/kubernetes-endpoint.yml"
DIGEST = workloadobjects.CONTENT_DIGEST_ANNOTATION
JOB_FILES = sorted(p.name for p in (FIXTURE / "jobs" / "basics").glob("*.yml"))
# The jobs give no name: each is named after its path, `jobs/basics/hello-world.yml` ->
# `jobs-basics-hello-world`.
JOB = "jobs-basics-"


@pytest.fixture(scope="module")
def loaded() -> repo.Loaded:
    return repo.load(source.DirectorySnapshot(FIXTURE))


@pytest.fixture(scope="module")
def rendered(loaded: repo.Loaded) -> list[objects.Object]:
    return render.render_repo(loaded.repo, source.DirectorySnapshot(FIXTURE), "rev").objects


def find(rendered: list[objects.Object], kind: str, name: str) -> objects.Object:
    (found,) = [o for o in rendered if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def template(obj: objects.Object) -> dict[str, Any]:
    """The pod template of a Deployment, a batch Job or a volcano Job (installVolcano's default)."""
    spec = obj["spec"]
    found: dict[str, Any] = spec["tasks"][0]["template"] if "tasks" in spec else spec["template"]
    return found


def container(obj: objects.Object) -> dict[str, Any]:
    return dict(template(obj)["spec"]["containers"][0])


def test_the_deployments_and_jobs_validate_with_notes_only(loaded: repo.Loaded) -> None:
    # The endpoint document is left to the endpoint model; everything else is clean.
    others = [p for p in loaded.errors if not p.file.endswith(ENDPOINT_FILE)]
    assert others == []
    assert sorted(loaded.repo.deployments) == ["blue", "green"]
    assert sorted(loaded.repo.jobs) == sorted(JOB + name.removesuffix(".yml") for name in JOB_FILES)
    notes = sorted((p.field, p.severity.value) for p in loaded.problems if not p.is_error)
    assert notes == [
        ("app_insights_enabled", "note"),
        ("experiment_name", "note"),
        ("outputs.greetings_out", "note"),
    ]


def test_the_whole_folder_validates(loaded: repo.Loaded) -> None:
    # needs the endpoint model from helper MODEL: the endpoint document is recognised there.
    assert [str(p) for p in loaded.errors] == []


def test_blue_gets_its_resources_probes_tags_and_conda_file(
    rendered: list[objects.Object],
) -> None:
    blue = find(rendered, "Deployment", "blue")
    assert blue["spec"]["replicas"] == 2  # instance_count with scale_settings type default
    tags = {"tags.gitops.mlext.io/model-version": "fraud-v1"}
    pod_annotations = template(blue)["metadata"]["annotations"]
    assert pod_annotations == {**tags, DIGEST: pod_annotations[DIGEST]}
    assert blue["metadata"]["annotations"].items() >= tags.items()  # besides the source stamp
    main = container(blue)
    assert main["resources"] == {
        "requests": {"cpu": "0.2", "memory": "0.25Gi"},
        "limits": {"cpu": "0.4", "memory": "400Mi"},
    }
    timing = ("initialDelaySeconds", "periodSeconds", "timeoutSeconds")
    thresholds = ("successThreshold", "failureThreshold")
    assert [main["livenessProbe"][k] for k in (*timing, *thresholds)] == [8, 6, 4, 1, 2]
    assert [main["readinessProbe"][k] for k in (*timing, *thresholds)] == [3, 4, 5, 2, 3]
    env = {e["name"]: e["value"] for e in main["env"]}
    assert env[workloadobjects.CONDA_ENV_VAR] == f"{workloadobjects.CONDA_DIR}/conda.yml"
    conda = find(rendered, "ConfigMap", "blue-conda")
    assert "fraud-scoring-env" in conda["data"]["conda.yml"]
    assert {"name": "conda", "mountPath": workloadobjects.CONDA_DIR, "readOnly": True} in main[
        "volumeMounts"
    ]


def test_green_takes_the_rest_from_its_instance_type(rendered: list[objects.Object]) -> None:
    main = container(find(rendered, "Deployment", "green"))
    # requests given; limits are defaultinstancetype's
    assert main["resources"] == {
        "requests": {"cpu": "0.2", "memory": "0.25Gi"},
        "limits": {"cpu": "0.6", "memory": "1536Mi"},
    }
    probe = main["readinessProbe"]  # not given: the ML CLI v2 defaults
    assert [probe[k] for k in ("initialDelaySeconds", "periodSeconds", "timeoutSeconds")] == [
        10,
        10,
        2,
    ]
    assert (probe["successThreshold"], probe["failureThreshold"]) == (1, 30)


def test_request_settings_reach_the_router(loaded: repo.Loaded) -> None:
    entry = workloadobjects.router_entry(loaded.repo.deployments["blue"], "azureml")
    assert (
        entry["request_timeout_ms"],
        entry["max_concurrent_requests_per_instance"],
        entry["max_queue_wait_ms"],
    ) == (4000, 2, 2500)


def test_every_hello_job_renders_its_command(rendered: list[objects.Object]) -> None:
    names = [JOB + name.removesuffix(".yml") for name in JOB_FILES]
    commands = {name: container(find(rendered, "Job", name))["command"][-1] for name in names}
    assert commands[f"{JOB}hello-world-input"] == "echo greetings from an input\necho 3\n"
    assert commands[f"{JOB}hello-world-output-data"] == (
        'echo "greetings" > /outputs/greetings_out/greetings.txt'
    )
    assert commands[f"{JOB}hello-world"] == 'echo "greetings from the cluster"'
    env_var = container(find(rendered, "Job", f"{JOB}hello-world-env-var"))["env"]
    assert {"name": "greeting", "value": "greetings from an environment variable"} in env_var


def test_the_org_job_carries_its_tags_name_and_description(rendered: list[objects.Object]) -> None:
    job = find(rendered, "Job", f"{JOB}hello-world-org")
    annotations = template(job)["metadata"]["annotations"]
    assert annotations["tags.gitops.mlext.io/purpose"] == "smoke-test"
    assert annotations["gitops.mlext.io/display-name"] == "greetings-example"
    assert annotations["gitops.mlext.io/description"].startswith("# A greeting job\n")
    assert len(annotations) == 3
    assert job["metadata"]["annotations"].items() >= annotations.items()
    assert DIGEST in job["metadata"]["annotations"]  # on the Job: its pod template is immutable


def test_hello_code_runs_in_its_code_folder(rendered: list[objects.Object]) -> None:
    job = find(rendered, "Job", f"{JOB}hello-code")
    main = container(job)
    # It runs in a writable copy of its code folder (./outputs is written there).
    assert main["workingDir"] == workloadobjects.JOB_WORKSPACE_DIR
    [workspace] = template(job)["spec"]["initContainers"]
    assert f"cp -R {workloadobjects.JOB_CODE_DIR}/. " in workspace["command"][2]
    code = find(rendered, "ConfigMap", f"{JOB}hello-code-code")
    assert "greetings from the code folder" in code["data"]["greet.py"]
