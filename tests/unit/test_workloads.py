"""Jobs and deployments: instance type references, scenarios, local paths, scale settings."""

from pathlib import Path

import pytest

from reconciler.model import workloads
from tests.helpers import API, EXTENSION, errors, extension, lines, load, write_repo

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
    return write_repo(tmp_path, {"ext.yaml": EXTENSION, "d.yaml": text, **(files or {})})


def deployment_errors(
    tmp_path: Path, extra: str, files: dict[str, str | bytes] | None = None
) -> list[str]:
    """The errors of the one-deployment repo `deployment` writes, named relative to the repo."""
    root = deployment(tmp_path, extra, files)
    return relative(root, errors(load(root)))


def test_instance_type_must_be_declared(tmp_path: Path) -> None:
    root = write_repo(
        tmp_path, {"ext.yaml": EXTENSION, "j.yml": JOB.format(instance_type="gpu-big")}
    )
    assert relative(root, errors(load(root))) == [
        "j.yml:6: resources.instance_type: no instance type named 'gpu-big' "
        "(known: defaultinstancetype)"
    ]


def test_default_instance_type_needs_no_declaration(tmp_path: Path) -> None:
    text = JOB.format(instance_type="defaultinstancetype")
    root = write_repo(tmp_path, {"ext.yaml": EXTENSION, "j.yml": text})
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
    other = EXTENSION.replace("name: azureml-extension", "name: other")
    files = {"a.yaml": EXTENSION, "b.yaml": other}
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
    assert deployment_errors(tmp_path, "model: {local_path: ../../etc/passwd}") == [
        "d.yaml:5: model.local_path: ../../etc/passwd is outside the repo: local paths must "
        "stay inside it"
    ]


def test_conda_file_is_data_not_a_manifest(tmp_path: Path) -> None:
    env = "environment:\n  image: python\n  conda_file: file:./conda.yml"
    text = DEPLOYMENT.format(extra="").replace("environment:\n  image: python", env)
    root = write_repo(
        tmp_path, {"ext.yaml": EXTENSION, "d.yaml": text, "conda.yml": "dependencies: [python]\n"}
    )
    assert lines(load(root)) == []


def test_environment_needs_an_image(tmp_path: Path) -> None:
    text = DEPLOYMENT.format(extra="").replace("image: python", "name: env")
    root = write_repo(tmp_path, {"ext.yaml": EXTENSION, "d.yaml": text})
    assert relative(root, errors(load(root))) == [
        "d.yaml:3: environment: needs a container image: environment.image or "
        "environment.docker.image"
    ]


def test_at_most_1000_models(tmp_path: Path) -> None:
    models = "models:\n" + "".join(f"  - https://example.com/m{i}.pkl\n" for i in range(1001))
    assert deployment_errors(tmp_path, models) == [
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
    root = write_repo(
        tmp_path, {"ext.yaml": EXTENSION, "jobs/j.yaml": job, "jobs/src/train.py": ""}
    )
    loaded = load(root)
    assert lines(loaded) == []
    train = loaded.repo.jobs["train"]
    assert (train.image, train.code, train.command) == ("python", "jobs/src", "python train.py")


# KubernetesOnlineDeployment fields (ML CLI v2), each with what it becomes in the model.


def test_a_kubernetes_deployment_without_schema_is_recognised(tmp_path: Path) -> None:
    text = "name: blue\ntype: kubernetes\nendpoint_name: ep\nenvironment: {image: python}\n"
    endpoint = "name: ep\ntype: kubernetes\nauth_mode: key\n"  # an endpoint by its shape
    root = write_repo(tmp_path, {"ext.yaml": EXTENSION, "d.yml": text, "ep.yml": endpoint})
    loaded = load(root)
    assert errors(loaded) == []
    assert loaded.repo.deployments["blue"].endpoint_name == "ep"
    # a model says it is a deployment as well as type: kubernetes does
    text = "name: blue\nendpoint_name: ep\nmodel: https://m.example.com/m.pkl\n"
    root = write_repo(
        tmp_path / "m", {"ext.yaml": EXTENSION, "d.yml": text + "environment: {image: p}"}
    )
    assert sorted(load(root).repo.deployments) == ["blue"]


def test_type_other_than_kubernetes_is_an_error_naming_it(tmp_path: Path) -> None:
    text = "name: blue\ntype: managed\nendpoint_name: ep\nmodel: https://m.example.com/m\n"
    root = write_repo(
        tmp_path, {"ext.yaml": EXTENSION, "d.yml": text + "environment: {image: p}\n"}
    )
    assert relative(root, errors(load(root))) == [
        "d.yml:2: type: must be kubernetes: this reconciler runs deployments on the cluster (a "
        "managed online deployment runs in Azure, not here)"
    ]


def test_probes_take_the_cli_v2_defaults_for_fields_not_given(tmp_path: Path) -> None:
    root = deployment(tmp_path, "readiness_probe: {period: 3, success_threshold: 2}")
    found = load(root).repo.deployments["blue"]
    assert found.readiness_probe == workloads.Probe(10, 3, 2, 2, 30)
    assert found.liveness_probe == workloads.Probe(10, 10, 2, 1, 30)


def test_a_liveness_probe_succeeds_after_one_check_only(tmp_path: Path) -> None:
    assert deployment_errors(tmp_path, "liveness_probe:\n  success_threshold: 2") == [
        "d.yaml:6: liveness_probe.success_threshold: must be 1 for a liveness probe (Kubernetes "
        "allows no other value)"
    ]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("initial_delay", "-1", "-1 is less than the minimum of 0"),
        ("period", "0", "0 is less than the minimum of 1"),
        ("timeout", "2s", "must be a whole number, not a string ('2s')"),
    ],
)
def test_probe_fields_are_checked(tmp_path: Path, field: str, value: str, message: str) -> None:
    assert deployment_errors(tmp_path, f"readiness_probe: {{{field}: {value}}}") == [
        f"d.yaml:5: readiness_probe.{field}: {message}"
    ]


