"""The reconciler's in-cluster record of one extension: an `ExtensionStatus` custom resource.

One cluster-scoped object per extension, named like it, readable with `kubectl get mlext`. Its
`spec` says what was asked (never a protected setting) and which source owns the extension
(`spec.owner`, see `owners`); its `status` holds the provisioning state with its reasons, a
`Ready` condition, the last applied and attempted revisions, the validation problems of a
rejected revision, and the inventory: every object the reconciler applied for the extension,
which is what prune trusts.

Pure builders only (the CRD, the record, a complete status, the inventory and the owner read
back, Events); the executor writes them through `kube`. A status is always written whole,
carrying forward what did not change, because server-side apply removes fields the manager
stops sending.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler import objects
from reconciler.engine import owners
from reconciler.model import extensions
from reconciler.render import templating

API_VERSION = "gitops.mlext.io/v1alpha1"
KIND = "ExtensionStatus"
CRD_NAME = "extensionstatuses.gitops.mlext.io"
EVENT_NAMESPACE = "default"  # events about cluster-scoped objects live there
_MAX_MESSAGE = 2000  # conditions and events stay small; the full list is in `reasons`

PENDING, SUCCEEDED, FAILED = "Pending", "Succeeded", "Failed"


@dataclass(frozen=True)
class Outcome:
    """How a reconciliation went: `state` with a CamelCase `reason` and the details."""

    state: str  # Pending | Succeeded | Failed
    reason: str  # Succeeded, Progressing, ValidationFailed, ApplyFailed, PruneFailed, ...
    reasons: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def message(self) -> str:
        if not self.reasons and not self.problems:
            return "all components are healthy" if self.state == SUCCEEDED else self.reason
        text = "; ".join(self.reasons or self.problems)
        return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def crd() -> objects.Object:
    """The CustomResourceDefinition of the record."""
    (definition,) = templating.static_manifest("crds/extensionstatus.yaml")
    return definition


def ref(name: str) -> objects.Object:
    """The record's identity, for reads and deletes."""
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name}}


def record(extension: extensions.Extension, origin: str) -> objects.Object:
    """The record's desired spec for an extension of the repo at `origin`, which owns it
    (`spec.owner`, its `owners.identity`; `spec.source`, the origin as given)."""
    spec: dict[str, Any] = {
        "source": owners.shown(origin),
        "owner": owners.identity(origin),
        "clusterType": extension.cluster_type,
        "releaseNamespace": extension.release_namespace,
    }
    if extension.manifest is not None:
        spec["sourceFile"] = extension.manifest.path
    obj = ref(extension.name)
    obj["metadata"]["labels"] = {
        objects.MANAGED_BY_LABEL: objects.MANAGED_BY,
        objects.PART_OF_LABEL: extension.name,
    }
    obj["spec"] = spec
    return obj


def inventory_of(live: Mapping[str, Any] | None) -> frozenset[objects.Key]:
    """The keys a live record lists (empty for no record); a record written before the
    inventory's ids lists them as `entries`, one object per key."""
    inventory = ((live or {}).get("status") or {}).get("inventory") or {}
    if "ids" in inventory:
        return frozenset(_key_of(text) for text in inventory["ids"] or [])
    return frozenset(
        objects.Key(e["apiVersion"], e["kind"], e.get("namespace", ""), e["name"])
        for e in inventory.get("entries") or []
    )


def inventory_id(key: objects.Key) -> str:
    """How the inventory lists `key`: `apps/v1 Deployment ns/name`, or `v1 Namespace name`
    for a cluster-scoped object. One string, not an object per key: the API server writes a
    list of strings several times faster than a list of small objects, and the record is
    written at every reconcile. Unambiguous: no name, kind or apiVersion holds a space, no
    name a slash."""
    where = f"{key.namespace}/{key.name}" if key.namespace else key.name
    return f"{key.api_version} {key.kind} {where}"


def _key_of(text: str) -> objects.Key:
    api_version, kind, where = text.split(" ")
    namespace, _, name = where.rpartition("/")
    return objects.Key(api_version, kind, namespace, name)


def _entry(key: objects.Key) -> dict[str, str]:
    entry = {"apiVersion": key.api_version, "kind": key.kind, "name": key.name}
    if key.namespace:
        entry["namespace"] = key.namespace
    return entry


def _ready_condition(
    outcome: Outcome, previous: Iterable[Mapping[str, Any]], now: str
) -> dict[str, str]:
    status = {SUCCEEDED: "True", FAILED: "False"}.get(outcome.state, "Unknown")
    before = next((c for c in previous if c.get("type") == "Ready"), None)
    # The transition time moves only when the condition's status does (Kubernetes convention).
    since = (
        (before or {}).get("lastTransitionTime") if (before or {}).get("status") == status else None
    )
    return {
        "type": "Ready",
        "status": status,
        "reason": outcome.reason,
        "message": outcome.message,
        "lastTransitionTime": since or now,
    }


