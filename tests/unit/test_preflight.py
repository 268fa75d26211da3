"""Preflight rules (`docs/domain.md#preflight-facts`): a repo against a list of nodes.

Each rule has a failing case asserting the exact finding and a passing one. Nodes are plain Node
dicts, as the API server returns them. The last tests run the command up to the point where it
would reach a cluster (invalid repo, bad kubeconfig: exit 2).
"""

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reconciler.cli import main as cli
from reconciler.engine import preflight
from reconciler.model import problems, repo
from tests.helpers import extension, instance_type, load, write_repo

HTTP = """
enableInference: true
inferenceRouterServiceType: NodePort
allowInsecureConnections: true
"""
NO_HA = HTTP + "inferenceRouterHA: false\n"
HTTPS = """
enableInference: true
inferenceRouterServiceType: NodePort
inferenceRouterHA: false
sslSecret: router-tls
sslCname: ml.example.com
"""
EXT = "extension azureml-extension"
CONTROL_PLANE = "node-role.kubernetes.io/control-plane"


def node(
    name: str,
    cpu: str = "4",
    memory: str = "16Gi",
    gpus: int = 0,
    labels: dict[str, str] | None = None,
    ready: bool = True,
    taints: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    allocatable = {"cpu": cpu, "memory": memory, "pods": "110"}
    if gpus:
        allocatable["nvidia.com/gpu"] = str(gpus)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": {"taints": taints} if taints else {},
        "status": {
            "allocatable": allocatable,
            "conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": "True" if ready else "False"},
            ],
        },
    }


def cpu_nodes(count: int) -> list[dict[str, Any]]:
    return [node(f"cpu-{i}") for i in range(count)]


GPU_NODE = node("gpu-0", gpus=1, labels={"accelerator": "nvidia"})


def repo_of(tmp_path: Path, config: str, **more: str) -> repo.Repo:
    loaded = load(write_repo(tmp_path, {"ext.yaml": extension(config), **more}))
    assert loaded.valid, [str(p) for p in loaded.problems]
    return loaded.repo


def check(declared: repo.Repo, nodes: list[dict[str, Any]]) -> list[preflight.Finding]:
    return preflight.check(declared.extensions, declared.instance_types, nodes)


def findings(tmp_path: Path, config: str, nodes: list[dict[str, Any]], **more: str) -> list[str]:
    return [str(f) for f in check(repo_of(tmp_path, config, **more), nodes)]


# --- nodes -------------------------------------------------------------------------------------


def test_a_node_object_becomes_its_facts() -> None:
    facts = preflight.node_from_object(node("n", cpu="3500m", memory="8Gi", gpus=2))
    assert facts.name == "n"
    assert facts.ready and facts.worker and not facts.control_plane
    assert (facts.cpu, facts.memory, facts.gpus) == (3.5, 8 * 2**30, 2)


@pytest.mark.parametrize(
    "obj",
    [
        node("cp", labels={CONTROL_PLANE: ""}),
        node("m", labels={"node-role.kubernetes.io/master": ""}),
        node("t", taints=[{"key": CONTROL_PLANE, "effect": "NoSchedule"}]),
        node("down", ready=False),
    ],
)
def test_control_plane_and_not_ready_nodes_are_not_workers(obj: dict[str, Any]) -> None:
    assert not preflight.node_from_object(obj).worker


def test_other_taints_and_a_missing_status_are_tolerated() -> None:
    tainted = node("g", taints=[{"key": "nvidia.com/gpu", "effect": "NoSchedule"}])
    assert preflight.node_from_object(tainted).worker
    bare = preflight.node_from_object({"metadata": {"name": "bare"}})
    assert (bare.ready, bare.cpu, bare.memory, bare.gpus) == (False, 0, 0, 0)
    broken = node("b", cpu="lots")
    assert preflight.node_from_object(broken).cpu == 0


# --- inferenceRouterHA -------------------------------------------------------------------------


