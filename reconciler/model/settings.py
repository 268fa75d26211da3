"""The extension's configuration settings: one table, and the rules over it.

The product's rules for them: `docs/domain.md#settings`.

`SETTINGS` is the single source of truth for every `--config` / `--config-protected` key: its
type, default, which scenario it applies to, and the older names it is still accepted under. The
parser turns an Extension's `spec.config` / `spec.configProtected` into a typed `Settings` value,
reporting problems at the exact key: keys match case-insensitively, booleans may be strings,
`nodeSelector` may be a map or flat `nodeSelector.key: value` entries, and older names are mapped
with a deprecation warning. `check_rules` holds the cross-field rules.

Pure: no file access. The protected PEM files are only named here; reading them is `tls`'s job.
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.model import documents, labels, problems


class Applies(enum.Enum):
    """Which workloads a setting is about; a setting for a disabled scenario has no effect."""

    TRAINING = "training"
    INFERENCE = "inference"
    BOTH = "both"


class Type(enum.Enum):
    BOOL = "bool"
    CHOICE = "choice"
    STRING = "string"
    MAP = "map"
    PATH = "path"


@dataclass(frozen=True)
class Setting:
    name: str
    type: Type
    default: Any
    applies: Applies
    choices: tuple[str, ...] = ()
    protected: bool = False
    older: bool = False  # only in the older generation of the documentation
    # What it does, for people and editors (the published schemas: `editorschemas`).
    description: str = ""


@dataclass(frozen=True)
class Alias:
    """An older name for a setting; `negate` for `reuseExistingPromOp` (= not installPromOp)."""

    name: str
    target: str
    negate: bool = False


SERVICE_TYPES = ("LoadBalancer", "NodePort", "ClusterIP")

SETTINGS: tuple[Setting, ...] = (
    Setting("enableTraining", Type.BOOL, False, Applies.TRAINING,
            description="Run training jobs (at least one of enableTraining and enableInference "
            "must be on)."),
    Setting("enableInference", Type.BOOL, False, Applies.INFERENCE,
            description="Serve online endpoints through the inference router (at least one of "
            "enableTraining and enableInference must be on)."),
    Setting("allowInsecureConnections", Type.BOOL, False, Applies.INFERENCE,
            description="Allow plain HTTP to the router (dev/test); without it inference needs "
            "sslCname and TLS material (sslSecret, or sslCertPemFile and sslKeyPemFile)."),
    Setting("inferenceRouterServiceType", Type.CHOICE, None, Applies.INFERENCE, SERVICE_TYPES,
            description="The router's Service type; required with inference."),
    Setting("internalLoadBalancerProvider", Type.CHOICE, None, Applies.INFERENCE, ("azure",),
            description="azure: ask a managed cluster for an internal load balancer."),
    Setting("sslSecret", Type.STRING, None, Applies.INFERENCE,
            description="A Secret in the release namespace with the router's TLS certificate "
            "and key."),
    Setting("sslCname", Type.STRING, None, Applies.INFERENCE,
            description="The host name the router's certificate is for (HTTPS)."),
    Setting("inferenceRouterHA", Type.BOOL, True, Applies.INFERENCE,
            description="Three router replicas instead of one."),
    Setting("nodeSelector", Type.MAP, None, Applies.BOTH,
            description="Node labels every component and workload must land on (a map, or flat "
            "nodeSelector.KEY entries)."),
    Setting("installNvidiaDevicePlugin", Type.BOOL, False, Applies.BOTH,
            description="Install the NVIDIA device plugin."),
    Setting("installPromOp", Type.BOOL, True, Applies.BOTH,
            description="Install the Prometheus operator."),
    Setting("installVolcano", Type.BOOL, True, Applies.TRAINING,
            description="Install volcano, which gang-schedules training jobs."),
    Setting("installDcgmExporter", Type.BOOL, False, Applies.BOTH,
            description="Install the DCGM exporter (GPU metrics)."),
    Setting("openshift", Type.BOOL, False, Applies.BOTH, older=True,
            description="Older documentation's setting: the cluster is OpenShift, which "
            "assigns pods' user ids itself (none is pinned)."),
    Setting("blobCsiDriverEnabled", Type.BOOL, False, Applies.TRAINING, older=True,
            description="Older documentation's setting: install the blob CSI driver."),
    Setting("logAnalyticsWS", Type.BOOL, False, Applies.BOTH, older=True,
            description="Older documentation's setting: fluent-bit ships the containers' logs "
            "(to its standard output here) instead of dropping them."),
    # This project's own: a registry mirror that replaces the registry of every pinned image.
    Setting("imageRegistry", Type.STRING, None, Applies.BOTH,
            description="A registry mirror that replaces the registry of every pinned image."),
    # This project's own: where registered models (azureml:NAME:VERSION, or name + version) are
    # fetched from: PREFIX/NAME/VERSION (e.g. a blob store URI prefix).
    Setting("registeredModelUri", Type.STRING, None, Applies.INFERENCE,
            description="Where registered models (azureml:NAME:VERSION) are fetched from: "
            "PREFIX/NAME/VERSION."),
    # This project's own: `older` opts in to the older documentation's component set
    # (cluster-status-reporter, the host device plugin, the router named azureml-fe).
    Setting("componentGeneration", Type.CHOICE, "current", Applies.BOTH, ("current", "older"),
            description="older: the older documentation's component set "
            "(cluster-status-reporter, the host device plugin, the router named azureml-fe)."),
    Setting("sslCertPemFile", Type.PATH, None, Applies.INFERENCE, protected=True,
            description="Path in the repo of the router's PEM certificate (or a secretRef)."),
    Setting("sslKeyPemFile", Type.PATH, None, Applies.INFERENCE, protected=True,
            description="Path in the repo of the router's PEM private key, SOPS-encrypted "
            "(or a secretRef); a passphrase-protected key is refused."),
)  # fmt: skip

ALIASES: tuple[Alias, ...] = (
    Alias("inferenceLoadBalancerHA", "inferenceRouterHA"),
    Alias("sslCertKeyFile", "sslKeyPemFile"),
    Alias("reuseExistingPromOp", "installPromOp", negate=True),
    Alias("volcanoScheduler.enable", "installVolcano"),
)

_BY_NAME = {s.name.lower(): s for s in SETTINGS}
_ALIAS_BY_NAME = {a.name.lower(): a for a in ALIASES}
_NODE_SELECTOR_PREFIX = "nodeselector."


@dataclass(frozen=True)
class SecretRef:
    """A protected value kept in a cluster Secret (`{secretRef: {name, key}}`) instead of the
    repo: read at apply time from the extension's release namespace."""

    name: str
    key: str

    def __str__(self) -> str:
        return f"Secret {self.name}, key {self.key}"


