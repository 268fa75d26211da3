"""Jobs and model deployments on the real control plane (`docs/domain.md#jobs`).

Each test writes a small repo whose extension's release namespace is the test's own namespace,
renders it and applies the workload objects with server-side apply (the volcano-less job path:
the local plane runs no volcano scheduler).
"""

import base64
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from reconciler import kube, objects, source
from reconciler.engine import ownership
from reconciler.localcluster.config import PlaneState
from reconciler.render import auth, render
from tests.cluster.kubehelpers import pods, wait_until
from tests.helpers import API, load, write_repo

pytestmark = pytest.mark.cluster
WORKLOAD_KINDS = {"ConfigMap", "Job", "Deployment", "Service"}
INSTANCE_TYPES = """
apiVersion: amlarc.azureml.com/v1alpha1
kind: InstanceTypeList
items:
  - metadata: {name: gpu}
    spec:
      nodeSelector: {accelerator: nvidia}
      resources: {limits: {cpu: "1", memory: 1Gi, nvidia.com/gpu: 1}}
  - metadata: {name: nowhere}
    spec:
      nodeSelector: {pool: does-not-exist}
      resources: {limits: {cpu: 100m, memory: 128Mi}}
  # Small requests: model pods run on the plane's one real node (2 cores here), five at a time.
  - metadata: {name: defaultinstancetype}
    spec:
      resources:
        requests: {cpu: 50m, memory: 128Mi}
        limits: {cpu: 600m, memory: 1536Mi}
"""


def repo_in(tmp_path: Path, namespace: str, workloads: dict[str, str]) -> Path:
    extension = f"""
        apiVersion: {API}
        kind: Extension
        metadata: {{name: ml}}
        spec:
          clusterType: managedClusters
          releaseNamespace: {namespace}
          config:
            enableTraining: true
            enableInference: true
            inferenceRouterServiceType: ClusterIP
            allowInsecureConnections: true
            installVolcano: false
        """
    return write_repo(tmp_path, {"ext.yaml": extension, "it.yaml": INSTANCE_TYPES, **workloads})


def workload_objects(root: Path) -> list[objects.Object]:
    loaded = load(root)
    assert loaded.valid, [str(p) for p in loaded.problems]
    everything = render.render_repo(loaded.repo, source.DirectorySnapshot(root), "test").objects
    return [
        o
        for o in everything
        if o["kind"] in WORKLOAD_KINDS
        and o["metadata"]["labels"]["app.kubernetes.io/component"] in ("job", "model-deployment")
    ]


def job(name: str, instance_type: str) -> str:
    return f"""
        $schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json
        name: {name}
        command: python train.py
        environment: {{image: python:3.11-slim}}
        resources: {{instance_type: {instance_type}}}
        """


