"""Live state summaries: job states, who scales a deployment, HPAs that would fight the router."""

from typing import Any

from reconciler import objects
from reconciler.engine import ownership, workloadstatus
from reconciler.localcluster import config

UNSCHEDULABLE_POD = {
    "metadata": {"name": "j-1"},
    "status": {
        "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/4 nodes are available"}
        ]
    }
}  # fmt: skip


BATCH = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "uid": "u1"}}
VOLCANO = {"apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job",
           "metadata": {"name": "v", "uid": "u2"}}  # fmt: skip
COMPLETE = {"conditions": [{"type": "Complete", "status": "True"}]}
REAL_NODE = {"metadata": {"name": "node-1", "labels": {"kubernetes.io/hostname": "node-1"}}}
KWOK_NODE = config.node_manifest(config.NodeSpec("kwok-cpu-0"))  # as the local plane makes it
NODES = {"node-1": REAL_NODE, "kwok-cpu-0": KWOK_NODE}


def pod(
    node: str | None, state: dict[str, Any] | None, container_id: str | None = None, **labels: str
) -> dict[str, Any]:
    """A pod bound to `node` whose one container is in `state`, as a kubelet (with
    `container_id`) or kwok (without) writes it."""
    status: dict[str, Any] = (
        {"containerStatuses": [{"name": "job", "state": state}]} if state else {}
    )
    if container_id:
        status["containerStatuses"][0]["containerID"] = container_id
    spec = {"nodeName": node} if node else {}
    return {"metadata": {"name": f"p-{node}", "labels": labels}, "spec": spec, "status": status}


def exited(code: int) -> dict[str, Any]:
    return {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}}


