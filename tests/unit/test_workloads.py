"""Jobs and deployments: instance type references, scenarios, local paths, scale settings."""

from pathlib import Path

import pytest

from reconciler.model import workloads
from tests.helpers import API, errors, extension, lines, load, write_repo

BOTH = extension(
    "enableTraining: true\nenableInference: true\ninferenceRouterServiceType: ClusterIP\n"
    "allowInsecureConnections: true"
)
TRAINING_ONLY = extension("enableTraining: true")
INFERENCE_ONLY = extension(
    "enableInference: true\ninferenceRouterServiceType: ClusterIP\nallowInsecureConnections: true"
)
JOB = """\
$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json
command: python train.py
environment:
  image: python
resources:
  instance_type: {instance_type}
"""
DEPLOYMENT = """\
$schema: https://azuremlschemas.azureedge.net/latest/kubernetesOnlineDeployment.schema.json
name: blue
environment:
  image: python
{extra}
"""


def relative(root: Path, found: list[str]) -> list[str]:
    return [line.removeprefix(f"{root}/") for line in found]


def deployment(tmp_path: Path, extra: str, files: dict[str, str | bytes] | None = None) -> Path:
    text = DEPLOYMENT.format(extra=extra)
    return write_repo(tmp_path, {"ext.yaml": BOTH, "d.yaml": text, **(files or {})})


def test_instance_type_must_be_declared(tmp_path: Path) -> None:
    root = write_repo(tmp_path, {"ext.yaml": BOTH, "j.yml": JOB.format(instance_type="gpu-big")})
    assert relative(root, errors(load(root))) == [
        "j.yml:6: resources.instance_type: no instance type named 'gpu-big' "
        "(known: defaultinstancetype)"
    ]


def test_default_instance_type_needs_no_declaration(tmp_path: Path) -> None:
    text = JOB.format(instance_type="defaultinstancetype")
    root = write_repo(tmp_path, {"ext.yaml": BOTH, "j.yml": text})
    assert lines(load(root)) == []


def test_jobs_need_training(tmp_path: Path) -> None:
    job = JOB.format(instance_type="defaultinstancetype") + "name: train\n"
    root = write_repo(tmp_path, {"ext.yaml": INFERENCE_ONLY, "j.yml": job})
    assert relative(root, errors(load(root))) == [
        "j.yml:7: name: jobs need enableTraining: true on extension 'azureml-extension'"
    ]
    root = write_repo(tmp_path / "ok", {"ext.yaml": TRAINING_ONLY, "j.yml": job})
    assert errors(load(root)) == []


def test_deployments_need_inference(tmp_path: Path) -> None:
    root = write_repo(tmp_path, {"ext.yaml": TRAINING_ONLY, "d.yaml": DEPLOYMENT.format(extra="")})
    assert relative(root, errors(load(root))) == [
        "d.yaml:2: name: deployments need enableInference: true on extension 'azureml-extension'"
    ]


def test_workloads_need_an_extension(tmp_path: Path) -> None:
    root = write_repo(tmp_path, {"d.yaml": DEPLOYMENT.format(extra="")})
    assert relative(root, errors(load(root))) == [
        "d.yaml:2: name: needs an Extension in the repo to run on (none is declared)"
    ]


def test_with_several_extensions_compute_must_name_one(tmp_path: Path) -> None:
    other = BOTH.replace("name: azureml-extension", "name: other")
    files = {"a.yaml": BOTH, "b.yaml": other}
    root = write_repo(tmp_path, {**files, "d.yaml": DEPLOYMENT.format(extra="compute: nope")})
    assert relative(root, errors(load(root))) == [
        "d.yaml:5: compute: 'nope' is not one of the repo's extensions (azureml-extension, other)"
    ]
    root = write_repo(
        tmp_path / "ok", {**files, "d.yaml": DEPLOYMENT.format(extra="compute: azureml:other")}
    )
    loaded = load(root)
    assert errors(loaded) == []
    selected = loaded.repo.extension_for(loaded.repo.deployments["blue"])
    assert selected is not None and selected.name == "other"


def test_local_paths_are_relative_to_the_manifest(tmp_path: Path) -> None:
    extra = (
        "model: {path: ./model/m.json}\ncode_configuration: {code: ./src, scoring_script: score.py}"
    )
    files: dict[str, str | bytes] = {"model/m.json": "{}", "src/score.py": "def run(x): ..."}
    assert errors(load(deployment(tmp_path, extra, files))) == []
    root = deployment(tmp_path / "missing", extra, {"src/other.py": ""})
    assert relative(root, errors(load(root))) == [
        f"d.yaml:5: model.path: no such file or folder: {root}/model/m.json",
        f"d.yaml:6: code_configuration.scoring_script: no such file: {root}/src/score.py",
    ]


def test_local_paths_may_not_leave_the_repo(tmp_path: Path) -> None:
    root = deployment(tmp_path, "model: {local_path: ../../etc/passwd}")
    assert relative(root, errors(load(root))) == [
        "d.yaml:5: model.local_path: ../../etc/passwd is outside the repo: local paths must "
        "stay inside it"
    ]


