"""Pods in real containers on a local plane's real node (issue 28, the foundation).

The ``real_node`` fixture starts a plane with one real node (containerd and a kubelet in a Docker
container). A Job whose command prints ``hello`` and exits 0 ends Succeeded, and its pod's log,
read through the API server as ``kubectl logs`` does, is that output; a Job whose container exits
3 ends Failed with that exit code recorded by the kubelet. A DaemonSet that tolerates every
NoSchedule taint (as the extension's fluent-bit does) stays off the real node. Another plane,
running beside it, claims a pod range of its own, and its ``plane.stop`` leaves no container,
network, node file or host route behind.
"""

from __future__ import annotations

import ipaddress
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from reconciler.localcluster import build, hostdocker, nodepins, plane, realnode
from reconciler.localcluster import realnodeconfig as rc
from reconciler.localcluster.config import default_nodes
from tests.cluster.kubehelpers import wait_until
from tests.cluster.realnodes import RealNodeFixture

pytestmark = pytest.mark.cluster


@pytest.fixture
def namespace(real_namespace: str) -> str:
    """This module's pods run on the real node's plane."""
    return real_namespace


def job(name: str, namespace: str, image: str, script: str) -> dict[str, Any]:
    """A Job of one try whose pod runs ``sh -c script`` on a real node."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "nodeSelector": {rc.REAL_NODE_LABEL[0]: rc.REAL_NODE_LABEL[1]},
                    "tolerations": [rc.REAL_NODE_TOLERATION],
                    "containers": [
                        {
                            "name": "main",
                            "image": image,
                            "imagePullPolicy": "Never",
                            "command": ["sh", "-c", script],
                        }
                    ],
                }
            },
        },
    }


def finished(api: client.ApiClient, namespace: str, name: str) -> str | None:
    """``Complete`` or ``Failed`` once the Job controller says so, else None."""
    status = client.BatchV1Api(api).read_namespaced_job_status(name, namespace).status
    for cond in status.conditions or []:
        if cond.type in ("Complete", "Failed") and cond.status == "True":
            return str(cond.type)
    return None


def job_pod(api: client.ApiClient, namespace: str, name: str) -> Any:
    items = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=f"job-name={name}")
    assert len(items.items) == 1, [p.metadata.name for p in items.items]
    return items.items[0]


def run_job(
    api: client.ApiClient, namespace: str, real_node: RealNodeFixture, name: str, script: str
) -> tuple[str, Any, float]:
    """Create the Job, wait until it finishes; (its end condition, its pod, seconds taken)."""
    body = job(name, namespace, real_node.pod_image, script)
    began = time.monotonic()
    client.BatchV1Api(api).create_namespaced_job(namespace, body)
    end = wait_until(
        lambda: finished(api, namespace, name), bool, f"Job {name} to finish", timeout=120
    )
    seconds = time.monotonic() - began
    assert end is not None
    return end, job_pod(api, namespace, name), seconds


def test_the_real_node_joined_with_the_planes_versions_label_and_taint(
    real_node: RealNodeFixture,
) -> None:
    node = client.CoreV1Api(real_node.api).read_node(real_node.node.name)
    ready = [c for c in node.status.conditions if c.type == "Ready"]
    assert ready and ready[0].status == "True"
    assert node.status.node_info.kubelet_version == real_node.plane.version
    assert node.status.node_info.container_runtime_version == (
        f"containerd://{nodepins.CONTAINERD_VERSION.lstrip('v')}"
    )
    assert node.metadata.labels[rc.REAL_NODE_LABEL[0]] == rc.REAL_NODE_LABEL[1]
    assert [(t.key, t.value, t.effect) for t in node.spec.taints] == [
        (rc.REAL_NODE_TAINT["key"], rc.REAL_NODE_TAINT["value"], rc.REAL_NODE_TAINT["effect"])
    ]
    # The API server reaches the kubelet at the address it reported (not a host name only
    # Docker's network resolves).
    assert "InternalIP" in {a.type for a in node.status.addresses}


def test_a_job_that_echoes_hello_succeeds_and_its_log_says_hello(
    namespace: str, real_node: RealNodeFixture
) -> None:
    api_client = real_node.api
    end, pod, seconds = run_job(api_client, namespace, real_node, "hello", "echo hello; exit 0")
    assert end == "Complete"
    assert pod.spec.node_name == real_node.node.name
    assert pod.status.phase == "Succeeded"
    (status,) = pod.status.container_statuses
    assert status.state.terminated.exit_code == 0
    assert status.container_id.startswith("containerd://")
    # Read through the API server, which asks the kubelet: what `kubectl logs` does.
    log = client.CoreV1Api(api_client).read_namespaced_pod_log(pod.metadata.name, namespace)
    assert log == "hello\n"
    print(f"\nJob created to Complete on a real node: {seconds:.1f}s")


def test_a_job_whose_container_exits_3_fails_with_exit_code_3(
    namespace: str, real_node: RealNodeFixture
) -> None:
    api_client = real_node.api
    end, pod, _ = run_job(api_client, namespace, real_node, "three", "echo failing >&2; exit 3")
    assert end == "Failed"
    assert pod.status.phase == "Failed"
    (status,) = pod.status.container_statuses
    assert status.state.terminated.exit_code == 3
    assert status.state.terminated.reason == "Error"
    log = client.CoreV1Api(api_client).read_namespaced_pod_log(pod.metadata.name, namespace)
    assert log == "failing\n"


def test_a_daemonset_tolerating_every_noschedule_taint_stays_off_the_real_node(
    namespace: str, real_node: RealNodeFixture
) -> None:
    apps = client.AppsV1Api(real_node.api)
    labels = {"app": "everywhere"}
    apps.create_namespaced_daemon_set(
        namespace,
        {
            "metadata": {"name": "everywhere"},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "tolerations": [{"operator": "Exists", "effect": "NoSchedule"}],
                        "containers": [{"name": "main", "image": real_node.pod_image}],
                    },
                },
            },
        },
    )
    status = wait_until(
        lambda: apps.read_namespaced_daemon_set_status("everywhere", namespace).status,
        lambda st: st.observed_generation == 1,
        "the DaemonSet controller to look at the nodes",
    )
    # The plane's only node is the real one, and the pod may not go there.
    assert status.desired_number_scheduled == 0


def pod_range(state_dir: Path) -> ipaddress.IPv4Network:
    """The pod range a plane's Docker network claims."""
    fmt = f'{{{{index .Labels "{rc.POD_RANGE_LABEL}"}}}}'
    name = rc.network_name(rc.plane_id(state_dir))
    out = hostdocker.docker("network", "inspect", "--format", fmt, name).stdout.strip()
    net = ipaddress.ip_network(out)
    assert isinstance(net, ipaddress.IPv4Network)
    return net


