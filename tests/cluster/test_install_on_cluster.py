"""`reconciler install` on the real control plane: the printed manifests are accepted, and the
controller's ServiceAccount can do exactly what reconciling the bundled example needs.

The manifests are printed by the CLI and server-side applied for real (as an administrator would).
Then every request is made *as the controller's ServiceAccount* (`Impersonate-User:
system:serviceaccount:NS:mlext-reconciler`): the reconcile plan phase and a server-side dry-run
apply of the example's full render (component RBAC included, which the API server only accepts
through the bounded `escalate` / `bind` grant) must succeed, while requests for what nothing
renders, and roles outside the rendered names, must be forbidden (403).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from kubernetes import client, config

from reconciler import kube, objects, source
from reconciler.cli import main as cli
from reconciler.engine import reconcile, record, revision
from reconciler.gitops import install
from reconciler.localcluster.config import PlaneState
from tests.cluster.kubehelpers import pods, running, server_side_apply, wait_until

pytestmark = pytest.mark.cluster
EXAMPLE = Path(__file__).resolve().parents[2] / "manifests"


@dataclass(frozen=True)
class Installed:
    namespace: str
    extension: str  # the extension name given with --extension
    printed: list[objects.Object]

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{install.NAME}"


def _api(kubeconfig: str | None) -> client.ApiClient:
    if kubeconfig is None:
        return config.new_client_from_config()
    return config.new_client_from_config(config_file=kubeconfig)


@pytest.fixture(scope="module")
def installed(api_client: client.ApiClient) -> Iterator[Installed]:
    """The printed manifests applied for real in a namespace of their own; removed after."""
    suffix = uuid.uuid4().hex[:6]
    namespace, extension = f"t-install-{suffix}", f"inst-{suffix}"
    args = ["install", "--repo", "https://git.example.com/ml.git", "--namespace", namespace]
    result = CliRunner().invoke(cli.main, [*args, "--extension", extension])
    assert result.exit_code == 0, result.output
    printed = list(yaml.safe_load_all(result.stdout))
    try:
        for obj in printed:
            server_side_apply(api_client, obj)
            if obj["kind"] == "CustomResourceDefinition":
                kube.wait_established(kube.Cluster(api_client), obj["metadata"]["name"])
        yield Installed(namespace, extension, printed)
    finally:
        # The CRD stays: other tests' records live in it.
        rbac = client.RbacAuthorizationV1Api(api_client)
        cluster_name = f"{install.NAME}:{namespace}"
        for delete in (rbac.delete_cluster_role_binding, rbac.delete_cluster_role):
            try:
                delete(cluster_name)
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
        try:
            client.CoreV1Api(api_client).delete_namespace(
                namespace, propagation_policy="Background"
            )
        except client.ApiException as exc:
            if exc.status != 404:
                raise


@pytest.fixture(scope="module")
def controller(installed: Installed, cluster_kubeconfig: str | None) -> Iterator[kube.Cluster]:
    """A connection that acts as the controller's ServiceAccount."""
    api = _api(cluster_kubeconfig)
    api.set_default_header("Impersonate-User", installed.user)
    yield kube.Cluster(api)
    api.close()


def forbidden(call: Any, *args: Any, **kwargs: Any) -> bool:
    try:
        call(*args, **kwargs)
    except kube.KubeError as err:
        return err.status == 403
    return False


def test_printed_manifests_run_two_replicas(
    installed: Installed, api_client: client.ApiClient, local_plane: PlaneState | None
) -> None:
    as_admin = kube.Cluster(api_client)
    for obj in installed.printed:
        assert kube.get(as_admin, obj) is not None, objects.key(obj)
    selector = ",".join(f"{k}={v}" for k, v in install_selector(installed).items())
    up = wait_until(
        lambda: running(pods(api_client, installed.namespace, selector)),
        lambda found: len(found) == 2,
        "the controller's 2 pods to run (restricted Pod Security enforced)",
    )
    nodes = {p.spec.node_name for p in up}
    if local_plane is not None:
        # The plane's placement policy puts the controller on its one real node: the
        # anti-affinity is only preferred, so both replicas still run, as on a one-node cluster
        # (test_controller_in_pod_on_cluster.py follows them further).
        assert len(nodes) == 1 and nodes.pop().startswith("real-node-"), nodes
    else:
        # Preferred anti-affinity: with several nodes free, the scheduler spreads the replicas.
        assert len(nodes) == 2


def install_selector(installed: Installed) -> dict[str, str]:
    (deployment,) = [o for o in installed.printed if o["kind"] == "Deployment"]
    selector: dict[str, str] = deployment["spec"]["selector"]["matchLabels"]
    return selector