def test_resources_are_quantities_with_requests_under_limits(tmp_path: Path) -> None:
    good = "resources:\n  requests: {cpu: '0.1', memory: 0.1Gi}\n  limits: {cpu: 1, memory: 1Gi}"
    found = load(deployment(tmp_path, good)).repo.deployments["blue"]
    assert (found.requests, found.limits) == (
        {"cpu": "0.1", "memory": "0.1Gi"},
        {"cpu": "1", "memory": "1Gi"},
    )
    bad = "resources:\n  requests: {cpu: 2, memory: lots}\n  limits: {cpu: 1}"
    root = deployment(tmp_path / "bad", bad)
    assert relative(root, errors(load(root))) == [
        'd.yaml:6: resources.requests.memory: must be a Kubernetes quantity such as 100m, "1", '
        "1500Mi or 2Gi"
    ]
    over = "resources:\n  requests: {cpu: 2}\n  limits: {cpu: 1}"
    assert deployment_errors(tmp_path / "over", over) == [
        "d.yaml:6: resources.requests.cpu: request 2 is more than the limit 1"
    ]


def test_gpus_go_in_limits_only(tmp_path: Path) -> None:
    assert deployment_errors(tmp_path, "resources:\n  requests: {nvidia.com/gpu: 1}") == [
        "d.yaml:6: resources.requests.nvidia.com/gpu: nvidia.com/gpu goes only in limits "
        "(Kubernetes sets the request equal to the limit)"
    ]


def test_a_request_over_the_instance_types_limit_names_both(tmp_path: Path) -> None:
    # defaultinstancetype's limits are 0.6 CPU and 1536Mi
    root = deployment(tmp_path, "resources:\n  requests: {cpu: '1'}")
    assert relative(root, errors(load(root))) == [
        "d.yaml:6: resources.requests.cpu: request 1 is more than the limit 0.6 of instance "
        "type 'defaultinstancetype': give resources.limits.cpu too"
    ]
    assert deployment_errors(tmp_path / "limit", "resources:\n  limits: {memory: 1Gi}") == [
        "d.yaml:6: resources.limits.memory: limit 1Gi is less than the request 1536Mi of "
        "instance type 'defaultinstancetype': give resources.requests.memory too"
    ]


