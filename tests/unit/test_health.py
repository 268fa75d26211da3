"""Health per kind and the extension's provisioning state."""

from typing import Any

import pytest

from reconciler import objects
from reconciler.engine import health

H, P, F = health.State.HEALTHY, health.State.PROGRESSING, health.State.FAILED


def obj(kind: str, spec: dict[str, Any], status: dict[str, Any], **extra: Any) -> dict[str, Any]:
    api = "batch/v1" if kind == "Job" else "apps/v1"
    return {"apiVersion": api, "kind": kind, "metadata": {"name": "x", **extra},
            "spec": spec, "status": status}  # fmt: skip


@pytest.mark.parametrize(
    ("live", "state"),
    [
        (None, P),
        (obj("Deployment", {"replicas": 2}, {"updatedReplicas": 2, "availableReplicas": 2}), H),
        (obj("Deployment", {"replicas": 2}, {"updatedReplicas": 2, "availableReplicas": 1}), P),
        (obj("Deployment", {"replicas": 1}, {"conditions": [
            {"type": "Progressing", "reason": "ProgressDeadlineExceeded"}]}), F),
        (obj("Deployment", {"replicas": 1}, {"updatedReplicas": 1, "availableReplicas": 1,
                                              "observedGeneration": 1}, generation=2), P),
        (obj("DaemonSet", {}, {"desiredNumberScheduled": 3, "numberReady": 3,
                               "updatedNumberScheduled": 3}), H),
        (obj("DaemonSet", {}, {"desiredNumberScheduled": 3, "numberReady": 2,
                               "updatedNumberScheduled": 3}), P),
        (obj("StatefulSet", {"replicas": 1}, {"readyReplicas": 1, "currentRevision": "a",
                                              "updateRevision": "a"}), H),
        (obj("StatefulSet", {"replicas": 1}, {"readyReplicas": 1, "currentRevision": "a",
                                              "updateRevision": "b"}), P),
        (obj("Job", {}, {"conditions": [{"type": "Complete", "status": "True"}]}), H),
        (obj("Job", {}, {"conditions": [{"type": "Failed", "status": "True"}]}), F),
        (obj("Job", {}, {"active": 1}), P),
        ({"kind": "CustomResourceDefinition", "status": {"conditions": [
            {"type": "Established", "status": "True"}]}}, H),
        ({"kind": "CustomResourceDefinition", "status": {}}, P),
        ({"kind": "Service", "spec": {"type": "LoadBalancer"}, "status": {}}, P),
        ({"kind": "Service", "spec": {"type": "LoadBalancer"},
          "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}}, H),
        ({"kind": "Service", "spec": {"type": "NodePort"}}, H),
        ({"kind": "ConfigMap"}, H),
    ],
)  # fmt: skip
def test_health_per_kind(live: dict[str, Any] | None, state: health.State) -> None:
    assert health.of(live).state is state


def test_provisioning_state() -> None:
    key = objects.Key("apps/v1", "Deployment", "azureml", "gateway")
    other = objects.Key("apps/v1", "DaemonSet", "azureml", "fluent-bit")
    ok, slow = health.HEALTHY, health.Health(P, "1/3 ready")
    broken = health.Health(F, "progress deadline")
    assert health.provisioning_state([(key, ok), (other, ok)]) == health.Provisioning("Succeeded")
    assert health.provisioning_state([(key, slow), (other, ok)]) == health.Provisioning(
        "Pending", ("Deployment/azureml/gateway: 1/3 ready",)
    )
    assert health.provisioning_state([(key, slow), (other, broken)]).state == "Failed"
