"""What the cluster says about the repo's jobs and model deployments, from live objects.

Pure summaries: a job's state, and a model deployment's replicas, who scales it (the field
manager owning `spec.replicas`) and any HorizontalPodAutoscaler aimed at it, which is a problem:
the router is its autoscaler and the two would fight.

A job's state is what its Job reports (batch or volcano) checked against its pods, because a
Job's status can say more than happened: kwok, which simulates the local plane's nodes, marks a
Job's pods Running and then Succeeded with exit code 0 without running anything, and the Job
controller then calls the Job Complete. So `succeeded` needs a pod whose containers all exited 0
as recorded by a container runtime (it gives every container an ID; kwok gives none); a pod on a
kwok node, or one whose running or exit-0 container has no container ID, makes the job `not-run`,
with why. A volcano Job that waits says on what: its PodGroup's condition, or the volcano
scheduler or controller that is not running (or runs on a kwok node, where it does nothing).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from reconciler import objects
from reconciler.engine import causes, ownership

VOLCANO_JOB_API = "batch.volcano.sh/v1alpha1"
# How kwok's nodes are told apart: the label its `--manage-nodes-with-label-selector` selects
# them by on the local plane, and the annotation kwok's documentation gives its fake nodes.
KWOK_NODE_LABEL = ("type", "kwok")
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
# The volcano components (their pods' `app.kubernetes.io/component`) a volcano Job waits for:
# the controller turns the Job into a PodGroup and pods, the scheduler binds them to nodes.
VOLCANO_CONTROLLERS = "volcano-controllers"
VOLCANO_SCHEDULER = "volcano-scheduler"
_VOLCANO_PHASES = {
    "Completed": "succeeded",
    "Failed": "failed",
    "Aborted": "failed",
    "Terminated": "failed",
    "Running": "running",
    "Completing": "running",
    "Restarting": "running",
}


@dataclass(frozen=True)
class JobState:
    name: str
    # absent | pending | unschedulable | running | succeeded | failed | not-run | unverified
    state: str
    detail: str = ""
    cause: causes.Cause | None = None  # why a pod of an unfinished or failed job is not running

    def message(self) -> str:
        """The detail and the cause, as `job status` shows them."""
        return "; ".join(part for part in (self.detail, self.cause and self.cause.text()) if part)


@dataclass(frozen=True)
class DeploymentState:
    """A model deployment as its pods show it. `ready` counts ready pods and `pods` the pods
    there are (not being deleted), so a rollout whose new pod is Pending beside two ready old
    ones reads 2/3, never 2/2; `updated` is the Deployment's count of pods of its current
    template; `cause` the first reason one of its pods gives for not being ready."""

    name: str
    replicas: int | None
    ready: int
    scaled_by: tuple[str, ...]
    autoscalers: tuple[str, ...]  # HPAs targeting it: each one a problem
    pods: int = 0
    updated: int = 0
    cause: causes.Cause | None = None

    @property
    def ready_text(self) -> str:
        """`ready/total`: of the replicas wanted, or of the pods there are when more (a
        rollout's surge pod)."""
        return f"{self.ready}/{max(self.replicas or 0, self.pods)}"

    @property
    def problem(self) -> str | None:
        if not self.autoscalers:
            return None
        return (
            f"HorizontalPodAutoscaler {', '.join(self.autoscalers)} targets model deployment "
            f"{self.name}: the inference router autoscales it; delete the HPA"
        )


def job_state(
    name: str,
    live: objects.Object | None,
    pods: Iterable[objects.Object] = (),
    *,
    nodes: Mapping[str, objects.Object] | None = None,
    pod_groups: Iterable[objects.Object] = (),
    volcano_pods: Iterable[objects.Object] = (),
) -> JobState:
    """The job's state from its Job (`live`), the Job's `pods`, the `nodes` they (and the
    volcano components' pods) are bound to, by name (None: unknown, e.g. not readable), and
    for a volcano Job the namespace's `pod_groups` and `volcano_pods` (the pods of the
    extension's volcano components).

    - `absent`: no Job; `failed`: the Job says so (with its reason).
    - `not-run`: a pod is on a kwok node, or reports a running or exit-0 container that no
      container runtime recorded (no container ID): nothing ran the command, whatever the Job
      says. A volcano Job is also `not-run` when the volcano component it waits for runs on kwok
      nodes only.
    - `succeeded`: the Job says so and a pod of it shows every container exited 0 (recorded by
      a container runtime: no pod failed the check above); `unverified` when the Job says so
      but no such pod is left to show it.
    - `unschedulable`: an unfinished job whose pod the scheduler cannot place (a batch Job
      counts such a pod as active).
    - `running`, `pending` as the Job says; a pending volcano Job says what it waits for.
    """
    if live is None:
        return JobState(name, "absent")
    pods = list(pods)
    reported = _reported(name, live)
    if reported.state == "failed":
        # The Job's reason (BackoffLimitExceeded) with how its last pod ended (exit code 3).
        return replace(reported, cause=causes.first(pods))
    faked = _not_run(pods, nodes or {})
    if faked is not None:
        return JobState(name, "not-run", faked)
    if reported.state == "succeeded":
        return _verified(name, pods)
    cause = causes.first(pods)
    if cause is not None and cause.kind is causes.Kind.UNSCHEDULABLE:
        return JobState(name, "unschedulable", cause=cause)
    if live.get("apiVersion") == VOLCANO_JOB_API and reported.state == "pending":
        waiting = _volcano_wait(name, live, pods, nodes or {}, list(pod_groups), list(volcano_pods))
        return replace(waiting, cause=cause)
    return replace(reported, cause=cause)


def _reported(name: str, live: objects.Object) -> JobState:
    """The state the Job itself reports."""
    status: dict[str, Any] = live.get("status") or {}
    if live.get("apiVersion") == VOLCANO_JOB_API:
        phase = str((status.get("state") or {}).get("phase", "Pending"))
        return JobState(name, _VOLCANO_PHASES.get(phase, "pending"), phase)
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return JobState(name, "succeeded")
        if condition.get("type") == "Failed":
            return JobState(name, "failed", str(condition.get("reason", "")))
    if status.get("active"):
        return JobState(name, "running", f"{status['active']} active")
    return JobState(name, "pending")


def is_kwok_node(node: objects.Object) -> bool:
    """A node kwok simulates: it runs no containers, whatever its pods' status says."""
    metadata = node.get("metadata") or {}
    labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    return (
        labels.get(KWOK_NODE_LABEL[0]) == KWOK_NODE_LABEL[1]
        or annotations.get(KWOK_NODE_ANNOTATION[0]) == KWOK_NODE_ANNOTATION[1]
    )


def _kwok_node_of(pod: objects.Object, nodes: Mapping[str, objects.Object]) -> str | None:
    node = str((pod.get("spec") or {}).get("nodeName") or "")
    return node if node in nodes and is_kwok_node(nodes[node]) else None


def _pod_name(pod: objects.Object) -> str:
    return str((pod.get("metadata") or {}).get("name", "?"))


def _container_statuses(pod: objects.Object) -> list[dict[str, Any]]:
    return list((pod.get("status") or {}).get("containerStatuses") or [])


def _not_run(pods: Sequence[objects.Object], nodes: Mapping[str, objects.Object]) -> str | None:
    """Why the pods' containers never ran, or None when nothing shows they did not."""
    for pod in pods:
        node = _kwok_node_of(pod, nodes)
        if node is not None:
            return f"node {node} is a kwok node that runs no containers"
    for pod in pods:
        for status in _container_statuses(pod):
            # A container runtime gives every container it creates an ID; kwok writes running
            # and exit-0 states without one. (A real non-zero exit can lack an ID: a container
            # lost with its node is reported as exit 137 with none.)
            state = status.get("state") or {}
            claimed = "running" in state or (state.get("terminated") or {}).get("exitCode") == 0
            if claimed and not _container_id(status):
                return (
                    f"pod {_pod_name(pod)} reports container {status.get('name', '?')} "
                    f"{'running' if 'running' in state else 'exited 0'} with no container ID: "
                    "no container runtime ran it"
                )
    return None


def _container_id(status: Mapping[str, Any]) -> str:
    terminated = (status.get("state") or {}).get("terminated") or {}
    return str(status.get("containerID") or terminated.get("containerID") or "")


def _exited_0(pod: objects.Object) -> bool:
    statuses = _container_statuses(pod)
    return bool(statuses) and all(
        ((s.get("state") or {}).get("terminated") or {}).get("exitCode") == 0 for s in statuses
    )


def _verified(name: str, pods: Sequence[objects.Object]) -> JobState:
    """A Job that says it succeeded, backed by a pod whose containers all exited 0 (earlier
    attempts may have failed: the Job retries up to its backoff limit)."""
    exited_0 = sorted(_pod_name(pod) for pod in pods if _exited_0(pod))
    if not exited_0:
        return JobState(
            name, "unverified", "the Job says it succeeded, but no pod of it that exited 0 is left"
        )
    return JobState(name, "succeeded", f"exit code 0 ({', '.join(exited_0)})")


def _volcano_wait(
    name: str,
    live: objects.Object,
    pods: Sequence[objects.Object],
    nodes: Mapping[str, objects.Object],
    pod_groups: Sequence[objects.Object],
    volcano_pods: Sequence[objects.Object],
) -> JobState:
    """What a pending volcano Job waits for. Volcano's controller makes the Job's PodGroup,
    its scheduler enqueues the group (only then does the controller make the pods) and binds
    the pods: so with nothing made, the controller; with a PodGroup or unbound pods, the
    scheduler, and the group's own condition says why it does not schedule them."""
    unbound = [p for p in pods if not (p.get("spec") or {}).get("nodeName")]
    if pods and not unbound:
        return JobState(name, "pending", "its pods are bound to nodes and not running yet")
    group = _pod_group_of(name, live, pod_groups)
    if group is None and not pods:
        down = _not_running(VOLCANO_CONTROLLERS, volcano_pods, nodes)
        if down is not None:
            return JobState(name, down[0], f"volcano made no PodGroup for it: {down[1]}")
        return JobState(name, "pending", "volcano has not made its PodGroup yet")
    waiting = (
        _describe_group(group)
        if group is not None
        else f"{len(unbound)} pod(s) wait for the volcano scheduler"
    )
    down = _not_running(VOLCANO_SCHEDULER, volcano_pods, nodes)
    if down is not None:
        return JobState(name, down[0], f"{waiting}; {down[1]}")
    return JobState(name, "pending", waiting)


def _pod_group_of(
    name: str, live: objects.Object, pod_groups: Sequence[objects.Object]
) -> objects.Object | None:
    """The PodGroup volcano made for the Job (owned by it; named `<job>-<uid>`)."""
    uid = (live.get("metadata") or {}).get("uid")
    for group in pod_groups:
        for owner in (group.get("metadata") or {}).get("ownerReferences") or []:
            if (
                owner.get("kind") == "Job"
                and owner.get("name") == name
                and (uid is None or owner.get("uid") in (None, uid))
            ):
                return group
    return None


def _describe_group(group: objects.Object) -> str:
    """The PodGroup's phase and its last true condition (volcano's scheduler writes why it
    cannot schedule the group there: `Unschedulable: NotEnoughResources: ...`)."""
    status = group.get("status") or {}
    described = f"PodGroup {group['metadata']['name']} is {status.get('phase', 'Pending')}"
    conditions = [c for c in status.get("conditions") or [] if c.get("status") == "True"]
    if conditions:
        last = conditions[-1]
        why = ": ".join(str(last[k]) for k in ("type", "reason", "message") if last.get(k))
        described += f" ({why})"
    return described


def _not_running(
    component: str, volcano_pods: Sequence[objects.Object], nodes: Mapping[str, objects.Object]
) -> tuple[str, str] | None:
    """(state, why) when no pod of the volcano `component` runs: `not-run` when its pods are
    all on kwok nodes (they never will), `pending` otherwise; None when one runs."""
    own = [
        p
        for p in volcano_pods
        if ((p.get("metadata") or {}).get("labels") or {}).get(objects.COMPONENT_LABEL) == component
    ]
    if not own:
        return "pending", f"no {component} pod exists (installVolcano deploys it)"
    kwok = [node for p in own if (node := _kwok_node_of(p, nodes)) is not None]
    if len(kwok) == len(own):
        return "not-run", f"{component} runs on kwok node {kwok[0]}, which runs no containers"
    if any(causes.is_ready(p) for p in own if _kwok_node_of(p, nodes) is None):
        return None
    phases = ", ".join(
        f"{_pod_name(p)} {(p.get('status') or {}).get('phase', 'Pending')}" for p in own
    )
    return "pending", f"no {component} pod is ready ({phases})"


def deployment_state(
    name: str,
    live: objects.Object | None,
    autoscalers: Iterable[objects.Object],
    pods: Iterable[objects.Object] = (),
) -> DeploymentState:
    """The deployment `name` from its Deployment (`live`), the HPAs of its namespace and its
    namespace's pods (its own are picked by its selector)."""
    targeting = tuple(
        sorted(
            str(hpa["metadata"]["name"])
            for hpa in autoscalers
            if (hpa.get("spec") or {}).get("scaleTargetRef", {}).get("kind") == "Deployment"
            and hpa["spec"]["scaleTargetRef"].get("name") == name
        )
    )
    if live is None:
        return DeploymentState(name, None, 0, (), targeting)
    own = causes.selected(live, pods)
    return DeploymentState(
        name,
        (live.get("spec") or {}).get("replicas"),
        sum(1 for pod in own if causes.is_ready(pod)),
        tuple(sorted(ownership.owners_of_replicas(live))),
        targeting,
        pods=len(own),
        updated=int((live.get("status") or {}).get("updatedReplicas") or 0),
        cause=causes.first(own),
    )