def test_tags_become_valid_annotation_names(tmp_path: Path) -> None:
    tags = "tags: {'model version': v1, team/owner: risk, _x_: 1, ok: true}\ndescription: d"
    found = load(deployment(tmp_path, tags)).repo.deployments["blue"]
    assert found.annotations == {
        "tags.gitops.mlext.io/model-version": "v1",
        "tags.gitops.mlext.io/team-owner": "risk",
        "tags.gitops.mlext.io/x": "1",
        "tags.gitops.mlext.io/ok": "true",
        "gitops.mlext.io/description": "d",
    }
    assert sorted(deployment_errors(tmp_path / "clash", "tags: {a b: 1, a-b: 2, '***': 3}")) == [
        "d.yaml:5: tags.***: a tag name needs at least one letter or digit",
        "d.yaml:5: tags.a-b: becomes the same annotation as tag 'a b' "
        "(tags.gitops.mlext.io/a-b): rename one",
    ]


def test_environment_variables_are_strings(tmp_path: Path) -> None:
    extra = "environment_variables: {YES_: true, NO_: False, N: 3, X: 0.5, S: text}"
    found = load(deployment(tmp_path, extra)).repo.deployments["blue"]
    assert found.environment_variables == {
        "YES_": "true",
        "NO_": "false",
        "N": "3",
        "X": "0.5",
        "S": "text",
    }


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ("{request_timeout_ms: 0}", "request_timeout_ms: 0 is less than the minimum of 1"),
        (
            "{max_concurrent_requests_per_instance: 0}",
            "max_concurrent_requests_per_instance: 0 is less than the minimum of 1",
        ),
        ("{max_queue_wait_ms: -1}", "max_queue_wait_ms: -1 is less than the minimum of 0"),
        (
            "{request_timeout_ms: 1.5}",
            "request_timeout_ms: must be a whole number, not a number (1.5)",
        ),
    ],
)
def test_request_settings_ranges(tmp_path: Path, settings: str, problem: str) -> None:
    assert deployment_errors(tmp_path, f"request_settings: {settings}") == [
        f"d.yaml:5: request_settings.{problem}"
    ]


def test_code_configuration_code_as_a_path_string(tmp_path: Path) -> None:
    extra = "code_configuration: {code: ../shared/score, scoring_script: score.py}"
    text = DEPLOYMENT.format(extra=extra)
    files = {"ext.yaml": EXTENSION, "d/d.yaml": text, "shared/score/score.py": "def run(x): ..."}
    loaded = load(write_repo(tmp_path, files))
    assert errors(loaded) == []
    assert loaded.repo.deployments["blue"].code == "shared/score"


@pytest.mark.parametrize("prefix", ["", "file:"])
def test_conda_file_with_or_without_file_prefix(tmp_path: Path, prefix: str) -> None:
    env = f"environment:\n  image: python\n  conda_file: {prefix}env/conda.yaml"
    text = DEPLOYMENT.format(extra="").replace("environment:\n  image: python", env)
    files = {"ext.yaml": EXTENSION, "d.yaml": text, "env/conda.yaml": "dependencies: [python]\n"}
    loaded = load(write_repo(tmp_path, files))
    assert lines(loaded) == []
    assert loaded.repo.deployments["blue"].conda_file == "env/conda.yaml"


# Command jobs as the ML CLI v2 examples write them.

HELLO = """\
$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json
command: {command}
environment: {{image: python}}
{extra}
"""


def job(
    tmp_path: Path, command: str, extra: str = "", files: dict[str, str | bytes] | None = None
) -> tuple[Path, workloads.Job | None, list[str]]:
    text = HELLO.format(command=command, extra=extra)
    root = write_repo(tmp_path, {"ext.yaml": EXTENSION, "j.yml": text, **(files or {})})
    loaded = load(root)
    return root, loaded.repo.jobs.get("j"), relative(root, errors(loaded))


def test_literal_inputs_fill_the_command(tmp_path: Path) -> None:
    extra = (
        "inputs:\n  s: hello\n  n: 42\n  f: 0.5\n  b: true\n"
        "  typed: {type: integer, default: 7}\n  valued: {type: string, value: v, default: d}\n"
        "  uri: {type: uri_file, path: 'https://data.example.com/x.csv', mode: direct}"
    )
    command = "'run ${{inputs.s}} ${{ inputs.n }} ${{inputs.f}} ${{inputs.b}} ${{inputs.typed}}"
    command += " ${{inputs.valued}} ${{inputs.uri}}'"
    _, found, problems = job(tmp_path, command, extra)
    assert problems == []
    assert found is not None
    values = {f"inputs.{i.name}": i.value for i in found.inputs if i.value is not None}
    assert workloads.substitute(found.command, values) == (
        "run hello 42 0.5 true 7 v https://data.example.com/x.csv"
    )


