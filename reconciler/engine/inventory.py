"""What the reconciler owns, as pure set functions, and the safety rules prune follows.

An inventory is the set of object keys applied for one extension at one revision. What to prune
is what the last inventory has and the new one does not, restricted to objects that still carry
our ownership labels for that extension (an object someone else took over, or that only looks
like ours because it has the same labels but is not in the inventory, is never pruned). Prune
refuses to delete everything, or more than half of an extension's objects at once, unless told.
CustomResourceDefinitions are never pruned (as Helm never deletes them): deleting one deletes
every custom resource of its kind in the whole cluster, whoever made it; they are reported as
kept and leave the inventory, to be deleted by hand if that is really meant.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler import objects


@dataclass(frozen=True)
class PruneDecision:
    delete: tuple[objects.Key, ...]
    kept_unowned: tuple[objects.Key, ...]  # in the old inventory, but no longer labelled ours
    refused: str = ""  # why nothing is pruned (mass prune without permission)
    moved: tuple[objects.Key, ...] = ()  # another extension of the repo declares them now
    kept_definitions: tuple[objects.Key, ...] = ()  # CRDs: never pruned


def of(rendered: Iterable[objects.Object]) -> frozenset[objects.Key]:
    return frozenset(objects.key(obj) for obj in rendered)


def owned_by(live: Mapping[str, Any] | None, extension: str) -> bool:
    labels = ((live or {}).get("metadata") or {}).get("labels") or {}
    return bool(
        labels.get(objects.MANAGED_BY_LABEL) == objects.MANAGED_BY
        and labels.get(objects.PART_OF_LABEL) == extension
    )


def _prune_order(key: objects.Key) -> tuple[int, str, str, str]:
    rank = objects.rank({"kind": key.kind, "apiVersion": key.api_version})
    return (-rank, key.namespace, key.kind, key.name)


def plan_prune(
    previous: frozenset[objects.Key],
    desired: frozenset[objects.Key],
    live: Mapping[objects.Key, Mapping[str, Any] | None],
    extension: str,
    allow_mass_prune: bool = False,
    claimed_elsewhere: frozenset[objects.Key] = frozenset(),
) -> PruneDecision:
    """Which objects of `previous` to delete now that `desired` is what the repo renders for
    this extension; objects `claimed_elsewhere` (declared by another extension of the repo,
    such as a shared CRD) moved rather than left, and are never deleted.

    `live` holds the current object for each candidate (None: already gone)."""
    moved = tuple(sorted((previous - desired) & claimed_elsewhere))
    # Prune runs in reverse apply order: workloads before their RBAC, CRDs last.
    stale = previous - desired - claimed_elsewhere
    definitions = tuple(sorted(k for k in stale if k.kind == "CustomResourceDefinition"))
    candidates = sorted(stale - set(definitions), key=_prune_order)
    delete = tuple(
        k for k in candidates if live.get(k) is not None and owned_by(live[k], extension)
    )
    kept = tuple(
        k for k in candidates if live.get(k) is not None and not owned_by(live[k], extension)
    )
    if delete and not allow_mass_prune:
        if not desired:
            return PruneDecision(
                (), kept, "the repo renders nothing for this extension", moved, definitions
            )
        if len(delete) * 2 > len(previous):
            return PruneDecision(
                (),
                kept,
                f"{len(delete)} of {len(previous)} objects would be deleted (more than half)",
                moved,
                definitions,
            )
    return PruneDecision(delete, kept, moved=moved, kept_definitions=definitions)