def host_routes_into(pod_range: ipaddress.IPv4Network) -> list[str]:
    out = subprocess.run(
        ["ip", "-4", "route", "show", "root", str(pod_range)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.splitlines()


def test_stopping_a_plane_removes_its_real_nodes_network_and_files(
    tmp_path: Path, real_node: RealNodeFixture
) -> None:
    # A plane of its own (the session's keeps its node); real_node has built everything.
    state_dir = tmp_path / "plane"
    binaries = build.ensure_built()
    state = plane.start(binaries, default_nodes(0, 0), state_dir, die_with_parent=True)
    try:
        (node,) = realnode.start_nodes(state, 1)
        assert node.ready_seconds is not None
        print(f"\nreal node container start to Ready: {node.ready_seconds}s")
        assert realnode.list_nodes(state_dir) == [realnode.RealNode(node.name, node.container)]
        # Two planes at once: each claimed a pod range of its own, and the host routes both.
        ranges = {p: pod_range(p) for p in (state_dir.resolve(), Path(real_node.plane.state_dir))}
        assert len(set(ranges.values())) == 2
        assert all(host_routes_into(r) for r in ranges.values())
    finally:
        assert plane.stop(state_dir)
    label = f"label={rc.PLANE_LABEL}={rc.plane_id(state_dir.resolve())}"
    assert host_routes_into(ranges[state_dir.resolve()]) == []
    assert host_routes_into(ranges[Path(real_node.plane.state_dir)])  # the other plane's stay
    assert hostdocker.docker("ps", "-aq", "--filter", label).stdout.split() == []
    assert hostdocker.docker("network", "ls", "-q", "--filter", label).stdout.split() == []
    assert not rc.realnodes_dir(state_dir.resolve()).exists()
    # The node's logs stay with the plane's, for a look after a failure.
    assert (state_dir / "logs" / node.name / "kubelet.log").is_file()


def test_docker_objects_of_a_plane_that_is_gone_are_swept(real_node: RealNodeFixture) -> None:
    # What a test run killed before its plane could stop leaves behind: here, its network.
    gone = Path("/nonexistent/plane-killed-with-its-test-run")
    hostdocker.docker(*rc.network_create_args(rc.plane_id(gone), gone))
    assert realnode.sweep_orphans() == [rc.plane_id(gone)]
    # The session's plane is alive: its node stays.
    assert realnode.list_nodes(Path(real_node.plane.state_dir)) == [
        realnode.RealNode(real_node.node.name, real_node.node.container)
    ]