def test_ha_needs_three_ready_worker_nodes(tmp_path: Path) -> None:
    nodes = [
        *cpu_nodes(2),
        node("down", ready=False),
        node("cp", labels={CONTROL_PLANE: ""}),
    ]
    assert findings(tmp_path, HTTP, nodes) == [
        f"error: {EXT}: inferenceRouterHA needs at least 3 ready worker nodes for its 3 router "
        "replicas; found 2 (cpu-0, cpu-1)"
    ]


def test_ha_counts_only_nodes_matching_the_node_selector(tmp_path: Path) -> None:
    config = HTTP + "nodeSelector: {accelerator: nvidia}\n"
    assert findings(tmp_path, config, [*cpu_nodes(3), GPU_NODE]) == [
        f"error: {EXT}: inferenceRouterHA needs at least 3 ready worker nodes matching "
        "nodeSelector accelerator=nvidia for its 3 router replicas; found 1 (gpu-0)"
    ]


def test_ha_passes_with_three_workers(tmp_path: Path) -> None:
    assert findings(tmp_path, HTTP, cpu_nodes(3)) == []


@pytest.mark.parametrize("config", [NO_HA, "enableTraining: true\n"])
def test_ha_off_or_no_router_needs_no_three_nodes(tmp_path: Path, config: str) -> None:
    assert findings(tmp_path, config, cpu_nodes(1)) == []


# --- production --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nodes", "allocatable"),
    [
        # Too little of both; the control plane's node does not count.
        (
            [
                node("small", cpu="2", memory="7680Mi"),
                node("cp", cpu="8", labels={CONTROL_PLANE: ""}),
            ],
            "2 CPU / 7.5 GiB",
        ),
        # Enough CPU, too little memory.
        (
            [node("a", cpu="8", memory="6Gi"), node("b", cpu="500m", memory="7Gi")],
            "8.5 CPU / 13 GiB",
        ),
    ],
    ids=["too-little-of-both", "memory-alone"],
)
def test_production_needs_4_cpu_and_14_gb(
    tmp_path: Path, nodes: list[dict[str, Any]], allocatable: str
) -> None:
    assert findings(tmp_path, HTTPS, nodes) == [
        f"error: {EXT}: production (HTTPS inference, allowInsecureConnections false) needs at "
        "least 4 CPU and 14 GB (13 GiB) of memory on ready worker nodes; cluster has "
        f"{allocatable} allocatable"
    ]


def test_production_passes_at_exactly_4_cpu_and_14_gb(tmp_path: Path) -> None:
    nodes = [node("a", cpu="3", memory="7G"), node("b", cpu="1000m", memory="7000M")]
    assert findings(tmp_path, HTTPS, nodes) == []


def test_plain_http_is_not_production(tmp_path: Path) -> None:
    assert findings(tmp_path, NO_HA, [node("tiny", cpu="1", memory="1Gi")]) == []


# --- node selectors ----------------------------------------------------------------------------


def test_the_extension_node_selector_must_match_a_ready_worker(tmp_path: Path) -> None:
    config = NO_HA + "nodeSelector.pool: gpu\nnodeSelector.zone: a\n"
    nodes = [
        *cpu_nodes(1),
        node("p", labels={"pool": "gpu"}),
        node("down", labels={"pool": "gpu", "zone": "a"}, ready=False),
    ]
    assert findings(tmp_path, config, nodes) == [
        f"error: {EXT}: nodeSelector pool=gpu,zone=a matches no ready worker node"
    ]
    nodes.append(node("pz", labels={"pool": "gpu", "zone": "a"}))
    assert findings(tmp_path, config, nodes) == []


def test_no_ready_worker_at_all(tmp_path: Path) -> None:
    assert findings(tmp_path, NO_HA, [node("down", ready=False)]) == [
        f"error: {EXT}: the cluster has no ready worker node"
    ]


def test_an_instance_type_selector_must_match_a_ready_worker(tmp_path: Path) -> None:
    more = {"it.yaml": instance_type("big", "pool: big")}
    assert findings(tmp_path, NO_HA, cpu_nodes(1), **more) == [
        "error: instance type big: nodeSelector pool=big matches no ready worker node"
    ]
    assert findings(tmp_path, NO_HA, [node("b", labels={"pool": "big"})], **more) == []


