"""Helpers for tests against a Kubernetes API: bounded polling, server-side apply, pod queries.

Tests never sleep a fixed time: they poll a condition with :func:`wait_until`, which fails with
the last value it saw once its deadline passes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import client, dynamic

T = TypeVar("T")

FIELD_MANAGER = "reconciler-tests"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"  # runs for real on kind; kwok never pulls it


def wait_until(
    probe: Callable[[], T],
    done: Callable[[T], bool],
    what: str,
    timeout: float = 60.0,
) -> T:
    """Call ``probe`` until ``done(value)`` holds; return that value, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}; last: {value!r}"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)


def server_side_apply(api: client.ApiClient, body: dict[str, Any], force: bool = False) -> Any:
    """Apply ``body`` with server-side apply as the tests' field manager; returns the object."""
    dyn = dynamic.DynamicClient(api)
    resource = dyn.resources.get(api_version=body["apiVersion"], kind=body["kind"])
    return dyn.server_side_apply(
        resource,
        body=body,
        namespace=body["metadata"].get("namespace"),
        field_manager=FIELD_MANAGER,
        force_conflicts=force,
    )


def deployment(
    name: str, namespace: str, replicas: int, pod_spec: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A small Deployment manifest whose pods run the pause image."""
    spec = pod_spec or {"containers": [{"name": "main", "image": PAUSE_IMAGE}]}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
        },
    }


def pods(api: client.ApiClient, namespace: str, selector: str | None = None) -> list[Any]:
    """The pods of a namespace (optionally by label selector), terminating ones left out."""
    items = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector).items
    return [p for p in items if p.metadata.deletion_timestamp is None]


def running(pod_list: list[Any]) -> list[Any]:
    return [p for p in pod_list if p.status is not None and p.status.phase == "Running"]