def test_batch_job_states_as_the_job_and_its_pods_say() -> None:
    state = workloadstatus.job_state
    assert state("j", None).state == "absent"
    assert state("j", {**BATCH, "status": {}}).state == "pending"
    running = pod("node-1", {"running": {}}, "containerd://1")
    assert state("j", {**BATCH, "status": {"active": 1}}, [running], nodes=NODES).state == (
        "running"
    )
    failed = {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimit"}]}
    assert state("j", {**BATCH, "status": failed}) == workloadstatus.JobState(
        "j", "failed", "BackoffLimit"
    )
    stuck = state("j", {**BATCH, "status": {"active": 1}}, [UNSCHEDULABLE_POD])
    assert (stuck.state, stuck.message()) == (
        "unschedulable",
        "pod j-1 Pending: Unschedulable: 0/4 nodes are available",
    )


def test_succeeded_only_for_a_container_exit_0_a_runtime_recorded() -> None:
    state = workloadstatus.job_state
    done = {**BATCH, "status": COMPLETE}
    ran = pod("node-1", exited(0), "containerd://abc")
    assert state("j", done, [ran], nodes=NODES) == workloadstatus.JobState(
        "j", "succeeded", "exit code 0 (p-node-1)"
    )
    # A first attempt that failed does not undo the retry that succeeded.
    retried = [pod("node-1", exited(1), "containerd://a"), ran]
    assert state("j", done, retried, nodes=NODES).state == "succeeded"
    # Complete, with no pod left to show an exit code (deleted by hand): said, not assumed.
    gone = state("j", done, [], nodes=NODES)
    assert gone.state == "unverified" and "no pod" in gone.detail


def test_a_pod_that_kwok_fakes_is_not_run_whatever_the_job_says() -> None:
    state = workloadstatus.job_state
    # kwok's pod-complete stage: phase Succeeded, exit code 0, no container ID.
    faked = pod("kwok-cpu-0", exited(0))
    for status in (COMPLETE, {"active": 1}, {}):
        assert state("j", {**BATCH, "status": status}, [faked], nodes=NODES) == (
            workloadstatus.JobState(
                "j", "not-run", "node kwok-cpu-0 is a kwok node that runs no containers"
            )
        )
    # Nodes not readable: the missing container ID still tells (kwok writes none).
    blind = state("j", {**BATCH, "status": COMPLETE}, [faked])
    assert blind.state == "not-run" and "no container ID" in blind.detail
    running = state("j", {**BATCH, "status": {"active": 1}}, [pod("x", {"running": {}})])
    assert running.state == "not-run" and "container job running" in running.detail
    # A real non-zero exit may lack an ID (a container lost with its node): no such claim.
    lost = pod("node-1", exited(137))
    assert state("j", {**BATCH, "status": {"active": 1}}, [lost], nodes=NODES).state == ("running")
    # An annotation alone marks a kwok node too (kwok's documented convention).
    other = {"metadata": {"name": "n", "annotations": {"kwok.x-k8s.io/node": "fake"}}}
    assert workloadstatus.is_kwok_node(other) and not workloadstatus.is_kwok_node(REAL_NODE)


def test_volcano_job_phases_checked_against_their_pods() -> None:
    ran = [pod("node-1", exited(0), "containerd://abc")]
    for phase, expected in [("Completed", "succeeded"), ("Aborted", "failed"),
                            ("Terminated", "failed"), ("Running", "running")]:  # fmt: skip
        live = {**VOLCANO, "status": {"state": {"phase": phase}}}
        assert workloadstatus.job_state("v", live, ran, nodes=NODES).state == expected
    completed = {**VOLCANO, "status": {"state": {"phase": "Completed"}}}
    assert workloadstatus.job_state("v", completed, [pod("kwok-cpu-0", exited(0))],
                                    nodes=NODES).state == "not-run"  # fmt: skip


def volcano_pod(component: str, node: str, ready: bool = True) -> dict[str, Any]:
    found = pod(node, None, **{objects.COMPONENT_LABEL: component})
    found["metadata"]["name"] = f"{component}-0"
    found["status"] = {"phase": "Running" if ready else "Pending",
                       "conditions": [{"type": "Ready", "status": str(ready)}]}  # fmt: skip
    return found


def test_a_pending_volcano_job_says_what_it_waits_for() -> None:
    state = workloadstatus.job_state
    pending = {**VOLCANO, "status": {"state": {"phase": "Pending"}}}
    unstarted = {**VOLCANO}  # no status: volcano's controller never touched it
    controllers = volcano_pod(workloadstatus.VOLCANO_CONTROLLERS, "node-1")
    scheduler = volcano_pod(workloadstatus.VOLCANO_SCHEDULER, "node-1")

    # Nothing made: the controller is missing, on a kwok node, not ready, or just slow.
    assert state("v", unstarted, nodes=NODES) == workloadstatus.JobState(
        "v", "pending", "volcano made no PodGroup for it: no volcano-controllers pod exists "
        "(installVolcano deploys it)"
    )  # fmt: skip
    on_kwok = volcano_pod(workloadstatus.VOLCANO_CONTROLLERS, "kwok-cpu-0")
    assert state("v", unstarted, nodes=NODES, volcano_pods=[on_kwok]) == workloadstatus.JobState(
        "v", "not-run", "volcano made no PodGroup for it: volcano-controllers runs on kwok node "
        "kwok-cpu-0, which runs no containers"
    )  # fmt: skip
    starting = volcano_pod(workloadstatus.VOLCANO_CONTROLLERS, "node-1", ready=False)
    waiting = state("v", unstarted, nodes=NODES, volcano_pods=[starting])
    assert waiting.state == "pending" and "no volcano-controllers pod is ready" in waiting.detail
    assert state("v", unstarted, nodes=NODES, volcano_pods=[controllers]).detail == (
        "volcano has not made its PodGroup yet"
    )

    # A PodGroup: the scheduler's part, and the group's own condition says why.
    group = {
        "metadata": {"name": "v-u2",
                     "ownerReferences": [{"kind": "Job", "name": "v", "uid": "u2"}]},
        "status": {"phase": "Pending", "conditions": [
            {"type": "Unschedulable", "status": "True", "reason": "NotEnoughResources",
             "message": "1/1 tasks in gang unschedulable"}]},
    }  # fmt: skip
    described = "PodGroup v-u2 is Pending (Unschedulable: NotEnoughResources: 1/1 tasks in gang "
    described += "unschedulable)"
    both = [controllers, scheduler]
    assert state("v", pending, nodes=NODES, pod_groups=[group], volcano_pods=both) == (
        workloadstatus.JobState("v", "pending", described)
    )
    no_scheduler = state("v", pending, nodes=NODES, pod_groups=[group], volcano_pods=[controllers])
    assert no_scheduler == workloadstatus.JobState(
        "v", "pending", f"{described}; no volcano-scheduler pod exists (installVolcano deploys it)"
    )
    someone_elses = {**group, "metadata": {"name": "w-u3", "ownerReferences": [
        {"kind": "Job", "name": "w", "uid": "u3"}]}}  # fmt: skip
    assert state(
        "v", pending, nodes=NODES, pod_groups=[someone_elses], volcano_pods=both
    ).detail == ("volcano has not made its PodGroup yet")
    # Pods made but not bound: they wait for the scheduler.
    unbound = pod(None, None)
    kwok_scheduler = volcano_pod(workloadstatus.VOLCANO_SCHEDULER, "kwok-cpu-0")
    assert state("v", pending, [unbound], nodes=NODES,
                 volcano_pods=[controllers, kwok_scheduler]) == workloadstatus.JobState(
        "v", "not-run", "1 pod(s) wait for the volcano scheduler; volcano-scheduler runs on kwok "
        "node kwok-cpu-0, which runs no containers"
    )  # fmt: skip


LIVE_DEPLOYMENT = {
    "kind": "Deployment",
    "metadata": {
        "name": "blue",
        "namespace": "ml",
        "managedFields": [
            {"manager": "mlext-reconciler", "fieldsV1": {"f:spec": {"f:template": {}}}},
            {"manager": "azureml-fe", "subresource": "scale",
             "fieldsV1": {"f:spec": {"f:replicas": {}}}},
        ]
    },
    "spec": {"replicas": 5, "selector": {"matchLabels": {"d": "blue"}}},
    "status": {"readyReplicas": 4},
}  # fmt: skip


def blue_pod(name: str, ready: bool) -> dict[str, Any]:
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    return {"metadata": {"name": name, "namespace": "ml", "labels": {"d": "blue"}},
            "status": {"conditions": conditions}}  # fmt: skip


def test_deployment_state_names_its_scaler_and_hpas() -> None:
    hpa = {"metadata": {"name": "rogue"},
           "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "blue"}}}  # fmt: skip
    other = {"metadata": {"name": "fine"},
             "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "green"}}}  # fmt: skip
    pods = [blue_pod(f"b-{i}", True) for i in range(4)]
    state = workloadstatus.deployment_state("blue", LIVE_DEPLOYMENT, [hpa, other], pods)
    assert (state.replicas, state.ready, state.scaled_by) == (5, 4, ("azureml-fe",))
    assert state.problem is not None and "rogue" in state.problem
    assert workloadstatus.deployment_state("blue", LIVE_DEPLOYMENT, [other]).problem is None


def test_replicas_left_out_only_when_someone_else_owns_them() -> None:
    desired = {"kind": "Deployment", "spec": {"replicas": 1, "template": {}}}
    kept = ownership.respect_scaler(desired, None, "mlext-reconciler")
    assert kept["spec"]["replicas"] == 1
    trimmed = ownership.respect_scaler(desired, LIVE_DEPLOYMENT, "mlext-reconciler")
    assert "replicas" not in trimmed["spec"] and desired["spec"]["replicas"] == 1
    ours = {"metadata": {"managedFields": [
        {"manager": "mlext-reconciler", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]}}  # fmt: skip
    assert ownership.respect_scaler(desired, ours, "mlext-reconciler")["spec"]["replicas"] == 1