@dataclass(frozen=True)
class Settings:
    """An extension's settings after parsing: every value typed, every default filled in."""

    values: Mapping[str, Any]
    # Where each explicitly given setting was written (field path in the document).
    given: Mapping[str, problems.FieldPath] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    @property
    def training(self) -> bool:
        return bool(self.values["enableTraining"])

    @property
    def inference(self) -> bool:
        return bool(self.values["enableInference"])

    @property
    def https(self) -> bool:
        """Inference endpoints are served over TLS (the default)."""
        return self.inference and not self.values["allowInsecureConnections"]

    @property
    def node_selector(self) -> dict[str, str]:
        return dict(self.values["nodeSelector"] or {})


def defaults() -> dict[str, Any]:
    return {s.name: s.default for s in SETTINGS}


def parse(
    config: Mapping[str, Any],
    protected: Mapping[str, Any],
    document: documents.Document,
    config_path: problems.FieldPath = ("spec", "config"),
    protected_path: problems.FieldPath = ("spec", "configProtected"),
) -> tuple[Settings, list[problems.Problem]]:
    """Parse `spec.config` and `spec.configProtected` into `Settings`, collecting problems."""
    parser = _Parser(document)
    for key, value, path in _flatten(config, config_path):
        parser.take(key, value, path, protected_section=False)
    for key, value, path in _flatten(protected, protected_path, flatten_maps=False):
        parser.take(key, value, path, protected_section=True)
    return Settings(parser.values, parser.given), parser.found


def _flatten(
    section: Mapping[str, Any], path: problems.FieldPath, flatten_maps: bool = True
) -> list[tuple[str, Any, problems.FieldPath]]:
    """Nested maps become dotted keys (`volcanoScheduler: {enable: x}` becomes
    `volcanoScheduler.enable`), except nodeSelector, whose map is its value."""
    flat: list[tuple[str, Any, problems.FieldPath]] = []
    for key, value in section.items():
        key_text = str(key)
        child = (*path, key_text)
        if flatten_maps and isinstance(value, Mapping) and key_text.lower() != "nodeselector":
            for sub_key, sub_value, sub_path in _flatten(value, child):
                flat.append((f"{key_text}.{sub_key}", sub_value, sub_path))
        else:
            flat.append((key_text, value, child))
    return flat