def test_conda_file_is_data_not_a_manifest(tmp_path: Path) -> None:
    env = "environment:\n  image: python\n  conda_file: file:./conda.yml"
    text = DEPLOYMENT.format(extra="").replace("environment:\n  image: python", env)
    root = write_repo(
        tmp_path, {"ext.yaml": BOTH, "d.yaml": text, "conda.yml": "dependencies: [python]\n"}
    )
    assert lines(load(root)) == []


def test_environment_needs_an_image(tmp_path: Path) -> None:
    text = DEPLOYMENT.format(extra="").replace("image: python", "name: env")
    root = write_repo(tmp_path, {"ext.yaml": BOTH, "d.yaml": text})
    assert relative(root, errors(load(root))) == [
        "d.yaml:3: environment: needs a container image: environment.image or "
        "environment.docker.image"
    ]


def test_at_most_1000_models(tmp_path: Path) -> None:
    models = "models:\n" + "".join(f"  - https://example.com/m{i}.pkl\n" for i in range(1001))
    root = deployment(tmp_path, models)
    assert relative(root, errors(load(root))) == [
        "d.yaml:5: models: at most 1,000 models per deployment"
    ]
    assert errors(load(deployment(tmp_path / "ok", models.rsplit("  -", 1)[0]))) == []


def scale(tmp_path: Path, extra: str) -> tuple[workloads.ScaleSettings, list[str]]:
    root = deployment(tmp_path, extra)
    loaded = load(root)
    found = relative(root, lines(loaded))
    blue = loaded.repo.deployments.get("blue")
    return (blue.scale if blue else workloads.ScaleSettings("none", 0, 0)), found


@pytest.mark.parametrize("spelling", ["scale_settings", "scale_setting"])
def test_target_utilization_both_spellings_with_defaults(tmp_path: Path, spelling: str) -> None:
    settings, found = scale(
        tmp_path,
        f"{spelling}:\n  type: target_utilization\n  min_instances: 3\n"
        "  max_instances: 15\n  polling_interval: 10",
    )
    assert found == []
    assert settings == workloads.ScaleSettings("target_utilization", 3, 15, 70, 10)
    assert settings.initial_replicas == 3


def test_min_may_not_exceed_max(tmp_path: Path) -> None:
    _, found = scale(
        tmp_path,
        "scale_settings:\n  type: target_utilization\n  min_instances: 5\n  max_instances: 2",
    )
    assert found == ["d.yaml:8: scale_settings.max_instances: must be at least min_instances (5)"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("target_utilization_percentage", 0, "0 is less than the minimum of 1"),
        ("target_utilization_percentage", 101, "101 is greater than the maximum of 100"),
        ("polling_interval", 0, "0 is less than or equal to the minimum of 0"),
    ],
)
def test_percentage_and_interval_bounds(
    tmp_path: Path, field: str, value: int, message: str
) -> None:
    _, found = scale(tmp_path, f"scale_settings:\n  type: target_utilization\n  {field}: {value}")
    assert found == [f"d.yaml:7: scale_settings.{field}: {message}"]


def test_default_type_uses_instance_count(tmp_path: Path) -> None:
    settings, found = scale(tmp_path, "instance_count: 2\nscale_settings:\n  type: default")
    assert found == []
    assert settings == workloads.ScaleSettings("fixed", 2, 2)


def test_no_scale_settings_means_one_fixed_replica(tmp_path: Path) -> None:
    settings, found = scale(tmp_path, "")
    assert found == []
    assert settings == workloads.ScaleSettings("fixed", 1, 1)


def test_older_manual_and_auto_types_warn(tmp_path: Path) -> None:
    settings, found = scale(tmp_path, "scale_settings:\n  type: manual\n  instance_count: 4")
    assert settings == workloads.ScaleSettings("fixed", 4, 4)
    assert found == [
        "d.yaml:6: scale_settings.type: warning: 'manual' is the older name: use default"
    ]
    settings, found = scale(
        tmp_path / "auto", "scale_settings:\n  type: auto\n  min_instances: 2\n  max_instances: 4"
    )
    assert settings == workloads.ScaleSettings("target_utilization", 2, 4, 70, 1)
    assert found == [
        "d.yaml:6: scale_settings.type: warning: 'auto' is the older name: use target_utilization"
    ]


def test_fields_that_do_not_fit_the_type(tmp_path: Path) -> None:
    _, found = scale(tmp_path, "scale_settings:\n  type: default\n  min_instances: 2")
    assert found == ["d.yaml:7: scale_settings.min_instances: only with type target_utilization"]


def test_both_spellings_at_once_is_an_error(tmp_path: Path) -> None:
    _, found = scale(tmp_path, "scale_settings:\n  type: default\nscale_setting:\n  type: default")
    assert found == ["d.yaml:7: scale_setting: given twice: scale_settings and scale_setting"]


def test_kind_shape_job(tmp_path: Path) -> None:
    job = f"""
        apiVersion: {API}
        kind: Job
        metadata: {{name: train}}
        spec:
          command: python train.py
          code: ./src
          environment: {{image: python}}
          compute: azureml-extension
        """
    root = write_repo(tmp_path, {"ext.yaml": BOTH, "jobs/j.yaml": job, "jobs/src/train.py": ""})
    loaded = load(root)
    assert lines(loaded) == []
    train = loaded.repo.jobs["train"]
    assert (train.image, train.code, train.command) == ("python", "jobs/src", "python train.py")
