"""Which pod logs `reconciler job logs` / `deployment logs` read, and why none can be read yet.

Pure: from a workload's pods and the Nodes they are bound to (live objects, read by the command),
`select` gives the (pod, container) streams to read, each with its `kubectl logs --prefix`
prefix, and for every pod left out the reason in words: not scheduled yet, unschedulable (the
scheduler's message), on a kwok node (simulated: it runs no containers, so there is nothing to
read), its container still being created or unable to start. `Selection.waiting` says whether the
reasons are ones that pass by themselves (a pod not scheduled yet, a container being created),
which `-f` waits out; the others end the command. A workload with no pod at all may say why in
an event of its controller (`creation_failure`). Reading the streams is `kube`'s, printing the
command's (`cli.workload`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler import objects
from reconciler.engine import workloadstatus

# A container in these waiting states starts by itself (the kubelet is creating it, or its init
# containers run); any other waiting reason (an image that cannot be pulled, a bad config) needs
# a change first.
STARTING = frozenset({"ContainerCreating", "PodInitializing"})
NOTHING_TO_READ = "no logs; use a real node"


@dataclass(frozen=True)
class Stream:
    """One container's log to read: `prefix` goes before each of its lines."""

    pod: str
    container: str
    prefix: str = ""


@dataclass(frozen=True)
class Selection:
    streams: tuple[Stream, ...]
    # Why each pod left out has no log to read, in the pods' order.
    skipped: tuple[str, ...] = ()
    # Every pod left out will have a log without anyone doing anything (`-f` waits for it).
    waiting: bool = False
    pods: tuple[str, ...] = field(default=())


def prefix(pod: str, container: str) -> str:
    """`kubectl logs --prefix`'s prefix."""
    return f"[pod/{pod}/{container}] "


def _name(pod: objects.Object) -> str:
    return str((pod.get("metadata") or {}).get("name", "?"))


def _order(pod: objects.Object) -> tuple[str, str]:
    # Oldest first: a job's earlier attempts before its retry, as they ran.
    return (str((pod.get("metadata") or {}).get("creationTimestamp") or ""), _name(pod))


def _containers(pod: objects.Object) -> list[str]:
    spec = pod.get("spec") or {}
    return [
        str(c.get("name")) for key in ("initContainers", "containers") for c in spec.get(key) or []
    ]


def _status_of(pod: objects.Object, container: str) -> Mapping[str, Any]:
    status = pod.get("status") or {}
    for key in ("initContainerStatuses", "containerStatuses"):
        for found in status.get(key) or []:
            if found.get("name") == container:
                return dict(found)
    return {}


def _unschedulable(pod: objects.Object) -> str | None:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "Unschedulable":
            return str(condition.get("message") or "no node fits it")
    return None


def why_not(
    pod: objects.Object,
    container: str,
    nodes: Mapping[str, objects.Object],
    previous: bool = False,
) -> tuple[str, bool] | None:
    """(why `container` of `pod` has no log to read, whether that passes by itself), or None
    when there is one. A Node missing from `nodes` is taken for a real one."""
    name = _name(pod)
    if container not in _containers(pod):
        listed = ", ".join(_containers(pod)) or "none"
        return f"pod {name} has no container {container} (its containers: {listed})", False
    node = str((pod.get("spec") or {}).get("nodeName") or "")
    if not node:
        unschedulable = _unschedulable(pod)
        if unschedulable is not None:
            return f"pod {name} is pending: it is unschedulable: {unschedulable}", False
        return f"pod {name} is pending: not scheduled on a node yet", True
    if node in nodes and workloadstatus.is_kwok_node(nodes[node]):
        return (
            f"pod {name} runs on a simulated node ({node}, kwok runs no containers): "
            f"{NOTHING_TO_READ}",
            False,
        )
    status = _status_of(pod, container)
    ran_before = bool((status.get("lastState") or {}).get("terminated"))
    if previous:
        if ran_before:
            return None
        return f"container {container} of pod {name} has not restarted: no previous log", False
    state = status.get("state") or {}
    if "running" in state or "terminated" in state or ran_before:
        return None  # a crash-looping container shows its last run, as `kubectl logs` does
    waiting = state.get("waiting") or {}
    reason = str(waiting.get("reason") or "")
    if not status or reason in STARTING or not reason:
        phase = (pod.get("status") or {}).get("phase", "Pending")
        return (
            f"pod {name} is {phase} on node {node}: container {container} "
            f"{'is ' + reason if reason else 'has not started yet'}",
            True,
        )
    message = f": {waiting['message']}" if waiting.get("message") else ""
    return f"container {container} of pod {name} cannot start: {reason}{message}", False


def select(
    pods: Iterable[objects.Object],
    nodes: Mapping[str, objects.Object],
    container: str,
    *,
    pod_name: str | None = None,
    always_prefix: bool = False,
    previous: bool = False,
) -> Selection:
    """The streams to read of `pods` (one container each, `container`), oldest pod first;
    only `pod_name` when given. Lines carry a prefix when `always_prefix`, or when more than
    one stream is read."""
    ordered = sorted(pods, key=_order)
    names = tuple(_name(p) for p in ordered)
    if pod_name is not None:
        ordered = [p for p in ordered if _name(p) == pod_name]
        if not ordered:
            listed = ", ".join(names) or "none yet"
            return Selection((), (f"no pod {pod_name} (its pods: {listed})",), False, names)
    if not ordered:
        return Selection((), (), True, names)
    readable: list[str] = []
    skipped: list[str] = []
    passing = True
    for pod in ordered:
        blocked = why_not(pod, container, nodes, previous)
        if blocked is None:
            readable.append(_name(pod))
        else:
            skipped.append(blocked[0])
            passing = passing and blocked[1]
    prefixed = always_prefix or len(readable) > 1
    streams = tuple(
        Stream(pod, container, prefix(pod, container) if prefixed else "") for pod in readable
    )
    return Selection(streams, tuple(skipped), passing, names)


def lines(text: str, line_prefix: str) -> list[str]:
    """A log's text as lines, each with the prefix (a last line without a newline too)."""
    return [f"{line_prefix}{line}" for line in text.splitlines()]


def node_names(pods: Sequence[objects.Object]) -> list[str]:
    """The distinct nodes the pods are bound to, to read before `select`."""
    found: list[str] = []
    for pod in pods:
        node = str((pod.get("spec") or {}).get("nodeName") or "")
        if node and node not in found:
            found.append(node)
    return found


def creation_failure(
    events: Iterable[objects.Object], kind: str, names: Iterable[str]
) -> str | None:
    """The last reason the controller of a `kind` of `names` gave for failing to create pods
    (a `FailedCreate` event: a quota, an admission policy that refused them), or None. Without
    it a Job that makes no pod looks merely pending."""
    wanted = set(names)
    failures = [
        event
        for event in events
        if event.get("reason") == "FailedCreate"
        and (event.get("involvedObject") or {}).get("kind") == kind
        and (event.get("involvedObject") or {}).get("name") in wanted
    ]
    if not failures:
        return None

    def when(event: objects.Object) -> str:
        return str(
            event.get("lastTimestamp")
            or event.get("eventTime")
            or (event.get("metadata") or {}).get("creationTimestamp")
            or ""
        )

    message = str(max(failures, key=when).get("message") or "FailedCreate")
    return message.removeprefix("Error creating: ")  # the Job controller's preamble
