"""Jobs and deployments as Kubernetes objects: placement, files, scale, router configuration."""

from pathlib import Path
from typing import Any

import yaml

from reconciler import objects, source
from reconciler.render import render, workloadobjects
from tests.helpers import API, errors, extension, load, write_repo

EXT = extension(
    "enableTraining: true\nenableInference: true\ninferenceRouterServiceType: ClusterIP\n"
    "allowInsecureConnections: true\nnodeSelector.pool: ml\n{extra}"
)
INSTANCE_TYPES = """
apiVersion: amlarc.azureml.com/v1alpha1
kind: InstanceTypeList
items:
  - metadata: {name: gpu}
    spec:
      nodeSelector: {accelerator: nvidia}
      resources: {requests: {cpu: "1"}, limits: {cpu: "2", memory: 4Gi, nvidia.com/gpu: 1}}
  - metadata: {name: other-pool}
    spec:
      nodeSelector: {pool: cpu}
"""
JOB = f"""
apiVersion: {API}
kind: Job
metadata: {{name: train}}
spec:
  command: python train.py
  code: ./src
  environment: {{image: python:3.11}}
  environment_variables: {{EPOCHS: 3}}
  resources: {{instance_type: gpu}}
"""
DEPLOYMENT = """
$schema: https://x/kubernetesOnlineDeployment.schema.json
name: blue
environment: {image: python:3.11}
code_configuration: {code: ./score, scoring_script: score.py}
models: [{path: ./model/weights.bin}, https://models.example.com/extra.pkl]
scale_settings: {type: target_utilization, min_instances: 3, max_instances: 9, polling_interval: 5}
request_settings: {max_concurrent_requests_per_instance: 2}
"""


def render_repo(tmp_path: Path, extra: str = "", **files: str | bytes) -> list[objects.Object]:
    text = EXT.replace("{extra}", extra) if "{extra}" in EXT else EXT
    root = write_repo(tmp_path, {"ext.yaml": text, "it.yaml": INSTANCE_TYPES, **files})
    loaded = load(root)
    assert loaded.valid, errors(loaded)
    return render.render_repo(loaded.repo, source.DirectorySnapshot(root), "rev").objects


