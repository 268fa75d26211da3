"""`reconciler install` on the local plane: the controller runs in pods from the built image,
follows a git repo served from the host and reconciles it with the RBAC it installs (issue 28).

The test serves a copy of the bundled example over git's own protocol (`git daemon`, started
here and stopped after) at the address where the plane's pods reach the host
(`realnode.host_address`: the gateway of the plane's Docker network). It prints the manifests
with `reconciler install --repo git://...`, server-side applies them as an administrator would,
and then only watches: the plane's placement policy puts the controller's two pods on the real
node, where they run the project's image under the kubelet (their logs are read through the
API server), elect a leader and reconcile the repo as their ServiceAccount, whose only grant is
the installed RBAC, until the extension's record says Succeeded. A commit to the served repo
(a new instance type) reaches the cluster within the controller's short interval.

The Helm chart (`charts/mlext-reconciler`, written from the same template) is installed the
same way with `helm install` into the test's namespace, and must reconcile the example too.
Both need the plane's folder (its Docker network): the session's plane, or with
USE_EXISTING_CLUSTER=1 the local plane whose folder holds $KUBECONFIG.

The copy drops the example's jobs and online deployments: they prove nothing here and would
only compete with the controller for the one real node's two CPUs.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import git
import pytest
import yaml
from click.testing import CliRunner
from kubernetes import client

from reconciler import kube, objects
from reconciler.cli import main as cli
from reconciler.engine import record
from reconciler.gitops import chart, install
from reconciler.localcluster import localimages, plane, realnode
from reconciler.localcluster import realnodeconfig as rc
from reconciler.localcluster.config import PlaneState
from tests import tools
from tests.cluster.kubehelpers import server_side_apply, wait_until
from tests.helpers import example_repo

pytestmark = pytest.mark.cluster
INTERVAL = "5s"
INSTANCE_TYPES = ("amlarc.azureml.com", "v1alpha1", "instancetypes")


@dataclass(frozen=True)
class GitServer:
    """A repo served by `git daemon` on the host, at `url` for the plane's pods."""

    root: Path  # the repo's work tree, committed to by the test
    url: str


def free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def answers(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1):
            return True
    except OSError:
        return False


def commit(root: Path, message: str) -> str:
    repository = git.Repo(root)
    repository.git.add(A=True)
    return str(repository.index.commit(message).hexsha)


@pytest.fixture
def plane_dir(local_plane: PlaneState | None) -> Path:
    """The local plane's folder: the session's, or that of an existing one's $KUBECONFIG."""
    if local_plane is not None:
        return Path(local_plane.state_dir)
    kubeconfig = os.environ.get("KUBECONFIG", "")
    if kubeconfig and plane.read_state(Path(kubeconfig).parent) is not None:
        return Path(kubeconfig).parent
    pytest.skip("the repo is served to a local plane's pods from this host")


