"""Field ownership between the reconciler and the router (server-side apply managed fields).

The router scales model deployments through the scale subresource, which makes it the manager of
`spec.replicas`. If the reconciler kept sending `spec.replicas` it would either conflict or,
forced, undo every scaling decision. So once another manager owns `spec.replicas` of a live
Deployment, the reconciler's applied object leaves the field out: server-side apply then keeps
the router's value (the field is not ours to remove). Pure: works on the live object's
`metadata.managedFields`.
"""

from __future__ import annotations

import copy
from typing import Any

from reconciler import objects


def owners_of_replicas(live: objects.Object) -> set[str]:
    """Managers that own `spec.replicas` of the live object."""
    owners = set()
    for entry in (live.get("metadata") or {}).get("managedFields") or []:
        fields: Any = entry.get("fieldsV1") or {}
        if "f:replicas" in (fields.get("f:spec") or {}):
            owners.add(str(entry.get("manager", "")))
    return owners


def respect_scaler(
    desired: objects.Object, live: objects.Object | None, field_manager: str
) -> objects.Object:
    """`desired` without `spec.replicas` when a manager other than ours owns it live."""
    if live is None or desired.get("kind") != "Deployment":
        return desired
    if not owners_of_replicas(live) - {field_manager}:
        return desired
    trimmed = copy.deepcopy(desired)
    trimmed.get("spec", {}).pop("replicas", None)
    return trimmed