def find(rendered: list[objects.Object], kind: str, name: str) -> objects.Object:
    (found,) = [o for o in rendered if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def pod_of(obj: objects.Object) -> dict[str, Any]:
    if obj["apiVersion"] == "batch.volcano.sh/v1alpha1":
        pod: dict[str, Any] = obj["spec"]["tasks"][0]["template"]["spec"]
    else:
        pod = obj["spec"]["template"]["spec"]
    return pod


JOB_FILES: dict[str, str | bytes] = {"j.yaml": JOB, "src/train.py": "print(1)\n"}


def test_job_is_a_volcano_job_with_instance_type_and_merged_selector(tmp_path: Path) -> None:
    rendered = render_repo(tmp_path, **JOB_FILES)
    job = find(rendered, "Job", "train")
    assert job["apiVersion"] == "batch.volcano.sh/v1alpha1"
    assert job["spec"]["schedulerName"] == "volcano"
    pod = pod_of(job)
    assert pod["nodeSelector"] == {"accelerator": "nvidia", "pool": "ml"}
    container = pod["containers"][0]
    assert container["resources"] == {
        "requests": {"cpu": "1"},
        "limits": {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": 1},
    }
    assert container["command"] == ["/bin/sh", "-c", "python train.py"]
    assert {"name": "EPOCHS", "value": "3"} in container["env"]
    code = find(rendered, "ConfigMap", "train-code")
    assert code["data"] == {"train.py": "print(1)\n"}
    assert job["metadata"]["labels"]["app.kubernetes.io/part-of"] == "azureml-extension"


def test_without_volcano_a_batch_job_with_backoff_and_ttl(tmp_path: Path) -> None:
    rendered = render_repo(tmp_path, "installVolcano: false", **JOB_FILES)
    job = find(rendered, "Job", "train")
    assert job["apiVersion"] == "batch/v1"
    assert job["spec"]["backoffLimit"] == 3
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    assert pod_of(job)["restartPolicy"] == "Never"


def test_default_instance_type_when_none_is_named(tmp_path: Path) -> None:
    job = JOB.replace("  resources: {instance_type: gpu}\n", "")
    rendered = render_repo(tmp_path, **{"j.yaml": job, "src/train.py": ""})
    resources = pod_of(find(rendered, "Job", "train"))["containers"][0]["resources"]
    assert resources["requests"] == resources["limits"] == {"cpu": "0.6", "memory": "1536Mi"}


def test_conflicting_node_selectors_name_both_places(tmp_path: Path) -> None:
    root = write_repo(
        tmp_path,
        {
            "ext.yaml": EXT.replace("{extra}", ""),
            "it.yaml": INSTANCE_TYPES,
            "j.yaml": JOB.replace("instance_type: gpu", "instance_type: other-pool"),
            "src/train.py": "",
        },
    )
    assert errors(load(root)) == [
        f"{root}/j.yaml:9: spec.resources.instance_type: node selector label 'pool' conflicts: "
        f"instance type 'other-pool' wants 'cpu' ({root}/it.yaml:10), extension "
        f"'azureml-extension' wants 'ml' ({root}/ext.yaml:12)"
    ]


DEPLOYMENT_FILES: dict[str, str | bytes] = {
    "d.yaml": DEPLOYMENT,
    "score/score.py": "def run(x): return x\n",
    "model/weights.bin": b"\x00\xff\x10",
}


def test_deployment_starts_at_min_instances_with_a_service_and_files(tmp_path: Path) -> None:
    rendered = render_repo(tmp_path, **DEPLOYMENT_FILES)
    deployment = find(rendered, "Deployment", "blue")
    assert deployment["spec"]["replicas"] == 3
    service = find(rendered, "Service", "blue")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    model = find(rendered, "ConfigMap", "blue-model")
    assert model["binaryData"] == {"weights.bin": "AP8Q"}
    init = pod_of(deployment)["initContainers"][0]
    assert "https://models.example.com/extra.pkl" in init["command"][2]
    assert not [o for o in rendered if o["kind"] == "HorizontalPodAutoscaler"]


def test_fixed_scale_uses_instance_count(tmp_path: Path) -> None:
    text = DEPLOYMENT.replace(
        "scale_settings: {type: target_utilization, min_instances: 3, max_instances: 9, "
        "polling_interval: 5}",
        "instance_count: 4",
    )
    rendered = render_repo(tmp_path, **{**DEPLOYMENT_FILES, "d.yaml": text})
    assert find(rendered, "Deployment", "blue")["spec"]["replicas"] == 4


def test_router_config_lists_every_deployment_with_defaults(tmp_path: Path) -> None:
    rendered = render_repo(tmp_path, **DEPLOYMENT_FILES)
    config_map = find(rendered, "ConfigMap", "azureml-fe-v2-config")
    assert config_map["metadata"]["labels"]["app.kubernetes.io/component"] == "router-config"
    config = yaml.safe_load(config_map["data"]["router.yaml"])
    assert config["deployments"] == [
        {
            "name": "blue",
            "namespace": "azureml",
            "service": "blue",
            "port": 80,
            "max_concurrent_requests_per_instance": 2,
            "request_timeout_ms": 5000,
            "max_queue_wait_ms": 500,
            "auth": {"mode": "key", "secret": "blue-auth"},
            "scale_settings": {
                "type": "target_utilization",
                "min_instances": 3,
                "max_instances": 9,
                "target_utilization_percentage": 70,
                "polling_interval": 5,
            },
        }
    ]


def test_the_routers_role_names_its_deployments_secrets_scales_and_lease(tmp_path: Path) -> None:
    fixed = DEPLOYMENT.replace("name: blue", "name: green").replace(
        "scale_settings: {type: target_utilization, min_instances: 3, max_instances: 9, "
        "polling_interval: 5}",
        "scale_settings: {type: default, instance_count: 2}\nauth_mode: none",
    )
    assert fixed != DEPLOYMENT
    rendered = render_repo(tmp_path, **DEPLOYMENT_FILES, **{"g.yaml": fixed})
    rules = find(rendered, "Role", "azureml-fe-v2")["rules"]
    assert rules == [
        {
            "apiGroups": ["discovery.k8s.io"],
            "resources": ["endpointslices"],
            "verbs": ["list", "watch"],
        },
        # green has no keys and a fixed size: neither its Secret nor its scale is the router's.
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["blue-auth"],
            "verbs": ["get"],
        },
        {
            "apiGroups": ["apps"],
            "resources": ["deployments/scale"],
            "resourceNames": ["blue"],
            "verbs": ["get", "patch"],
        },
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["azureml-fe-v2-coordinator"],
            "verbs": ["get", "update"],
        },
    ]
    # The pod knows who it is and which Service its peers sit behind.
    router = find(rendered, "Deployment", "azureml-fe-v2")
    env = router["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {e["name"]: e.get("value") for e in env} == {
        "POD_NAME": None,
        "POD_NAMESPACE": None,
        "ROUTER_SERVICE": "azureml-fe-v2",
    }
    assert find(rendered, "Service", "azureml-fe-v2")["spec"]["ports"][0]["name"] == "http"
    # The model Service's port is where discovery looks for the replicas.
    service = find(rendered, "Service", "blue")
    assert [p["name"] for p in service["spec"]["ports"]] == [workloadobjects.SERVICE_PORT_NAME]


