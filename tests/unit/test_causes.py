"""Why a workload is not healthy, from its pods as plain dicts: each cause's shape and words,
and how health, `deployment status` and `job status` carry it (issue 30, "true causes")."""

from typing import Any

from reconciler import objects
from reconciler.engine import causes, health, workloadstatus

SCHEDULER = (
    "0/4 nodes are available: 2 Insufficient cpu, 2 node(s) didn't match Pod's node "
    "affinity/selector. preemption: 0/4 nodes are available: 2 No preemption victims found "
    "for incoming pod, 2 Preemption is not helpful for scheduling."
)
LABELS = {"gitops.mlext.io/deployment": "blue"}


def pod(name: str, status: dict[str, Any], image: str = "model:1") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ml", "labels": dict(LABELS)},
        "spec": {"containers": [{"name": "inference-server", "image": image}]},
        "status": status,
    }


def ready(name: str) -> dict[str, Any]:
    return pod(name, {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]})


def pending(name: str) -> dict[str, Any]:
    condition = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": SCHEDULER,
    }
    return pod(name, {"phase": "Pending", "conditions": [condition]})


def waiting(name: str, reason: str, message: str = "", **more: Any) -> dict[str, Any]:
    container = {
        "name": "inference-server",
        "image": "model:1",
        "state": {"waiting": {"reason": reason, "message": message}},
        **more,
    }
    return pod(name, {"phase": "Pending", "containerStatuses": [container]}, "model:1")


def deployment(wanted: int, **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "blue", "namespace": "ml"},
        "spec": {"replicas": wanted, "selector": {"matchLabels": dict(LABELS)}},
        "status": status,
    }


def test_unschedulable_keeps_the_schedulers_reason() -> None:
    cause = causes.of_pod(pending("blue-1"))
    assert cause is not None and cause.kind is causes.Kind.UNSCHEDULABLE
    assert cause.text() == f"pod blue-1 Pending: Unschedulable: {SCHEDULER}"
    assert cause.as_json()["message"] == SCHEDULER


def test_image_pull_errors_name_the_image() -> None:
    for reason in ("ErrImagePull", "ImagePullBackOff"):
        found = causes.of_pod(waiting("blue-1", reason, 'Back-off pulling image "model:1"'))
        assert found is not None and found.kind is causes.Kind.IMAGE_PULL
        assert found.text() == (
            f"pod blue-1 container inference-server: {reason}: image model:1: "
            'Back-off pulling image "model:1"'
        )


def test_an_init_container_that_cannot_pull_is_the_cause() -> None:
    stuck = pod(
        "blue-1",
        {
            "phase": "Pending",
            "initContainerStatuses": [
                {
                    "name": "prepare",
                    "state": {"waiting": {"reason": "ErrImagePull", "message": "not found"}},
                }
            ],
            "containerStatuses": [
                {"name": "inference-server", "state": {"waiting": {"reason": "PodInitializing"}}}
            ],
        },
    )
    stuck["spec"]["initContainers"] = [{"name": "prepare", "image": "conda:2"}]
    found = causes.of_pod(stuck)
    assert found is not None
    assert found.text() == "pod blue-1 container prepare: ErrImagePull: image conda:2: not found"


def test_a_crash_loop_gives_the_last_exit_code_and_reason() -> None:
    last = {"terminated": {"exitCode": 3, "reason": "Error"}}
    found = causes.of_pod(waiting("blue-1", "CrashLoopBackOff", "back-off 20s", lastState=last))
    assert found is not None and (found.kind, found.exit_code) == (causes.Kind.CRASH_LOOP, 3)
    assert found.text() == (
        "pod blue-1 container inference-server: CrashLoopBackOff: last exit code 3 (Error)"
    )
    assert found.as_json()["exitCode"] == 3
    # Between two crashes: running again, not ready, the last run exited 3.
    again = waiting("blue-1", "CrashLoopBackOff", lastState=last, ready=False, restartCount=2)
    again["status"]["containerStatuses"][0]["state"] = {"running": {}}
    restarted = causes.of_pod(again)
    assert restarted is not None and restarted.text() == (
        "pod blue-1 container inference-server: Restarted: last exit code 3 (Error)"
    )
    again["status"]["containerStatuses"][0]["ready"] = True
    assert causes.of_pod(again) is None