class _Parser:
    def __init__(self, document: documents.Document) -> None:
        self.document = document
        self.values = defaults()
        self.given: dict[str, problems.FieldPath] = {}
        self.found: list[problems.Problem] = []
        self._node_selector: dict[str, str] = {}

    def error(self, path: problems.FieldPath, message: str) -> None:
        self.found.append(self.document.problem(path, message))

    def warn(self, path: problems.FieldPath, message: str) -> None:
        self.found.append(self.document.problem(path, message, problems.Severity.WARNING))

    def take(self, key: str, value: Any, path: problems.FieldPath, protected_section: bool) -> None:
        lower = key.lower()
        if lower.startswith(_NODE_SELECTOR_PREFIX):
            self._take_node_selector({key[len(_NODE_SELECTOR_PREFIX) :]: value}, path, flat=True)
            return
        negate = False
        setting = _BY_NAME.get(lower)
        if setting is None and lower in _ALIAS_BY_NAME:
            alias = _ALIAS_BY_NAME[lower]
            setting, negate = _BY_NAME[alias.target.lower()], alias.negate
            meaning = f"not {setting.name}" if negate else setting.name
            self.warn(path, f"deprecated name from the older documentation: use {meaning}")
        if setting is None:
            names = [s.name for s in SETTINGS] + [a.name for a in ALIASES]
            self.error(path, f"unknown setting{problems.did_you_mean(key, names)}")
            return
        if setting.protected != protected_section:
            where = "spec.configProtected" if setting.protected else "spec.config"
            why = " so that it is never printed" if setting.protected else ""
            self.error(path, f"{setting.name} belongs under {where}{why}")
            return
        if setting.name in self.given:
            earlier = problems.format_field_path(self.given[setting.name])
            self.error(path, f"{setting.name} is given twice (also as {earlier})")
            return
        parsed = self._convert(setting, value, path)
        if parsed is _INVALID:
            return
        if setting.type is Type.MAP:
            return  # _convert filled in the node selector
        self.values[setting.name] = (not parsed) if negate else parsed
        self.given[setting.name] = path

    def _convert(self, setting: Setting, value: Any, path: problems.FieldPath) -> Any:
        if setting.type is Type.BOOL:
            parsed_bool = parse_bool(value)
            if parsed_bool is None:
                self.error(path, f"must be true or false (got {value!r})")
                return _INVALID
            return parsed_bool
        if setting.type is Type.CHOICE:
            by_lower = {c.lower(): c for c in setting.choices}
            if not isinstance(value, str) or value.lower() not in by_lower:
                hint = problems.did_you_mean(str(value), setting.choices)
                self.error(
                    path, f"must be one of {', '.join(setting.choices)} (got {value!r}){hint}"
                )
                return _INVALID
            return by_lower[value.lower()]
        if setting.type is Type.PATH and isinstance(value, Mapping) and "secretRef" in value:
            ref = value["secretRef"]
            if not isinstance(ref, Mapping) or not ref.get("name") or not ref.get("key"):
                self.error(path, "secretRef needs a name and a key")
                return _INVALID
            return SecretRef(str(ref["name"]), str(ref["key"]))
        if setting.type in (Type.STRING, Type.PATH):
            if not isinstance(value, str) or not value.strip():
                self.error(path, "must be a non-empty string")
                return _INVALID
            if setting.type is Type.PATH and looks_like_key_material(value):
                self.error(path, KEY_MATERIAL_MESSAGE)
                return _INVALID
            return value.strip()
        if not isinstance(value, Mapping):
            self.error(path, "must be a map of node label to value")
            return _INVALID
        self._take_node_selector(value, path, flat=False)
        return None

    def _take_node_selector(
        self, entries: Mapping[Any, Any], path: problems.FieldPath, flat: bool
    ) -> None:
        for label, label_value in entries.items():
            where = path if flat else (*path, str(label))
            if not str(label) or isinstance(label_value, Mapping | list) or label_value is None:
                self.error(where, "a node selector entry must be a label and a plain value")
                continue
            text = _label_text(label_value)
            invalid = labels.key_problem(str(label)) or labels.value_problem(text)
            if invalid is not None:
                self.error(where, invalid)
                continue
            if str(label) in self._node_selector and self._node_selector[str(label)] != text:
                self.error(where, f"node selector label {label} is given twice")
                continue
            self._node_selector[str(label)] = text
        self.values["nodeSelector"] = dict(sorted(self._node_selector.items()))
        self.given.setdefault("nodeSelector", path)