def test_without_keyed_or_autoscaled_deployments_the_role_names_no_secret_or_scale(
    tmp_path: Path,
) -> None:
    # An empty resourceNames would mean every Secret: the rule must go, not be emptied.
    rules = find(render_repo(tmp_path), "Role", "azureml-fe-v2")["rules"]
    assert {r["resources"][0] for r in rules} == {"endpointslices", "leases"}
    assert all(r.get("resourceNames") != [] for r in rules)


def test_local_files_too_big_for_a_config_map_ask_for_a_uri(tmp_path: Path) -> None:
    files = {**DEPLOYMENT_FILES, "model/weights.bin": b"\x00" * 1_000_001}
    root = write_repo(tmp_path, {"ext.yaml": EXT.replace("{extra}", ""), **files})
    assert errors(load(root)) == [
        f"{root}/d.yaml:5: models[0].path: {root}/model/weights.bin is 1,000,001 bytes: local "
        "files reach the pod through a ConfigMap, which holds at most 1,000,000; put them "
        "behind a URI (https://...) instead"
    ]


def test_workload_names_may_not_take_a_components_name(tmp_path: Path) -> None:
    text = DEPLOYMENT.replace("name: blue", "name: gateway")
    root = write_repo(
        tmp_path, {"ext.yaml": EXT.replace("{extra}", ""), **DEPLOYMENT_FILES, "d.yaml": text}
    )
    assert errors(load(root)) == [
        f"{root}/d.yaml:2: name: 'gateway' is taken by a component of extension "
        "'azureml-extension' in the same namespace: choose another name"
    ]


def test_workloads_belong_to_the_extension_they_run_on(tmp_path: Path) -> None:
    second = (
        EXT.replace("{extra}", "")
        .replace("name: azureml-extension", "name: zz-second")
        .replace(
            "clusterType: managedClusters",
            "clusterType: managedClusters\n  releaseNamespace: second",
        )
    )
    text = DEPLOYMENT + "compute: azureml:azureml-extension\n"
    files = {**DEPLOYMENT_FILES, "d.yaml": text, "second.yaml": second}
    rendered = render_repo(tmp_path, **files)
    for obj in rendered:
        if obj["metadata"]["name"].startswith("blue"):
            assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "azureml-extension"
            assert obj["metadata"]["namespace"] == "azureml"