def test_remote_inputs_are_fetched_into_the_pod_and_a_public_blob_is_read_over_https(
    tmp_path: Path,
) -> None:
    extra = (
        "inputs:\n"
        "  old: {file: 'https://data.example.com/y.csv'}\n"
        "  blob: {type: uri_file, path: 'wasbs://data@store.blob.core.windows.net/a/iris.csv'}\n"
        "  tree: {type: uri_folder, path: 'wasbs://data@store.blob.core.windows.net/'}\n"
        "  site: {type: uri_folder, path: 'https://data.example.com/folder/'}"
    )
    command = "'run ${{inputs.old}} ${{inputs.blob}} ${{inputs.tree}} ${{inputs.site}}'"
    _, found, problems = job(tmp_path, command, extra)
    assert problems == [
        "j.yml:8: inputs.site.path: https://data.example.com/folder/: a folder is fetched only "
        "from Azure blob storage, whose folders can be listed anonymously; give a file URL, a "
        "folder in the repo, or mode: direct (the URL is then put in as it is)"
    ]
    assert found is not None
    assert {i.name: (i.remote, i.folder) for i in found.inputs if i.remote} == {
        "old": ("https://data.example.com/y.csv", False),
        "blob": ("https://store.blob.core.windows.net/data/a/iris.csv", False),
        "tree": ("https://store.blob.core.windows.net/data/", True),
    }
    assert workloads.blob_folder("https://store.blob.core.windows.net/data/") == (
        "https://store.blob.core.windows.net/data",
        "",
    )
    assert workloads.blob_folder("https://store.blob.core.windows.net/data/a/b") == (
        "https://store.blob.core.windows.net/data",
        "a/b/",
    )


def test_an_optional_part_is_left_out_without_its_input(tmp_path: Path) -> None:
    extra = "inputs:\n  a: 1\n  opt: {type: integer, optional: true}"
    command = "'run ${{inputs.a}} $[[--opt ${{inputs.opt}}]] $[[--more ${{inputs.a}}]]'"
    _, found, problems = job(tmp_path, command, extra)
    assert problems == [] and found is not None
    assert workloads.substitute(found.command, {"inputs.a": "1"}) == "run 1  --more 1"


def test_an_unknown_input_names_the_command_line(tmp_path: Path) -> None:
    command = "|\n  echo start\n  echo ${{inputs.nope}}\n"
    _, _, problems = job(tmp_path, command, "inputs: {a: 1}")
    assert problems == [
        "j.yml:2: command: line 2 (echo ${{inputs.nope}}): no input named 'nope' (inputs: a)"
    ]


def test_an_optional_input_not_given_outside_an_optional_part(tmp_path: Path) -> None:
    _, _, problems = job(
        tmp_path, "'echo ${{inputs.o}}'", "inputs: {o: {type: string, optional: true}}"
    )
    assert problems == [
        "j.yml:2: command: line 1 (echo ${{inputs.o}}): input 'o' is not given: give it a "
        "value, or put the part that uses it inside $[[...]] (left out when the input is not "
        "given)"
    ]


def test_other_expressions_cannot_be_filled_in(tmp_path: Path) -> None:
    _, _, problems = job(tmp_path, "'echo ${{search_space.b}}'")
    assert problems == [
        "j.yml:2: command: line 1 (echo ${{search_space.b}}): ${{search_space.b}} cannot be "
        "filled in on Kubernetes: a command job's command may use ${{inputs.NAME}} and "
        "${{outputs.NAME}} only"
    ]


@pytest.mark.parametrize(
    ("spec", "field", "reference"),
    [
        (
            "{type: uri_file, path: 'azureml://datastores/blob/paths/iris.csv'}",
            "inputs.d.path",
            "azureml://datastores/blob/paths/iris.csv",
        ),
        ("{type: uri_folder, path: 'azureml:iris:1'}", "inputs.d.path", "azureml:iris:1"),
        ("'azureml:iris@latest'", "inputs.d", "azureml:iris@latest"),
        ("{path: 'abfss://c@acct.dfs.core.windows.net/x'}", "inputs.d.path", "abfss://"),
    ],
)
def test_data_the_cluster_cannot_reach_is_an_error_naming_the_field(
    tmp_path: Path, spec: str, field: str, reference: str
) -> None:
    _, _, problems = job(tmp_path, "'cat ${{inputs.d}}'", f"inputs:\n  d: {spec}")
    (found,) = problems  # and no second error about the command using it
    assert found.startswith(f"j.yml:5: {field}: {reference}")
    assert "cannot be reached from the cluster" in found


