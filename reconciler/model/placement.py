"""Where a workload's pods run and what they get: instance type resolution and node selectors.

A job's or deployment's pod gets its instance type's requests / limits and nodeSelector, merged
with the extension's nodeSelector. Two selectors that want different values for the same label
can never be satisfied: that is a problem naming both places. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reconciler.model import extensions, instancetypes, problems, workloads


@dataclass(frozen=True)
class Placement:
    instance_type: instancetypes.InstanceType
    node_selector: dict[str, str]

    def resources(self) -> dict[str, Any]:
        """The container's `resources`: the instance type's."""
        return self.instance_type.resources()


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
    return Placement(instance_type, dict(sorted(selector.items())))


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
