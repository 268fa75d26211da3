"""What the local control plane must show (issue 3), against the real kube-apiserver.

Each test gets a fresh namespace. Pods run on kwok-simulated nodes (3 CPU nodes, 1 GPU node with
``nvidia.com/gpu: 1`` and ``accelerator=nvidia``); with USE_EXISTING_CLUSTER=1 the same tests run
on whatever cluster the current kubeconfig names, except those about the local plane itself (its
built kubectl, killing and relaunching a component), which skip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml
from kubernetes import client
from kubernetes import config as kube_config

from reconciler.localcluster import build, plane
from reconciler.localcluster.config import (
    CLUSTER_NAME,
    COMPONENTS,
    GPU_LABEL,
    GPU_RESOURCE,
    PlaneState,
    default_nodes,
)
from tests.cluster.conftest import use_existing_cluster
from tests.cluster.kubehelpers import (
    FIELD_MANAGER,
    PAUSE_IMAGE,
    deployment,
    pods,
    running,
    server_side_apply,
    wait_until,
)

pytestmark = pytest.mark.cluster


def _pod(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [{"name": "main", "image": PAUSE_IMAGE}], **spec},
    }


def test_api_server_is_the_pinned_release(api_client: client.ApiClient) -> None:
    version = client.VersionApi(api_client).get_code()
    if not use_existing_cluster():
        from reconciler.localcluster import build

        go_mod = (build.source_dir() / "go.mod").read_text()
        assert version.git_version == build.pinned_kubernetes_version(go_mod)


def test_server_side_applied_deployment_rolls_out_on_simulated_nodes(
    api_client: client.ApiClient, namespace: str
) -> None:
    applied = server_side_apply(api_client, deployment("web", namespace, replicas=3))
    managers = {(m.manager, m.operation) for m in applied.metadata.managedFields}
    assert (FIELD_MANAGER, "Apply") in managers

    apps = client.AppsV1Api(api_client)
    dep = wait_until(
        lambda: apps.read_namespaced_deployment("web", namespace),
        lambda d: d.status.available_replicas == 3 and d.status.updated_replicas == 3,
        "deployment web to roll out 3 available replicas",
    )
    assert dep.spec.replicas == 3
    # Defaulting by the API server: the strategy was not in the applied manifest.
    assert dep.spec.strategy.type == "RollingUpdate"

    web = wait_until(
        lambda: running(pods(api_client, namespace, "app=web")),
        lambda ps: len(ps) == 3,
        "3 running pods of web",
    )
    nodes = {n.metadata.name: n for n in client.CoreV1Api(api_client).list_node().items}
    for pod in web:
        assert pod.spec.node_name in nodes
        assert pod.status.pod_ip
        if not use_existing_cluster():
            assert nodes[pod.spec.node_name].metadata.labels.get("type") == "kwok"

    # Applying the same manifest again is a no-op: same generation, still owned by the tests.
    again = server_side_apply(api_client, deployment("web", namespace, replicas=3))
    assert again.metadata.generation == dep.metadata.generation


def test_pod_whose_node_selector_matches_no_node_stays_pending_unschedulable(
    api_client: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_pod(
        namespace, _pod("nowhere", namespace, nodeSelector={"no-such-label": "anywhere"})
    )

    def scheduled_condition() -> Any:
        pod = core.read_namespaced_pod("nowhere", namespace)
        conds = [c for c in (pod.status.conditions or []) if c.type == "PodScheduled"]
        return (pod, conds[0] if conds else None)

    pod, cond = wait_until(
        scheduled_condition,
        lambda pc: pc[1] is not None and pc[1].status == "False",
        "the scheduler to mark pod nowhere unschedulable",
    )
    assert cond.reason == "Unschedulable"
    assert pod.status.phase == "Pending"
    assert pod.spec.node_name is None


def test_pod_asking_for_a_gpu_lands_on_the_gpu_node(
    api_client: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    gpu_nodes = {
        n.metadata.name
        for n in core.list_node().items
        if (n.status.allocatable or {}).get(GPU_RESOURCE) not in (None, "0")
    }
    if use_existing_cluster() and not gpu_nodes:
        pytest.skip(f"the existing cluster has no node with {GPU_RESOURCE}")
    assert gpu_nodes, f"the local plane should have a node with {GPU_RESOURCE}"

    container = {
        "name": "main",
        "image": PAUSE_IMAGE,
        "resources": {"limits": {GPU_RESOURCE: "1"}},
    }
    body = _pod("trainer", namespace)
    body["spec"]["containers"] = [container]
    core.create_namespaced_pod(namespace, body)

    pod = wait_until(
        lambda: core.read_namespaced_pod("trainer", namespace),
        lambda p: p.status.phase == "Running",
        "the GPU pod to run",
    )
    assert pod.spec.node_name in gpu_nodes
    node = core.read_node(pod.spec.node_name)
    if not use_existing_cluster():
        assert node.metadata.labels.get(GPU_LABEL[0]) == GPU_LABEL[1]


def test_scale_subresource_changes_replicas_and_pods_follow(
    api_client: client.ApiClient, namespace: str
) -> None:
    apps = client.AppsV1Api(api_client)
    server_side_apply(api_client, deployment("scaled", namespace, replicas=1))
    wait_until(
        lambda: running(pods(api_client, namespace, "app=scaled")),
        lambda ps: len(ps) == 1,
        "1 running pod",
    )

    for replicas in (4, 2):
        scale = apps.patch_namespaced_deployment_scale(
            "scaled",
            namespace,
            {"spec": {"replicas": replicas}},
            _content_type="application/merge-patch+json",
        )
        assert scale.spec.replicas == replicas
        assert apps.read_namespaced_deployment_scale("scaled", namespace).spec.replicas == replicas
        assert apps.read_namespaced_deployment("scaled", namespace).spec.replicas == replicas
        wait_until(
            lambda: pods(api_client, namespace, "app=scaled"),
            lambda ps, n=replicas: len(ps) == n and len(running(ps)) == n,
            f"{replicas} running pods after scaling",
        )
    # Scaling down removed the extra pods entirely (kwok completes their deletion).
    wait_until(
        lambda: (
            client.CoreV1Api(api_client)
            .list_namespaced_pod(namespace, label_selector="app=scaled")
            .items
        ),
        lambda items: len(items) == 2,
        "the scaled-down pods to be gone",
    )


def _crd(group: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1alpha1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["size"],
                                    "properties": {
                                        "size": {"type": "integer", "minimum": 1},
                                        "color": {"type": "string", "default": "blue"},
                                        "tags": {"type": "array", "items": {"type": "string"}},
                                    },
                                }
                            },
                        }
                    },
                }
            ],
        },
    }


def test_crd_becomes_established_and_a_custom_resource_round_trips(
    api_client: client.ApiClient, namespace: str
) -> None:
    group = f"t{uuid.uuid4().hex[:8]}.test.mlext.io"
    ext = client.ApiextensionsV1Api(api_client)
    ext.create_custom_resource_definition(_crd(group))
    try:

        def established() -> bool:
            crd = ext.read_custom_resource_definition(f"widgets.{group}")
            conds = (crd.status.conditions if crd.status else None) or []
            return any(c.type == "Established" and c.status == "True" for c in conds)

        wait_until(established, bool, f"CRD widgets.{group} to be Established")

        custom = client.CustomObjectsApi(api_client)
        body = {
            "apiVersion": f"{group}/v1alpha1",
            "kind": "Widget",
            "metadata": {"name": "w1", "namespace": namespace},
            "spec": {"size": 3, "tags": ["a", "b"]},
        }
        created: Any = custom.create_namespaced_custom_object(
            group, "v1alpha1", namespace, "widgets", body
        )
        got: Any = custom.get_namespaced_custom_object(
            group, "v1alpha1", namespace, "widgets", "w1"
        )
        assert got["spec"] == {"size": 3, "tags": ["a", "b"], "color": "blue"}  # schema default
        assert got["metadata"]["uid"] == created["metadata"]["uid"]

        # The schema is enforced by the API server.
        bad = {**body, "metadata": {"name": "w2", "namespace": namespace}, "spec": {"size": 0}}
        with pytest.raises(client.ApiException) as err:
            custom.create_namespaced_custom_object(group, "v1alpha1", namespace, "widgets", bad)
        assert err.value.status == 422
    finally:
        ext.delete_custom_resource_definition(f"widgets.{group}")


# ---------------------------------------------------------------------------------------------
# the local plane itself: its kubectl, and a component that crashes and comes back


def _local(local_plane: PlaneState | None) -> PlaneState:
    if local_plane is None:
        pytest.skip("USE_EXISTING_CLUSTER=1: no local plane (nothing built, nothing to kill)")
    return local_plane


def _pinned_version() -> str:
    return build.pinned_kubernetes_version((build.source_dir() / "go.mod").read_text())


def _kubectl_env(tmp_path: Path) -> dict[str, str]:
    # No discovery cache in the user's home, no ~/.kube/kuberc preferences.
    return {**os.environ, "KUBECACHEDIR": str(tmp_path / "kubecache"), "KUBERC": "off"}


def _kubectl(state: PlaneState, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the plane's own kubectl (already built by the session fixture, so found instantly)."""
    cmd = build.ensure_built().kubectl(f"--kubeconfig={state.kubeconfig}", *args)
    return subprocess.run(
        cmd, env=_kubectl_env(tmp_path), capture_output=True, text=True, timeout=120, check=False
    )