@pytest.fixture
def served(plane_dir: Path, tmp_path: Path, namespace: str) -> Iterator[tuple[GitServer, str]]:
    """The example, its extension renamed to a name of this test and released into the test's
    namespace, committed and served by `git daemon`; with the extension's name."""
    host = realnode.host_address(plane_dir)
    assert host, "the session plane has a real node, so it has a Docker network"
    extension = f"ctl-{uuid.uuid4().hex[:6]}"
    base = tmp_path / "served"
    base.mkdir()
    root = example_repo(base, extension, namespace, jobs=False)  # base/repo
    shutil.rmtree(root / "deployments")
    git.Repo.init(root, initial_branch="main")
    commit(root, "the example, renamed")
    port = free_port(host)
    daemon = subprocess.Popen(
        [
            "git", "daemon", "--export-all", "--reuseaddr", "--informative-errors",
            f"--base-path={base}", f"--listen={host}", f"--port={port}", str(base),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until(lambda: answers(host, port), bool, f"git daemon on {host}:{port}", timeout=30)
        yield GitServer(root, f"git://{host}:{port}/{root.name}"), extension
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


@dataclass(frozen=True)
class Installed:
    namespace: str
    printed: list[objects.Object]

    @property
    def selector(self) -> str:
        (deployment,) = [o for o in self.printed if o["kind"] == "Deployment"]
        labels = deployment["spec"]["selector"]["matchLabels"]
        return ",".join(f"{k}={v}" for k, v in labels.items())

    def pods(self, api_client: client.ApiClient) -> list[Any]:
        """The controller's pods that are not being deleted."""
        listed = client.CoreV1Api(api_client).list_namespaced_pod(
            self.namespace, label_selector=self.selector
        )
        return [p for p in listed.items if p.metadata.deletion_timestamp is None]


@pytest.fixture
def installed(served: tuple[GitServer, str], api_client: client.ApiClient) -> Iterator[Installed]:
    """`reconciler install` for the served repo, applied; the controller stopped and its
    objects removed after (before the test's namespace goes, which it would apply again)."""
    server, extension = served
    namespace = f"t-ctl-{uuid.uuid4().hex[:6]}"
    args = [
        "install", "--repo", server.url, "--namespace", namespace, "--extension", extension,
        "--image", localimages.project_image(), "--interval", INTERVAL,
    ]  # fmt: skip
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 0, result.output
    printed = list(yaml.safe_load_all(result.stdout))
    core = client.CoreV1Api(api_client)
    found = Installed(namespace, printed)
    try:
        for obj in printed:
            server_side_apply(api_client, obj)
            if obj["kind"] == "CustomResourceDefinition":
                kube.wait_established(kube.Cluster(api_client), obj["metadata"]["name"])
        yield found
    finally:
        apps = client.AppsV1Api(api_client)
        try:
            apps.delete_namespaced_deployment(install.NAME, namespace)
        except client.ApiException as exc:
            if exc.status != 404:
                raise
        wait_until(
            lambda: core.list_namespaced_pod(namespace, label_selector=found.selector).items,
            lambda pods: not pods,
            "the controller's pods to stop",
            timeout=90,
        )
        rbac = client.RbacAuthorizationV1Api(api_client)
        for delete in (rbac.delete_cluster_role_binding, rbac.delete_cluster_role):
            try:
                delete(f"{install.NAME}:{namespace}")
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
        core.delete_namespace(namespace, propagation_policy="Background")
        # Only the test's own instance type: the example's are shared by every test's copy.
        try:
            client.CustomObjectsApi(api_client).delete_cluster_custom_object(
                *INSTANCE_TYPES, tiny_type(extension)
            )
        except client.ApiException as exc:
            if exc.status != 404:
                raise


def tiny_type(extension: str) -> str:
    """The instance type the test's second commit adds."""
    return f"{extension}-tiny"


def ready(pod: Any) -> bool:
    conditions = pod.status.conditions or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def status(cluster: kube.Cluster, extension: str) -> dict[str, Any]:
    found = kube.get(cluster, record.ref(extension)) or {}
    recorded: dict[str, Any] = found.get("status") or {}
    return recorded


def succeeded_at(
    cluster: kube.Cluster, extension: str, revision: str, timeout: float
) -> dict[str, Any]:
    """The extension's record once it says Succeeded at `revision`."""

    def done(recorded: dict[str, Any]) -> bool:
        state = recorded.get("provisioningState"), recorded.get("lastAppliedRevision")
        return state == (record.SUCCEEDED, revision)

    what = f"{extension} Succeeded at {revision[:12]}"
    return wait_until(lambda: status(cluster, extension), done, what, timeout=timeout)


def controller_up(
    api_client: client.ApiClient, cluster: kube.Cluster, installed: Installed, began: float
) -> list[Any]:
    """The controller's two replicas, once Ready: on the real node (one node: the preferred
    anti-affinity lets both share it), in containers of the project's image, serving."""
    up: list[Any] = wait_until(
        lambda: installed.pods(api_client),
        lambda pods: len(pods) == 2 and all(ready(p) for p in pods),
        "the controller's 2 pods to be Ready",
        timeout=180,
    )
    print(f"controller pods ready after {time.monotonic() - began:.1f}s")
    for pod in up:
        assert pod.spec.node_name.startswith("real-node-"), pod.spec.node_name
        assert pod.spec.node_selector == {rc.REAL_NODE_LABEL[0]: rc.REAL_NODE_LABEL[1]}
        assert pod.spec.service_account_name == install.NAME
        (state,) = pod.status.container_statuses
        assert state.container_id.startswith("containerd://"), state
        assert state.image.endswith(localimages.project_image()), state.image
        log = kube.pod_log(cluster, installed.namespace, pod.metadata.name, "controller")
        assert "serving on :8081" in log, log
    return up


def reconciled(
    cluster: kube.Cluster, api_client: client.ApiClient, extension: str, first: str, began: float
) -> None:
    """The extension's record says Succeeded at `first` with no problem, and the example's
    instance types are in the cluster."""
    recorded = succeeded_at(cluster, extension, first, timeout=300)
    print(f"{extension} Succeeded at {first[:12]} after {time.monotonic() - began:.1f}s")
    assert recorded["problems"] == [], recorded["problems"]
    names = {
        item["metadata"]["name"]
        for item in client.CustomObjectsApi(api_client).list_cluster_custom_object(
            *INSTANCE_TYPES, label_selector=f"{objects.PART_OF_LABEL}={extension}"
        )["items"]
    }
    assert {"cpusmall", "cpularge"} <= names, names


def helm(kubeconfig: str, *args: str) -> str:
    result = subprocess.run(
        [tools.helm(), "--kubeconfig", kubeconfig, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture
def chart_installed(
    served: tuple[GitServer, str],
    namespace: str,
    cluster_kubeconfig: str | None,
    cluster: kube.Cluster,
) -> Iterator[Installed]:
    """The chart, `helm install`ed into the test's namespace for the served repo; uninstalled
    after (its ClusterRole and binding with it; Helm keeps the CRD, as it always does)."""
    server, extension = served
    kubeconfig = cluster_kubeconfig or os.environ["KUBECONFIG"]  # `plane_dir` found one
    release = f"r-{uuid.uuid4().hex[:6]}"
    sets = {
        "repo": server.url,
        "image": localimages.project_image(),
        "interval": INTERVAL,
        "extensions": "{" + extension + "}",
    }
    args = [x for k, v in sets.items() for x in ("--set", f"{k}={v}")]
    helm(kubeconfig, "install", release, str(tools.ROOT / chart.DIRECTORY), "-n", namespace, *args)
    kube.wait_established(cluster, record.crd()["metadata"]["name"])
    rendered = helm(kubeconfig, "get", "manifest", release, "-n", namespace)
    try:
        yield Installed(namespace, [o for o in yaml.safe_load_all(rendered) if o])
    finally:
        helm(kubeconfig, "uninstall", release, "-n", namespace, "--wait")


def test_the_helm_chart_installs_a_controller_that_reconciles_the_example(
    served: tuple[GitServer, str],
    chart_installed: Installed,
    api_client: client.ApiClient,
    cluster: kube.Cluster,
) -> None:
    server, extension = served
    began = time.monotonic()
    up = controller_up(api_client, cluster, chart_installed, began)
    first = git.Repo(server.root).head.commit.hexsha
    reconciled(cluster, api_client, extension, first, began)
    for pod in up:  # the chart's RBAC was enough: nothing was forbidden to either replica
        log = kube.pod_log(cluster, chart_installed.namespace, pod.metadata.name, "controller")
        assert "forbidden" not in log.lower(), log


def test_the_installed_controller_runs_on_the_real_node_and_follows_the_served_repo(
    served: tuple[GitServer, str],
    installed: Installed,
    api_client: client.ApiClient,
    cluster: kube.Cluster,
) -> None:
    server, extension = served
    first = git.Repo(server.root).head.commit.hexsha
    began = time.monotonic()
    up = controller_up(api_client, cluster, installed, began)

    # One of them leads (its Lease names it) and reconciles the repo to Succeeded.
    leases = client.CoordinationV1Api(api_client)
    lease = wait_until(
        lambda: leases.list_namespaced_lease(installed.namespace).items,
        lambda found: any(lease.spec.holder_identity for lease in found),
        "a leader's Lease",
    )
    holder = next(lease.spec.holder_identity for lease in lease if lease.spec.holder_identity)
    (leader,) = [p for p in up if holder.startswith(f"{p.metadata.name}_")]
    reconciled(cluster, api_client, extension, first, began)
    # It did so as its ServiceAccount with the installed grant alone: nothing was forbidden.
    log = kube.pod_log(cluster, installed.namespace, leader.metadata.name, "controller")
    assert "forbidden" not in log.lower(), log

    # A commit to the served repo reaches the cluster within the interval.
    types = server.root / "infra" / "instancetypes.yaml"
    listed = yaml.safe_load(types.read_text())
    tiny = tiny_type(extension)
    listed["items"].append(
        {
            "metadata": {"name": tiny},
            "spec": {"resources": {"requests": {"cpu": "50m", "memory": "64Mi"}}},
        }
    )
    types.write_text(yaml.safe_dump(listed, sort_keys=False))
    second = commit(server.root, "a tiny instance type")
    pushed = time.monotonic()

    custom = client.CustomObjectsApi(api_client)

    def applied() -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = custom.get_cluster_custom_object(*INSTANCE_TYPES, tiny)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return found

    created = wait_until(applied, bool, f"instance type {tiny} from the new commit", timeout=120)
    assert created["spec"]["resources"]["requests"] == {"cpu": "50m", "memory": "64Mi"}
    succeeded_at(cluster, extension, second, timeout=120)
    print(f"the commit was applied {time.monotonic() - pushed:.1f}s after it was made")
    # Neither replica restarted meanwhile: the probes pass in the real containers.
    restarts = [p.status.container_statuses[0].restart_count for p in installed.pods(api_client)]
    assert restarts == [0, 0]
