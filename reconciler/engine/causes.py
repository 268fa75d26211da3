"""Why a workload's pods are not ready: typed causes read off live pods, and their one wording.

Pure rules over plain dicts (Pods and the Deployment, StatefulSet, DaemonSet or Job that owns
them, as `kube.list_objects` returns them), used by `health` (what `apply --wait` and `status`
report), `workloadstatus` (`deployment status`, `job status`) and nothing else. A cause is what
Kubernetes itself says, kept in its own words: the scheduler's `PodScheduled=False /
Unschedulable` message (`0/4 nodes are available: 2 Insufficient cpu, ...`), a container
waiting on `ErrImagePull` / `ImagePullBackOff` (with the image), a `CrashLoopBackOff` with the
last run's exit code and reason, a container that exited non-zero (a job's pod), a container
the kubelet cannot create. `text` is the only place a cause is put into words; the commands
show it, the records keep it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler import objects


class Kind(enum.Enum):
    UNSCHEDULABLE = "Unschedulable"
    IMAGE_PULL = "ImagePull"
    CRASH_LOOP = "CrashLoop"
    EXITED = "Exited"  # a container that ran and exited non-zero (restartPolicy Never)
    CONTAINER = "ContainerError"  # the kubelet cannot create or start the container


# Waiting reasons of a container whose image cannot be had (the kubelet's words).
IMAGE_PULL_REASONS = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
)
# Waiting reasons of a container the kubelet cannot create or start (a missing ConfigMap or
# Secret key, a bad command): none of them goes away by waiting.
CONTAINER_REASONS = frozenset(
    {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}
)


@dataclass(frozen=True)
class Cause:
    """Why one pod of a workload is not ready, as Kubernetes reports it."""

    kind: Kind
    pod: str
    reason: str  # Kubernetes' reason: Unschedulable, ErrImagePull, CrashLoopBackOff, Error, ...
    message: str = ""  # the scheduler's or kubelet's message, as it is
    container: str = ""
    image: str = ""
    exit_code: int | None = None  # the last run's, for a crash loop or an exit
    exit_reason: str = ""  # lastState.terminated.reason: Error, OOMKilled, ...

    def text(self) -> str:
        """The cause as one line: `pod P Pending: Unschedulable: 0/4 nodes are available: ...`,
        `pod P container C: ErrImagePull: image I: ...`, `pod P container C: CrashLoopBackOff:
        last exit code 3 (Error)`."""
        if self.kind is Kind.UNSCHEDULABLE:
            return _joined(f"pod {self.pod} Pending: {self.reason}", self.message)
        head = f"pod {self.pod} container {self.container}: {self.reason}"
        if self.kind is Kind.IMAGE_PULL:
            return _joined(f"{head}: image {self.image}", self.message)
        if self.kind in (Kind.CRASH_LOOP, Kind.EXITED):
            said = "last exit code" if self.kind is Kind.CRASH_LOOP else "exit code"
            exited = f"{said} {self.exit_code}" if self.exit_code is not None else "no exit code"
            if self.exit_reason:
                exited += f" ({self.exit_reason})"
            return f"{head}: {exited}"
        return _joined(head, self.message)

    def as_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"kind": self.kind.value, "pod": self.pod, "reason": self.reason}
        optional = {
            "message": self.message,
            "container": self.container,
            "image": self.image,
            "exitCode": self.exit_code,
            "exitReason": self.exit_reason,
        }
        found.update({k: v for k, v in optional.items() if v not in ("", None)})
        found["text"] = self.text()
        return found


def _joined(head: str, message: str) -> str:
    return f"{head}: {message}" if message else head


def _name(pod: objects.Object) -> str:
    return str((pod.get("metadata") or {}).get("name", "?"))


def of_pod(pod: objects.Object) -> Cause | None:
    """Why this pod is not ready, or None when nothing it reports says so (it is ready, or
    still starting). Init containers first: the main ones wait for them."""
    status = pod.get("status") or {}
    for condition in status.get("conditions") or []:
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and condition.get("reason") == "Unschedulable"
        ):
            return Cause(
                Kind.UNSCHEDULABLE, _name(pod), "Unschedulable", str(condition.get("message") or "")
            )
    spec = pod.get("spec") or {}
    images = {
        str(c.get("name")): str(c.get("image", ""))
        for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    }
    for container in [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]:
        found = _of_container(_name(pod), container, images)
        if found is not None:
            return found
    return None


def _of_container(
    pod: str, container: Mapping[str, Any], images: Mapping[str, str]
) -> Cause | None:
    name = str(container.get("name", "?"))
    state = container.get("state") or {}
    waiting = state.get("waiting") or {}
    reason = str(waiting.get("reason") or "")
    message = str(waiting.get("message") or "")
    if reason in IMAGE_PULL_REASONS:
        image = images.get(name) or str(container.get("image", ""))
        return Cause(Kind.IMAGE_PULL, pod, reason, message, name, image)
    if reason == "CrashLoopBackOff":
        last = (container.get("lastState") or {}).get("terminated") or {}
        return Cause(
            Kind.CRASH_LOOP,
            pod,
            reason,
            message,
            name,
            exit_code=_exit_code(last),
            exit_reason=str(last.get("reason") or ""),
        )
    if reason in CONTAINER_REASONS:
        return Cause(Kind.CONTAINER, pod, reason, message, name)
    last = (container.get("lastState") or {}).get("terminated") or {}
    if "running" in state and not container.get("ready") and _exit_code(last):
        # Between two crashes of a crash loop: started again, not ready, the last run failed.
        return Cause(
            Kind.CRASH_LOOP,
            pod,
            "Restarted",
            "",
            name,
            exit_code=_exit_code(last),
            exit_reason=str(last.get("reason") or ""),
        )
    terminated = state.get("terminated") or {}
    code = _exit_code(terminated)
    if code:
        return Cause(
            Kind.EXITED,
            pod,
            str(terminated.get("reason") or "Terminated"),
            str(terminated.get("message") or ""),
            name,
            exit_code=code,
            exit_reason=str(terminated.get("reason") or ""),
        )
    return None


def _exit_code(terminated: Mapping[str, Any]) -> int | None:
    code = terminated.get("exitCode")
    return int(code) if code is not None else None


def selected(owner: objects.Object, pods: Iterable[objects.Object]) -> list[objects.Object]:
    """The pods of `owner` (a Deployment, StatefulSet, DaemonSet or Job): in its namespace,
    matching its selector's `matchLabels` (what the render writes), not being deleted; by name.
    A Job without a selector given selects its pods by `job-name`."""
    metadata = owner.get("metadata") or {}
    selector = (owner.get("spec") or {}).get("selector") or {}
    labels: Mapping[str, str] = selector.get("matchLabels") or {}
    if not labels and owner.get("kind") == "Job":
        labels = {"job-name": str(metadata.get("name"))}
    if not labels:
        return []
    found = [
        pod
        for pod in pods
        if (pod.get("metadata") or {}).get("namespace") == metadata.get("namespace")
        and not (pod.get("metadata") or {}).get("deletionTimestamp")
        and all(
            ((pod.get("metadata") or {}).get("labels") or {}).get(k) == v for k, v in labels.items()
        )
    ]
    return sorted(found, key=_name)


def first(pods: Iterable[objects.Object]) -> Cause | None:
    """The cause of the first pod (by name) that has one: the same pod every time it is asked,
    so a waiting command reports it once."""
    for pod in sorted(pods, key=_name):
        found = of_pod(pod)
        if found is not None:
            return found
    return None


def is_ready(pod: objects.Object) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