def _configmap_yaml(path: Path, name: str, namespace: str, data: dict[str, str]) -> Path:
    doc = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def test_built_kubectl_and_the_api_server_are_the_pinned_release(
    local_plane: PlaneState | None, tmp_path: Path
) -> None:
    state = _local(local_plane)
    cmd = build.ensure_built().kubectl("version")
    assert Path(cmd[0]) == Path(state.binary)  # the plane's one binary, not the machine's kubectl

    out = _kubectl(state, tmp_path, "version", "-o", "json")
    assert out.returncode == 0, out.stderr
    versions = json.loads(out.stdout)
    assert versions["clientVersion"]["gitVersion"] == _pinned_version()
    assert versions["serverVersion"]["gitVersion"] == _pinned_version()
    assert "WARNING" not in out.stderr  # no version-skew warning


def test_built_kubectl_server_side_applies_a_configmap(
    local_plane: PlaneState | None, api_client: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    state = _local(local_plane)
    core = client.CoreV1Api(api_client)
    manifest = _configmap_yaml(tmp_path / "cm.yaml", "settings", namespace, {"color": "blue"})

    out = _kubectl(state, tmp_path, "apply", "--server-side", "-f", str(manifest))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "configmap/settings serverside-applied"
    cm = core.read_namespaced_config_map("settings", namespace)
    assert cm.data == {"color": "blue"}
    assert ("kubectl", "Apply") in {(m.manager, m.operation) for m in cm.metadata.managed_fields}

    # The same through `reconciler cluster kubectl`, which finds the plane by its state folder.
    _configmap_yaml(manifest, "settings", namespace, {"color": "green"})
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler",
            "cluster",
            "kubectl",
            "--state-dir",
            state.state_dir,
            "--",
            "apply",
            "--server-side",
            "-f",
            str(manifest),
        ],
        env=_kubectl_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout.strip() == "configmap/settings serverside-applied"
    assert core.read_namespaced_config_map("settings", namespace).data == {"color": "green"}

    # kubectl's exit code comes through.
    missing = _kubectl(state, tmp_path, "get", "configmap", "no-such-map", "-n", namespace)
    assert missing.returncode == 1
    assert "NotFound" in missing.stderr


