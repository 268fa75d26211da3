"""`reconciler install`: the controller's manifests, and RBAC that matches the render exactly.

The kinds the controller must be allowed to apply are computed here from real renders, with
repos and a kind -> resource table written independently of `reconciler.install`: the bundled
example (`manifests/`), an extension with every setting switched on in each generation, and the
HTTPS scenario (its TLS Secret). The ClusterRole and Role must grant exactly those resources plus
the controller's own needs: nothing missing, nothing extra, no wildcard.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from reconciler import objects, source
from reconciler.cli import main as cli
from reconciler.cli import sync as synccli
from reconciler.engine import record
from reconciler.gitops import install
from reconciler.render import auth, render
from tests.helpers import API, load, scenario_repo, write_repo

REPO_ROOT = Path(__file__).resolve().parents[2]
REPO_URL = "https://git.example.com/ml/manifests.git"

# Every kind a render can hold, transcribed from the Kubernetes API reference and the CRDs.
RESOURCES = {
    ("v1", "Namespace"): ("", "namespaces"),
    ("v1", "ServiceAccount"): ("", "serviceaccounts"),
    ("v1", "Secret"): ("", "secrets"),
    ("v1", "ConfigMap"): ("", "configmaps"),
    ("v1", "Service"): ("", "services"),
    ("apps/v1", "Deployment"): ("apps", "deployments"),
    ("apps/v1", "DaemonSet"): ("apps", "daemonsets"),
    ("apps/v1", "StatefulSet"): ("apps", "statefulsets"),
    ("batch/v1", "Job"): ("batch", "jobs"),
    ("batch.volcano.sh/v1alpha1", "Job"): ("batch.volcano.sh", "jobs"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): ("rbac.authorization.k8s.io", "clusterroles"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): (
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
    ),
    ("rbac.authorization.k8s.io/v1", "Role"): ("rbac.authorization.k8s.io", "roles"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ("rbac.authorization.k8s.io", "rolebindings"),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): (
        "apiextensions.k8s.io",
        "customresourcedefinitions",
    ),
    ("amlarc.azureml.com/v1alpha1", "InstanceType"): ("amlarc.azureml.com", "instancetypes"),
}
# What the controller does besides applying the render: its records and their status, Events
# about them, and its leader-election Lease (in its own namespace only).
CONTROLLER_CLUSTER_WIDE = {
    ("gitops.mlext.io", "extensionstatuses"),
    ("gitops.mlext.io", "extensionstatuses/status"),
    ("", "events"),
    ("events.k8s.io", "events"),
    ("", "pods"),  # listed to tell why a workload is not healthy
}
CONTROLLER_NAMESPACED = {("coordination.k8s.io", "leases")}

EVERYTHING = {
    "enableTraining": True,
    "enableInference": True,
    "inferenceRouterServiceType": "LoadBalancer",
    "allowInsecureConnections": True,
    "installPromOp": True,
    "installDcgmExporter": True,
    "installNvidiaDevicePlugin": True,
}
WORKLOADS = {
    "it.yaml": """
        apiVersion: amlarc.azureml.com/v1alpha1
        kind: InstanceType
        metadata: {name: small}
        spec: {resources: {limits: {cpu: "1", memory: 1Gi}}}
        """,
    "job.yaml": f"""
        apiVersion: {API}
        kind: Job
        metadata: {{name: train}}
        spec:
          command: python train.py
          environment: {{image: python:3.11-slim}}
          resources: {{instance_type: small}}
        """,
    "deployment.yaml": f"""
        apiVersion: {API}
        kind: Deployment
        metadata: {{name: blue}}
        spec:
          model: https://models.example.com/model.pkl
          environment: {{image: python:3.11-slim}}
          instance_type: small
        """,
}


def everything_repo(root: Path, older: bool) -> Path:
    """Every component of one generation, with a job and a key-auth deployment: volcano (a
    volcano Job) in the current generation, the blob CSI driver and no volcano (a batch/v1 Job)
    in the older one."""
    config = {**EVERYTHING, "installVolcano": not older}
    if older:
        config["blobCsiDriverEnabled"] = True
    extension = {
        "apiVersion": API,
        "kind": "Extension",
        "metadata": {"name": "azureml-extension"},
        "spec": {"clusterType": "connectedClusters", "config": config},
    }
    return write_repo(root, {"ext.yaml": yaml.safe_dump(extension), **WORKLOADS})


def render_with_keys(root: Path) -> list[objects.Object]:
    """What the controller applies for a repo: the render and the deployments' key Secrets."""
    loaded = load(root)
    assert loaded.valid, [str(p) for p in loaded.problems]
    rendered = render.render_repo(loaded.repo, source.DirectorySnapshot(root), "test").objects
    keys = [s for group in auth.repo_secrets(loaded.repo).values() for s in group]
    return rendered + keys


