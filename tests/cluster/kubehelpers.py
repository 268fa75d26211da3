"""Helpers for tests against a Kubernetes API: bounded polling, server-side apply, pod queries,
and the requests the API server itself counted (`apiserver_request_total`).

Tests never sleep a fixed time: they poll a condition with :func:`wait_until`, which fails with
the last value it saw once its deadline passes. The one exception is seeing that nothing happens
(:func:`wait_for_cleanup`: no request for two seconds).
"""

from __future__ import annotations

import collections
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


def served(api_client: client.ApiClient) -> list[dict[str, str]]:
    """Every `apiserver_request_total` series: its labels, with the count under "value"."""
    request = api_client.param_serialize("GET", "/metrics", auth_settings=["BearerToken"])
    text = api_client.call_api(*request).read().decode()
    found = []
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(
            part.split("=", 1) for part in line[line.index("{") + 1 : line.index("}")].split(",")
        )
        series = {k: v.strip('"') for k, v in labels.items()}
        series["value"] = line.rsplit(" ", 1)[1]
        found.append(series)
    return found


def requests_by_verb(
    api_client: client.ApiClient, resources: set[str]
) -> collections.Counter[tuple[str, str]]:
    """Requests the API server has served to these resources (main resource only: other
    controllers write status), by (verb, resource); a dry run's verb ends in `-dry-run`."""
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    for series in served(api_client):
        if series.get("resource") not in resources or series.get("subresource"):
            continue
        verb = series["verb"] + ("-dry-run" if series.get("dry_run") else "")
        counts[(verb, series["resource"])] += int(float(series["value"]))
    return counts


def wait_for_cleanup(api_client: client.ApiClient, resources: set[str], quiet: float = 2.0) -> None:
    """Wait until earlier tests' namespaces are gone and the API server has served no request
    to `resources` (or to namespaces) for `quiet` seconds: its counters are cluster-wide, and
    the namespace controller and garbage collector go on listing, deleting and reading for a
    moment after a namespace stopped showing as Terminating. This function's own LISTs of
    namespaces are not counted."""
    core = client.CoreV1Api(api_client)
    watched = resources | {"namespaces"}

    def others() -> collections.Counter[tuple[str, str]]:
        counts = requests_by_verb(api_client, watched)
        del counts[("LIST", "namespaces")]
        return counts

    def settled() -> tuple[bool, collections.Counter[tuple[str, str]]]:
        terminating = [n for n in core.list_namespace().items if n.status.phase == "Terminating"]
        before = others()
        time.sleep(quiet)  # the one fixed wait: quiet means nothing happened for this long
        after = others()
        return not terminating and after == before, after - before

    wait_until(settled, lambda state: state[0], "earlier tests' clean-up to settle", 180)