def test_instance_type_selectors_are_merged_with_the_extension_one(tmp_path: Path) -> None:
    config = NO_HA + "nodeSelector: {zone: a}\n"
    more = {"it.yaml": instance_type("big", "pool: big")}
    nodes = [node("a", labels={"zone": "a"}), node("b", labels={"pool": "big"})]
    assert findings(tmp_path, config, nodes, **more) == [
        "error: instance type big: nodeSelector pool=big,zone=a (with extension "
        "azureml-extension) matches no ready worker node"
    ]
    nodes.append(node("ab", labels={"zone": "a", "pool": "big"}))
    assert findings(tmp_path, config, nodes, **more) == []


def test_an_instance_type_without_a_selector_is_reported_with_the_extension(
    tmp_path: Path,
) -> None:
    config = NO_HA + "nodeSelector: {zone: a}\n"
    more = {"it.yaml": instance_type("plain")}
    assert findings(tmp_path, config, cpu_nodes(1), **more) == [
        f"error: {EXT}: nodeSelector zone=a matches no ready worker node"
    ]


def test_a_conflicting_merge_is_left_to_validation(tmp_path: Path) -> None:
    config = NO_HA + "nodeSelector: {pool: cpu}\n"
    more = {"it.yaml": instance_type("big", "pool: big")}
    assert findings(tmp_path, config, [node("c", labels={"pool": "cpu"})], **more) == []


# --- GPUs --------------------------------------------------------------------------------------


def test_a_gpu_instance_type_needs_a_matching_node_with_the_gpus(tmp_path: Path) -> None:
    more = {"it.yaml": instance_type("gpu", "accelerator: nvidia", gpus=1)}
    no_gpus = node("fake-gpu", labels={"accelerator": "nvidia"})
    assert findings(tmp_path, NO_HA, [*cpu_nodes(1), no_gpus], **more) == [
        "error: instance type gpu: needs 1 nvidia.com/gpu on one node, but no ready worker node "
        "matching nodeSelector accelerator=nvidia has that many allocatable (fake-gpu: 0)"
    ]
    assert findings(tmp_path, NO_HA, [*cpu_nodes(1), no_gpus, GPU_NODE], **more) == []


def test_the_gpu_count_must_fit_on_one_node(tmp_path: Path) -> None:
    more = {"it.yaml": instance_type("gpu2", gpus=2)}
    nodes = [GPU_NODE, node("gpu-1", gpus=1)]
    assert findings(tmp_path, NO_HA, nodes, **more) == [
        "error: instance type gpu2: needs 2 nvidia.com/gpu on one node, but no ready worker node "
        "has that many allocatable (gpu-0: 1, gpu-1: 1)"
    ]
    assert findings(tmp_path, NO_HA, [*nodes, node("gpu-big", gpus=4)], **more) == []


def test_a_gpu_node_that_is_not_ready_does_not_count(tmp_path: Path) -> None:
    more = {"it.yaml": instance_type("gpu", "accelerator: nvidia", gpus=1)}
    down = node("gpu-down", gpus=1, labels={"accelerator": "nvidia"}, ready=False)
    assert findings(tmp_path, NO_HA, [*cpu_nodes(1), down], **more) == [
        "error: instance type gpu: nodeSelector accelerator=nvidia matches no ready worker node"
    ]


# --- LoadBalancer ------------------------------------------------------------------------------


def test_load_balancer_is_a_warning(tmp_path: Path) -> None:
    config = NO_HA.replace("NodePort", "LoadBalancer")
    result = check(repo_of(tmp_path, config), cpu_nodes(1))
    assert [str(f) for f in result] == [
        f"warning: {EXT}: inferenceRouterServiceType LoadBalancer: the cluster must be able to "
        "provision a load balancer (most on-prem clusters cannot; NodePort works everywhere)"
    ]
    assert result[0].severity is problems.Severity.WARNING and not result[0].is_error
    assert result[0].as_json() == {
        "severity": "warning",
        "subject": EXT,
        "message": result[0].message,
    }


# --- order and summary -------------------------------------------------------------------------