def test_a_job_pod_that_exited_non_zero_and_what_is_no_cause() -> None:
    exited = pod(
        "j-1",
        {
            "phase": "Failed",
            "containerStatuses": [
                {"name": "job", "state": {"terminated": {"exitCode": 3, "reason": "Error"}}}
            ],
        },
    )
    found = causes.of_pod(exited)
    assert found is not None and found.text() == "pod j-1 container job: Error: exit code 3 (Error)"
    assert causes.of_pod(ready("blue-1")) is None
    assert causes.of_pod(waiting("blue-1", "ContainerCreating")) is None
    done = pod(
        "j-2",
        {
            "phase": "Succeeded",
            "containerStatuses": [
                {"name": "job", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
            ],
        },
    )
    assert causes.of_pod(done) is None


def test_a_container_the_kubelet_cannot_create() -> None:
    found = causes.of_pod(waiting("b", "CreateContainerConfigError", 'secret "k" not found'))
    assert found is not None and found.kind is causes.Kind.CONTAINER
    assert found.text() == (
        'pod b container inference-server: CreateContainerConfigError: secret "k" not found'
    )


def test_pods_are_selected_by_the_workloads_labels_and_namespace() -> None:
    other = pending("green-1")
    other["metadata"]["labels"] = {"gitops.mlext.io/deployment": "green"}
    elsewhere = pending("blue-x")
    elsewhere["metadata"]["namespace"] = "other"
    going = pending("blue-0")
    going["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    mine = [ready("blue-2"), pending("blue-1")]
    assert causes.selected(deployment(2), [other, elsewhere, going, *mine]) == sorted(
        mine, key=lambda p: p["metadata"]["name"]
    )


def test_a_rollout_stuck_with_old_pods_available_is_not_two_of_two() -> None:
    """The user's case: two old replicas available, the new one Pending on Insufficient cpu.
    Health said "2/2 replicas available"; it names the rollout's count and the scheduler."""
    live = deployment(2, replicas=3, updatedReplicas=1, readyReplicas=2, availableReplicas=2)
    pods = [ready("blue-old-a"), ready("blue-old-b"), pending("blue-new-a")]
    found = health.of(live, pods)
    assert found.state is health.State.PROGRESSING
    assert found.text() == (
        "rollout at 1 of 2 updated, 2 available; "
        f"pod blue-new-a Pending: Unschedulable: {SCHEDULER}"
    )
    key = objects.Key("apps/v1", "Deployment", "ml", "blue")
    assert health.provisioning_state([(key, found)]).reasons == (f"{key}: {found.text()}",)
    state = workloadstatus.deployment_state("blue", live, [], pods)
    assert (state.ready_text, state.updated) == ("2/3", 1)
    assert state.cause is not None and state.cause.pod == "blue-new-a"


def test_a_new_deployment_with_one_pod_pending_reads_one_of_two() -> None:
    live = deployment(2, replicas=2, updatedReplicas=2, readyReplicas=1, availableReplicas=1)
    pods = [ready("blue-a"), pending("blue-b")]
    assert health.of(live, pods).text() == (
        f"1/2 replicas available; pod blue-b Pending: Unschedulable: {SCHEDULER}"
    )
    assert workloadstatus.deployment_state("blue", live, [], pods).ready_text == "1/2"
    # Without its pods read, health still counts; the cause needs them.
    assert health.of(live).cause is None


def test_a_rollout_past_its_deadline_failed_with_the_counts_and_the_pod() -> None:
    deadline = {
        "type": "Progressing",
        "status": "False",
        "reason": "ProgressDeadlineExceeded",
        "message": 'ReplicaSet "blue-7d" has timed out progressing.',
    }
    live = deployment(2, updatedReplicas=1, availableReplicas=2, conditions=[deadline])
    last = {"terminated": {"exitCode": 3, "reason": "Error"}}
    pods = [ready("blue-a"), ready("blue-b"), waiting("blue-c", "CrashLoopBackOff", lastState=last)]
    found = health.of(live, pods)
    assert found.state is health.State.FAILED
    assert found.text() == (
        "rollout stuck at 1 of 2 updated, 2 available: ProgressDeadlineExceeded: "
        'ReplicaSet "blue-7d" has timed out progressing.; '
        "pod blue-c container inference-server: CrashLoopBackOff: last exit code 3 (Error)"
    )


def test_a_healthy_deployment_gets_no_cause_whatever_its_pods() -> None:
    live = deployment(1, replicas=1, updatedReplicas=1, readyReplicas=1, availableReplicas=1)
    assert health.of(live, [pending("blue-z")]) == health.HEALTHY


def test_job_status_carries_the_cause_of_a_waiting_or_failed_job() -> None:
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "uid": "u"}}
    pulling = waiting("j-1", "ImagePullBackOff", "no registry")
    state = workloadstatus.job_state("j", {**job, "status": {"active": 1}}, [pulling])
    assert state.state == "running" and state.cause is not None
    assert state.message() == (
        "1 active; pod j-1 container inference-server: ImagePullBackOff: image model:1: no registry"
    )
    failed = {
        "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]
    }
    exited = pod(
        "j-2",
        {
            "phase": "Failed",
            "containerStatuses": [
                {
                    "name": "job",
                    "state": {
                        "terminated": {
                            "exitCode": 3,
                            "reason": "Error",
                            "containerID": "containerd://a",
                        }
                    },
                }
            ],
        },
    )
    state = workloadstatus.job_state("j", {**job, "status": failed}, [exited])
    assert state.message() == (
        "BackoffLimitExceeded; pod j-2 container job: Error: exit code 3 (Error)"
    )