KEY_MATERIAL_MESSAGE = (
    "holds key material, not a path (the value is not shown): put the PEM in a file in the "
    "repo, encrypted with SOPS, and give its path, or keep it in a cluster Secret and give "
    "{secretRef: {name, key}}"
)
# Longer than any path a repo holds (Linux's PATH_MAX is 4096).
_LONGEST_PATH = 4096


def looks_like_key_material(value: str) -> bool:
    """Whether a value given where a file path belongs is the secret itself (a pasted PEM, or a
    key's DER body in base64), judged by its shape so that it is refused without being echoed."""
    text = value.strip()
    return "-----BEGIN" in text or "\n" in text or len(text) > _LONGEST_PATH or _is_der_base64(text)


def _is_der_base64(text: str) -> bool:
    """Base64 of an ASN.1 SEQUENCE (every key and certificate in DER starts with one); a path
    of letters, digits and slashes that happens to decode is refused only if it decodes to that."""
    if len(text) < 64:
        return False
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return decoded[:1] == b"\x30"


class _Invalid:
    pass


_INVALID = _Invalid()


def parse_bool(value: Any) -> bool | None:
    """YAML booleans and the strings true/false in any case; None for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def _label_text(value: Any) -> str:
    """Node label values are strings; YAML may have read `true` or `1` as something else."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def check_rules(
    settings: Settings,
    cluster_type: str,
    document: documents.Document,
    config_path: problems.FieldPath = ("spec", "config"),
) -> list[problems.Problem]:
    """The cross-field rules of `docs/domain.md#settings`, each reported at the key it is about."""
    found: list[problems.Problem] = []

    def where(name: str) -> problems.FieldPath:
        return settings.given.get(name, config_path)

    def error(name: str, message: str) -> None:
        found.append(document.problem(where(name), message))

    if not settings.training and not settings.inference:
        found.append(
            document.problem(
                config_path, "at least one of enableTraining and enableInference must be true"
            )
        )
    if settings.inference:
        if settings["inferenceRouterServiceType"] is None:
            found.append(
                document.problem(
                    (*config_path, "inferenceRouterServiceType"),
                    f"required when enableInference is true (one of {', '.join(SERVICE_TYPES)})",
                )
            )
        if settings.https:
            found.extend(_tls_rules(settings, document, config_path))
        provider = settings["internalLoadBalancerProvider"]
        if provider is not None and cluster_type != "managedClusters":
            error(
                "internalLoadBalancerProvider",
                f"only for clusterType managedClusters (this one is {cluster_type})",
            )
        elif provider is not None and settings["inferenceRouterServiceType"] not in (
            None,
            "LoadBalancer",
        ):
            error(
                "internalLoadBalancerProvider",
                "only with inferenceRouterServiceType LoadBalancer "
                f"(this one is {settings['inferenceRouterServiceType']})",
            )
    for setting in SETTINGS:
        if setting.name not in settings.given:
            continue
        off = (setting.applies is Applies.TRAINING and not settings.training) or (
            setting.applies is Applies.INFERENCE and not settings.inference
        )
        if off and setting.name not in ("enableTraining", "enableInference"):
            found.append(
                document.problem(
                    where(setting.name),
                    f"has no effect: it applies to {setting.applies.value}, "
                    f"which this extension does not enable",
                    problems.Severity.WARNING,
                )
            )
    return found


def _tls_rules(
    settings: Settings, document: documents.Document, config_path: problems.FieldPath
) -> list[problems.Problem]:
    found: list[problems.Problem] = []
    https_needs = "HTTPS is in use (allowInsecureConnections is false)"
    if settings["sslCname"] is None:
        found.append(
            document.problem((*config_path, "sslCname"), f"required because {https_needs}")
        )
    cert, key = settings["sslCertPemFile"], settings["sslKeyPemFile"]
    if settings["sslSecret"] is None and cert is None and key is None:
        found.append(
            document.problem(
                config_path,
                f"{https_needs}: give sslSecret, or sslCertPemFile and sslKeyPemFile "
                "under spec.configProtected (or set allowInsecureConnections: true for dev/test)",
            )
        )
    elif (cert is None) != (key is None):
        present, missing = ("sslCertPemFile", "sslKeyPemFile")[:: 1 if cert else -1]
        found.append(
            document.problem(
                settings.given[present], f"{missing} is needed too: the two PEM files go together"
            )
        )
    return found