def test_killed_api_server_is_unreachable_and_after_relaunch_serves_what_etcd_kept(
    local_plane: PlaneState | None, api_client: client.ApiClient, namespace: str
) -> None:
    state_dir = Path(_local(local_plane).state_dir)
    core = client.CoreV1Api(api_client)
    before = core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "survivor"}, "data": {"kept": "yes"}}
    )

    killed = plane.kill("kube-apiserver", state_dir)
    st = plane.status(state_dir)
    alive = {c.name: c.alive for c in st.components}
    assert alive.pop("kube-apiserver") is False
    assert all(alive.values()), alive  # only the API server crashed
    assert not st.api_ready
    assert not st.running
    with pytest.raises(urllib3.exceptions.HTTPError):  # connection refused
        client.VersionApi(api_client).get_code(_request_timeout=5)

    relaunched = plane.relaunch("kube-apiserver", state_dir)
    assert relaunched != killed
    assert plane.status(state_dir).running

    after = core.read_namespaced_config_map("survivor", namespace)
    assert after.metadata.uid == before.metadata.uid
    assert after.data == {"kept": "yes"}

    # Writes work again and the controller manager, scheduler and kwok found the new API
    # server: a new Deployment rolls out to a running pod.
    server_side_apply(api_client, deployment("after-restart", namespace, replicas=1))
    wait_until(
        lambda: running(pods(api_client, namespace, "app=after-restart")),
        lambda ps: len(ps) == 1,
        "a running pod of a Deployment applied after the API server restart",
        timeout=120,
    )


