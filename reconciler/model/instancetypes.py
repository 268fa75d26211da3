"""Instance types (`docs/domain.md#instance-types`): compute shapes a workload's pod is given.

Holds the `InstanceType` model, the built-in `defaultinstancetype`, the semantic checks the schema
cannot express (GPU only in limits, requests <= limits) and the lookup a workload uses. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.model import documents, labels, problems, quantities

DEFAULT_NAME = "defaultinstancetype"
GPU = "nvidia.com/gpu"


@dataclass(frozen=True)
class InstanceType:
    name: str
    node_selector: Mapping[str, str] = field(default_factory=dict)
    requests: Mapping[str, str] = field(default_factory=dict)
    limits: Mapping[str, str | int] = field(default_factory=dict)
    # None for the built-in default: it is not a custom resource in the cluster.
    document: documents.Document | None = field(default=None, compare=False, repr=False)
    path: problems.FieldPath = field(default=(), compare=False, repr=False)
    source_path: str = field(default="", compare=False, repr=False)  # snapshot path of its file

    @property
    def builtin(self) -> bool:
        return self.document is None

    def resources(self) -> dict[str, Any]:
        """`{requests, limits}` as a container (and the custom resource) takes them."""
        return container_resources(self.requests, self.limits)

    @property
    def gpus(self) -> int:
        return int(self.limits.get(GPU, 0))


BUILTIN_DEFAULT = InstanceType(
    name=DEFAULT_NAME,
    requests={"cpu": "0.6", "memory": "1536Mi"},
    limits={"cpu": "0.6", "memory": "1536Mi"},
)


def from_document(
    document: documents.Document, path: problems.FieldPath, source_path: str = ""
) -> tuple[InstanceType, list[problems.Problem]]:
    """Build an instance type from a schema-valid item found at `path` in `document`."""
    item: Mapping[str, Any] = document.data
    for part in path:
        item = item[part]  # type: ignore[index]
    spec = item.get("spec") or {}
    resources = spec.get("resources") or {}
    instance_type = InstanceType(
        name=item["metadata"]["name"],
        node_selector=dict(spec.get("nodeSelector") or {}),
        requests={k: _quantity_text(v) for k, v in (resources.get("requests") or {}).items()},
        limits={
            k: (v if k == GPU else _quantity_text(v))
            for k, v in (resources.get("limits") or {}).items()
        },
        document=document,
        path=path,
        source_path=source_path,
    )
    found = _check(instance_type, document, (*path, "spec", "resources"))
    selector_path = (*path, "spec", "nodeSelector")
    for key, value in (spec.get("nodeSelector") or {}).items():
        invalid = labels.key_problem(key) or labels.value_problem(str(value))
        if invalid is not None:
            found.append(document.problem((*selector_path, str(key)), invalid))
    return instance_type, found


def _quantity_text(value: object) -> str:
    return value if isinstance(value, str) else str(value)


def _check(
    instance_type: InstanceType, document: documents.Document, where: problems.FieldPath
) -> list[problems.Problem]:
    found = []
    if GPU in instance_type.requests:
        found.append(
            document.problem(
                (*where, "requests", GPU),
                f"{GPU} goes only in limits (Kubernetes sets the request equal to the limit)",
            )
        )
    for resource in ("cpu", "memory"):
        request, limit = instance_type.requests.get(resource), instance_type.limits.get(resource)
        if request is None or limit is None:
            continue
        if quantities.parse(request) > quantities.parse(limit):
            found.append(
                document.problem(
                    (*where, "requests", resource),
                    f"request {request} is more than the limit {limit}",
                )
            )
    return found


def resolve(name: str | None, declared: Mapping[str, InstanceType]) -> InstanceType | None:
    """The instance type a workload asking for `name` gets; None when it names an unknown one.

    No name means `defaultinstancetype`: the declared one when the repo overrides it, else the
    built-in default.
    """
    wanted = name or DEFAULT_NAME
    if wanted in declared:
        return declared[wanted]
    if wanted == DEFAULT_NAME:
        return BUILTIN_DEFAULT
    return None


def known_names(declared: Mapping[str, InstanceType]) -> list[str]:
    return sorted({*declared, DEFAULT_NAME})


def container_resources(
    requests: Mapping[str, str], limits: Mapping[str, str | int]
) -> dict[str, Any]:
    """`{requests, limits}` as a container takes them; an empty part is left out (no requests
    means requests = limits in Kubernetes)."""
    found: dict[str, Any] = {}
    if requests:
        found["requests"] = dict(requests)
    if limits:
        found["limits"] = dict(limits)
    return found
