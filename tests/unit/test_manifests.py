"""Recognising kinds and shapes (`docs/domain.md#manifests`), schema errors, duplicate names."""

from pathlib import Path

from tests.helpers import API, errors, lines, load, write_repo

EXT = f"""
apiVersion: {API}
kind: Extension
metadata: {{name: ext}}
spec:
  clusterType: managedClusters
  config:
    enableTraining: true
    enableInference: true
    inferenceRouterServiceType: ClusterIP
    allowInsecureConnections: true
"""
JOB_V2 = """
$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json
command: echo hi
environment: {image: python}
"""
DEPLOYMENT_V2 = """
$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json
name: blue
environment: {image: python}
"""


def test_each_kind_and_shape_is_recognised(tmp_path: Path) -> None:
    root = write_repo(
        tmp_path,
        {
            "ext.yaml": EXT,
            "it.yaml": """
                apiVersion: amlarc.azureml.com/v1alpha1
                kind: InstanceTypeList
                items:
                  - metadata: {name: small}
                    spec: {resources: {limits: {cpu: "1"}}}
                  - metadata: {name: big}
                    spec: {resources: {limits: {cpu: "4"}}}
                """,
            "jobs/My_Job.yml": JOB_V2,
            "jobs/kind.yaml": f"""
                apiVersion: {API}
                kind: Job
                metadata: {{name: kind-job}}
                spec: {{command: echo, environment: {{image: python}}}}
                """,
            "deploy/v2.yaml": DEPLOYMENT_V2,
            "deploy/kind.yaml": f"""
                apiVersion: {API}
                kind: Deployment
                metadata: {{name: green}}
                spec: {{environment: {{image: python}}}}
                """,
            "deploy/endpoint.yaml": """
                name: mnist
                auth_mode: none
                deployments:
                  - name: red
                    environment: {image: python}
                  - name: yellow
                    auth_mode: key
                    environment: {image: python}
                """,
            "notes.txt": "not yaml: ignored",
            ".git/config.yaml": "ignored: true",
        },
    )
    loaded = load(root)
    assert loaded.problems == []
    assert sorted(loaded.repo.instance_types) == ["big", "small"]
    assert sorted(loaded.repo.jobs) == ["jobs-my-job", "kind-job"]  # jobs/My_Job.yml: its path
    assert sorted(loaded.repo.deployments) == ["blue", "green", "red", "yellow"]
    red, yellow = loaded.repo.deployments["red"], loaded.repo.deployments["yellow"]
    assert (red.auth_mode, red.endpoint_name) == ("none", "mnist")
    assert yellow.auth_mode == "key"
    assert sorted(loaded.repo.endpoints) == ["mnist"]  # the older document declares it too
    assert loaded.repo.summary() == (
        "1 extension, 2 instance types, 2 jobs, 4 deployments, 1 endpoint"
    )


def test_a_document_trying_to_be_a_manifest_names_file_and_line(tmp_path: Path) -> None:
    root = write_repo(
        tmp_path,
        {
            "x.yaml": "a: 1\n---\napiVersion: v1\nmetadata: {name: x}\n",
            "e.yaml": "$schema: https://x/onlineEndpoint.schema.json\ndeployments: {}\n",
        },
    )
    assert errors(load(root)) == [
        f"{root}/e.yaml:1: not a manifest this reconciler knows: give a kind (one of "
        "Extension, InstanceType, InstanceTypeList, Job, Deployment, Endpoint), a $schema of a "
        "command job, an online deployment or an online endpoint, or a deployments: list",
        f"{root}/x.yaml:3: kind: required field is missing: give a kind (one of Extension, "
        "InstanceType, InstanceTypeList, Job, Deployment, Endpoint)",
    ]


def test_unknown_kind_suggests_the_nearest(tmp_path: Path) -> None:
    root = write_repo(tmp_path, {"x.yaml": "kind: Extention\n"})
    assert errors(load(root)) == [
        f"{root}/x.yaml:1: kind: unknown kind 'Extention': expected one of Extension, "
        "InstanceType, InstanceTypeList, Job, Deployment, Endpoint (did you mean Extension?)"
    ]