# ---------------------------------------------------------------------------------------------
# a plane of the module's own, to crash: `cluster up` brings it back with its data, and commands
# against its dead API server give up within their bound (the session's plane is never killed)


@pytest.fixture(scope="module")
def own_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlaneState]:
    """A second, private plane (one node), tied to this process and stopped after the module."""
    if use_existing_cluster():
        pytest.skip("USE_EXISTING_CLUSTER=1: no local plane to crash")
    state_dir = tmp_path_factory.mktemp("ownplane")
    state = plane.start(build.ensure_built(), default_nodes(1, 0), state_dir, die_with_parent=True)
    try:
        yield state
    finally:
        plane.stop(state_dir)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _cluster_up(state_dir: Path) -> Any:
    """`reconciler cluster up` in this process, so that what it restarts dies with pytest (the
    plane was started with die_with_parent) rather than with a child process."""
    from click.testing import CliRunner

    from reconciler.cli.main import main

    return CliRunner().invoke(
        main, ["cluster", "up", "--real-nodes", "0", "--state-dir", str(state_dir)]
    )


def test_cluster_up_restarts_a_crashed_api_server_on_its_port_with_its_data(
    own_plane: PlaneState,
) -> None:
    state_dir = Path(own_plane.state_dir)
    port = own_plane.ports["apiserver"]
    kubeconfig_before = Path(own_plane.kubeconfig).read_bytes()
    pki_before = _files(state_dir / "pki")
    api = kube_config.new_client_from_config(config_file=own_plane.kubeconfig)
    core = client.CoreV1Api(api)
    name = f"kept-{uuid.uuid4().hex[:6]}"
    secret = core.create_namespaced_secret(
        "default", {"metadata": {"name": name}, "stringData": {"key": uuid.uuid4().hex}}
    )
    plane.kill("kube-apiserver", state_dir)

    result = _cluster_up(state_dir)

    assert result.exit_code == 0, result.output
    assert (
        f"kube-apiserver was not running: restarted on port {port} with its data" in result.stderr
    )
    assert result.stdout.strip().splitlines()[-1] == f"KUBECONFIG={own_plane.kubeconfig}"
    st = plane.status(state_dir)
    assert st.running and st.state is not None
    assert st.state.server == own_plane.server
    assert Path(own_plane.kubeconfig).read_bytes() == kubeconfig_before
    assert _files(state_dir / "pki") == pki_before
    # The client made before the crash (its CA, its certificate) works on the restarted server,
    # which still has the object, and its generated value, as they were.
    after = core.read_namespaced_secret(name, "default")
    assert after.metadata.uid == secret.metadata.uid
    assert after.data == secret.data
    api.close()


