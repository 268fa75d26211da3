"""Drift triggers a reconcile at once, not at the next interval: a consumer of the loop's live
cache (`engine.livecache.LiveCache`), which holds the only watches on the owned objects.

For every kind the repo renders, each watch event the cache receives is compared with the object
as the cache held it before: an owned object deleted, or its spec edited, triggers a tick. What
counts as a change: a deletion; for kinds with a `metadata.generation`, a new generation (status
updates by other controllers - a Deployment's rollout progress - leave it alone, so they trigger
nothing); for kinds without one (ConfigMap, Service, RBAC...), a new resourceVersion. The
reconciler's own writes and deletes never reach it (the cache keeps their events to itself, even
when an event comes before the write's response), so they trigger nothing and an in-sync loop
stays quiet.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from reconciler import objects
from reconciler.engine import livecache

log = logging.getLogger(__name__)

Kind = livecache.Kind


def _marker(metadata: objects.Object) -> object:
    """What a drift-worthy change moves: the generation, or the version for kinds without one."""
    return metadata.get("generation") or metadata.get("resourceVersion")


def changed(event: objects.Object, before: objects.Object | None) -> bool:
    """Whether a watch event is drift-worthy, given the object as cached before it."""
    kind = event.get("type")
    obj = event.get("object") or {}
    if kind not in ("ADDED", "MODIFIED", "DELETED") or not obj.get("metadata"):
        return False
    if kind == "DELETED":
        return True
    if kind == "ADDED" or before is None:
        return False  # created: by us (a reconcile) or re-listed after a restart
    return _marker(obj["metadata"]) != _marker(before.get("metadata") or {})


class DriftWatch:
    """Triggers on drift of the followed kinds; `follow` adds kinds as the rendered set grows."""

    def __init__(self, cache: livecache.LiveCache, trigger: Callable[[str], None]) -> None:
        self._cache = cache
        self._trigger = trigger
        self._lock = threading.Lock()
        self._kinds: set[Kind] = set()
        cache.subscribe(self._event)

    def follow(self, kinds: Iterable[Kind]) -> None:
        """Watch these kinds too (the cache follows them; already followed ones keep running)."""
        wanted = set(kinds)
        with self._lock:
            self._kinds |= wanted
        self._cache.follow(wanted)

    @property
    def kinds(self) -> set[Kind]:
        with self._lock:
            return set(self._kinds)

    def _event(self, event: objects.Object, before: objects.Object | None) -> None:
        obj = event.get("object") or {}
        with self._lock:
            followed = (obj.get("apiVersion"), obj.get("kind")) in self._kinds
        if followed and changed(event, before):
            what = "deleted" if event["type"] == "DELETED" else "changed"
            self._trigger(f"{objects.key(obj)} {what}")
