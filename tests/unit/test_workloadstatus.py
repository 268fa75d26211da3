"""Live state summaries: job states, who scales a deployment, HPAs that would fight the router."""

from reconciler.engine import ownership, workloadstatus

UNSCHEDULABLE_POD = {
    "status": {
        "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/4 nodes are available"}
        ]
    }
}  # fmt: skip


def test_batch_job_states() -> None:
    state = workloadstatus.job_state
    batch = {"apiVersion": "batch/v1", "kind": "Job"}
    assert state("j", None).state == "absent"
    assert state("j", {**batch, "status": {}}).state == "pending"
    assert state("j", {**batch, "status": {"active": 1}}).state == "running"
    done = {"conditions": [{"type": "Complete", "status": "True"}]}
    assert state("j", {**batch, "status": done}).state == "succeeded"
    failed = {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimit"}]}
    assert state("j", {**batch, "status": failed}) == workloadstatus.JobState(
        "j", "failed", "BackoffLimit"
    )
    stuck = state("j", {**batch, "status": {"active": 1}}, [UNSCHEDULABLE_POD])
    assert stuck == workloadstatus.JobState("j", "unschedulable", "0/4 nodes are available")
    assert state("j", {**batch, "status": done}, [UNSCHEDULABLE_POD]).state == "succeeded"


def test_volcano_job_phases() -> None:
    volcano = {"apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job"}
    for phase, expected in [("Completed", "succeeded"), ("Aborted", "failed"),
                            ("Running", "running"), ("Pending", "pending")]:  # fmt: skip
        live = {**volcano, "status": {"state": {"phase": phase}}}
        assert workloadstatus.job_state("v", live).state == expected


LIVE_DEPLOYMENT = {
    "metadata": {
        "managedFields": [
            {"manager": "mlext-reconciler", "fieldsV1": {"f:spec": {"f:template": {}}}},
            {"manager": "azureml-fe", "subresource": "scale",
             "fieldsV1": {"f:spec": {"f:replicas": {}}}},
        ]
    },
    "spec": {"replicas": 5},
    "status": {"readyReplicas": 4},
}  # fmt: skip


def test_deployment_state_names_its_scaler_and_hpas() -> None:
    hpa = {"metadata": {"name": "rogue"},
           "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "blue"}}}  # fmt: skip
    other = {"metadata": {"name": "fine"},
             "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "green"}}}  # fmt: skip
    state = workloadstatus.deployment_state("blue", LIVE_DEPLOYMENT, [hpa, other])
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