def test_findings_come_per_extension_then_per_instance_type(tmp_path: Path) -> None:
    config = HTTPS.replace("NodePort", "LoadBalancer").replace("inferenceRouterHA: false\n", "")
    config += "nodeSelector: {zone: a}\n"
    more = {"it.yaml": instance_type("gpu", "accelerator: nvidia", gpus=1)}
    assert findings(tmp_path, config, [node("small", cpu="1", memory="1Gi")], **more) == [
        f"error: {EXT}: nodeSelector zone=a matches no ready worker node",
        f"error: {EXT}: inferenceRouterHA needs at least 3 ready worker nodes matching "
        "nodeSelector zone=a for its 3 router replicas; found none",
        f"error: {EXT}: production (HTTPS inference, allowInsecureConnections false) needs at "
        "least 4 CPU and 14 GB (13 GiB) of memory on ready worker nodes; cluster has 1 CPU / "
        "1 GiB allocatable",
        f"warning: {EXT}: inferenceRouterServiceType LoadBalancer: the cluster must be able to "
        "provision a load balancer (most on-prem clusters cannot; NodePort works everywhere)",
        "error: instance type gpu: nodeSelector accelerator=nvidia,zone=a (with extension "
        "azureml-extension) matches no ready worker node",
    ]


def test_summary_counts_ready_workers_and_their_capacity() -> None:
    nodes = [*cpu_nodes(3), GPU_NODE, node("down", ready=False)]
    assert preflight.summary(nodes) == "4 ready worker nodes, 16 CPU / 64 GiB allocatable"
    assert preflight.summary([node("one", cpu="250m", memory="1536Mi")]) == (
        "1 ready worker node, 0.25 CPU / 1.5 GiB allocatable"
    )


# --- the command, before it reaches a cluster -------------------------------------------------


def test_an_invalid_repo_prints_its_problems_and_exits_2(tmp_path: Path) -> None:
    root = write_repo(tmp_path, {"ext.yaml": extension("enableTraining: true\ninstallVolcanno: x")})
    result = CliRunner().invoke(cli.main, ["preflight", str(root), "--output", "json"])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{root}/ext.yaml:9: spec.config.installVolcanno: unknown setting "
        "(did you mean installVolcano?)",
        "1 problem: fix the repo first",
    ]


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    root = write_repo(tmp_path / "repo", {"ext.yaml": extension(NO_HA)})
    runner = CliRunner()
    missing = runner.invoke(cli.main, ["preflight", str(tmp_path / "nope")])
    assert missing.exit_code == 2
    no_file = runner.invoke(cli.main, ["preflight", str(root), "--kubeconfig", "/nonexistent"])
    assert no_file.exit_code == 2
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\nclusters: []\nusers: []\ncontexts: []\n"
        "current-context: none\n"
    )
    args = ["preflight", str(root), "--kubeconfig", str(kubeconfig), "--context", "elsewhere"]
    bad_context = runner.invoke(cli.main, args)
    assert bad_context.exit_code == 2, bad_context.output
    assert "cannot use the kubeconfig" in bad_context.stderr


# --- workloads: requests against what the nodes have free ---------------------------------------

DEPLOYMENT = """
$schema: https://azuremlschemas.azureedge.net/latest/kubernetesOnlineDeployment.schema.json
name: big
environment: {{image: python:3.11-slim}}
instance_type: {instance_type}
scale_settings: {{type: target_utilization, min_instances: {replicas}, max_instances: 6}}
"""
JOB = """
$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json
name: train
command: echo hi
environment: {image: python:3.11-slim}
resources: {instance_type: sized, instance_count: 2}
"""


def workload_findings(
    tmp_path: Path,
    nodes: list[dict[str, Any]],
    pods: list[dict[str, Any]] | None = None,
    **files: str,
) -> list[str]:
    declared = repo_of(tmp_path, NO_HA + "enableTraining: true\n", **files)
    demands = [
        preflight.demand(w, declared.extensions["azureml-extension"], declared.instance_types)
        for w in [*declared.jobs.values(), *declared.deployments.values()]
    ]
    found = preflight.check(
        declared.extensions, declared.instance_types, nodes, demands, pods or []
    )
    return [str(f).replace(f"{tmp_path}/", "") for f in found]


