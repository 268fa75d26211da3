"""Where a workload's pods run and what they get: instance type resolution and node selectors.

A job's or deployment's pod gets its instance type's requests / limits and nodeSelector, merged
with the extension's nodeSelector. Resources the workload gives itself (a deployment's
`resources.requests` / `resources.limits`) override the same keys of its instance type's, key by
key; the instance type still gives the nodeSelector and every key the workload leaves out (with no
`instance_type`, that is `defaultinstancetype`). Two selectors that want different values for the
same label can never be satisfied, nor can a request above its limit once merged: each is a
problem naming the places involved. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reconciler.model import extensions, instancetypes, problems, quantities, workloads


@dataclass(frozen=True)
class Placement:
    instance_type: instancetypes.InstanceType
    node_selector: dict[str, str]
    requests: dict[str, str] = field(default_factory=dict)
    limits: dict[str, str | int] = field(default_factory=dict)

    def resources(self) -> dict[str, Any]:
        """The container's `resources`: the instance type's, with the workload's own keys over
        them."""
        return instancetypes.container_resources(self.requests, self.limits)


def merged_resources(
    workload: workloads.Workload, instance_type: instancetypes.InstanceType
) -> tuple[dict[str, str], dict[str, str | int]]:
    """(requests, limits): the instance type's, each key the workload gives replaced by its."""
    requests = {**instance_type.requests, **workload.requests}
    limits = {**instance_type.limits, **workload.limits}
    return requests, limits


def resource_problems(
    workload: workloads.Workload,
    instance_type: instancetypes.InstanceType,
) -> list[problems.Problem]:
    """A request above its limit once the workload's resources are merged over the instance
    type's (the case where one side comes from each: the workload's own pairs are checked when
    it is built)."""
    requests, limits = merged_resources(workload, instance_type)
    found = []
    for name in ("cpu", "memory"):
        request, limit = requests.get(name), limits.get(name)
        if (
            request is None
            or limit is None
            or (name in workload.requests) == (name in workload.limits)
        ):
            continue
        if quantities.parse(request) <= quantities.parse(limit):
            continue
        if name in workload.requests:
            path: problems.FieldPath = ("resources", "requests", name)
            message = (
                f"request {request} is more than the limit {limit} of instance type "
                f"{instance_type.name!r}: give resources.limits.{name} too"
            )
        else:
            path = ("resources", "limits", name)
            message = (
                f"limit {limit} is less than the request {request} of instance type "
                f"{instance_type.name!r}: give resources.requests.{name} too"
            )
        found.append(workload.manifest.problem(path, message))
    return found


def conflicts(
    extension: extensions.Extension, instance_type: instancetypes.InstanceType
) -> list[tuple[str, str, str]]:
    """(label, extension's value, instance type's value) for every label they disagree on."""
    ours = extension.settings.node_selector
    return [
        (label, ours[label], value)
        for label, value in sorted(instance_type.node_selector.items())
        if label in ours and ours[label] != value
    ]


def place(
    workload: workloads.Workload,
    extension: extensions.Extension,
    declared: dict[str, instancetypes.InstanceType],
) -> Placement:
    """The placement of a valid workload (its instance type exists, selectors agree)."""
    instance_type = instancetypes.resolve(workload.instance_type, declared)
    if instance_type is None:
        raise ValueError(f"unknown instance type {workload.instance_type!r}: validate first")
    selector = {**extension.settings.node_selector, **instance_type.node_selector}
    requests, limits = merged_resources(workload, instance_type)
    return Placement(instance_type, dict(sorted(selector.items())), requests, limits)


def conflict_problem(
    workload: workloads.Workload,
    extension: extensions.Extension,
    instance_type: instancetypes.InstanceType,
    path: problems.FieldPath,
) -> problems.Problem | None:
    found = conflicts(extension, instance_type)
    if not found:
        return None
    label, ext_value, it_value = found[0]
    where_it = (
        instance_type.document.problem((*instance_type.path, "spec", "nodeSelector", label), "")
        if instance_type.document
        else None
    )
    where_ext = (
        extension.manifest.document.problem(
            extension.settings.given.get("nodeSelector", ("spec", "config")), ""
        )
        if extension.manifest
        else None
    )
    it_at = f"{where_it.file}:{where_it.line}" if where_it else "built in"
    ext_at = f"{where_ext.file}:{where_ext.line}" if where_ext else "its settings"
    return workload.manifest.problem(
        path,
        f"node selector label {label!r} conflicts: instance type {instance_type.name!r} wants "
        f"{it_value!r} ({it_at}), extension {extension.name!r} wants {ext_value!r} ({ext_at})",
    )
