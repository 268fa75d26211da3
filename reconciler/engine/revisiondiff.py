"""What changed between two revisions of a manifests repo, object by object, with no cluster.

Sits on `revision`: `between` loads and renders two snapshots (`gitsnapshot` for a commit,
`source.DirectorySnapshot` for the work tree), and `compare` turns the two object
lists into one `plans.Plan` per extension (grouped by the part-of label), built by `plans.build`
with the base objects standing in for the live ones, so `diff` shows exactly what `plan` shows.
The two revisions share a `reuse.Reuse`: files and render units unchanged between them are
parsed and rendered once.
An endpoint whose traffic split changed also gets one line of its own (`traffic`: `mnist:
blue 100 -> 90, green 0 -> 10`), shown above the object diffs: the review of a rollout reads it
first. The lines are read off the plans themselves (the routers' config ConfigMaps before and
after), so `diff --cluster` and `plan`, whose "before" is the live cluster, print the same
summary from the same code. The result is data: `reconciler.printers.revisiondiff` renders it
(text, JSON, the PR comment's markdown), and Secret values never reach it unmasked (every diff
comes from `diffs.unified`). `reconciler.cli.diff` is the command on top.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from reconciler import objects, source
from reconciler.engine import plans, revision
from reconciler.engine import reuse as reusing
from reconciler.model import decryption, problems

NO_EXTENSION = "(no extension)"
# The router's config ConfigMap (templates/components/router.yaml.j2): its label and file.
ROUTER_CONFIG = "router-config"
ROUTER_CONFIG_KEY = "router.yaml"


@dataclass(frozen=True)
class ExtensionDiff:
    """The changes to one extension's objects (`NO_EXTENSION` for unlabelled objects)."""

    name: str
    plan: plans.Plan


@dataclass(frozen=True)
class RevisionDiff:
    """The outcome of comparing two revisions. `problems` are the head's validation errors:
    when there are any, nothing was compared."""

    base: str
    head: str
    extensions: tuple[ExtensionDiff, ...] = ()
    problems: tuple[problems.Problem, ...] = ()
    notes: tuple[str, ...] = ()
    traffic: tuple[str, ...] = ()  # one line per endpoint whose split changed

    @property
    def has_changes(self) -> bool:
        return any(e.plan.has_changes for e in self.extensions)

    @property
    def failed(self) -> bool:
        return bool(self.problems)

    @property
    def exit_code(self) -> int:
        """0 no changes, 1 changes, 2 the head is invalid."""
        return 2 if self.failed else 1 if self.has_changes else 0


def _extension(obj: objects.Object) -> str:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return str(labels.get(objects.PART_OF_LABEL) or NO_EXTENSION)


def compare(
    base: Iterable[objects.Object], head: Iterable[objects.Object]
) -> tuple[ExtensionDiff, ...]:
    """One plan per extension: head objects against the base ones (absent: created); base
    objects no longer rendered at all are deleted (in reverse apply order). An object that
    moved to another extension is an update there, not a delete plus a create."""
    base_list, head_list = list(base), list(head)
    base_by_key = {objects.key(o): o for o in base_list}
    head_keys = {objects.key(o) for o in head_list}
    names = sorted({_extension(o) for o in base_list + head_list})
    found = []
    for name in names:
        desired = [o for o in head_list if _extension(o) == name]
        gone = [o for o in base_list if _extension(o) == name and objects.key(o) not in head_keys]
        deleted = [objects.key(o) for o in reversed(objects.in_apply_order(gone))]
        live: dict[objects.Key, objects.Object | None] = dict(base_by_key)
        found.append(ExtensionDiff(name, plans.build(desired, {}, live, deleted)))
    return tuple(found)