def test_gpu_job_lands_on_the_gpu_node(
    cluster: kube.Cluster, api_client: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    for obj in workload_objects(repo_in(tmp_path, namespace, {"j.yaml": job("train", "gpu")})):
        kube.apply(cluster, obj)
    running = wait_until(
        lambda: [p for p in pods(api_client, namespace) if p.spec.node_name],
        bool,
        "the job's pod to be scheduled",
    )
    node = client.CoreV1Api(api_client).read_node(running[0].spec.node_name)
    assert node.metadata.labels["accelerator"] == "nvidia"
    assert running[0].spec.containers[0].resources.limits["nvidia.com/gpu"] == "1"


def test_job_matching_no_node_stays_pending_and_is_reported_unschedulable(
    cluster: kube.Cluster,
    api_client: client.ApiClient,
    cluster_kubeconfig: str | None,
    namespace: str,
    tmp_path: Path,
) -> None:
    root = repo_in(tmp_path, namespace, {"j.yaml": job("lost", "nowhere")})
    for obj in workload_objects(root):
        kube.apply(cluster, obj)

    def unschedulable() -> bool:
        for pod in pods(api_client, namespace):
            for condition in pod.status.conditions or []:
                if condition.type == "PodScheduled" and condition.reason == "Unschedulable":
                    return True
        return False

    wait_until(unschedulable, bool, "the pod to be reported Unschedulable")
    assert all(p.status.phase == "Pending" for p in pods(api_client, namespace))
    code, out, _ = cli(cluster_kubeconfig, "job", "status", str(root))
    assert code == 0
    assert out.splitlines()[1].split()[:2] == ["lost", "unschedulable"]
    assert "node(s) didn't match Pod's node affinity/selector" in out
    code, out, _ = cli(cluster_kubeconfig, "job", "status", str(root), "-o", "yaml")
    assert code == 0
    [row] = yaml.safe_load(out)
    assert (row["name"], row["state"]) == ("lost", "unschedulable")
    assert "node(s) didn't match Pod's node affinity/selector" in row["detail"]


DEPLOYMENT = """
name: blue
environment: {image: python:3.11-slim}
code_configuration: {code: ./score, scoring_script: score.py}
model: {path: ./model.json}
scale_settings: {type: target_utilization, min_instances: 2, max_instances: 6}
"""


def test_deployment_rolls_out_and_keeps_the_routers_replica_count(
    cluster: kube.Cluster, api_client: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    root = repo_in(
        tmp_path,
        namespace,
        {
            "d.yaml": "$schema: https://x/kubernetesOnlineDeployment.schema.json\n" + DEPLOYMENT,
            "score/score.py": "def init(): ...\ndef run(raw): return raw\n",
            "model.json": '{"weights": [1]}',
        },
    )
    desired = workload_objects(root)
    assert {o["kind"] for o in desired} == {"ConfigMap", "Deployment", "Service"}
    for obj in desired:
        kube.apply(cluster, obj)
    apps = client.AppsV1Api(api_client)
    wait_until(
        lambda: apps.read_namespaced_deployment("blue", namespace).status.available_replicas,
        lambda n: n == 2,
        "min_instances (2) pods available",
    )
    # The router scales through the scale subresource, as its own field manager.
    apps.patch_namespaced_deployment_scale(
        "blue", namespace, {"spec": {"replicas": 5}}, field_manager="azureml-fe"
    )
    deployment = next(o for o in desired if o["kind"] == "Deployment")
    live = kube.get(cluster, deployment)
    assert live is not None and "azureml-fe" in ownership.owners_of_replicas(live)
    kube.apply(cluster, ownership.respect_scaler(deployment, live, kube.FIELD_MANAGER))
    assert apps.read_namespaced_deployment("blue", namespace).spec.replicas == 5
    wait_until(
        lambda: len([p for p in pods(api_client, namespace) if p.status.phase == "Running"]),
        lambda n: n == 5,
        "5 running pods after the router scaled",
    )
    # Sending spec.replicas anyway would fight the router: the server refuses it.
    with pytest.raises(kube.KubeError) as conflict:
        kube.apply(cluster, deployment)
    assert conflict.value.status == 409


def test_auth_keys_are_generated_once(
    cluster: kube.Cluster, api_client: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    root = repo_in(
        tmp_path,
        namespace,
        {
            "d.yaml": "$schema: https://x/kubernetesOnlineDeployment.schema.json\n"
            "name: blue\nenvironment: {image: python}\n"
        },
    )
    deployment = load(root).repo.deployments["blue"]
    first = auth.new_secret(deployment, namespace, "ext")
    assert first is not None
    assert kube.create_if_absent(cluster, first)
    second = auth.new_secret(deployment, namespace, "ext")
    assert second is not None and second["data"] != first["data"]
    assert not kube.create_if_absent(cluster, second)
    live = kube.get(cluster, first)
    assert live is not None and live["data"] == first["data"]
    kube.merge_patch(cluster, first, {"data": auth.regenerated("secondary")})
    rotated = kube.get(cluster, first)
    assert rotated is not None
    assert rotated["data"]["primaryKey"] == first["data"]["primaryKey"]
    assert rotated["data"]["secondaryKey"] != first["data"]["secondaryKey"]


def cli(kubeconfig: str | None, *args: str) -> tuple[int, str, str]:
    from click.testing import CliRunner

    from reconciler.cli import main as reconciler_cli

    extra = ["--kubeconfig", kubeconfig] if kubeconfig else []
    result = CliRunner().invoke(reconciler_cli.main, [*args, *extra])
    return result.exit_code, result.stdout, result.stderr


def test_cli_regenerates_keys_and_reports_hpas_and_job_state(
    cluster: kube.Cluster,
    api_client: client.ApiClient,
    cluster_kubeconfig: str | None,
    namespace: str,
    tmp_path: Path,
    local_plane: PlaneState | None,
) -> None:
    root = repo_in(
        tmp_path,
        namespace,
        {
            "d.yaml": "$schema: https://x/kubernetesOnlineDeployment.schema.json\n"
            "name: blue\nenvironment: {image: python}\n",
            "j.yaml": job("train", "gpu"),
            "e.yaml": "$schema: https://x/kubernetesOnlineEndpoint.schema.json\n"
            "name: ep\nauth_mode: Key\n",
        },
    )
    for obj in workload_objects(root):
        kube.apply(cluster, obj)
    # An endpoint's keys are its own Secret's, replaced one at a time the same way.
    for expected in ("created both keys of endpoint ep", "regenerated the secondary key"):
        code, out, err = cli(cluster_kubeconfig, "endpoint", "regen-key", "ep", "--key",
                             "secondary", str(root))  # fmt: skip
        assert code == 0 and expected in out, out + err
        assert f"Secret {namespace}/ep-endpoint-auth" in out
        if expected.startswith("created"):
            first = kube.get_secret(cluster, namespace, "ep-endpoint-auth")
    again = kube.get_secret(cluster, namespace, "ep-endpoint-auth")
    assert first is not None and again is not None
    assert again["data"]["primaryKey"] == first["data"]["primaryKey"]
    assert again["data"]["secondaryKey"] != first["data"]["secondaryKey"]
    code, out, err = cli(cluster_kubeconfig, "endpoint", "regen-key", "blue", "--key",
                         "primary", str(root))  # fmt: skip
    assert code != 0 and "no endpoint named 'blue' declared" in out + err
    code, out, _ = cli(cluster_kubeconfig, "deployment", "regen-key", "blue", "--key",
                       "primary", str(root))  # fmt: skip
    assert code == 0 and out.startswith("created both keys of deployment blue")
    secret_ref = {"apiVersion": "v1", "kind": "Secret",
                  "metadata": {"name": "blue-auth", "namespace": namespace}}  # fmt: skip
    before = kube.get(cluster, secret_ref)
    assert before is not None
    code, out, _ = cli(cluster_kubeconfig, "deployment", "regen-key", "blue", "--key",
                       "primary", str(root))  # fmt: skip
    after = kube.get(cluster, secret_ref)
    assert code == 0 and "regenerated the primary key" in out
    assert after is not None and after["data"]["primaryKey"] != before["data"]["primaryKey"]
    assert after["data"]["secondaryKey"] == before["data"]["secondaryKey"]
    for secret in (before, after):
        for encoded in secret["data"].values():
            assert encoded not in out and base64.b64decode(encoded).decode() not in out

    code, out, err = cli(cluster_kubeconfig, "deployment", "status", str(root))
    assert code == 0, err
    assert out.splitlines()[1].split()[:2] == ["blue", "1"]
    code, out, err = cli(cluster_kubeconfig, "deployment", "status", str(root), "-o", "yaml")
    assert code == 0, err
    assert {r["name"]: r["replicas"] for r in yaml.safe_load(out)}["blue"] == 1
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "rogue", "namespace": namespace},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "blue"},
                 "minReplicas": 1, "maxReplicas": 3},
    }  # fmt: skip
    kube.apply(cluster, hpa)
    code, _, err = cli(cluster_kubeconfig, "deployment", "status", str(root))
    assert code == 1
    assert "HorizontalPodAutoscaler rogue targets model deployment blue" in err

    def job_line() -> list[str]:
        code, out, _ = cli(cluster_kubeconfig, "job", "status", str(root))
        assert code == 0
        return out.splitlines()[1].split(maxsplit=2)

    if local_plane is None:  # a real cluster, with no node for the GPU instance type
        assert job_line()[:2] in (["train", "pending"], ["train", "unschedulable"])
        return
    # Its pod is on the plane's kwok GPU node: whatever kwok writes, the command never ran.
    line = wait_until(job_line, lambda found: found[1] == "not-run", "the job to be not-run")
    assert line == ["train", "not-run", "node kwok-gpu-0 is a kwok node that runs no containers"]
