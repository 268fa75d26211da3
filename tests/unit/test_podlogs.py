"""Which pod logs `job logs` / `deployment logs` read, and what they say of pods without one
(`engine.podlogs`), from pod and node objects shaped as the API server returns them. The reading
itself, against a real kubelet: tests/cluster/test_workload_logs_on_cluster.py."""

from __future__ import annotations

from typing import Any

from reconciler.engine import podlogs

KWOK = {"metadata": {"name": "kwok-0", "labels": {"type": "kwok"}}}
REAL = {"metadata": {"name": "real-0", "labels": {"mlext.io/real-node": "true"}}}
NODES = {"kwok-0": KWOK, "real-0": REAL}


def pod(
    name: str,
    node: str | None = "real-0",
    state: dict[str, Any] | None = None,
    created: str = "2026-01-01T00:00:00Z",
    last: dict[str, Any] | None = None,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": "Running" if state and "running" in state else "Pending"}
    if state is not None:
        status["containerStatuses"] = [
            {
                "name": "job",
                "state": state,
                "lastState": last or {},
                "containerID": "containerd://x",
            }
        ]
    if conditions:
        status["conditions"] = conditions
    spec: dict[str, Any] = {"containers": [{"name": "job"}], "initContainers": [{"name": "fetch"}]}
    if node:
        spec["nodeName"] = node
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "spec": spec,
        "status": status,
    }


RUNNING = {"running": {"startedAt": "2026-01-01T00:00:01Z"}}


def test_one_running_pod_is_read_without_a_prefix_unless_asked() -> None:
    chosen = podlogs.select([pod("a", state=RUNNING)], NODES, "job")
    assert chosen.streams == (podlogs.Stream("a", "job", ""),)
    prefixed = podlogs.select([pod("a", state=RUNNING)], NODES, "job", always_prefix=True)
    assert prefixed.streams == (podlogs.Stream("a", "job", "[pod/a/job] "),)


def test_several_pods_are_read_oldest_first_each_prefixed() -> None:
    older = pod("z", state={"terminated": {"exitCode": 1}}, created="2026-01-01T00:00:00Z")
    newer = pod("a", state=RUNNING, created="2026-01-01T00:05:00Z")
    chosen = podlogs.select([newer, older], NODES, "job")
    assert [(s.pod, s.prefix) for s in chosen.streams] == [
        ("z", "[pod/z/job] "),
        ("a", "[pod/a/job] "),
    ]
    only = podlogs.select([newer, older], NODES, "job", pod_name="z")
    assert [s.pod for s in only.streams] == ["z"]


def test_a_pod_not_named_lists_the_pods_there_are() -> None:
    chosen = podlogs.select([pod("a", state=RUNNING)], NODES, "job", pod_name="b")
    assert chosen.streams == ()
    assert chosen.skipped == ("no pod b (its pods: a)",)
    assert not chosen.waiting


def test_a_pod_on_a_kwok_node_has_nothing_to_read() -> None:
    chosen = podlogs.select([pod("a", node="kwok-0", state=RUNNING)], NODES, "job")
    assert chosen.streams == ()
    assert chosen.skipped == (
        "pod a runs on a simulated node (kwok-0, kwok runs no containers): no logs; "
        "use a real node",
    )
    assert not chosen.waiting


def test_pending_pods_say_why_and_whether_it_passes_by_itself() -> None:
    unbound = podlogs.select([pod("a", node=None)], NODES, "job")
    assert unbound.skipped == ("pod a is pending: not scheduled on a node yet",)
    assert unbound.waiting
    message = "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
    unschedulable = pod(
        "a",
        node=None,
        conditions=[{"type": "PodScheduled", "reason": "Unschedulable", "message": message}],
    )
    chosen = podlogs.select([unschedulable], NODES, "job")
    assert chosen.skipped == (f"pod a is pending: it is unschedulable: {message}",)
    assert not chosen.waiting
    creating = podlogs.select(
        [pod("a", state={"waiting": {"reason": "ContainerCreating"}})], NODES, "job"
    )
    assert creating.skipped == (
        "pod a is Pending on node real-0: container job is ContainerCreating",
    )
    assert creating.waiting
    never = {"waiting": {"reason": "ErrImageNeverPull", "message": "image x not present"}}
    stuck = podlogs.select([pod("a", state=never)], NODES, "job")
    assert stuck.skipped == (
        "container job of pod a cannot start: ErrImageNeverPull: image x not present",
    )
    assert not stuck.waiting


def test_no_pod_at_all_is_left_to_the_caller_to_explain() -> None:
    chosen = podlogs.select([], NODES, "job")
    assert chosen.streams == () and chosen.skipped == () and chosen.waiting


def test_a_crash_looping_container_shows_its_last_run_and_previous_needs_a_restart() -> None:
    crashed = {"terminated": {"exitCode": 1, "containerID": "containerd://y"}}
    looping = pod("a", state={"waiting": {"reason": "CrashLoopBackOff"}}, last=crashed)
    assert [s.pod for s in podlogs.select([looping], NODES, "job").streams] == ["a"]
    assert [s.pod for s in podlogs.select([looping], NODES, "job", previous=True).streams] == ["a"]
    fresh = podlogs.select([pod("a", state=RUNNING)], NODES, "job", previous=True)
    assert fresh.skipped == ("container job of pod a has not restarted: no previous log",)


def test_readable_pods_are_read_and_the_others_are_noted() -> None:
    chosen = podlogs.select([pod("a", state=RUNNING), pod("b", node="kwok-0")], NODES, "job")
    assert [s.pod for s in chosen.streams] == ["a"]
    assert len(chosen.skipped) == 1 and chosen.skipped[0].startswith("pod b runs on a simulated")


def test_an_init_container_can_be_read_and_an_unknown_one_is_named() -> None:
    fetching = pod("a", state=RUNNING)
    fetching["status"]["initContainerStatuses"] = [
        {"name": "fetch", "state": {"terminated": {"exitCode": 0}}}
    ]
    assert [s.container for s in podlogs.select([fetching], NODES, "fetch").streams] == ["fetch"]
    unknown = podlogs.select([fetching], NODES, "sidecar")
    assert unknown.skipped == ("pod a has no container sidecar (its containers: fetch, job)",)


def test_lines_prefix_every_line_of_a_log() -> None:
    assert podlogs.lines("one\ntwo\n", "[p] ") == ["[p] one", "[p] two"]
    assert podlogs.lines("no newline", "") == ["no newline"]
    assert podlogs.lines("", "[p] ") == []


def event(reason: str, kind: str, name: str, at: str, message: str) -> dict[str, Any]:
    return {
        "reason": reason,
        "involvedObject": {"kind": kind, "name": name},
        "lastTimestamp": at,
        "message": message,
    }


def test_the_last_failed_create_of_the_workloads_controller_says_why_it_has_no_pod() -> None:
    events = [
        event("FailedCreate", "Job", "train", "2026-01-01T00:00:01Z", "exceeded quota: old"),
        event(
            "FailedCreate",
            "Job",
            "train",
            "2026-01-01T00:00:09Z",
            "Error creating: exceeded quota: new",
        ),
        event("FailedCreate", "Job", "other", "2026-01-01T00:00:10Z", "not this job"),
        event("SuccessfulCreate", "Job", "train", "2026-01-01T00:00:11Z", "created"),
    ]
    assert podlogs.creation_failure(events, "Job", ["train"]) == "exceeded quota: new"
    assert podlogs.creation_failure(events, "ReplicaSet", ["train"]) is None
    assert podlogs.creation_failure([], "Job", ["train"]) is None
