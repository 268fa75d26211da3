"""The plane places the project's training job pods on its real nodes (``realplacement``).

On a plane with a real node, a pod with the render's job label and the reconciler's managed-by
label, and nothing about real nodes in its spec (as the render writes it for any cluster), is
given the real node's toleration and node selector when it is created, runs there in a real
container and ends Succeeded; the tolerations it had are kept. A job pod asking for a GPU and a
pod that is not the project's are left as they were: neither lands on the real node.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from reconciler import objects
from reconciler.localcluster import realnodeconfig as rc
from reconciler.render import workloadobjects
from tests.cluster.kubehelpers import wait_until
from tests.cluster.realnodes import RealNodeFixture

pytestmark = pytest.mark.cluster
OTHER_TOLERATION = {"key": "example.com/team", "operator": "Exists", "effect": "NoSchedule"}


@pytest.fixture
def namespace(real_namespace: str) -> str:
    """This module's pods run on the real node's plane."""
    return real_namespace


def pod(name: str, image: str, labels: dict[str, str], gpu: bool = False) -> dict[str, Any]:
    limits = {"cpu": "500m", "memory": "256Mi", **({"nvidia.com/gpu": "1"} if gpu else {})}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "restartPolicy": "Never",
            "tolerations": [OTHER_TOLERATION],
            "containers": [
                {
                    "name": "job",
                    "image": image,
                    "imagePullPolicy": "Always",  # what a :latest image gets by default
                    "command": ["sh", "-c", "echo trained"],
                    "resources": {"limits": limits, "requests": limits},
                }
            ],
        },
    }


def job_labels(job: str) -> dict[str, str]:
    return {objects.MANAGED_BY_LABEL: objects.MANAGED_BY, workloadobjects.JOB_LABEL: job}


@pytest.mark.parametrize("shape", ["tolerations", "node-selector"])
def test_a_job_pod_is_placed_on_the_real_node_and_runs(
    real_node: RealNodeFixture, namespace: str, shape: str
) -> None:
    """Both shapes of patch: a pod with tolerations and no node selector, and one with a node
    selector and no tolerations (what an instance type's nodeSelector gives)."""
    core = client.CoreV1Api(real_node.api)
    body = pod("train", real_node.pod_image, job_labels("train"))
    if shape == "node-selector":
        del body["spec"]["tolerations"]
        body["spec"]["nodeSelector"] = {"kubernetes.io/os": "linux"}
    created = core.create_namespaced_pod(namespace, body)
    expected = {rc.REAL_NODE_LABEL[0]: rc.REAL_NODE_LABEL[1]}
    assert created.spec.node_selector == {**body["spec"].get("nodeSelector", {}), **expected}
    tolerations = [t.to_dict() for t in created.spec.tolerations]
    assert [c.image_pull_policy for c in created.spec.containers] == ["IfNotPresent"]
    if shape == "tolerations":
        assert {"key": "example.com/team", "effect": "NoSchedule"}.items() <= tolerations[0].items()
    assert any(
        t["key"] == rc.REAL_NODE_TAINT["key"] and t["effect"] == "NoExecute" for t in tolerations
    )
    done = wait_until(
        lambda: core.read_namespaced_pod("train", namespace),
        lambda p: p.status.phase in ("Succeeded", "Failed"),
        "the job pod to end",
        120,
    )
    assert done.status.phase == "Succeeded"
    assert done.spec.node_name == real_node.node.name
    assert core.read_namespaced_pod_log("train", namespace) == "trained\n"


@pytest.mark.parametrize(
    "labels, gpu",
    [(job_labels("big"), True), ({workloadobjects.JOB_LABEL: "not-ours"}, False), ({}, False)],
    ids=["gpu-job", "not-managed-by-us", "unlabelled"],
)
def test_other_pods_are_left_as_they_are(
    real_node: RealNodeFixture, namespace: str, labels: dict[str, str], gpu: bool
) -> None:
    core = client.CoreV1Api(real_node.api)
    created = core.create_namespaced_pod(namespace, pod("other", real_node.pod_image, labels, gpu))
    assert not created.spec.node_selector
    assert [t.key for t in created.spec.tolerations if t.key == rc.REAL_NODE_TAINT["key"]] == []
