"""Jobs and deployments as Kubernetes objects: placement, files, scale, router configuration."""

import copy
from pathlib import Path
from typing import Any

import yaml

from reconciler import objects, source
from reconciler.model import memo, repo
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
DIGEST = workloadobjects.CONTENT_DIGEST_ANNOTATION
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


# The CLI v2 fields' effects on the rendered objects.

NO_VOLCANO = "installVolcano: false\n"


def container_of(obj: objects.Object) -> dict[str, Any]:
    return dict(pod_of(obj)["containers"][0])


def test_probes_are_the_deployments_with_cli_v2_defaults(tmp_path: Path) -> None:
    text = DEPLOYMENT + "liveness_probe: {initial_delay: 30, failure_threshold: 4}\n"
    rendered = render_repo(tmp_path, **{**DEPLOYMENT_FILES, "d.yaml": text})
    main = container_of(find(rendered, "Deployment", "blue"))
    check = {"httpGet": {"path": "/", "port": "http"}}
    assert main["livenessProbe"] == {
        **check,
        "initialDelaySeconds": 30,
        "periodSeconds": 10,
        "timeoutSeconds": 2,
        "successThreshold": 1,
        "failureThreshold": 4,
    }
    assert main["readinessProbe"] == {
        **check,
        "initialDelaySeconds": 10,
        "periodSeconds": 10,
        "timeoutSeconds": 2,
        "successThreshold": 1,
        "failureThreshold": 30,
    }


def test_resources_override_the_instance_types_keys_it_keeps_the_selector(
    tmp_path: Path,
) -> None:
    # instance type gpu: requests {cpu: 1}, limits {cpu: 2, memory: 4Gi, nvidia.com/gpu: 1}
    text = DEPLOYMENT + (
        "instance_type: gpu\nresources:\n  requests: {cpu: 500m, memory: 1Gi}\n"
        "  limits: {memory: 3Gi}\n"
    )
    rendered = render_repo(tmp_path, **{**DEPLOYMENT_FILES, "d.yaml": text})
    blue = find(rendered, "Deployment", "blue")
    assert container_of(blue)["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"cpu": "2", "memory": "3Gi", "nvidia.com/gpu": 1},
    }
    assert pod_of(blue)["nodeSelector"] == {"accelerator": "nvidia", "pool": "ml"}


def test_resources_without_instance_type_merge_over_the_default(tmp_path: Path) -> None:
    text = DEPLOYMENT + "resources:\n  limits: {cpu: '1', nvidia.com/gpu: 2}\n"
    rendered = render_repo(tmp_path, **{**DEPLOYMENT_FILES, "d.yaml": text})
    blue = find(rendered, "Deployment", "blue")
    assert container_of(blue)["resources"] == {
        "requests": {"cpu": "0.6", "memory": "1536Mi"},
        "limits": {"cpu": "1", "memory": "1536Mi", "nvidia.com/gpu": 2},
    }
    assert pod_of(blue)["nodeSelector"] == {"pool": "ml"}  # the extension's; default has none


def test_tags_are_annotations_of_the_deployment_and_its_pods(tmp_path: Path) -> None:
    text = DEPLOYMENT + "tags: {owner: risk team, stage: 2, live: false}\n"
    rendered = render_repo(tmp_path, **{**DEPLOYMENT_FILES, "d.yaml": text})
    blue = find(rendered, "Deployment", "blue")
    tags = {
        "tags.gitops.mlext.io/owner": "risk team",
        "tags.gitops.mlext.io/stage": "2",
        "tags.gitops.mlext.io/live": "false",
    }
    pod_annotations = blue["spec"]["template"]["metadata"]["annotations"]
    assert pod_annotations == {**tags, DIGEST: pod_annotations[DIGEST]}
    assert blue["metadata"]["annotations"].items() >= tags.items()
    # A job with no tags: no annotations on its pods at all (the Job carries its digest).
    plain = find(render_repo(tmp_path / "plain", **JOB_FILES), "Job", "train")
    assert "annotations" not in plain["spec"]["tasks"][0]["template"]["metadata"]
    assert DIGEST in plain["metadata"]["annotations"]


