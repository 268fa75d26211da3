"""The extension's components as one data table, and which ones an extension gets.

The product's rules for them: `docs/domain.md#components`.

`COMPONENTS` lists every workload the extension can install: its kind, the scenarios it belongs to
(training only, inference only, both enabled), the setting that switches an optional one on, the
cluster type it is limited to, whether it comes from the older generation of the product, its
pinned image and its resources. `select` picks from the table for one extension; the renderer
turns each pick into objects with the template of the same name under `templates/components/`.

Pure data and a pure function.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from reconciler import __version__
from reconciler.model import extensions, settings


class Scenario(enum.Enum):
    TRAINING = "T"  # enableTraining only
    INFERENCE = "I"  # enableInference only
    BOTH = "B"  # both enabled


ALL = frozenset(Scenario)
T_AND_B = frozenset({Scenario.TRAINING, Scenario.BOTH})
I_AND_B = frozenset({Scenario.INFERENCE, Scenario.BOTH})

MCR = "mcr.microsoft.com"
# The inference router is this project's own (`reconciler router serve`).
ROUTER_IMAGE_REGISTRY = "ghcr.io"


@dataclass(frozen=True)
class Resources:
    cpu_request: str
    memory_request: str
    cpu_limit: str
    memory_limit: str

    def as_dict(self) -> dict[str, dict[str, str]]:
        return {
            "requests": {"cpu": self.cpu_request, "memory": self.memory_request},
            "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit},
        }


SMALL = Resources("10m", "32Mi", "100m", "128Mi")
MEDIUM = Resources("50m", "64Mi", "500m", "256Mi")
LARGE = Resources("100m", "256Mi", "1", "1Gi")
# The published size of a router pod: 2 vCPU / 1.2 GB.
ROUTER = Resources("500m", "512Mi", "2", "1200Mi")


@dataclass(frozen=True)
class Component:
    """One row of the component table (`docs/domain.md#components`)."""

    name: str  # `{EXT}` stands for the extension's name
    kind: str  # Deployment | DaemonSet | StatefulSet
    scenarios: frozenset[Scenario]
    image: str  # repository:tag below the registry, pinned
    resources: Resources = SMALL
    flag: str | None = None  # the setting that switches an optional component on
    cluster_type: str | None = None  # only on this cluster type
    generation: str = "current"  # "older": listed only by the older documentation
    registry: str = MCR
    template: str = ""  # defaults to the name without `{EXT}-`

    @property
    def template_name(self) -> str:
        return f"components/{self.template or self.name.replace('{EXT}-', '')}.yaml.j2"

    def object_name(self, extension_name: str) -> str:
        return self.name.replace("{EXT}", extension_name)


def _amlarc(name: str, tag: str) -> str:
    return f"azureml/amlarc/docker/{name}:{tag}"


COMPONENTS: tuple[Component, ...] = (
    Component("relayserver", "Deployment", ALL, _amlarc("relayserver", "1.1.56"), MEDIUM,
              cluster_type=extensions.CONNECTED),
    Component("gateway", "Deployment", ALL, _amlarc("gateway", "1.6.14"), MEDIUM),
    Component("aml-operator", "Deployment", T_AND_B, _amlarc("aml-operator", "1.6.14"), MEDIUM),
    Component("metrics-controller-manager", "Deployment", ALL,
              _amlarc("metrics-controller-manager", "1.6.14")),
    Component("{EXT}-kube-state-metrics", "Deployment", ALL,
              "oss/kubernetes/kube-state-metrics:v2.13.0", MEDIUM),
    Component("{EXT}-prometheus-operator", "Deployment", ALL,
              "oss/prometheus/prometheus-operator:v0.76.2", MEDIUM, flag="installPromOp"),
    Component("amlarc-identity-controller", "Deployment", I_AND_B,
              _amlarc("identity-controller", "1.6.14")),
    Component("amlarc-identity-proxy", "Deployment", I_AND_B, _amlarc("identity-proxy", "1.6.14")),
    Component("azureml-fe-v2", "Deployment", I_AND_B, f"mlext/reconciler:{__version__}",
              ROUTER, registry=ROUTER_IMAGE_REGISTRY, template="router"),
    Component("inference-operator-controller-manager", "Deployment", I_AND_B,
              _amlarc("inference-operator", "1.6.14"), MEDIUM),
    Component("volcano-admission", "Deployment", T_AND_B,
              "oss/volcano/vc-webhook-manager:v1.10.0", flag="installVolcano"),
    Component("volcano-controllers", "Deployment", T_AND_B,
              "oss/volcano/vc-controller-manager:v1.10.0", MEDIUM, flag="installVolcano"),
    Component("volcano-scheduler", "Deployment", T_AND_B, "oss/volcano/vc-scheduler:v1.10.0",
              MEDIUM, flag="installVolcano"),
    Component("fluent-bit", "DaemonSet", ALL, "oss/fluent/fluent-bit:3.1.9"),
    Component("{EXT}-dcgm-exporter", "DaemonSet", ALL,
              "oss/nvidia/k8s/dcgm-exporter:3.3.8-3.6.0-ubuntu22.04", flag="installDcgmExporter"),
    Component("nvidia-device-plugin-daemonset", "DaemonSet", ALL,
              "oss/nvidia/k8s-device-plugin:v0.16.2", flag="installNvidiaDevicePlugin"),
    Component("prometheus-prom-prometheus", "StatefulSet", ALL,
              "oss/prometheus/prometheus:v2.54.1", LARGE, template="prometheus"),
    # The older generation of the documentation.
    Component("cluster-status-reporter", "Deployment", ALL,
              _amlarc("cluster-status-reporter", "1.0.0"), generation="older"),
    Component("csi-blob-controller", "Deployment", T_AND_B, "oss/kubernetes-csi/blob-csi:v1.24.3",
              MEDIUM, flag="blobCsiDriverEnabled", generation="older"),
    Component("csi-blob-node", "DaemonSet", T_AND_B, "oss/kubernetes-csi/blob-csi:v1.24.3",
              MEDIUM, flag="blobCsiDriverEnabled", generation="older"),
    Component("k8s-host-device-plugin-daemonset", "DaemonSet", ALL,
              _amlarc("k8s-host-device-plugin", "1.0.0"), generation="older"),
    Component("azureml-fe", "Deployment", I_AND_B, f"mlext/reconciler:{__version__}", ROUTER,
              registry=ROUTER_IMAGE_REGISTRY, generation="older", template="router"),
)  # fmt: skip

# Components that only one generation has: the older one names the router azureml-fe.
_REPLACED_BY_OLDER = {"azureml-fe-v2"}


def scenario_of(values: settings.Settings) -> Scenario | None:
    if values.training and values.inference:
        return Scenario.BOTH
    if values.training:
        return Scenario.TRAINING
    if values.inference:
        return Scenario.INFERENCE
    return None


def older_generation(values: settings.Settings) -> bool:
    """The extension asks for the older documentation's component set: it uses an older-only
    setting or opts in with `componentGeneration: older`. Then the older components render and
    the router is azureml-fe. A deprecated alias never does: it only sets its current setting."""
    older_settings = {s.name for s in settings.SETTINGS if s.older}
    return bool(older_settings & set(values.given)) or values["componentGeneration"] == "older"


def select(extension: extensions.Extension) -> list[Component]:
    """The components `extension` installs, in table order."""
    values = extension.settings
    scenario = scenario_of(values)
    if scenario is None:
        return []
    older = older_generation(values)
    chosen = []
    for component in COMPONENTS:
        if scenario not in component.scenarios:
            continue
        if component.cluster_type and component.cluster_type != extension.cluster_type:
            continue
        if component.flag and not values[component.flag]:
            continue
        if older and component.name in _REPLACED_BY_OLDER:
            continue
        # An older-generation component without a flag of its own renders only for an extension
        # written against the older documentation (the blob CSI ones follow their flag).
        if not older and component.generation == "older" and component.flag is None:
            continue
        chosen.append(component)
    return chosen


def image(component: Component, registry_override: str | None = None) -> str:
    """The pinned image reference; `imageRegistry` (a mirror) replaces every registry."""
    registry = registry_override or component.registry
    return f"{registry.rstrip('/')}/{component.image}"
