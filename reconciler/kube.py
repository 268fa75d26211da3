"""The Kubernetes API edge: the only module that imports the kubernetes client.

Holds the client connection (kubeconfig / context / in-cluster), resource discovery (kind ->
REST path, refreshed when a freshly installed CRD is not known yet), server-side apply with one
field manager and strict field validation (optionally as a server-side dry run), reads, and the
wait for a CRD to be Established. Everything above it passes plain dicts in and gets plain dicts
back.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client, config, dynamic
from kubernetes.client import exceptions as client_exceptions
from kubernetes.dynamic import exceptions as dynamic_exceptions

from reconciler import objects

FIELD_MANAGER = "mlext-reconciler"


class KubeError(Exception):
    """An API call failed; `status` is the HTTP status (0 when the server was not reached)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Cluster:
    """A connection to one cluster's API server."""

    api: client.ApiClient
    _dynamic: dynamic.DynamicClient | None = None

    @property
    def dynamic(self) -> dynamic.DynamicClient:
        if self._dynamic is None:
            self._dynamic = dynamic.DynamicClient(self.api)
        return self._dynamic


def connect(kubeconfig: str | None = None, context: str | None = None) -> Cluster:
    """Connect with a kubeconfig (default: $KUBECONFIG or ~/.kube/config), or in-cluster."""
    configuration = client.Configuration()
    try:
        config.load_kube_config(
            config_file=kubeconfig, context=context, client_configuration=configuration
        )
    except config.ConfigException:
        if kubeconfig is not None:
            raise
        config.load_incluster_config(client_configuration=configuration)
    return Cluster(client.ApiClient(configuration))


def _resource(cluster: Cluster, obj: objects.Object) -> Any:
    """The discovered resource for the object's kind; rediscovers once for new CRDs."""
    api_version, kind = obj["apiVersion"], obj["kind"]
    try:
        return cluster.dynamic.resources.get(api_version=api_version, kind=kind)
    except dynamic_exceptions.ResourceNotFoundError:
        cluster.dynamic.resources.invalidate_cache()
        try:
            return cluster.dynamic.resources.get(api_version=api_version, kind=kind)
        except dynamic_exceptions.ResourceNotFoundError as err:
            raise KubeError(f"the cluster does not serve {api_version} {kind}", 404) from err


def _object_path(cluster: Cluster, obj: objects.Object) -> str:
    """The REST path of the object named like `obj`."""
    resource = _resource(cluster, obj)
    metadata = obj["metadata"]
    namespace = metadata.get("namespace") if resource.namespaced else None
    return str(resource.path(name=metadata["name"], namespace=namespace))


def apply(
    cluster: Cluster,
    obj: objects.Object,
    *,
    dry_run: bool = False,
    force_conflicts: bool = False,
    field_manager: str = FIELD_MANAGER,
) -> objects.Object:
    """Server-side apply `obj` (strict field validation); returns the object as stored (or as it
    would be stored, with `dry_run`)."""
    path = _object_path(cluster, obj)
    query: list[tuple[str, str]] = [
        ("fieldManager", field_manager),
        ("fieldValidation", "Strict"),
    ]
    if force_conflicts:
        query.append(("force", "true"))
    if dry_run:
        query.append(("dryRun", "All"))
    return _call(cluster, "PATCH", path, query, obj, "application/apply-patch+yaml")


def create_if_absent(cluster: Cluster, obj: objects.Object) -> bool:
    """Create `obj` unless an object of that name exists (which is left untouched): for
    material generated once, such as deployment keys. True when it was created."""
    resource = _resource(cluster, obj)
    namespace = obj["metadata"].get("namespace") if resource.namespaced else None
    try:
        _call(
            cluster,
            "POST",
            resource.path(namespace=namespace),
            [("fieldManager", FIELD_MANAGER)],
            obj,
            "application/json",
        )
    except KubeError as err:
        if err.status == 409:
            return False
        raise
    return True


def merge_patch(cluster: Cluster, obj: objects.Object, patch: objects.Object) -> objects.Object:
    """JSON merge patch of the live object named like `obj`."""
    path = _object_path(cluster, obj)
    query = [("fieldManager", FIELD_MANAGER)]
    return _call(cluster, "PATCH", path, query, patch, "application/merge-patch+json")


def get(cluster: Cluster, obj: objects.Object) -> objects.Object | None:
    """The live object with the same identity, or None when there is none."""
    path = _object_path(cluster, obj)
    try:
        return _call(cluster, "GET", path, [], None, None)
    except KubeError as err:
        if err.status == 404:
            return None
        raise


def list_objects(
    cluster: Cluster, api_version: str, kind: str, namespace: str, label_selector: str = ""
) -> list[objects.Object]:
    """Every object of a kind in a namespace (empty when the cluster does not serve the kind)."""
    try:
        resource = _resource(cluster, {"apiVersion": api_version, "kind": kind})
    except KubeError as err:
        if err.status == 404:
            return []
        raise
    query = [("labelSelector", label_selector)] if label_selector else []
    listing = _call(cluster, "GET", resource.path(namespace=namespace), query, None, None)
    items: list[objects.Object] = listing.get("items") or []
    return items


def wait_established(
    cluster: Cluster,
    crd_name: str,
    timeout: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Wait until the CRD's Established condition is True (its kinds can then be served)."""
    deadline = clock() + timeout
    ref = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": crd_name},
    }
    while True:
        live = get(cluster, ref)
        conditions = ((live or {}).get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
            cluster.dynamic.resources.invalidate_cache()
            return
        if clock() > deadline:
            raise KubeError(f"CustomResourceDefinition {crd_name} not Established in {timeout}s")
        time.sleep(0.2)


def _call(
    cluster: Cluster,
    method: str,
    path: str,
    query: list[tuple[str, str]],
    body: objects.Object | None,
    content_type: str | None,
) -> objects.Object:
    headers = {"Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    try:
        request = cluster.api.param_serialize(
            method,
            path,
            query_params=query,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = cluster.api.call_api(*request)
        payload = response.read()
    except client_exceptions.ApiException as err:
        raise KubeError(_reason(err.body, err.reason), err.status or 0) from err
    except (OSError, urllib3.exceptions.HTTPError) as err:  # refused while a server restarts
        raise KubeError(f"cannot reach the API server: {err}") from err
    if not 200 <= response.status <= 299:
        raise KubeError(_reason(payload, response.reason), response.status)
    result: objects.Object = json.loads(payload)
    return result


def _reason(body: bytes | str | None, fallback: str | None) -> str:
    """The API server's own message from a Status body."""
    try:
        status = json.loads(body or b"")
    except ValueError:
        return str(fallback or body)
    return str(status.get("message") or fallback)
