"""Kubernetes objects as plain data: identity, apply order, Secret redaction, serialisation.

Rendered objects are dicts exactly as the API server would receive them. This module holds what
every later stage needs to say about such a dict without talking to a cluster: its key, where it
goes in the apply order (kind rank, lightkube-style), how to print it without its secrets, and the
byte-stable YAML / JSON forms `render`, `diff` and `plan` print.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import yaml

Object = dict[str, Any]

REDACTED = "<redacted>"

# What ties an object to the reconciler and its extension (inventory and prune trust these), and
# where it came from. One place: render, workloads, auth, inventory and diffs all use them.
MANAGED_BY = "mlext-reconciler"
NAME_LABEL = "app.kubernetes.io/name"
PART_OF_LABEL = "app.kubernetes.io/part-of"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
COMPONENT_LABEL = "app.kubernetes.io/component"
SOURCE_FILE_ANNOTATION = "gitops.mlext.io/source-file"
SOURCE_REVISION_ANNOTATION = "gitops.mlext.io/source-revision"


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Multi-line strings (an embedded config file such as router.yaml) as `|` blocks, so they
    read as the file they are and a diff of them is line by line."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value.rstrip("\n") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)
_YAML_DUMPER = _Dumper

# Apply order: what others depend on first. Prune runs in reverse. Unknown kinds (custom
# resources) go last, after their CRDs are established.
KIND_RANK: Mapping[str, int] = {
    kind: rank
    for rank, kind in enumerate(
        [
            "CustomResourceDefinition",
            "Namespace",
            "PriorityClass",
            "ResourceQuota",
            "LimitRange",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Secret",
            "ConfigMap",
            "PersistentVolumeClaim",
            "Deployment",
            "DaemonSet",
            "StatefulSet",
            "Job",
            "Service",
            "PodDisruptionBudget",
        ]
    )
}
_LAST = len(KIND_RANK)


class Key(NamedTuple):
    """What identifies an object in a cluster. A named tuple: a tick builds, hashes and
    compares keys for every object several times, and a tuple does that in C."""

    api_version: str
    kind: str
    namespace: str
    name: str

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0] if "/" in self.api_version else ""

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind}/{where}{self.name}"


def key(obj: Mapping[str, Any]) -> Key:
    metadata = obj.get("metadata") or {}
    return Key(
        str(obj.get("apiVersion", "")),
        str(obj.get("kind", "")),
        str(metadata.get("namespace", "")),
        str(metadata.get("name", "")),
    )


def reference(k: Key) -> Object:
    """The smallest object naming `k`: enough for a read or a delete."""
    metadata = {"name": k.name, "namespace": k.namespace} if k.namespace else {"name": k.name}
    return {"apiVersion": k.api_version, "kind": k.kind, "metadata": metadata}


def rank(obj: Mapping[str, Any]) -> int:
    """Apply position of the object's kind; core kinds by the table, custom kinds last."""
    kind = str(obj.get("kind", ""))
    api_version = str(obj.get("apiVersion", ""))
    if kind == "Job" and api_version != "batch/v1":
        return _LAST  # a volcano Job is a custom resource
    return KIND_RANK.get(kind, _LAST)


def sort_key(obj: Mapping[str, Any]) -> tuple[int, str, str, str]:
    k = key(obj)
    return (rank(obj), k.namespace, k.kind, k.name)


def in_apply_order(objs: Iterable[Object]) -> list[Object]:
    return sorted(objs, key=sort_key)


def is_secret(obj: Mapping[str, Any]) -> bool:
    return obj.get("kind") == "Secret" and obj.get("apiVersion") == "v1"


def redact(obj: Object) -> Object:
    """A copy safe to print: every Secret value replaced (not valid base64, so a redacted
    object can never be applied by mistake)."""
    if not is_secret(obj):
        return obj
    safe = copy.deepcopy(obj)
    for field in ("data", "stringData"):
        if isinstance(safe.get(field), dict):
            safe[field] = {name: REDACTED for name in safe[field]}
    return safe


def to_yaml(objs: Iterable[Object]) -> str:
    """A multi-document YAML stream, keys in the order the templates wrote them."""
    return yaml.dump_all(
        list(objs),
        Dumper=_YAML_DUMPER,
        sort_keys=False,
        default_flow_style=False,
        explicit_start=True,
        width=100,
    )


def to_json(objs: Iterable[Object]) -> str:
    """One `List` like `kubectl get -o json`."""
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objs)}, indent=2) + "\n"


def file_name(index: int, obj: Mapping[str, Any]) -> str:
    """`--out-dir` file name: apply position, kind, namespace and name."""
    k = key(obj)
    parts = [f"{index:03d}", k.kind.lower(), *([k.namespace] if k.namespace else []), k.name]
    return "-".join(parts).replace(":", "_") + ".yaml"
