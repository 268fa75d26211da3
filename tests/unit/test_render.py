"""Rendering extension components (`docs/domain.md#components`) from the templates.

The expected component set is transcribed here from the product's documented component table,
independently of `reconciler.components`, so a wrong row in the code's table fails these tests.
"""

import itertools
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler import objects, source
from reconciler.model import documents, extensions, settings
from reconciler.render import render, workloadobjects
from tests.helpers import SCENARIOS, load, scenario_repo

GOLDEN = Path(__file__).parent / "golden"
WORKLOAD_KINDS = ("Deployment", "DaemonSet", "StatefulSet")

# (name, kind, scenarios, optional flag, only on cluster type) straight from the product's table.
SPEC_TABLE = [
    ("relayserver", "Deployment", "TIB", None, "connectedClusters"),
    ("gateway", "Deployment", "TIB", None, None),
    ("aml-operator", "Deployment", "TB", None, None),
    ("metrics-controller-manager", "Deployment", "TIB", None, None),
    ("{EXT}-kube-state-metrics", "Deployment", "TIB", None, None),
    ("{EXT}-prometheus-operator", "Deployment", "TIB", "installPromOp", None),
    ("amlarc-identity-controller", "Deployment", "IB", None, None),
    ("amlarc-identity-proxy", "Deployment", "IB", None, None),
    ("azureml-fe-v2", "Deployment", "IB", None, None),
    ("inference-operator-controller-manager", "Deployment", "IB", None, None),
    ("volcano-admission", "Deployment", "TB", "installVolcano", None),
    ("volcano-controllers", "Deployment", "TB", "installVolcano", None),
    ("volcano-scheduler", "Deployment", "TB", "installVolcano", None),
    ("fluent-bit", "DaemonSet", "TIB", None, None),
    ("{EXT}-dcgm-exporter", "DaemonSet", "TIB", "installDcgmExporter", None),
    ("nvidia-device-plugin-daemonset", "DaemonSet", "TIB", "installNvidiaDevicePlugin", None),
    ("prometheus-prom-prometheus", "StatefulSet", "TIB", None, None),
]
# The older documentation: these replace / join the table when older settings are used.
OLDER_TABLE = [
    ("cluster-status-reporter", "Deployment", "TIB", None, None),
    ("csi-blob-controller", "Deployment", "TB", "blobCsiDriverEnabled", None),
    ("csi-blob-node", "DaemonSet", "TB", "blobCsiDriverEnabled", None),
    ("k8s-host-device-plugin-daemonset", "DaemonSet", "TIB", None, None),
    ("azureml-fe", "Deployment", "IB", None, None),
]


def expected_workloads(
    ext: str, scenario: str, cluster_type: str, values: dict[str, Any], older: bool
) -> set[tuple[str, str]]:
    rows = SPEC_TABLE + (OLDER_TABLE if older else [])
    found = set()
    for name, kind, scenarios, flag, only_on in rows:
        if scenario not in scenarios or (only_on and only_on != cluster_type):
            continue
        if flag and not values.get(flag, flag in ("installPromOp", "installVolcano")):
            continue
        if older and name == "azureml-fe-v2":
            continue
        found.add((kind, name.replace("{EXT}", ext)))
    return found


def workloads(rendered: list[objects.Object]) -> set[tuple[str, str]]:
    return {(o["kind"], o["metadata"]["name"]) for o in rendered if o["kind"] in WORKLOAD_KINDS}


def make_extension(config: dict[str, Any], cluster_type: str) -> extensions.Extension:
    document = documents.Document("ext.yaml", 1, {})
    parsed, problems = settings.parse(config, {}, document)
    assert [p for p in problems if p.is_error] == []
    return extensions.Extension("ml", cluster_type, "azureml", parsed)


FLAGS = ("installPromOp", "installVolcano", "installDcgmExporter", "installNvidiaDevicePlugin")
SCENARIO_CONFIG = {
    "T": {"enableTraining": True},
    "I": {"enableInference": True, "inferenceRouterServiceType": "ClusterIP",
          "allowInsecureConnections": True},
    "B": {"enableTraining": True, "enableInference": True,
          "inferenceRouterServiceType": "ClusterIP", "allowInsecureConnections": True},
}  # fmt: skip