def test_local_inputs_must_exist_and_fit_their_type(tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {"data/x.txt": "x\n", "data/more/y.txt": "y\n"}
    extra = "inputs:\n  f: {type: uri_file, path: ./data/x.txt}\n  d: {path: ./data}"
    _, found, problems = job(tmp_path, "'cat ${{inputs.f}}; ls ${{inputs.d}}'", extra, files)
    assert problems == [] and found is not None
    assert [(i.name, i.local) for i in found.inputs] == [("f", "data/x.txt"), ("d", "data")]
    extra = "inputs:\n  f: {type: uri_file, path: ./data}\n  g: {type: uri_folder, path: ./nope}"
    root, _, problems = job(tmp_path / "bad", "'cat ${{inputs.f}} ${{inputs.g}}'", extra, files)
    assert problems == [
        "j.yml:5: inputs.f.path: must be a file (type uri_file)",
        f"j.yml:6: inputs.g.path: no such file or folder: {root}/nope",
    ]


def test_outputs_are_folders_in_the_pod_and_cannot_name_a_path(tmp_path: Path) -> None:
    root = write_repo(
        tmp_path,
        {
            "ext.yaml": EXTENSION,
            "j.yml": HELLO.format(command="'echo > ${{outputs.o}}/x'", extra="outputs: {o: }"),
        },
    )
    loaded = load(root)
    assert relative(root, lines(loaded)) == [
        "j.yml:4: outputs.o: note: an empty folder in the pod, /outputs/o: nothing uploads what "
        "the job writes there, and it is gone with the pod"
    ]
    assert loaded.repo.jobs["j"].outputs == ("o",)
    extra = "outputs:\n  o: {type: uri_folder, path: 'azureml://datastores/b/paths/out'}"
    _, _, problems = job(tmp_path / "path", "'echo > ${{outputs.o}}/x ${{outputs.p}}'", extra)
    assert problems == [
        "j.yml:2: command: line 1 (echo > ${{outputs.o}}/x ${{outputs.p}}): no output named 'p' "
        "(outputs: none)",
        "j.yml:5: outputs.o.path: azureml://datastores/b/paths/out cannot be written from the "
        "cluster: leave path out (the output is then a folder in the pod, /outputs/o, kept only "
        "while the pod is)",
    ]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (
            "$schema: https://x/pipelineJob.schema.json\ntype: pipeline\njobs: {}",
            "2: type: a pipeline job",
        ),
        ("type: sweep\ntrial: {command: x}", "1: type: a sweep job"),
        ("$schema: https://x/sweepJob.schema.json\ntrial: {}", "1: $schema: a sweep job"),
        ("$schema: https://x/parallelJob.schema.json\ntask: {}", "1: $schema: a parallel job"),
        ("type: parallel\ntask: {}", "1: type: a parallel job"),
        ("jobs:\n  a: {command: x}", "1: jobs: a pipeline job"),
        ("trial: {command: x}\ninputs: {}", "1: trial: a sweep job"),
    ],
)
def test_jobs_kubernetes_cannot_run_are_one_clear_error(
    tmp_path: Path, text: str, where: str
) -> None:
    root = write_repo(tmp_path, {"ext.yaml": EXTENSION, "p.yml": text + "\n"})
    assert relative(root, errors(load(root))) == [
        f"p.yml:{where} cannot run on Kubernetes through this reconciler: only command jobs do "
        "(a command and an environment); write each step as a command job of its own"
    ]


def test_the_hello_job_fields_are_accepted(tmp_path: Path) -> None:
    extra = (
        "compute: azureml:cpu-cluster\nexperiment_name: hello\ndisplay_name: Hello\n"
        "description: says hello\ntags: {hello: world}\nresources: {instance_count: 2}"
    )
    root, found, problems = job(tmp_path, "'echo \"hello world\"'", extra)
    assert problems == [] and found is not None
    assert found.instance_count == 2
    assert found.annotations == {
        "tags.gitops.mlext.io/hello": "world",
        "gitops.mlext.io/display-name": "Hello",
        "gitops.mlext.io/description": "says hello",
    }
    assert [p.field for p in load(root).problems] == ["experiment_name"]