def between(base: source.Snapshot, head: source.Snapshot, *, reuse: bool = True) -> RevisionDiff:
    """Load, validate and render both snapshots and compare them. An invalid head is reported
    (nothing compared); an invalid or missing base is a note, compared as an empty repo.

    The two revisions share a `reuse.Reuse`, so the second one parses and renders only what
    differs from the first (`reuse=False` renders both in full, for the benchmark; the result
    is the same)."""
    shared = reusing.Reuse() if reuse else None
    new = revision.Revision(head, shared)
    if not new.valid:
        return RevisionDiff(base.revision(), new.revision, problems=tuple(new.errors))
    notes: list[str] = []
    base_objects: list[objects.Object] = []
    if not base.exists(""):
        notes.append(f"{base.display('')} does not exist: every object is created")
    else:
        old = revision.Revision(base, shared)
        if old.valid:
            base_objects = old.rendered.objects
        else:
            count = len(old.errors)
            notes.append(
                f"the base {base.display('')} is invalid ({count} problem"
                f"{'s' if count != 1 else ''}): compared against nothing, every object is created"
            )
    head_objects = new.rendered.objects
    notes.extend(_not_decrypted(base, head))
    extensions = compare(base_objects, head_objects)
    return RevisionDiff(
        base.revision(), new.revision, extensions, (), tuple(notes), traffic(extensions)
    )


def traffic(extensions: Iterable[ExtensionDiff]) -> tuple[str, ...]:
    """The traffic lines (`traffic_changes`) of these plans: the endpoints of every router
    config ConfigMap (`router.yaml`, label `ROUTER_CONFIG`) that the plans create, update or
    delete, as it is (the base revision, or the live cluster) against as it would be."""
    before: dict[str, Mapping[str, Any]] = {}
    after: dict[str, Mapping[str, Any]] = {}
    for extension in extensions:
        for step in extension.plan.steps:
            if step.sides is None or step.key.kind != "ConfigMap":
                continue
            for side, found in zip(step.sides, (before, after), strict=True):
                found.update(_routed(side))
    return traffic_changes(before, after)


def _routed(config_map: objects.Object | None) -> dict[str, Mapping[str, Any]]:
    """A router config ConfigMap's endpoints (their `router.yaml` entries) by name; {} for
    any other ConfigMap, or none."""
    metadata = (config_map or {}).get("metadata") or {}
    if (metadata.get("labels") or {}).get(objects.COMPONENT_LABEL) != ROUTER_CONFIG:
        return {}
    assert config_map is not None
    config = yaml.safe_load((config_map.get("data") or {}).get(ROUTER_CONFIG_KEY) or "") or {}
    return {str(entry["name"]): entry for entry in config.get("endpoints") or []}


def traffic_changes(
    base: Mapping[str, Mapping[str, Any]], head: Mapping[str, Mapping[str, Any]]
) -> tuple[str, ...]:
    """One line per endpoint (its `router.yaml` entry: `traffic`, `mirror_traffic`) whose
    split or mirror changed, naming only the deployments whose percent changed (absent = 0):
    `mnist: blue 100 -> 90, green 0 -> 10`. A new endpoint is `(new)`, one gone is
    `(removed)`: a deployment's own endpoint too, as a route the router starts or stops
    serving."""
    lines = []
    for name in sorted(base.keys() | head.keys()):
        before, after = base.get(name), head.get(name)
        parts = []
        for prefix, field in (("", "traffic"), ("mirror ", "mirror_traffic")):
            old: Mapping[str, int] = (before or {}).get(field) or {}
            new: Mapping[str, int] = (after or {}).get(field) or {}
            for deployment in sorted(old.keys() | new.keys()):
                was, now = old.get(deployment, 0), new.get(deployment, 0)
                if was != now:
                    parts.append(f"{prefix}{deployment} {was} -> {now}")
        status = " (new)" if before is None else " (removed)" if after is None else ""
        if parts or status:
            lines.append(f"{name}{status}: {', '.join(parts) or 'no traffic'}")
    return tuple(lines)


def _not_decrypted(*snapshots: source.Snapshot) -> list[str]:
    """A note per SOPS-encrypted file read without a key: compared by its ciphertext."""
    opaque = sorted(
        {
            snapshot.display(path)
            for snapshot in snapshots
            if isinstance(snapshot, decryption.DecryptingSnapshot)
            for path in snapshot.opaque
        }
    )
    return [
        f"{shown} is SOPS-encrypted and no decryption key was given: its values were not "
        "compared, only its encrypted content (any change, a re-encryption too, shows as "
        "changed)"
        for shown in opaque
    ]