def test_the_conda_file_is_mounted_and_named_for_the_inference_image(tmp_path: Path) -> None:
    text = DEPLOYMENT.replace(
        "environment: {image: python:3.11}", "environment: {image: p, conda_file: env/c.yml}"
    )
    conda = "name: scoring\ndependencies: [python=3.11]\n"
    rendered = render_repo(tmp_path, **{**DEPLOYMENT_FILES, "d.yaml": text, "env/c.yml": conda})
    assert find(rendered, "ConfigMap", "blue-conda")["data"] == {"c.yml": conda}
    blue = find(rendered, "Deployment", "blue")
    main = container_of(blue)
    env = {e["name"]: e["value"] for e in main["env"]}
    assert env["AZUREML_EXTRA_CONDA_YAML_ABS_PATH"] == "/var/azureml-app/environment/c.yml"
    assert {"name": "conda", "mountPath": "/var/azureml-app/environment", "readOnly": True} in (
        main["volumeMounts"]
    )
    volumes = {v["name"]: v for v in pod_of(blue)["volumes"]}
    assert volumes["conda"]["configMap"] == {
        "name": "blue-conda",
        "items": [{"key": "c.yml", "path": "c.yml"}],
    }


def test_job_inputs_are_filled_in_and_local_ones_mounted(tmp_path: Path) -> None:
    job = f"""
apiVersion: {API}
kind: Job
metadata: {{name: train}}
spec:
  command: |
    python train.py --lr ${{{{inputs.lr}}}} --data ${{{{inputs.data}}}}
    cat ${{{{inputs.labels}}}} > ${{{{outputs.model}}}}/labels.txt
  code: ./src
  environment: {{image: python:3.11}}
  inputs:
    lr: {{type: number, default: 0.01}}
    data: {{type: uri_folder, path: ./data}}
    labels: {{type: uri_file, path: ./meta/labels.txt}}
  outputs:
    model:
"""
    files: dict[str, str | bytes] = {
        "j.yaml": job,
        "src/train.py": "print(1)\n",
        "data/a.csv": "x\n1\n",
        "data/part/b.csv": "x\n2\n",
        "meta/labels.txt": "cat\ndog\n",
    }
    rendered = render_repo(tmp_path, NO_VOLCANO, **files)
    train = find(rendered, "Job", "train")
    main = container_of(train)
    assert main["command"] == [
        "/bin/sh",
        "-c",
        "python train.py --lr 0.01 --data /inputs/data\n"
        "cat /inputs/labels/labels.txt > /outputs/model/labels.txt\n",
    ]
    assert main["workingDir"] == "/workspace"  # the code copied in, ./outputs writable
    assert find(rendered, "ConfigMap", "train-input-0")["data"] == {
        "a.csv": "x\n1\n",
        "part__b.csv": "x\n2\n",
    }
    assert find(rendered, "ConfigMap", "train-input-1")["data"] == {"labels.txt": "cat\ndog\n"}
    mounts = {m["name"]: m for m in main["volumeMounts"]}
    assert mounts["input-0"] == {"name": "input-0", "mountPath": "/inputs/data", "readOnly": True}
    assert mounts["input-1"]["mountPath"] == "/inputs/labels"
    assert mounts["output-0"] == {"name": "output-0", "mountPath": "/outputs/model"}
    volumes = {v["name"]: v for v in pod_of(train)["volumes"]}
    assert volumes["output-0"] == {"name": "output-0", "emptyDir": {}}
    assert volumes["input-0"]["configMap"]["items"] == [
        {"key": "a.csv", "path": "a.csv"},
        {"key": "part__b.csv", "path": "part/b.csv"},
    ]


def test_job_tags_display_name_and_description_are_annotations(tmp_path: Path) -> None:
    text = JOB + "  tags: {run: nightly}\n  display_name: Nightly training\n"
    rendered = render_repo(tmp_path, NO_VOLCANO, **{**JOB_FILES, "j.yaml": text})
    train = find(rendered, "Job", "train")
    expected = {
        "tags.gitops.mlext.io/run": "nightly",
        "gitops.mlext.io/display-name": "Nightly training",
    }
    assert train["spec"]["template"]["metadata"]["annotations"] == expected
    assert train["metadata"]["annotations"].items() >= expected.items()


def test_a_changed_input_or_conda_file_renders_anew_through_the_memo(tmp_path: Path) -> None:
    job = JOB.replace("command: python train.py", "command: cat ${{inputs.d}}") + (
        "  inputs: {d: {path: ./d.txt}}\n"
    )
    conda_deployment = DEPLOYMENT.replace(
        "environment: {image: python:3.11}", "environment: {image: p, conda_file: c.yml}"
    )
    files = {
        "ext.yaml": EXT.replace("{extra}", ""),
        "it.yaml": INSTANCE_TYPES,
        "j.yaml": job,
        "src/train.py": "",
        "d.txt": "one\n",
        **DEPLOYMENT_FILES,
        "d.yaml": conda_deployment,
        "c.yml": "name: one\n",
    }
    root = write_repo(tmp_path, files)
    reuse = memo.Memo()

    def data() -> tuple[str, str]:
        snapshot = source.DirectorySnapshot(root)
        loaded = repo.load(snapshot, reuse)
        assert loaded.valid, errors(loaded)
        out = render.render_repo(loaded.repo, snapshot, "rev", reuse=reuse).objects
        return (
            find(out, "ConfigMap", "train-input-0")["data"]["d.txt"],
            find(out, "ConfigMap", "blue-conda")["data"]["c.yml"],
        )

    assert data() == ("one\n", "name: one\n")
    (root / "d.txt").write_text("two\n")
    (root / "c.yml").write_text("name: two\n")
    assert data() == ("two\n", "name: two\n")


