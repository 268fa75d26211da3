"""A plan is data: the ordered actions that would make a cluster match a repo.

Built by a pure function from what the repo renders, what the server says each object would
become (the server-side dry run, so defaulting and admission count), what is live now, and the
prune decision. `diff`, `plan --dry-run` and the PR comment print the same `Plan`; only the
executor (apply) carries it out. Actions come in apply order (create / update / unchanged), then
deletions in reverse apply order. How a plan reads (a terminal's text, a PR comment) is up to
`reconciler.printers`.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from reconciler import objects
from reconciler.engine import diffs, fingerprint


class Action(enum.Enum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    DELETE = "delete"


_FINGERPRINT_ONLY = "(only the fingerprint annotation: no field changes)\n"


@dataclass(frozen=True)
class Step:
    action: Action
    key: objects.Key
    desired: objects.Object | None = field(default=None, repr=False, compare=False)
    changes: tuple[diffs.Change, ...] = ()
    note: str = field(default="", compare=False)  # the diff, when it is not of two objects
    # (before, after): the unified diff is made from them when first asked for (a big apply
    # never prints the diffs of its creates).
    sides: tuple[objects.Object | None, objects.Object | None] | None = field(
        default=None, repr=False, compare=False
    )

    @functools.cached_property
    def diff(self) -> str:
        """Unified, Secret values masked."""
        return self.note if self.sides is None else diffs.unified(*self.sides)


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]

    def of(self, action: Action) -> list[Step]:
        return [s for s in self.steps if s.action is action]

    def count(self, action: Action) -> int:
        return sum(1 for s in self.steps if s.action is action)

    @property
    def has_changes(self) -> bool:
        return any(s.action is not Action.UNCHANGED for s in self.steps)


def build(
    desired: Iterable[objects.Object],
    would_be: Mapping[objects.Key, objects.Object],
    live: Mapping[objects.Key, objects.Object | None],
    prune: Iterable[objects.Key] = (),
    in_sync: Collection[objects.Key] = frozenset(),
) -> Plan:
    """The plan: `would_be` holds the server's dry-run result per desired key (missing: fall
    back to comparing the desired object itself), `live` the current object (None: absent).
    `in_sync`: keys known unchanged without a dry run (their fingerprint), not compared."""
    steps: list[Step] = []
    for obj in objects.in_apply_order(desired):
        key = objects.key(obj)
        current = live.get(key)
        if key in in_sync and current is not None:
            steps.append(Step(Action.UNCHANGED, key, obj))
            continue
        if current is None:
            steps.append(Step(Action.CREATE, key, obj, sides=(None, obj)))
            continue
        after = would_be.get(key, obj)
        found = tuple(diffs.changes(current, after))
        if found:
            steps.append(Step(Action.UPDATE, key, obj, found, sides=(current, after)))
        elif fingerprint.recorded(obj) not in ("", fingerprint.recorded(current)):
            # Nothing else differs, but the live copy does not carry our fingerprint (applied
            # by an older reconciler, or someone edited it): applying it lets later plans skip
            # the dry run.
            path = f"metadata.annotations.{fingerprint.ANNOTATION}"
            old = fingerprint.recorded(current) or None
            mark = diffs.Change(path, old, fingerprint.recorded(obj))
            steps.append(Step(Action.UPDATE, key, obj, (mark,), _FINGERPRINT_ONLY))
        else:
            steps.append(Step(Action.UNCHANGED, key, obj))
    for key in prune:
        steps.append(Step(Action.DELETE, key, sides=(live.get(key), None)))
    return Plan(tuple(steps))
