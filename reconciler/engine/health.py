"""Is a live object healthy? One pure rule per kind, and the extension's provisioning state.

Deployment: every desired replica updated and available (a rollout past its progress deadline
has failed). DaemonSet: scheduled on every node it should be and all ready. StatefulSet: all
replicas ready and current. Job: complete (failed is failed). CRD: Established. Service of type
LoadBalancer: has an address. Everything else is healthy once it exists. An extension is
`Pending` while anything is progressing, `Failed` with the reasons when something failed,
`Succeeded` when all is healthy.

A workload that is not healthy is told with its pods (`POD_KINDS`; the caller reads them only
then): the first cause one of them reports (`causes`: unschedulable with the scheduler's
reason, an image that cannot be pulled, a crash loop with its last exit code) goes with its
health, and into the reason the extension's record keeps.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from reconciler import objects
from reconciler.engine import causes


class State(enum.Enum):
    HEALTHY = "Healthy"
    PROGRESSING = "Progressing"
    FAILED = "Failed"


# The kinds whose health depends on pods the caller should pass to `of` when they are not healthy.
POD_KINDS = frozenset({"Deployment", "DaemonSet", "StatefulSet"})


@dataclass(frozen=True)
class Health:
    state: State
    reason: str = ""
    cause: causes.Cause | None = None

    def text(self) -> str:
        """The reason, and the cause when one of its pods gives one."""
        if self.cause is None:
            return self.reason
        return f"{self.reason}; {self.cause.text()}"


HEALTHY = Health(State.HEALTHY)


def of(live: objects.Object | None, pods: Iterable[objects.Object] = ()) -> Health:
    """The health of one live object (None: not there yet, so progressing). `pods`: the pods
    of its namespace (or any superset of its own), when read: an unhealthy workload of
    `POD_KINDS` gets the cause its pods give."""
    found = _of(live)
    if found.state is State.HEALTHY or live is None or live.get("kind") not in POD_KINDS:
        return found
    cause = causes.first(causes.selected(live, pods))
    return found if cause is None else Health(found.state, found.reason, cause)


def _of(live: objects.Object | None) -> Health:
    if live is None:
        return Health(State.PROGRESSING, "not created yet")
    kind = live.get("kind")
    spec: dict[str, Any] = live.get("spec") or {}
    status: dict[str, Any] = live.get("status") or {}
    generation = (live.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    if kind in ("Deployment", "DaemonSet", "StatefulSet") and (
        generation is not None and observed is not None and observed < generation
    ):
        return Health(State.PROGRESSING, "the controller has not seen the latest spec yet")
    if kind == "Deployment":
        return _deployment(spec, status)
    if kind == "DaemonSet":
        wanted = int(status.get("desiredNumberScheduled") or 0)
        ready = int(status.get("numberReady") or 0)
        updated = int(status.get("updatedNumberScheduled") or 0)
        if ready < wanted or updated < wanted:
            return Health(State.PROGRESSING, f"{ready}/{wanted} pods ready, {updated} updated")
        return HEALTHY
    if kind == "StatefulSet":
        wanted = int(spec.get("replicas", 1))
        ready = int(status.get("readyReplicas") or 0)
        if ready < wanted or status.get("currentRevision") != status.get("updateRevision"):
            return Health(State.PROGRESSING, f"{ready}/{wanted} replicas ready")
        return HEALTHY
    if kind == "Job" and live.get("apiVersion") == "batch/v1":
        for condition in status.get("conditions") or []:
            if condition.get("status") == "True" and condition.get("type") == "Failed":
                return Health(State.FAILED, str(condition.get("message") or "job failed"))
            if condition.get("status") == "True" and condition.get("type") == "Complete":
                return HEALTHY
        return Health(State.PROGRESSING, "job running")
    if kind == "CustomResourceDefinition":
        if _condition_true(status, "Established"):
            return HEALTHY
        return Health(State.PROGRESSING, "not Established yet")
    if kind == "Service" and spec.get("type") == "LoadBalancer":
        if (status.get("loadBalancer") or {}).get("ingress"):
            return HEALTHY
        return Health(State.PROGRESSING, "waiting for a load balancer address")
    return HEALTHY


def _deployment(spec: dict[str, Any], status: dict[str, Any]) -> Health:
    """Counted as `kubectl rollout status` counts: replicas updated to the current template,
    and available, of those wanted; old replicas still available during a rollout are not
    the new ones, so a rollout stuck at 1 of 2 updated never reads as 2/2."""
    wanted = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    counts = f"{updated} of {wanted} updated, {available} available"
    for condition in status.get("conditions") or []:
        if (
            condition.get("type") == "Progressing"
            and condition.get("reason") == "ProgressDeadlineExceeded"
        ):
            message = str(condition.get("message") or "")
            stuck = f"rollout stuck at {counts}: ProgressDeadlineExceeded"
            return Health(State.FAILED, f"{stuck}: {message}" if message else stuck)
    if updated < wanted:
        return Health(State.PROGRESSING, f"rollout at {counts}")
    if available < wanted:
        return Health(State.PROGRESSING, f"{available}/{wanted} replicas available")
    return HEALTHY


def _condition_true(status: dict[str, Any], kind: str) -> bool:
    return any(
        c.get("type") == kind and c.get("status") == "True" for c in status.get("conditions") or []
    )


@dataclass(frozen=True)
class Provisioning:
    state: str  # Pending | Succeeded | Failed
    reasons: tuple[str, ...] = ()


def provisioning_state(healths: Iterable[tuple[objects.Key, Health]]) -> Provisioning:
    """`Failed` (with every failure) over `Pending` (with what is still rolling out) over
    `Succeeded`."""
    failed, pending = [], []
    for key, health in healths:
        if health.state is State.FAILED:
            failed.append(f"{key}: {health.text()}")
        elif health.state is State.PROGRESSING:
            pending.append(f"{key}: {health.text()}")
    if failed:
        return Provisioning("Failed", tuple(sorted(failed)))
    if pending:
        return Provisioning("Pending", tuple(sorted(pending)))
    return Provisioning("Succeeded")
