"""`reconciler preflight` against the real control plane's nodes.

The local plane has 3 CPU nodes (4 CPU / 16Gi, label node.kubernetes.io/instance-type=cpu-4x16)
and 1 GPU node (the same plus nvidia.com/gpu: 1 and accelerator=nvidia), all Ready workers, and
its real node (this machine's CPUs and memory). Each test runs the command through click's runner
on a repo written for it.
"""

import json
import re
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from kubernetes import client

from reconciler.cli import main as cli
from tests.helpers import extension, instance_type, write_repo

pytestmark = pytest.mark.cluster
REPO_ROOT = Path(__file__).resolve().parents[2]
EXT = "extension azureml-extension"
# The count is checked against the cluster's Ready nodes; the totals depend on the machine.
PASSED = re.compile(
    r"preflight passed on (\d+) ready worker nodes, \d+ CPU / [\d.]+ GiB allocatable"
)


def run(kubeconfig: str | None, *args: str) -> Result:
    """`reconciler preflight ARGS` on the session's cluster."""
    where = ["--kubeconfig", kubeconfig] if kubeconfig else []
    return CliRunner().invoke(cli.main, ["preflight", *args, *where])


def ready_nodes(api_client: client.ApiClient) -> int:
    nodes = client.CoreV1Api(api_client).list_node().items
    return sum(
        any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
        for node in nodes
    )


def assert_passed(line: str, api_client: client.ApiClient, suffix: str = "") -> None:
    found = PASSED.fullmatch(line.removesuffix(suffix))
    assert found is not None and line.endswith(suffix), line
    assert int(found.group(1)) == ready_nodes(api_client), line


def test_the_bundled_example_passes(
    cluster_kubeconfig: str | None, api_client: client.ApiClient
) -> None:
    result = run(cluster_kubeconfig, str(REPO_ROOT / "manifests"))
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    assert_passed(line, api_client)


def test_production_with_a_load_balancer_passes_with_a_warning(
    cluster_kubeconfig: str | None, tmp_path: Path, api_client: client.ApiClient
) -> None:
    config = """
        enableTraining: true
        enableInference: true
        inferenceRouterServiceType: LoadBalancer
        sslSecret: router-tls
        sslCname: ml.example.com
        """
    root = write_repo(tmp_path, {"ext.yaml": extension(config)})
    result = run(cluster_kubeconfig, str(root))
    assert result.exit_code == 0, result.output
    warning, passed = result.stdout.splitlines()
    assert warning == (
        f"warning: {EXT}: inferenceRouterServiceType LoadBalancer: the cluster must be able "
        "to provision a load balancer (most on-prem clusters cannot; NodePort works everywhere)"
    )
    assert_passed(passed, api_client, " (1 warning)")


def test_ha_on_a_selector_matching_one_node_fails_naming_it(
    cluster_kubeconfig: str | None, tmp_path: Path
) -> None:
    config = """
        enableInference: true
        inferenceRouterServiceType: NodePort
        allowInsecureConnections: true
        inferenceRouterHA: true
        nodeSelector: {accelerator: nvidia}
        """
    root = write_repo(tmp_path, {"ext.yaml": extension(config)})
    result = run(cluster_kubeconfig, str(root))
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines() == [
        f"error: {EXT}: inferenceRouterHA needs at least 3 ready worker nodes matching "
        "nodeSelector accelerator=nvidia for its 3 router replicas; found 1 (kwok-gpu-0)",
        "preflight failed: 1 error",
    ]


def test_a_gpu_instance_type_on_cpu_nodes_fails(
    cluster_kubeconfig: str | None, tmp_path: Path
) -> None:
    config = "enableTraining: true"
    instance_type = """
        apiVersion: amlarc.azureml.com/v1alpha1
        kind: InstanceType
        metadata: {name: gpu-on-cpu}
        spec:
          nodeSelector: {node.kubernetes.io/instance-type: cpu-4x16}
          resources: {limits: {cpu: "1", memory: 1Gi, nvidia.com/gpu: 1}}
        """
    root = write_repo(tmp_path, {"ext.yaml": extension(config), "it.yaml": instance_type})
    result = run(cluster_kubeconfig, str(root), "--output", "json")
    assert result.exit_code == 1, result.output
    assert result.stdout == (
        "[\n"
        "  {\n"
        '    "severity": "error",\n'
        '    "subject": "instance type gpu-on-cpu",\n'
        '    "message": "needs 1 nvidia.com/gpu on one node, but no ready worker node matching '
        "nodeSelector node.kubernetes.io/instance-type=cpu-4x16 has that many allocatable "
        '(kwok-cpu-0: 0, kwok-cpu-1: 0, kwok-cpu-2: 0)"\n'
        "  }\n"
        "]\n"
    )


HTTP = """
    enableInference: true
    inferenceRouterServiceType: NodePort
    inferenceRouterHA: false
    allowInsecureConnections: true
    """
DEPLOYMENT = """
    $schema: https://azuremlschemas.azureedge.net/latest/kubernetesOnlineDeployment.schema.json
    name: big
    environment: {image: python:3.11-slim}
    instance_type: sized
    scale_settings: {type: target_utilization, min_instances: 2, max_instances: 4}
    """


def test_a_deployment_asking_more_cpu_than_the_nodes_have_is_refused_at_its_line(
    cluster_kubeconfig: str | None, tmp_path: Path, api_client: client.ApiClient
) -> None:
    files = {
        "ext.yaml": extension(HTTP),
        "it.yaml": instance_type("sized", cpu="64"),
        "big.yaml": DEPLOYMENT,
    }
    root = write_repo(tmp_path, files)
    result = run(cluster_kubeconfig, str(root))
    assert result.exit_code == 1, result.output
    error, verdict = result.stdout.splitlines()
    assert error.startswith(
        f"error: {root}/big.yaml:2: deployment big: needs 2 pods of 64 CPU / 1 GiB; 0 fit on the "
        "ready worker nodes (free after what is requested there: "
    ), error
    assert verdict == "preflight failed: 1 error"
    # The same deployment at 100m a replica fits what the plane's nodes have free.
    (root / "it.yaml").write_text(textwrap.dedent(instance_type("sized", cpu="100m")))
    result = run(cluster_kubeconfig, str(root))
    assert result.exit_code == 0, result.output
    assert_passed(result.stdout.splitlines()[-1], api_client)


def test_a_deployment_whose_node_selector_matches_no_node_is_refused_at_its_line(
    cluster_kubeconfig: str | None, tmp_path: Path
) -> None:
    files = {
        "ext.yaml": extension(HTTP),
        "it.yaml": instance_type("sized", "pool: a100-nowhere", cpu="100m"),
        "big.yaml": DEPLOYMENT,
    }
    root = write_repo(tmp_path, files)
    result = run(cluster_kubeconfig, str(root), "--output", "json")
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout)[-1] == {
        "severity": "error",
        "subject": "deployment big",
        "message": "nodeSelector pool=a100-nowhere matches no ready worker node",
        "where": f"{root}/big.yaml:2",
    }