def bound(name: str, node_name: str, cpu: str, phase: str = "Running", **labels: str) -> Any:
    return {
        "metadata": {"name": name, "namespace": "azureml", "labels": labels},
        "spec": {
            "nodeName": node_name,
            "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}],
        },
        "status": {"phase": phase},
    }


def test_a_deployment_asking_more_cpu_than_any_node_has_is_refused_at_its_line(
    tmp_path: Path,
) -> None:
    files = {
        "it.yaml": instance_type("sized", cpu="64"),
        "d.yaml": DEPLOYMENT.format(instance_type="sized", replicas=2),
    }
    assert workload_findings(tmp_path, cpu_nodes(3), **files) == [
        "error: d.yaml:2: deployment big: needs 2 pods of 64 CPU / 1 GiB; 0 fit on the ready "
        "worker nodes (free after what is requested there: cpu-0 4 CPU / 16 GiB, cpu-1 4 CPU / "
        "16 GiB, cpu-2 4 CPU / 16 GiB)"
    ]


def test_replicas_count_and_what_is_already_requested_on_the_nodes_is_taken(
    tmp_path: Path,
) -> None:
    files = {
        "it.yaml": instance_type("sized", cpu="3"),
        "d.yaml": DEPLOYMENT.format(instance_type="sized", replicas=2),
    }
    assert workload_findings(tmp_path, cpu_nodes(2), **files) == []
    # Another workload's pod takes 2 of cpu-1's 4 CPU: the second replica no longer fits.
    busy = [bound("other", "cpu-1", "2"), bound("done", "cpu-0", "4", phase="Succeeded")]
    assert workload_findings(tmp_path, cpu_nodes(2), busy, **files) == [
        "error: d.yaml:2: deployment big: needs 2 pods of 3 CPU / 1 GiB; 1 fit on the ready "
        "worker nodes (free after what is requested there: cpu-1 2 CPU / 16 GiB, cpu-0 1 CPU / "
        "15 GiB)"
    ]
    # The deployment's own pods are what an apply replaces: they do not count against it.
    own = [bound("big-1", "cpu-1", "3", **{"gitops.mlext.io/deployment": "big"})]
    assert workload_findings(tmp_path, cpu_nodes(2), own, **files) == []


def test_workloads_take_their_share_in_turn_and_a_job_counts_its_instances(
    tmp_path: Path,
) -> None:
    files = {
        "it.yaml": instance_type("sized", cpu="3"),
        "d.yaml": DEPLOYMENT.format(instance_type="sized", replicas=1),
        "j.yaml": JOB,
    }
    assert workload_findings(tmp_path, cpu_nodes(2), **files) == [
        "error: d.yaml:2: deployment big: needs 1 pod of 3 CPU / 1 GiB; 0 fit on the ready "
        "worker nodes (free after what is requested there: cpu-0 1 CPU / 15 GiB, cpu-1 1 CPU / "
        "15 GiB)"
    ]


def test_a_workload_whose_node_selector_matches_no_node_is_named_at_its_line(
    tmp_path: Path,
) -> None:
    files = {
        "it.yaml": instance_type("sized", "pool: gpu-a100"),
        "d.yaml": DEPLOYMENT.format(instance_type="sized", replicas=1),
    }
    found = workload_findings(tmp_path, cpu_nodes(3), **files)
    assert found[-1] == (
        "error: d.yaml:2: deployment big: nodeSelector pool=gpu-a100 matches no ready worker node"
    )


def test_a_pods_requests_count_as_the_scheduler_counts_them() -> None:
    pod = {
        "spec": {
            "containers": [
                {"resources": {"requests": {"cpu": "500m"}, "limits": {"memory": "1Gi"}}},
                {"resources": {"requests": {"cpu": "250m", "memory": "1Gi"}}},
            ],
            "initContainers": [{"resources": {"requests": {"cpu": "2", "memory": "64Mi"}}}],
            "overhead": {"cpu": "100m"},
        }
    }
    assert preflight.pod_requests(pod) == preflight.Resources(
        Decimal("2.1"), Decimal(2 * 2**30), Decimal(0)
    )
