"""The GitOps loop's last in-sync plan of each extension, reused while nothing it came from changed.

A tick plans the extensions one after the other, so a commit that changes one object of the
last extension waits for the plans of the ones before it, even when they are in sync: each of
their objects is keyed, fingerprinted, looked up live and checked again although every answer is
already known (`fingerprint`). A plan is made from:

- the extension's rendered objects, known here by their render content ids
  (`render.Rendered.content_id`: all of an object but its source revision, as the fingerprint);
- the keys of the Secrets it generates (created once: their values are never compared);
- the inventory in its record, what the repo's other extensions declare, the options;
- the live object of every key it read. The live-state cache (`livecache.LiveCache`) holds a new
  object for every change it sees (a watch event, a write's response), so "live as it was" is
  an identity check, with nothing compared field by field.

When every one of them is as it was, planning again would give the same plan, so the last one
is handed out again. Only plans with nothing to apply and no errors are kept: carrying out any
other changes what it was made from. An object without a content id (a Secret filled from a
`secretRef`, or a render without a memo) means no reuse for its extension: it is planned each
time, as before. Pure: the caller looks the live objects up.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from reconciler import objects

P = TypeVar("P")
Live = Mapping[objects.Key, objects.Object | None]


@dataclass(frozen=True)
class Inputs:
    """What an extension's plan is made from, but for the live objects."""

    rendered: tuple[Hashable, ...]  # the content id of each rendered object, in order
    generated: frozenset[objects.Key]
    previous: frozenset[objects.Key]  # the inventory its record lists
    claimed_elsewhere: frozenset[objects.Key]
    options: Hashable


def inputs(
    rendered: Iterable[objects.Object],
    content_id: Callable[[objects.Object], Hashable | None],
    generated: frozenset[objects.Key],
    previous: frozenset[objects.Key],
    claimed_elsewhere: frozenset[objects.Key],
    options: Hashable,
) -> Inputs | None:
    """The inputs of a plan, or None when an object has no content id (it cannot be reused)."""
    ids = tuple(content_id(obj) for obj in rendered)
    if None in ids:
        return None
    return Inputs(ids, generated, previous, claimed_elsewhere, options)


class Plans(Generic[P]):
    """The last in-sync plan of each extension, with its inputs and the live objects it read."""

    def __init__(self) -> None:
        self._kept: dict[str, tuple[Inputs, Live, P]] = {}
        self.reused = 0  # plans handed out again (for the tests and the benchmark)

    def get(
        self, name: str, made_from: Inputs | None, look_up: Callable[[Iterable[objects.Key]], Live]
    ) -> P | None:
        """The kept plan of `name` if it was made from `made_from` and the same live objects
        `look_up` gives now, else None."""
        kept = self._kept.get(name)
        if kept is None or made_from is None or kept[0] != made_from:
            return None
        read_then = kept[1]
        now = look_up(read_then.keys())
        if any(now.get(key) is not then for key, then in read_then.items()):
            return None
        self.reused += 1
        return kept[2]

    def keep(self, name: str, made_from: Inputs | None, read: Live, plan: P, in_sync: bool) -> None:
        """Keep `plan` for the next tick when it is in sync (nothing to apply, no errors);
        forget `name`'s kept plan otherwise."""
        if in_sync and made_from is not None:
            self._kept[name] = (made_from, dict(read), plan)
        else:
            self._kept.pop(name, None)

    def forget_others(self, names: Iterable[str]) -> None:
        """Drop the plans of extensions not in `names` (gone from the repo and the cluster)."""
        wanted = set(names)
        for name in [n for n in self._kept if n not in wanted]:
            del self._kept[name]