@pytest.fixture(scope="module")
def renders(tmp_path_factory: pytest.TempPathFactory) -> list[objects.Object]:
    tmp = tmp_path_factory.mktemp("renders")
    return [
        *render_with_keys(REPO_ROOT / "manifests"),
        *render_with_keys(everything_repo(tmp / "current", older=False)),
        *render_with_keys(everything_repo(tmp / "older", older=True)),
        *render_with_keys(scenario_repo(tmp / "https", "production-https")),
    ]


@pytest.fixture(scope="module")
def printed() -> list[objects.Object]:
    result = CliRunner().invoke(cli.main, ["install", "--repo", REPO_URL])
    assert result.exit_code == 0, result.output
    return list(yaml.safe_load_all(result.stdout))


def one(objs: list[objects.Object], kind: str) -> objects.Object:
    (found,) = [o for o in objs if o["kind"] == kind]
    return found


def granted(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    """(group, resource) -> verbs, over the rules that are not limited to named objects."""
    found: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        if "resourceNames" in rule:
            continue
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                found.setdefault((group, resource), set()).update(rule["verbs"])
    return found


# --- RBAC against the render -------------------------------------------------------------


def test_the_rendered_kinds_are_all_known(renders: list[objects.Object]) -> None:
    assert {(o["apiVersion"], o["kind"]) for o in renders} == set(RESOURCES)


def test_cluster_role_covers_exactly_the_rendered_resources_and_the_controllers_own(
    renders: list[objects.Object], printed: list[objects.Object]
) -> None:
    rendered = {RESOURCES[(o["apiVersion"], o["kind"])] for o in renders}
    allowed = set(granted(one(printed, "ClusterRole")["rules"]))
    assert sorted((rendered | CONTROLLER_CLUSTER_WIDE) - allowed) == []  # nothing missing
    assert sorted(allowed - rendered - CONTROLLER_CLUSTER_WIDE) == []  # nothing extra


def test_the_role_holds_only_the_lease_in_the_controllers_namespace(
    printed: list[objects.Object],
) -> None:
    role = one(printed, "Role")
    assert role["metadata"]["namespace"] == install.DEFAULT_NAMESPACE
    assert set(granted(role["rules"])) == CONTROLLER_NAMESPACED
    assert not CONTROLLER_NAMESPACED & set(granted(one(printed, "ClusterRole")["rules"]))


def test_no_wildcard_and_no_non_resource_urls(printed: list[objects.Object]) -> None:
    for obj in printed:
        for rule in obj.get("rules", []) if obj["kind"] in ("ClusterRole", "Role") else []:
            assert "nonResourceURLs" not in rule
            values = [v for field in rule.values() for v in field]
            assert "*" not in values and not any("*" in v for v in values), rule


def test_verbs_are_what_apply_prune_and_watch_need(printed: list[objects.Object]) -> None:
    verbs = granted(one(printed, "ClusterRole")["rules"])
    applied = {"get", "list", "watch", "create", "patch", "delete"}
    for resource, allowed in verbs.items():
        if resource in CONTROLLER_CLUSTER_WIDE:
            continue
        if resource == ("apiextensions.k8s.io", "customresourcedefinitions"):
            assert allowed == applied - {"delete"}  # CRDs are never pruned
        else:
            assert allowed == applied, resource
    assert verbs[("", "events")] == verbs[("events.k8s.io", "events")] == {"create"}
    assert verbs[("gitops.mlext.io", "extensionstatuses/status")] == {"patch"}
    lease = granted(one(printed, "Role")["rules"])[("coordination.k8s.io", "leases")]
    assert lease == {"get", "create", "update"}


def named_rules(rules: list[dict[str, Any]]) -> dict[str, tuple[set[str], set[str]]]:
    """resource -> (resourceNames, verbs) of the rules limited to named objects."""
    found = {}
    for rule in rules:
        if "resourceNames" in rule:
            (group,) = rule["apiGroups"]
            (resource,) = rule["resources"]
            assert group == "rbac.authorization.k8s.io"
            found[resource] = (set(rule["resourceNames"]), set(rule["verbs"]))
    return found


def test_bind_and_escalate_only_on_the_roles_the_render_holds(
    renders: list[objects.Object], printed: list[objects.Object]
) -> None:
    named = named_rules(one(printed, "ClusterRole")["rules"])

    def names(kind: str) -> set[str]:
        own = {o["metadata"]["name"] for o in printed}  # the controller's own are made by hand
        return {o["metadata"]["name"] for o in renders if o["kind"] == kind} - own

    assert named == {
        "clusterroles": (names("ClusterRole"), {"bind", "escalate"}),
        "roles": (names("Role"), {"bind", "escalate"}),
    }
    unlimited = granted(one(printed, "ClusterRole")["rules"])
    assert not any({"bind", "escalate", "impersonate"} & verbs for verbs in unlimited.values())


def test_each_extension_named_gets_its_own_cluster_roles() -> None:
    rules = install.cluster_rules(["ml-a", "ml-b"])
    cluster_roles, _ = named_rules(rules)["clusterroles"]
    assert {"ml-a-gateway", "ml-b-gateway", "ml-a-kube-state-metrics"} <= cluster_roles
    assert not any(n.startswith("azureml-extension") for n in cluster_roles)


# --- the objects -------------------------------------------------------------------------


def container(printed: list[objects.Object]) -> dict[str, Any]:
    found: list[dict[str, Any]] = one(printed, "Deployment")["spec"]["template"]["spec"][
        "containers"
    ]
    assert len(found) == 1
    return found[0]


def test_deployment_runs_two_leader_elected_replicas(printed: list[objects.Object]) -> None:
    deployment = one(printed, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert container(printed)["args"] == [
        "controller",
        ".",
        "--leader-elect",
        "--metrics-addr", ":8080",
        "--health-addr", ":8081",
        "--git-credentials", "/etc/git-credentials",
        "--repo", REPO_URL,
        "--branch", "main",
        "--interval", "60s",
    ]  # fmt: skip
    pod = deployment["spec"]["template"]["spec"]
    term = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert (
        term[0]["podAffinityTerm"]["labelSelector"]["matchLabels"]
        == (deployment["spec"]["selector"]["matchLabels"])
    )
    assert deployment["spec"]["template"]["metadata"]["labels"].items() >= (
        deployment["spec"]["selector"]["matchLabels"].items()
    )


def test_probes_and_resources(printed: list[objects.Object]) -> None:
    main = container(printed)
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        check = main[probe]["httpGet"]
        assert (check["path"], ports[check["port"]]) == (path, 8081)
    assert set(main["resources"]) == {"requests", "limits"}
    assert (
        set(main["resources"]["requests"])
        == set(main["resources"]["limits"])
        == {
            "cpu",
            "memory",
        }
    )


def test_runs_as_non_root_on_a_read_only_root(printed: list[objects.Object]) -> None:
    pod = one(printed, "Deployment")["spec"]["template"]["spec"]
    main = container(printed)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    assert main["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/var/cache/reconciler"]]
    assert "emptyDir" in volumes[mounts["/tmp"]]
    namespace = one(printed, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_git_credentials_are_a_reference_never_a_secret() -> None:
    result = CliRunner().invoke(
        cli.main, ["install", "--repo", REPO_URL, "--git-secret", "deploy-key"]
    )
    assert result.exit_code == 0, result.output
    printed = list(yaml.safe_load_all(result.stdout))
    assert not [o for o in printed if o["kind"] == "Secret"]
    pod = one(printed, "Deployment")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == "deploy-key"
    assert volume["secret"]["optional"] is True
    (mount,) = [m for m in container(printed)["volumeMounts"] if m["name"] == volume["name"]]
    assert (mount["mountPath"], mount["readOnly"]) == ("/etc/git-credentials", True)


def test_service_account_bindings_and_service_fit_together(printed: list[objects.Object]) -> None:
    account = one(printed, "ServiceAccount")["metadata"]
    subject = {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
    pod = one(printed, "Deployment")["spec"]["template"]
    assert pod["spec"]["serviceAccountName"] == account["name"]
    for binding, role in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        assert one(printed, binding)["subjects"] == [subject]
        assert one(printed, binding)["roleRef"]["name"] == one(printed, role)["metadata"]["name"]
    service = one(printed, "Service")
    assert pod["metadata"]["labels"].items() >= service["spec"]["selector"].items()
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"


def test_the_status_crd_is_the_records_own(printed: list[objects.Object]) -> None:
    assert one(printed, "CustomResourceDefinition") == record.crd()


def test_namespace_option_moves_every_namespaced_object() -> None:
    result = CliRunner().invoke(cli.main, ["install", "--repo", REPO_URL, "-n", "gitops"])
    assert result.exit_code == 0, result.output
    printed = list(yaml.safe_load_all(result.stdout))
    assert one(printed, "Namespace")["metadata"]["name"] == "gitops"
    namespaced = [o for o in printed if "namespace" in o["metadata"]]
    assert sorted(o["kind"] for o in namespaced) == [
        "Deployment",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ]
    assert {o["metadata"]["namespace"] for o in namespaced} == {"gitops"}
    assert one(printed, "ClusterRole")["metadata"]["name"] == "mlext-reconciler:gitops"


# --- the command -------------------------------------------------------------------------


def test_output_is_in_apply_order_and_stable(printed: list[objects.Object]) -> None:
    assert printed == objects.in_apply_order(printed)
    again = CliRunner().invoke(cli.main, ["install", "--repo", REPO_URL])
    assert list(yaml.safe_load_all(again.stdout)) == printed
    as_json = CliRunner().invoke(cli.main, ["install", "--repo", REPO_URL, "-o", "json"])
    assert json.loads(as_json.stdout)["items"] == printed


def test_image_option(printed: list[objects.Object]) -> None:
    assert container(printed)["image"] == install.default_image()
    result = CliRunner().invoke(
        cli.main, ["install", "--repo", REPO_URL, "--image", "registry.local/rec:dev"]
    )
    assert container(list(yaml.safe_load_all(result.stdout)))["image"] == "registry.local/rec:dev"


@pytest.mark.parametrize(
    "args",
    [[], ["--repo", REPO_URL, "-n", "Not_A_Name"], ["--repo", REPO_URL, "--extension", "x" * 41]],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = CliRunner().invoke(cli.main, ["install", *args])
    assert result.exit_code == 2
    assert result.stdout == ""


def test_the_deployment_args_are_what_the_controller_command_accepts(
    printed: list[objects.Object],
) -> None:
    args = container(printed)["args"]
    assert args[0] == "controller"
    parsed = synccli.controller_command.make_context("controller", list(args[1:]))
    assert parsed.params["leader_elect"] and parsed.params["git_credentials"]


def test_a_decryption_secret_is_passed_and_granted_by_name_only() -> None:
    result = CliRunner().invoke(
        cli.main, ["install", "--repo", REPO_URL, "--decryption-secret", "sops-age"]
    )
    assert result.exit_code == 0, result.output
    objs = list(yaml.safe_load_all(result.stdout))
    args = container(objs)["args"]
    parsed = synccli.controller_command.make_context("controller", list(args[1:]))
    assert parsed.params["decryption_secret"] == "sops-age"
    rules = one(objs, "Role")["rules"]
    assert {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["sops-age"],
            "verbs": ["get"]} in rules  # fmt: skip
    assert set(granted(rules)) == CONTROLLER_NAMESPACED  # no unnamed Secret access


def test_a_notifications_secret_is_mounted_and_named_by_the_controllers_option() -> None:
    result = CliRunner().invoke(
        cli.main, ["install", "--repo", REPO_URL, "--notifications-secret", "alerts"]
    )
    assert result.exit_code == 0, result.output
    objs = list(yaml.safe_load_all(result.stdout))
    assert not [o for o in objs if o["kind"] == "Secret"]
    args = container(objs)["args"]
    parsed = synccli.controller_command.make_context("controller", list(args[1:]))
    assert parsed.params["notifications_file"] == "/etc/notifications/notifications.yaml"
    pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "notifications"]
    assert volume["secret"]["secretName"] == "alerts"
    (mount,) = [m for m in container(objs)["volumeMounts"] if m["name"] == "notifications"]
    assert (mount["mountPath"], mount["readOnly"]) == ("/etc/notifications", True)
    without = CliRunner().invoke(cli.main, ["install", "--repo", REPO_URL]).stdout
    assert "notifications" not in without