def test_cluster_up_brings_back_a_plane_whose_every_component_died(
    own_plane: PlaneState,
) -> None:
    state_dir = Path(own_plane.state_dir)
    api = kube_config.new_client_from_config(config_file=own_plane.kubeconfig)
    core = client.CoreV1Api(api)
    name = f"kept-{uuid.uuid4().hex[:6]}"
    kept = core.create_namespaced_config_map(
        "default", {"metadata": {"name": name}, "data": {"kept": "yes"}}
    )
    for component in reversed(COMPONENTS):  # as a reboot would leave it, etcd included
        plane.kill(component, state_dir)

    result = _cluster_up(state_dir)

    assert result.exit_code == 0, result.output
    ports = own_plane.ports
    for line in (
        f"etcd was not running: restarted on ports {ports['etcd_client']}, "
        f"{ports['etcd_peer']} with its data",
        f"kube-apiserver was not running: restarted on port {ports['apiserver']} with its data",
        "kube-controller-manager was not running: restarted on port "
        f"{ports['controller_manager']} with its data",
        f"kube-scheduler was not running: restarted on port {ports['scheduler']} with its data",
        "kwok was not running: restarted with its data",
    ):
        assert line in result.stderr
    assert plane.status(state_dir).running
    after = core.read_namespaced_config_map(name, "default")
    assert (after.metadata.uid, after.data) == (kept.metadata.uid, {"kept": "yes"})
    # The restarted controller manager, scheduler and kwok work: a Deployment rolls out.
    server_side_apply(api, deployment("after-reboot", "default", replicas=1))
    wait_until(
        lambda: running(pods(api, "default", "app=after-reboot")),
        lambda ps: len(ps) == 1,
        "a running pod of a Deployment applied after the plane came back",
        timeout=120,
    )
    api.close()


EXAMPLE_REPO = Path(__file__).resolve().parents[2] / "manifests"


@pytest.mark.parametrize("command", ["apply", "plan"])
def test_a_command_against_a_dead_api_server_gives_up_at_its_bound_saying_why(
    own_plane: PlaneState, command: str
) -> None:
    state_dir = Path(own_plane.state_dir)
    server = own_plane.server
    plane.kill("kube-apiserver", state_dir)
    try:
        env = {**os.environ, "RECONCILER_API_RETRY_SECONDS": "3"}
        cmd = [sys.executable, "-m", "reconciler", command, str(EXAMPLE_REPO)]
        # --request-timeout 0: the first contact waits as for an outage (without it, a server
        # that never answered fails the command at once: test_unreachable_server.py).
        done = subprocess.run(
            [*cmd, "--kubeconfig", own_plane.kubeconfig, "--request-timeout", "0"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,  # the bound is 3 s; without one a request retried for 2 minutes
            check=False,
        )
    finally:
        plane.relaunch("kube-apiserver", state_dir)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    waiting = [line for line in lines if line.startswith("waiting for the API server")]
    # One line while it waits (however many requests were in flight), naming the server.
    assert waiting == [
        f"waiting for the API server at {server} (connection refused), giving up in 3 s"
    ]
    assert lines[-1] == (
        f"error: cannot reach the Kubernetes API server at {server} (kubeconfig "
        f"{own_plane.kubeconfig}, context {CLUSTER_NAME}): connection refused; "
        "gave up after 3 s; is the cluster running? check with `kubectl cluster-info`"
    )