def status(
    name: str,
    previous: Mapping[str, Any] | None,
    now: str,
    *,
    outcome: Outcome | None = None,
    inventory: Iterable[objects.Key] | None = None,
    applied_revision: str | None = None,
    attempted_revision: str | None = None,
    drift: Iterable[objects.Key] | None = None,
) -> objects.Object:
    """The record with a complete status: what is given replaces, the rest is carried forward
    from `previous` (the live record, or None)."""
    before: dict[str, Any] = dict((previous or {}).get("status") or {})
    body = dict(before)
    if outcome is not None:
        body["provisioningState"] = outcome.state
        body["reasons"] = list(outcome.reasons)
        body["problems"] = list(outcome.problems)
        body["conditions"] = [_ready_condition(outcome, before.get("conditions") or [], now)]
    if inventory is None and "entries" in (before.get("inventory") or {}):
        inventory = inventory_of(previous)  # written as ids from now on
    if inventory is not None:
        keys = sorted(set(inventory))
        body["inventory"] = {"count": len(keys), "ids": [inventory_id(k) for k in keys]}
    if drift is not None:
        drifted = sorted(set(drift))
        if not drifted:
            body.pop("drift", None)
        elif [_entry(k) for k in drifted] != (before.get("drift") or {}).get("entries"):
            body["drift"] = {
                "count": len(drifted),
                "detectedAt": now,
                "entries": [_entry(k) for k in drifted],
            }
    if applied_revision is not None:
        body["lastAppliedRevision"] = applied_revision
    if attempted_revision is not None:
        body["lastAttemptedRevision"] = attempted_revision
    obj = ref(name)
    obj["status"] = body
    return obj


def event(
    record_live: Mapping[str, Any], reason: str, message: str, warning: bool, now: str
) -> objects.Object:
    """A core/v1 Event about a record (`kubectl describe mlext NAME` lists them)."""
    metadata = record_live.get("metadata") or {}
    name = str(metadata.get("name", ""))
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{name}.", "namespace": EVENT_NAMESPACE},
        "involvedObject": {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": name,
            "uid": metadata.get("uid", ""),
        },
        "reason": reason,
        "message": message if len(message) <= _MAX_MESSAGE else message[:_MAX_MESSAGE] + "...",
        "type": "Warning" if warning else "Normal",
        "source": {"component": objects.MANAGED_BY},
        "reportingComponent": objects.MANAGED_BY,
        "reportingInstance": objects.MANAGED_BY,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


def summary(live: Mapping[str, Any]) -> dict[str, Any]:
    """What `reconciler status` and `extension show|list` print for one record."""
    body = live.get("status") or {}
    return {
        "name": (live.get("metadata") or {}).get("name", ""),
        "provisioningState": body.get("provisioningState", PENDING),
        "lastAppliedRevision": body.get("lastAppliedRevision", ""),
        "lastAttemptedRevision": body.get("lastAttemptedRevision", ""),
        "objects": (body.get("inventory") or {}).get("count", 0),
        "drifted": (body.get("drift") or {}).get("count", 0),
        "suspended": suspended(live),
        "owner": owners.identity(owner) if (owner := owner_of(live)) else "",
        "reasons": list(body.get("reasons") or body.get("problems") or []),
    }


def suspended(live: Mapping[str, Any] | None) -> bool:
    """Whether `reconciler extension suspend` holds the extension (see the CRD's spec.suspend)."""
    return bool(((live or {}).get("spec") or {}).get("suspend"))


def drifted(live: Mapping[str, Any] | None) -> int:
    """How many owned objects the last drift report found changed."""
    return int((((live or {}).get("status") or {}).get("drift") or {}).get("count", 0))


def source_of(live: Mapping[str, Any]) -> str:
    """The repo a live record's extension is declared in, as its origin spells it."""
    return str((live.get("spec") or {}).get("source", ""))


def owner_of(live: Mapping[str, Any] | None) -> str | None:
    """The source that owns a live record's extension: `spec.owner`; for a record written
    before owners were kept, the source that applied it last (`spec.source`), which becomes
    `spec.owner` at its next apply; "" when the record names neither, None for no record."""
    if live is None:
        return None
    spec = live.get("spec") or {}
    return str(spec.get("owner") or spec.get("source") or "")


def claim(name: str, live: Mapping[str, Any] | None, origin: str, adopt: bool) -> owners.Claim:
    """Whether the source at `origin` may reconcile extension `name` whose record is `live`."""
    shown = source_of(live) if live is not None else ""
    return owners.claim(name, origin, owner_of(live), shown, adopt=adopt)