def example(tmp_path: Path, extension: str, namespace: str) -> Path:
    """The bundled example, its extension renamed and released into `namespace`."""
    root = tmp_path / "repo"
    shutil.copytree(EXAMPLE, root)
    manifest = root / "infra" / "extension.yaml"
    text = manifest.read_text()
    text = text.replace("name: azureml-extension", f"name: {extension}")
    manifest.write_text(text.replace("releaseNamespace: azureml", f"releaseNamespace: {namespace}"))
    return root


def test_the_service_account_can_plan_and_dry_run_the_full_example(
    installed: Installed,
    controller: kube.Cluster,
    cluster_kubeconfig: str | None,
    namespace: str,
    tmp_path: Path,
) -> None:
    root = example(tmp_path, installed.extension, namespace)
    head = revision.Revision(source.DirectorySnapshot(root))
    assert head.valid, head.error_lines()
    rendered = head.rendered.objects
    keys = [s for group in head.rendered.generated.values() for s in group]
    kinds = {o["kind"] for o in rendered + keys}
    assert {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Secret"} <= kinds
    # A dry run cannot create what the rest needs first: the CRDs exist for real (as in the
    # render dry-run test); the release namespace is the test's own.
    admin = kube.connect(cluster_kubeconfig)
    try:
        for crd in (o for o in rendered if o["kind"] == "CustomResourceDefinition"):
            kube.apply(admin, crd)
            kube.wait_established(admin, crd["metadata"]["name"])
    finally:
        admin.api.close()

    # The reconcile plan phase, as the controller: records, live objects, server dry runs.
    results = reconcile.reconcile(
        controller, head, reconcile.Options(dry_run=True), lambda _event: None
    )
    assert [(r.name, r.outcome.state, r.outcome.reasons) for r in results] == [
        (installed.extension, record.PENDING, ())
    ]
    # And each object on its own, the key Secrets included, dry-run applied as the controller.
    for obj in rendered + keys:
        assert kube.apply(controller, obj, dry_run=True)["kind"] == obj["kind"]


def test_what_nothing_renders_is_forbidden(
    installed: Installed, controller: kube.Cluster, namespace: str
) -> None:
    ingress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "not-rendered", "namespace": namespace},
        "spec": {"defaultBackend": {"service": {"name": "x", "port": {"number": 80}}}},
    }
    assert forbidden(kube.apply, controller, ingress, dry_run=True)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "not-rendered", "namespace": namespace},
        "spec": {"containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10"}]},
    }
    assert forbidden(kube.apply, controller, pod, dry_run=True)
    assert forbidden(kube.list_objects, controller, "v1", "Node")
    assert forbidden(kube.list_objects, controller, "v1", "PersistentVolume")


def test_roles_outside_the_rendered_names_cannot_be_made_or_bound(
    installed: Installed, controller: kube.Cluster, namespace: str
) -> None:
    rbac = "rbac.authorization.k8s.io/v1"
    escalating = {
        "apiVersion": rbac,
        "kind": "ClusterRole",
        "metadata": {"name": f"{installed.extension}-not-a-component"},
        "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}],
    }
    assert forbidden(kube.apply, controller, escalating, dry_run=True)
    namespaced = {
        "apiVersion": rbac,
        "kind": "Role",
        "metadata": {"name": "not-a-component", "namespace": namespace},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]}],
    }
    assert forbidden(kube.apply, controller, namespaced, dry_run=True)
    to_admin = {
        "apiVersion": rbac,
        "kind": "ClusterRoleBinding",
        "metadata": {"name": f"{installed.extension}-gateway"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "admin",
        },
        "subjects": [{"kind": "ServiceAccount", "name": install.NAME, "namespace": namespace}],
    }
    assert forbidden(kube.apply, controller, to_admin, dry_run=True)
    # Another extension's roles are not covered: that takes a reinstall with its --extension.
    other = {**escalating, "metadata": {"name": "someone-else-gateway"}}
    assert forbidden(kube.apply, controller, other, dry_run=True)


def test_the_lease_is_allowed_in_the_controllers_namespace_only(
    installed: Installed, controller: kube.Cluster, namespace: str
) -> None:
    """Leader election's own requests: get, create, then renew with a PUT."""
    leases = client.CoordinationV1Api(controller.api)
    body = {"metadata": {"name": "mlext-reconciler-leader"}, "spec": {"holderIdentity": "a"}}
    created = leases.create_namespaced_lease(installed.namespace, body)
    created.spec.holder_identity = "b"
    leases.replace_namespaced_lease(created.metadata.name, installed.namespace, created)
    lease = leases.read_namespaced_lease(created.metadata.name, installed.namespace)
    assert lease.spec.holder_identity == "b"
    with pytest.raises(client.ApiException) as elsewhere:
        leases.create_namespaced_lease(namespace, body)
    assert elsewhere.value.status == 403
