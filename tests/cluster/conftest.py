"""Fixtures for tests against a real Kubernetes control plane.

``cluster_kubeconfig`` (session): starts the project's local control plane (building it on the
first run on a machine, with progress on the terminal) and stops it when the session ends. With
``USE_EXISTING_CLUSTER=1`` it uses the current kubeconfig instead (``$KUBECONFIG`` or
``~/.kube/config``, e.g. a kind cluster) and starts nothing.
``local_plane`` (session): that plane's recorded state (its state folder, for tests that kill and
relaunch a component), None with ``USE_EXISTING_CLUSTER=1``. The plane has one real node
(``localcluster.realnode``) with the project's image and the stand-ins loaded, as ``cluster up``
gives it: the project's model, router and job pods run there under the kubelet
(``realplacement``); everything else stays on the kwok nodes.

``api_client`` (session): a ``kubernetes.client.ApiClient`` on that cluster.
``cluster`` (per module): a ``reconciler.kube.Cluster`` connection to it, closed after.
``namespace`` (per test): a fresh namespace whose ``default`` service account exists, deleted after.
``pods`` (per test): the project's pods of the test's namespace on the real node, and scoring
through its router (``realpods.Pods``).
``real_namespace`` (per test): a fresh namespace on the ``real_node`` plane.
``real_node`` (session): a plane of its own with one real node (``localcluster.realnode``:
containerd and a kubelet in a Docker container) and the node image loaded as a pod image
(``RealNodeFixture``, with an API client on that plane); Docker is installed and the node's
programs built on first use.

If the plane cannot be built or started the tests fail with the reason. Outside CI, and only
then, ``SKIP_CLUSTER_TESTS=1`` turns that into a skip; with ``CI=true`` they always fail.
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from reconciler import kube
from reconciler.localcluster import (
    build,
    hostdocker,
    localimages,
    nodeimage,
    plane,
    realnode,
)
from reconciler.localcluster.config import PlaneState, default_nodes
from tests.cluster.kubehelpers import wait_until
from tests.cluster.realnodes import RealNodeFixture
from tests.cluster.realpods import Pods


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def use_existing_cluster() -> bool:
    return _flag("USE_EXISTING_CLUSTER")


def _unavailable(reason: str) -> None:
    if _flag("SKIP_CLUSTER_TESTS") and os.environ.get("CI") != "true":
        pytest.skip(f"SKIP_CLUSTER_TESTS=1 and the control plane is unavailable: {reason}")
    pytest.fail(
        f"the local Kubernetes control plane is unavailable: {reason}\n"
        "(outside CI, SKIP_CLUSTER_TESTS=1 skips these tests instead)",
        pytrace=False,
    )


def _terminal_progress(request: pytest.FixtureRequest) -> Callable[[str], None]:
    capman: Any = request.config.pluginmanager.getplugin("capturemanager")

    def progress(line: str) -> None:
        # Shown as it happens, not captured: the first run on a machine builds for minutes.
        if capman is None:
            return
        with capman.global_and_fixture_disabled():
            sys.stderr.write(f"\n[cluster] {line}")
            sys.stderr.flush()

    return progress


@pytest.fixture(scope="session")
def local_plane(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PlaneState | None]:
    """The session's local plane as recorded at start (None with USE_EXISTING_CLUSTER=1).

    ``Path(local_plane.state_dir)`` is what ``plane.kill`` / ``plane.relaunch`` / ``plane.status``
    take; ``local_plane.kubeconfig`` is the admin kubeconfig.
    """
    if use_existing_cluster():
        yield None
        return

    progress = _terminal_progress(request)
    state_dir = tmp_path_factory.mktemp("localcluster")
    try:
        binaries = build.ensure_built(progress)
        state = plane.start(
            binaries, default_nodes(), state_dir, die_with_parent=True, progress=progress
        )
    except (build.BuildError, plane.PlaneError, OSError) as exc:
        _unavailable(str(exc))
        raise AssertionError("unreachable") from exc
    progress(f"Kubernetes {state.version} ready in {state.ready_seconds}s\n")
    try:
        try:
            nodes = realnode.start_nodes(state, 1, progress)
            localimages.provide(state_dir, nodes, progress)
        except (hostdocker.DockerUnavailable, build.BuildError, realnode.RealNodeError) as exc:
            _unavailable(f"no real node: {exc}")
            raise AssertionError("unreachable") from exc
        progress(f"real node {nodes[0].name} ready with its images\n")
        yield state
    finally:
        plane.stop(state_dir)


@pytest.fixture(scope="session")
def cluster_kubeconfig(local_plane: PlaneState | None) -> str | None:
    """Path of an admin kubeconfig for the session's cluster (None: the default kubeconfig)."""
    return None if local_plane is None else local_plane.kubeconfig


