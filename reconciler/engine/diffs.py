"""Comparing a desired object with another version of it: normalisation and field-level diffs.

The shared core of `plan` (desired vs the server's dry-run of it), `diff` between two git
revisions, and the PR comment. Normalisation drops what the server owns or what changes without
meaning anything (managedFields, status, resourceVersion, uid, timestamps, the source-revision
annotation, which moves with every commit, the fingerprint, derived from the rest); Secret values
are compared but never shown, not even hashed: a changed Secret names the keys that changed.
Pure and deterministic: `changes(a, a)` is always empty.
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass
from typing import Any

from reconciler import objects
from reconciler.engine import fingerprint

_SERVER_METADATA = (
    "managedFields",
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)
_SECRET_FIELDS = ("data", "stringData")
# Annotations that say nothing about the desired state: ours that moves with every commit, and
# ones other tools and controllers write (the Deployment controller's rollout revision).
_IGNORED_ANNOTATIONS = (
    objects.SOURCE_REVISION_ANNOTATION,
    fingerprint.ANNOTATION,  # derived from the rest of the object
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision",
)
CHANGED = "<redacted: changed>"


@dataclass(frozen=True)
class Change:
    """One field that differs: its dotted path and both values (None: absent)."""

    path: str
    old: Any
    new: Any


def normalize(obj: objects.Object) -> objects.Object:
    """A copy without server-owned and meaningless fields (Secret values untouched: use
    `masked_pair` before showing anything)."""
    clean = copy.deepcopy(obj)
    clean.pop("status", None)
    metadata = clean.get("metadata") or {}
    for field in _SERVER_METADATA:
        metadata.pop(field, None)
    annotations = metadata.get("annotations") or {}
    for annotation in _IGNORED_ANNOTATIONS:
        annotations.pop(annotation, None)
    if "annotations" in metadata and not annotations:
        metadata.pop("annotations")
    # One top-level order for both sides, so a diff never shows fields merely moving.
    first: objects.Object = {
        k: clean.pop(k) for k in ("apiVersion", "kind", "metadata") if k in clean
    }
    return {**first, **dict(sorted(clean.items()))}


def masked_pair(
    old: objects.Object | None, new: objects.Object | None
) -> tuple[objects.Object | None, objects.Object | None]:
    """Normalised copies safe to show: every Secret value replaced by a marker, the new side's
    marker saying `changed` where the value differs, so a diff shows which keys changed and
    nothing of what they hold (not even a hash: short secrets could be guessed from one)."""
    before = normalize(old) if old else None
    after = normalize(new) if new else None
    changed = set(changed_secret_keys(old, new))
    for side, marker in ((before, objects.REDACTED), (after, CHANGED)):
        if side is None or not objects.is_secret(side):
            continue
        for field in _SECRET_FIELDS:
            value = side.get(field)
            if isinstance(value, dict):
                side[field] = {k: marker if k in changed else objects.REDACTED for k in value}
            elif value is not None:
                # Not a map (a malformed template): still never shown, only whether it changed.
                side[field] = marker if field in changed else objects.REDACTED
    return before, after


def changes(old: objects.Object | None, new: objects.Object | None) -> list[Change]:
    """Every leaf field that differs, sorted by path (Secret values masked)."""
    before, after = masked_pair(old, new)
    found: list[Change] = []
    _walk(before or {}, after or {}, "", found)
    return sorted(found, key=lambda c: c.path)


def _walk(old: Any, new: Any, path: str, found: list[Change]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            child = f"{path}.{key}" if path else str(key)
            _walk(old.get(key), new.get(key), child, found)
        return
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            _walk(a, b, f"{path}[{index}]", found)
        return
    if old != new:
        found.append(Change(path, old, new))


def unified(old: objects.Object | None, new: objects.Object | None, name: str = "") -> str:
    """A unified diff of the normalised objects as YAML, Secret values masked."""
    masked_old, masked_new = masked_pair(old, new)
    before = objects.to_yaml([masked_old]).splitlines(keepends=True) if masked_old else []
    after = objects.to_yaml([masked_new]).splitlines(keepends=True) if masked_new else []
    label = name or str(objects.key(new or old or {}))
    return "".join(difflib.unified_diff(before, after, f"a/{label}", f"b/{label}"))


def changed_secret_keys(old: objects.Object | None, new: objects.Object | None) -> list[str]:
    """Names of the Secret keys whose value was added, removed or changed (never the values)."""
    keys: set[str] = set()
    if not objects.is_secret(old or new or {}):
        return []
    for field in _SECRET_FIELDS:
        before = (old or {}).get(field)
        after = (new or {}).get(field)
        if isinstance(before or {}, dict) and isinstance(after or {}, dict):
            before, after = before or {}, after or {}
            keys |= {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
        elif before != after:
            keys.add(field)  # a field that is not a map changed as a whole
    return sorted(keys)