def test_a_change_of_what_the_pods_get_changes_their_content_digest(tmp_path: Path) -> None:
    """Files reach the pods through ConfigMaps, outside the pod template: the template's
    content digest is what rolls a Deployment when one of them, or a request setting, changes
    (a Job's is on the Job: its template is immutable)."""
    conda_deployment = DEPLOYMENT.replace(
        "environment: {image: python:3.11}", "environment: {image: p, conda_file: c.yml}"
    )
    root = write_repo(
        tmp_path,
        {
            "ext.yaml": EXT.replace("{extra}", ""),
            "it.yaml": INSTANCE_TYPES,
            **JOB_FILES,
            **DEPLOYMENT_FILES,
            "d.yaml": conda_deployment,
            "c.yml": "name: one\n",
        },
    )
    reuse = memo.Memo()

    def digests(revision: str = "rev") -> tuple[str, str]:
        snapshot = source.DirectorySnapshot(root)
        loaded = repo.load(snapshot, reuse)
        assert loaded.valid, errors(loaded)
        out = render.render_repo(loaded.repo, snapshot, revision, reuse=reuse).objects
        blue = find(out, "Deployment", "blue")["spec"]["template"]["metadata"]
        # A Job's template is immutable: the Job itself carries the digest.
        train = find(out, "Job", "train")["metadata"]
        return blue["annotations"][DIGEST], train["annotations"][DIGEST]

    seen = [digests()]
    assert digests("another-revision") == seen[0]  # a commit that changes nothing rolls nothing
    (root / "README.md").write_text("not mounted anywhere\n")
    assert digests() == seen[0]

    def edit(path: str, old: str | bytes, new: str | bytes) -> None:
        target = root / path
        if isinstance(old, bytes) and isinstance(new, bytes):
            assert old in target.read_bytes()
            target.write_bytes(target.read_bytes().replace(old, new))
        else:
            assert isinstance(old, str) and isinstance(new, str) and old in target.read_text()
            target.write_text(target.read_text().replace(old, new))

    for path, old, new in [
        ("score/score.py", "return x", "return [x]"),
        ("model/weights.bin", b"\x10", b"\x11"),
        ("c.yml", "one", "two"),
        ("d.yaml", "{max_concurrent_requests_per_instance: 2}",
         "{max_concurrent_requests_per_instance: 2, request_timeout_ms: 9000}"),
        ("d.yaml", "request_timeout_ms: 9000", "request_timeout_ms: 9000, max_queue_wait_ms: 1"),
    ]:  # fmt: skip
        edit(path, old, new)
        blue, train = digests()
        assert blue not in [b for b, _ in seen], path
        assert train == seen[0][1], f"{path} is not the job's"
        seen.append((blue, train))
    edit("src/train.py", "print(1)", "print(2)")
    blue, train = digests()
    assert blue == seen[-1][0]  # the job's code is not the deployment's
    assert train != seen[0][1]


def test_the_content_digest_covers_every_config_map_the_pod_mounts(tmp_path: Path) -> None:
    conda_deployment = DEPLOYMENT.replace(
        "environment: {image: python:3.11}", "environment: {image: p, conda_file: c.yml}"
    )
    files = {**DEPLOYMENT_FILES, "d.yaml": conda_deployment, "c.yml": "name: one\n"}
    rendered = render_repo(tmp_path, **files)
    volumes = pod_of(find(rendered, "Deployment", "blue"))["volumes"]
    mounted = {v["configMap"]["name"] for v in volumes if "configMap" in v}
    assert mounted == {"blue-code", "blue-conda", "blue-model"}
    before = workloadobjects.content_digest(rendered, volumes)
    for config_map in (o for o in rendered if o["kind"] == "ConfigMap"):
        for field in ("data", "binaryData"):
            for key in config_map.get(field) or {}:
                changed = copy.deepcopy(rendered)
                target = find(changed, "ConfigMap", config_map["metadata"]["name"])
                target[field][key] += "A"
                after = workloadobjects.content_digest(changed, volumes)
                assert (after != before) == (target["metadata"]["name"] in mounted), key
    assert workloadobjects.content_digest(rendered, volumes, {"request_timeout_ms": 1}) != before