@pytest.mark.parametrize("scenario", ["T", "I", "B"])
@pytest.mark.parametrize("cluster_type", ["managedClusters", "connectedClusters"])
@pytest.mark.parametrize("blob", [None, True, False])
def test_every_combination_renders_the_table(
    scenario: str, cluster_type: str, blob: bool | None
) -> None:
    snapshot = source.DirectorySnapshot(".")
    for flags in itertools.product([True, False], repeat=len(FLAGS)):
        config: dict[str, Any] = dict(SCENARIO_CONFIG[scenario])
        config.update(zip(FLAGS, flags, strict=True))
        if blob is not None:
            config["blobCsiDriverEnabled"] = blob
        extension = make_extension(config, cluster_type)
        rendered = [obj for obj, _ in render.extension_objects(extension, snapshot)]
        expected = expected_workloads("ml", scenario, cluster_type, config, blob is not None)
        assert workloads(rendered) == expected, config


def render_scenario(tmp_path: Path, name: str) -> list[objects.Object]:
    root = scenario_repo(tmp_path, name)
    loaded = load(root)
    assert loaded.valid
    return render.render_repo(loaded.repo, source.DirectorySnapshot(root), "unversioned").objects


def by_name(rendered: list[objects.Object], kind: str, name: str) -> objects.Object:
    (found,) = [o for o in rendered if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def test_quickstart(tmp_path: Path) -> None:
    rendered = render_scenario(tmp_path, "quickstart")
    expected = expected_workloads("azureml-extension", "B", "managedClusters", {}, False)
    assert workloads(rendered) == expected
    router = by_name(rendered, "Deployment", "azureml-fe-v2")
    assert router["spec"]["replicas"] == 1
    service = by_name(rendered, "Service", "azureml-fe-v2")
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["ports"][0]["port"] == 80
    assert (
        "annotations" not in service["metadata"]
        or render.INTERNAL_LB_ANNOTATION not in (service["metadata"]["annotations"])
    )
    assert not [o for o in rendered if o["kind"] == "Secret"]


@pytest.mark.parametrize("name", ["quickstart", "production-https"])
def test_the_router_admin_port_is_on_a_headless_service_only(tmp_path: Path, name: str) -> None:
    """Metrics and load reports: never on the router's own (public) Service, always on the
    headless one its instances find each other's admin ports through."""
    rendered = render_scenario(tmp_path, name)
    admin = workloadobjects.ROUTER_ADMIN_PORT_NAME
    public = by_name(rendered, "Service", "azureml-fe-v2")
    assert admin not in [p["targetPort"] for p in public["spec"]["ports"]]
    headless = by_name(rendered, "Service", workloadobjects.router_admin_service("azureml-fe-v2"))
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"] == public["spec"]["selector"]
    assert [p["targetPort"] for p in headless["spec"]["ports"]] == [admin]
    container = by_name(rendered, "Deployment", "azureml-fe-v2")["spec"]["template"]["spec"][
        "containers"
    ][0]
    (port,) = [p for p in container["ports"] if p["name"] == admin]
    config = yaml.safe_load(
        by_name(rendered, "ConfigMap", "azureml-fe-v2-config")["data"]["router.yaml"]
    )
    assert config["admin_listen"] == f"0.0.0.0:{port['containerPort']}"
    assert config["listen"] != config["admin_listen"]


def test_onprem_training(tmp_path: Path) -> None:
    rendered = render_scenario(tmp_path, "onprem-training")
    assert workloads(rendered) == {
        ("Deployment", "relayserver"),
        ("Deployment", "gateway"),
        ("Deployment", "aml-operator"),
        ("Deployment", "metrics-controller-manager"),
        ("Deployment", "azureml-extension-kube-state-metrics"),
        ("Deployment", "azureml-extension-prometheus-operator"),
        ("Deployment", "volcano-admission"),
        ("Deployment", "volcano-controllers"),
        ("Deployment", "volcano-scheduler"),
        ("DaemonSet", "fluent-bit"),
        ("StatefulSet", "prometheus-prom-prometheus"),
    }
    crds = {o["metadata"]["name"] for o in rendered if o["kind"] == "CustomResourceDefinition"}
    assert crds == {
        "instancetypes.amlarc.azureml.com",
        "jobs.batch.volcano.sh",
        "podgroups.scheduling.volcano.sh",
        "queues.scheduling.volcano.sh",
    }


def test_production_https(tmp_path: Path) -> None:
    rendered = render_scenario(tmp_path, "production-https")
    router = by_name(rendered, "Deployment", "azureml-fe-v2")
    assert router["spec"]["replicas"] == 3  # inferenceRouterHA defaults to true
    service = by_name(rendered, "Service", "azureml-fe-v2")
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["metadata"]["annotations"][render.INTERNAL_LB_ANNOTATION] == "true"
    assert service["spec"]["ports"][0]["port"] == 443
    secret = by_name(rendered, "Secret", "azureml-fe-v2-tls")
    assert sorted(secret["data"]) == ["cert.pem", "key.pem"]
    volumes = router["spec"]["template"]["spec"]["volumes"]
    assert {"name": "tls", "secret": {"secretName": "azureml-fe-v2-tls"}} in volumes
    assert ("StatefulSet", "prometheus-prom-prometheus") in workloads(rendered)


def test_gpu_nodeport(tmp_path: Path) -> None:
    rendered = render_scenario(tmp_path, "gpu-nodeport")
    names = workloads(rendered)
    assert ("DaemonSet", "nvidia-device-plugin-daemonset") in names
    assert ("DaemonSet", "azureml-extension-dcgm-exporter") in names
    assert ("Deployment", "relayserver") in names
    assert by_name(rendered, "Service", "azureml-fe-v2")["spec"]["type"] == "NodePort"
    router = by_name(rendered, "Deployment", "azureml-fe-v2")
    assert {"name": "tls", "secret": {"secretName": "azureml-router-tls"}} in router["spec"][
        "template"
    ]["spec"]["volumes"]
    assert not [o for o in rendered if o["kind"] == "Secret"]  # sslSecret is the user's own
    for obj in rendered:
        if obj["kind"] in WORKLOAD_KINDS:
            pod = obj["spec"]["template"]["spec"]
            assert pod["nodeSelector"] == {"accelerator": "nvidia", "pool": "gpu"}, obj


@pytest.mark.parametrize("name", SCENARIOS)
def test_golden_output(tmp_path: Path, name: str) -> None:
    """The whole render of each scenario, byte for byte (UPDATE_GOLDEN=1 rewrites the files)."""
    rendered = [objects.redact(o) for o in render_scenario(tmp_path, name)]
    text = objects.to_yaml(rendered)
    golden = GOLDEN / f"{name}.yaml"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert text == golden.read_text()


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_object_is_labelled_and_annotated(tmp_path: Path, name: str) -> None:
    for obj in render_scenario(tmp_path, name):
        labels = obj["metadata"]["labels"]
        assert labels[objects.MANAGED_BY_LABEL] == objects.MANAGED_BY
        assert labels[objects.PART_OF_LABEL] == "azureml-extension"
        assert labels[objects.NAME_LABEL]
        assert labels[objects.COMPONENT_LABEL]
        annotations = obj["metadata"]["annotations"]
        assert annotations[objects.SOURCE_FILE_ANNOTATION] == "extension.yaml"
        assert annotations[objects.SOURCE_REVISION_ANNOTATION] == "unversioned"
        if obj["kind"] in WORKLOAD_KINDS:
            pod = obj["spec"]["template"]
            assert pod["metadata"]["labels"][objects.PART_OF_LABEL] == "azureml-extension"
            container = pod["spec"]["containers"][0]
            assert container["resources"]["requests"] and container["resources"]["limits"]
            assert "livenessProbe" in container
            assert container["image"].split(":")[-1], "images are pinned"


def test_apply_order_puts_crds_then_namespace_then_rbac_config_workloads_services(
    tmp_path: Path,
) -> None:
    kinds = [o["kind"] for o in render_scenario(tmp_path, "production-https")]
    first = {kind: kinds.index(kind) for kind in reversed(kinds)}
    order = [
        "CustomResourceDefinition", "Namespace", "ServiceAccount", "ClusterRole", "Role",
        "Secret", "ConfigMap", "Deployment", "DaemonSet", "StatefulSet", "Service",
    ]  # fmt: skip
    assert [first[k] for k in order] == sorted(first[k] for k in order)
    assert kinds[-1] == "InstanceType" or "InstanceType" not in kinds


def test_image_registry_setting_replaces_every_registry() -> None:
    config = {**SCENARIO_CONFIG["B"], "imageRegistry": "mirror.example.com/ml"}
    extension = make_extension(config, "managedClusters")
    rendered = [o for o, _ in render.extension_objects(extension, source.DirectorySnapshot("."))]
    images = {
        c["image"]
        for o in rendered
        if o["kind"] in WORKLOAD_KINDS
        for c in o["spec"]["template"]["spec"]["containers"]
    }
    assert images and all(i.startswith("mirror.example.com/ml/") for i in images)


def test_openshift_never_pins_a_user_id() -> None:
    config = {**SCENARIO_CONFIG["B"], "openshift": True}
    extension = make_extension(config, "connectedClusters")
    rendered = [o for o, _ in render.extension_objects(extension, source.DirectorySnapshot("."))]
    for obj in rendered:
        if obj["kind"] == "Deployment":
            security = obj["spec"]["template"]["spec"]["securityContext"]
            assert security["runAsNonRoot"] is True and "runAsUser" not in security