@pytest.fixture(scope="module")
def cluster(cluster_kubeconfig: str | None) -> Iterator[kube.Cluster]:
    """The reconciler's own connection to the session's cluster, one per test module."""
    connection = kube.connect(cluster_kubeconfig)
    yield connection
    connection.api.close()


@pytest.fixture(scope="session")
def api_client(cluster_kubeconfig: str | None) -> Iterator[client.ApiClient]:
    """A Kubernetes API client on the session's cluster, closed at the end."""
    if cluster_kubeconfig is None:
        api = config.new_client_from_config()
    else:
        api = config.new_client_from_config(config_file=cluster_kubeconfig)
    try:
        client.VersionApi(api).get_code()
    except Exception as exc:
        api.close()
        _unavailable(f"the API server does not answer: {exc}")
    try:
        yield api
    finally:
        api.close()


def _namespace_name(test_name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"t-{slug}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def namespace(api_client: client.ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, ready for pods (its default service account exists)."""
    core = client.CoreV1Api(api_client)
    name = _namespace_name(request.node.name)
    core.create_namespace({"metadata": {"name": name, "labels": {"reconciler-test": "true"}}})

    def default_sa() -> bool:
        items = core.list_namespaced_service_account(name, field_selector="metadata.name=default")
        return bool(items.items)

    wait_until(default_sa, bool, f"the default service account in {name}")
    try:
        yield name
    finally:
        # Background deletion: the namespace controller and kwok clean up after the test.
        try:
            core.delete_namespace(name, propagation_policy="Background")
        except client.ApiException as exc:
            if exc.status != 404:  # a test may have deleted it (pruning its Namespace object)
                raise


@pytest.fixture(scope="session")
def kubeconfig_path(cluster_kubeconfig: str | None) -> Path | None:
    """The kubeconfig file as a Path (None when the default kubeconfig is used)."""
    return Path(cluster_kubeconfig) if cluster_kubeconfig else None


@pytest.fixture
def pods(
    local_plane: PlaneState | None,
    namespace: str,
    cluster: kube.Cluster,
    api_client: client.ApiClient,
) -> Iterator[Pods]:
    """The project's pods of the test's namespace, run by the session plane's real node. The
    namespace's router configs are deleted at once after the test: `score NAME` looks NAME up in
    every router's config, and a later test's deployment of the same name must not be found in
    this namespace while the namespace controller is still deleting it."""
    if local_plane is None:
        pytest.skip("the real node's pods are inspected on the local plane only")
    yield Pods(local_plane, namespace, cluster)
    client.CoreV1Api(api_client).delete_collection_namespaced_config_map(
        namespace, label_selector="app.kubernetes.io/component=router-config"
    )


@pytest.fixture
def real_namespace(real_node: RealNodeFixture) -> Iterator[str]:
    """A fresh namespace on the real node's plane whose ``default`` service account exists,
    deleted after the test (the session plane's ``namespace`` fixture, on the other plane)."""
    core = client.CoreV1Api(real_node.api)
    name = f"t-real-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name}})
    wait_until(lambda: core.list_namespaced_service_account(name).items, bool, f"{name}'s account")
    yield name
    core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture(scope="session")
def real_node(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RealNodeFixture]:
    """A plane of its own with one real node (stopped at the end of the session).

    Not the session's plane: a real node there would change what other tests see (node counts,
    where DaemonSets land) until the project's pods move to real nodes on purpose.
    """
    if use_existing_cluster():
        pytest.skip("real nodes are added to the local plane only (USE_EXISTING_CLUSTER)")
    progress = _terminal_progress(request)
    state_dir = tmp_path_factory.mktemp("realnodeplane")
    try:
        binaries = build.ensure_built(progress)
        state = plane.start(
            binaries, default_nodes(0, 0), state_dir, die_with_parent=True, progress=progress
        )
    except (build.BuildError, plane.PlaneError, OSError) as exc:
        _unavailable(str(exc))
        raise AssertionError("unreachable") from exc
    api = None
    try:
        try:
            (node,) = realnode.start_nodes(state, 1, progress)
            image = nodeimage.ensure_image(progress)
            realnode.load_image(state_dir, image, [node])
        except (hostdocker.DockerUnavailable, build.BuildError, realnode.RealNodeError) as exc:
            _unavailable(f"no real node: {exc}")
            raise AssertionError("unreachable") from exc
        api = config.new_client_from_config(config_file=state.kubeconfig)
        yield RealNodeFixture(state, node, image, api)
    finally:
        if api is not None:
            api.close()
        plane.stop(state_dir)
