"""Watches on the objects the reconciler owns, so that drift is undone at once, not at the next
interval: an owned object deleted, or its spec edited, triggers a reconcile.

One thread per kind the extension renders, each a cluster-wide watch filtered by the
`managed-by` label, started from a list's resourceVersion (so existing objects are not
reported) and restarted from a fresh list when the server ends it or the version expires (410).
What counts as a change: a deletion; for kinds with a `metadata.generation`, a new generation
(status updates by other controllers - a Deployment's rollout progress - leave it alone, so
they trigger nothing); for kinds without one (ConfigMap, Service, RBAC...), any modification.
The reconciler's own writes trigger one more tick, which finds nothing to change and writes
nothing, so the loop settles.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from reconciler import kube, objects

log = logging.getLogger(__name__)

OWNED = f"{objects.MANAGED_BY_LABEL}={objects.MANAGED_BY}"
Kind = tuple[str, str]  # (apiVersion, kind)


def _marker(metadata: objects.Object) -> object:
    """What a drift-worthy change moves: the generation, or the version for kinds without one."""
    return metadata.get("generation") or metadata.get("resourceVersion")


def changed(event: objects.Object, seen: dict[objects.Key, object]) -> bool:
    """Whether a watch event is drift-worthy; updates `seen` (key -> generation or version)."""
    kind = event.get("type")
    obj = event.get("object") or {}
    if kind not in ("ADDED", "MODIFIED", "DELETED") or not obj.get("metadata"):
        return False
    key = objects.key(obj)
    if kind == "DELETED":
        seen.pop(key, None)
        return True
    metadata = obj["metadata"]
    marker = _marker(metadata)
    before = seen.get(key)
    seen[key] = marker
    if kind == "ADDED":
        return False  # created: by us (a reconcile) or re-listed after a restart
    return "generation" not in metadata or before != marker


class DriftWatch:
    """The running watches; `follow` adds kinds as the rendered set grows."""

    def __init__(self, cluster: kube.Cluster, trigger: Callable[[str], None]) -> None:
        self._cluster = cluster
        self._trigger = trigger
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._kinds: dict[Kind, threading.Thread] = {}
        self._watches: dict[Kind, kube.Watch] = {}

    def follow(self, kinds: Iterable[Kind]) -> None:
        """Watch these kinds too (already watched ones are left running)."""
        with self._lock:
            for kind in sorted(set(kinds) - set(self._kinds)):
                thread = threading.Thread(
                    target=self._watch, args=(kind,), name=f"drift {kind[1]}", daemon=True
                )
                self._kinds[kind] = thread
                thread.start()

    @property
    def kinds(self) -> set[Kind]:
        with self._lock:
            return set(self._kinds)

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            watches = list(self._watches.values())
        for running in watches:
            running.close()

    def _watch(self, kind: Kind) -> None:
        api_version, name = kind
        seen: dict[objects.Key, object] = {}
        while not self._stop.is_set():
            try:
                items, version = kube.list_with_version(
                    self._cluster, api_version, name, label_selector=OWNED
                )
                seen = {objects.key(item): _marker(item["metadata"]) for item in items}
                running = kube.watch(
                    self._cluster,
                    api_version,
                    name,
                    label_selector=OWNED,
                    resource_version=version,
                )
                with self._lock:
                    self._watches[kind] = running
                for event in running:
                    if self._stop.is_set():
                        return
                    if changed(event, seen):
                        obj = event["object"]
                        what = "deleted" if event["type"] == "DELETED" else "changed"
                        self._trigger(f"{objects.key(obj)} {what}")
            except kube.KubeError as err:
                if self._stop.is_set():
                    return
                if err.status != 410:
                    log.warning("watch on %s: %s; retrying", name, err)
                    self._stop.wait(2.0)