def test_schema_errors_point_at_file_line_and_field(tmp_path: Path) -> None:
    root = write_repo(
        tmp_path,
        {
            "ext.yaml": EXT.replace("clusterType: managedClusters", "clusterTyp: managed"),
            "job.yaml": JOB_V2 + "resources: {instance_type: 3, instnace_count: 2}\n",
        },
    )
    assert [line.removeprefix(f"{root}/") for line in errors(load(root))] == [
        "ext.yaml:4: spec.clusterType: required field is missing",
        "ext.yaml:5: spec.clusterTyp: unknown field (did you mean clusterType?)",
        "job.yaml:4: resources.instance_type: must be a string, not a whole number (3)",
        "job.yaml:4: resources.instnace_count: unknown field (did you mean instance_count?)",
    ]


def test_wrong_api_version_is_reported(tmp_path: Path) -> None:
    root = write_repo(tmp_path, {"ext.yaml": EXT.replace(API, "gitops.mlext.io/v1")})
    assert errors(load(root)) == [
        f"{root}/ext.yaml:1: apiVersion: must be 'gitops.mlext.io/v1alpha1' "
        "(got 'gitops.mlext.io/v1')"
    ]


def test_names_must_be_kubernetes_names(tmp_path: Path) -> None:
    root = write_repo(tmp_path, {"d.yaml": DEPLOYMENT_V2.replace("blue", "9Blue")})
    assert errors(load(root)) == [
        f"{root}/d.yaml:2: name: must be a lowercase DNS-1035 label: a-z, 0-9 and '-', "
        "starting with a letter, ending with a letter or digit, at most 63 characters"
    ]


def test_duplicate_names_within_a_kind_name_both_places(tmp_path: Path) -> None:
    root = write_repo(
        tmp_path,
        {"ext.yaml": EXT, "a.yaml": DEPLOYMENT_V2, "b.yaml": "# copy\n" + DEPLOYMENT_V2},
    )
    assert errors(load(root)) == [
        f"{root}/b.yaml:4: name: duplicate Deployment named 'blue': also declared at "
        f"{root}/a.yaml:2"
    ]


def test_same_name_in_different_kinds_is_fine(tmp_path: Path) -> None:
    job = JOB_V2 + "name: blue\n"
    root = write_repo(tmp_path, {"ext.yaml": EXT, "d.yaml": DEPLOYMENT_V2, "j.yaml": job})
    assert lines(load(root)) == []


def test_deployment_in_endpoint_shape_needs_a_name(tmp_path: Path) -> None:
    root = write_repo(
        tmp_path, {"ext.yaml": EXT, "e.yaml": "deployments:\n  - environment: {image: p}\n"}
    )
    assert errors(load(root)) == [
        f"{root}/e.yaml:2: deployments[0].name: required field is missing"
    ]


def test_a_bad_item_spoils_only_itself(tmp_path: Path) -> None:
    root = write_repo(
        tmp_path,
        {
            "it.yaml": """
                apiVersion: amlarc.azureml.com/v1alpha1
                kind: InstanceTypeList
                items:
                  - metadata: {name: good}
                    spec: {}
                  - metadata: {name: bad}
                    spec: {resources: {limits: {cpu: lots}}}
                """
        },
    )
    loaded = load(root)
    assert errors(loaded) == [
        f"{root}/it.yaml:7: items[1].spec.resources.limits.cpu: must be a Kubernetes quantity "
        'such as 100m, "1", 1500Mi or 2Gi'
    ]
    assert list(loaded.repo.instance_types) == ["good"]


def test_empty_repo_is_valid_with_a_warning(tmp_path: Path) -> None:
    loaded = load(tmp_path)
    assert loaded.valid
    assert lines(loaded) == [f"{tmp_path}: warning: no *.yaml or *.yml files found"]
