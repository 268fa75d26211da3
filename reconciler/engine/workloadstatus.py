"""What the cluster says about the repo's jobs and model deployments, from live objects.

Pure summaries: a Job's state (running / succeeded / failed, batch or volcano), and a model
deployment's replicas, who scales it (the field manager owning `spec.replicas`) and any
HorizontalPodAutoscaler aimed at it, which is a problem: the router is its autoscaler and the two
would fight.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from reconciler import objects
from reconciler.engine import ownership


@dataclass(frozen=True)
class JobState:
    name: str
    state: str  # absent | pending | running | succeeded | failed
    detail: str = ""


@dataclass(frozen=True)
class DeploymentState:
    name: str
    replicas: int | None
    ready: int
    scaled_by: tuple[str, ...]
    autoscalers: tuple[str, ...]  # HPAs targeting it: each one a problem

    @property
    def problem(self) -> str | None:
        if not self.autoscalers:
            return None
        return (
            f"HorizontalPodAutoscaler {', '.join(self.autoscalers)} targets model deployment "
            f"{self.name}: the inference router autoscales it; delete the HPA"
        )


def job_state(
    name: str, live: objects.Object | None, pods: Iterable[objects.Object] = ()
) -> JobState:
    """The job's state; an unfinished job whose pod the scheduler cannot place says why (a
    batch Job counts such a pod as active)."""
    if live is None:
        return JobState(name, "absent")
    state = _job_state(name, live)
    if state.state in ("pending", "running"):
        for pod in pods:
            for condition in (pod.get("status") or {}).get("conditions") or []:
                if condition.get("type") == "PodScheduled" and condition.get("reason") == (
                    "Unschedulable"
                ):
                    return JobState(name, "unschedulable", str(condition.get("message", "")))
    return state


def _job_state(name: str, live: objects.Object) -> JobState:
    status: dict[str, Any] = live.get("status") or {}
    if live.get("apiVersion") == "batch.volcano.sh/v1alpha1":
        phase = str((status.get("state") or {}).get("phase", "Pending"))
        mapping = {"Completed": "succeeded", "Failed": "failed", "Aborted": "failed",
                   "Running": "running"}  # fmt: skip
        return JobState(name, mapping.get(phase, "pending"), phase)
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


def deployment_state(
    name: str, live: objects.Object | None, autoscalers: Iterable[objects.Object]
) -> DeploymentState:
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
    return DeploymentState(
        name,
        (live.get("spec") or {}).get("replicas"),
        int((live.get("status") or {}).get("readyReplicas") or 0),
        tuple(sorted(ownership.owners_of_replicas(live))),
        targeting,
    )
