"""Live state for planning, drift detection and health: read once, then kept, not re-read.

Two `Reads` over the `kube` edge, which the phases of `reconcile` (and `recordstore`) read the
cluster through:

- `Listing`, for one-shot commands (`apply`, `plan`, `diff --cluster`): one LIST per kind and
  namespace the first time it is asked for, kept for the rest of the command and kept current by
  the command's own writes (a `kube.WriteObserver`), so that the health check after an apply
  reads what the apply returned instead of listing everything again.
- `LiveCache`, for the long-running loop (`sync` / `controller`): one LIST + WATCH per followed
  kind, cluster-wide and selected on the managed-by label, resuming from the last
  resourceVersion seen (bookmarks on), listing again when the server answers 410 Gone. It also
  takes in every object the reconciler's own writes return (it is a `kube.WriteObserver`), so a
  tick right after an apply sees it. A tick reads the cache and sends no request; subscribers
  (the drift watch) get every event with the object as the cache held it before, except the
  events of the reconciler's own writes: the watch can deliver a write's event before the write's
  response is back, so an event for an object with a write in flight is held until the write
  settles, then dropped when it is that write's own (same resourceVersion) and passed on
  otherwise; the events of an object we deleted, until it is gone, are its deletion's.

What a cached object keeps (`strip`): everything planning needs, with managedFields reduced to
our field manager's entry (the fingerprint check, `fingerprint.in_sync`) and the entries that own
`spec.replicas` (another scaler, `ownership.respect_scaler`), and status only for the kinds whose
health reads it.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from reconciler import kube, objects

log = logging.getLogger(__name__)

OWNED = f"{objects.MANAGED_BY_LABEL}={objects.MANAGED_BY}"
Kind = tuple[str, str]  # (apiVersion, kind)
Group = tuple[str, str, str]  # (apiVersion, kind, namespace; "" cluster-wide)
Listener = Callable[[objects.Object, objects.Object | None], None]  # (event, cached before)
WORKERS = 8  # concurrent LISTs

# Kinds whose status `health` reads (and the record, whose status is what it holds).
STATUS_KINDS = frozenset(
    {
        "Deployment",
        "DaemonSet",
        "StatefulSet",
        "Job",
        "CustomResourceDefinition",
        "Service",
        "ExtensionStatus",
    }
)


class Reads(Protocol):
    """What the phases read live state through."""

    def lookup(self, keys: Iterable[objects.Key]) -> dict[objects.Key, objects.Object | None]:
        """The live object for each key (None: absent)."""
        ...

    def of_kind(self, api_version: str, kind: str) -> list[objects.Object]:
        """Every live object of a kind, cluster-wide."""
        ...

    def known_empty(self, api_version: str, kind: str) -> None:
        """A kind that has no object yet (its CRD was created just now) needs no reading."""
        ...


def strip(obj: objects.Object, field_manager: str = kube.FIELD_MANAGER) -> objects.Object:
    """What the cache keeps of a live object (see the module docstring)."""
    kept = dict(obj)
    metadata = dict(kept.get("metadata") or {})
    entries = []
    for entry in metadata.get("managedFields") or []:
        if entry.get("manager") == field_manager and not entry.get("subresource"):
            entries.append(entry)
            continue
        spec = (entry.get("fieldsV1") or {}).get("f:spec") or {}
        if "f:replicas" in spec:
            slim = {k: entry[k] for k in ("manager", "operation", "subresource") if k in entry}
            entries.append({**slim, "fieldsV1": {"f:spec": {"f:replicas": {}}}})
    metadata.pop("managedFields", None)
    if entries:
        metadata["managedFields"] = entries
    kept["metadata"] = metadata
    if kept.get("kind") not in STATUS_KINDS:
        kept.pop("status", None)
    return kept


def _version(obj: objects.Object | None) -> int:
    try:
        return int(((obj or {}).get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


# --- one-shot ---------------------------------------------------------------------------------


class Listing:
    """One LIST per kind and namespace, on demand, kept for the command."""

    def __init__(self, cluster: kube.Cluster) -> None:
        self._cluster = cluster
        self._lock = threading.Lock()
        self._groups: dict[Group, dict[objects.Key, objects.Object]] = {}
        cluster.observers.add(self)

    def _list(self, groups: Iterable[Group]) -> dict[Group, dict[objects.Key, objects.Object]]:
        """These groups' objects: kept ones, the others listed now (concurrently). What is
        returned stays whole even if another thread refreshes meanwhile."""
        wanted = set(groups)
        with self._lock:
            found = {g: self._groups[g] for g in wanted if g in self._groups}

        def listing(group: Group) -> tuple[Group, list[objects.Object]]:
            return group, kube.list_objects(self._cluster, *group)

        with ThreadPoolExecutor(WORKERS) as pool:
            for group, items in pool.map(listing, sorted(wanted - set(found))):
                found[group] = {objects.key(item): item for item in items}
                with self._lock:
                    self._groups[group] = found[group]
        return found

    def lookup(self, keys: Iterable[objects.Key]) -> dict[objects.Key, objects.Object | None]:
        wanted = set(keys)
        found = self._list({(k.api_version, k.kind, k.namespace) for k in wanted})
        return {k: found[(k.api_version, k.kind, k.namespace)].get(k) for k in wanted}

    def of_kind(self, api_version: str, kind: str) -> list[objects.Object]:
        return list(self._list([(api_version, kind, "")])[(api_version, kind, "")].values())

    def known_empty(self, api_version: str, kind: str) -> None:
        """Listed as empty without asking: the first LIST of a kind whose CRD was created a
        moment ago waits about a second for the API server to start serving it from its cache,
        while a write does not."""
        with self._lock:
            self._groups.setdefault((api_version, kind, ""), {})

    def sending(self, target: objects.Object) -> None:
        """Nothing to do before a write: a one-shot command has no watch to race it."""

    def settled(self, target: objects.Object, stored: objects.Object | None, deleted: bool) -> None:
        """A write's response replaces the listed object (a delete removes it), in the
        namespace's list and the cluster-wide one, where they were listed."""
        if "kind" not in target or "apiVersion" not in target or not (stored or deleted):
            return
        key = objects.key(stored or target)
        with self._lock:
            for group in (
                (key.api_version, key.kind, key.namespace),
                (key.api_version, key.kind, ""),
            ):
                listed = self._groups.get(group)
                if listed is None:
                    continue
                if stored is not None:
                    listed[key] = stored
                else:
                    listed.pop(key, None)


# --- the loop's cache -------------------------------------------------------------------------


@dataclass
class _Store:
    objects: dict[objects.Key, objects.Object] = field(default_factory=dict)
    version: str = ""
    synced: threading.Event = field(default_factory=threading.Event)
    restarts: int = 0  # LISTs after the first (410 Gone, errors)
    error: str = ""


class LiveCache:
    """Watch-backed live state of the owned objects of every followed kind."""

    def __init__(
        self,
        cluster: kube.Cluster,
        *,
        selector: str = OWNED,
        sync_timeout: float = 60.0,
        retry_after: float = 2.0,
    ) -> None:
        self._cluster = cluster
        self._selector = selector
        self._sync_timeout = sync_timeout
        self._retry_after = retry_after
        self._lock = threading.Lock()
        self._stores: dict[Kind, _Store] = {}
        self._threads: dict[Kind, threading.Thread] = {}
        self._watches: dict[Kind, kube.Watch] = {}
        self._listeners: list[Listener] = []
        # Our writes in flight, by object, and the events that came for them meanwhile.
        self._in_flight: collections.Counter[objects.Key] = collections.Counter()
        self._held: dict[objects.Key, list[tuple[objects.Object, objects.Object | None]]] = {}
        self._deleting: set[objects.Key] = set()  # deleted by us, its DELETED event to come
        self._stop = threading.Event()
        cluster.observers.add(self)

    # --- Reads --------------------------------------------------------------------------

    def lookup(self, keys: Iterable[objects.Key]) -> dict[objects.Key, objects.Object | None]:
        wanted = set(keys)
        kinds = {(k.api_version, k.kind) for k in wanted}
        self.follow(kinds)
        self.wait_synced(kinds)
        with self._lock:
            return {k: self._stores[(k.api_version, k.kind)].objects.get(k) for k in wanted}

    def of_kind(self, api_version: str, kind: str) -> list[objects.Object]:
        self.follow([(api_version, kind)])
        self.wait_synced([(api_version, kind)])
        with self._lock:
            return list(self._stores[(api_version, kind)].objects.values())

    def known_empty(self, api_version: str, kind: str) -> None:
        """Nothing to skip: the kind's watch lists it once anyway."""

    # --- following ----------------------------------------------------------------------

    def follow(self, kinds: Iterable[Kind]) -> None:
        """Watch these kinds too (already followed ones keep running)."""
        with self._lock:
            for kind in sorted(set(kinds) - set(self._stores)):
                self._stores[kind] = _Store()
                thread = threading.Thread(
                    target=self._run, args=(kind,), name=f"cache {kind[1]}", daemon=True
                )
                self._threads[kind] = thread
                thread.start()

    def wait_synced(self, kinds: Iterable[Kind]) -> None:
        """Block until every kind's first LIST is in (KubeError after `sync_timeout`)."""
        for kind in sorted(set(kinds)):
            with self._lock:
                store = self._stores[kind]
            if not store.synced.wait(self._sync_timeout):
                raise kube.KubeError(
                    f"the live-state cache could not list {kind[1]}: {store.error or 'timed out'}"
                )

    def subscribe(self, listener: Listener) -> None:
        """Call `listener(event, cached_before)` for every watch event from now on."""
        with self._lock:
            self._listeners.append(listener)

    @property
    def kinds(self) -> set[Kind]:
        with self._lock:
            return set(self._stores)

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            watches = list(self._watches.values())
            self._cluster.observers.discard(self)
        for running in watches:
            running.close()

    def stats(self) -> tuple[int, int, dict[str, int]]:
        """(cached objects, their size in bytes as compact JSON, restarts by kind)."""
        with self._lock:
            stores = dict(self._stores)
            everything = [obj for store in stores.values() for obj in store.objects.values()]
        size = sum(len(json.dumps(obj, separators=(",", ":"))) for obj in everything)
        return len(everything), size, {kind[1]: store.restarts for kind, store in stores.items()}

    # --- keeping it current -------------------------------------------------------------

    def sending(self, target: objects.Object) -> None:
        if "kind" in target and "apiVersion" in target:
            with self._lock:
                self._in_flight[objects.key(target)] += 1

    def settled(self, target: objects.Object, stored: objects.Object | None, deleted: bool) -> None:
        """A write is over: its response (newer than what the cache holds) replaces the cached
        object, and the events held meanwhile go on, but for the write's own."""
        if "kind" not in target or "apiVersion" not in target:
            return
        key = objects.key(target)
        with self._lock:
            if self._in_flight[key] > 1:
                self._in_flight[key] -= 1
                held = []
            else:
                self._in_flight.pop(key, None)
                held = self._held.pop(key, [])
            if stored is not None:
                self._take(stored)
            followed = (key.api_version, key.kind) in self._stores
            if deleted and followed and not any(e.get("type") == "DELETED" for e, _ in held):
                self._deleting.add(key)  # its events until it is gone are its deletion's
        for event, before in held:
            obj = event.get("object") or {}
            if deleted or (stored is not None and _version(obj) == _version(stored)):
                continue
            self._tell(event, before)

    def _take(self, obj: objects.Object) -> None:
        """Cache a write's response (under the lock), if its kind is followed and owned."""
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if labels.get(objects.MANAGED_BY_LABEL) != objects.MANAGED_BY and self._selector:
            return
        store = self._stores.get((obj["apiVersion"], obj["kind"]))
        if store is None:
            return
        key = objects.key(obj)
        if _version(obj) >= _version(store.objects.get(key)):
            store.objects[key] = strip(obj)

    def _apply_event(self, kind: Kind, event: objects.Object) -> None:
        """Update the store from one event, and tell the listeners (or hold it for the write
        in flight on its object)."""
        obj = event.get("object") or {}
        obj.setdefault("apiVersion", kind[0])
        obj.setdefault("kind", kind[1])
        key = objects.key(obj)
        with self._lock:
            store = self._stores[kind]
            before = store.objects.get(key)
            if event["type"] == "DELETED":
                if _version(before) <= _version(obj):
                    store.objects.pop(key, None)
            elif _version(obj) >= _version(before):
                store.objects[key] = strip(obj)
            if self._in_flight[key]:
                self._held.setdefault(key, []).append((event, before))
                return
            if key in self._deleting:
                if event["type"] == "DELETED":
                    self._deleting.discard(key)
                return
        self._tell(event, before)

    def _tell(self, event: objects.Object, before: objects.Object | None) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(event, before)

    def _relist(self, kind: Kind) -> None:
        items, version = kube.list_with_version(
            self._cluster, kind[0], kind[1], label_selector=self._selector
        )
        fresh = {objects.key(item): strip(item) for item in items}
        with self._lock:
            store = self._stores[kind]
            if store.synced.is_set():
                store.restarts += 1
            store.objects = fresh
            store.version = version
            store.error = ""
            store.synced.set()

    def _run(self, kind: Kind) -> None:
        with self._lock:
            store = self._stores[kind]
        listed = False
        while not self._stop.is_set():
            try:
                if not listed:
                    self._relist(kind)
                    listed = True
                running = kube.watch(
                    self._cluster,
                    kind[0],
                    kind[1],
                    label_selector=self._selector,
                    resource_version=store.version,
                )
                with self._lock:
                    self._watches[kind] = running
                for event in running:
                    if self._stop.is_set():
                        return
                    self._event(kind, store, event)
            except kube.KubeError as err:
                if self._stop.is_set():
                    return
                listed = False  # resume from a fresh list
                if err.status == 404 and not store.synced.is_set():
                    # Not served (yet: its CRD comes in this apply): nothing of it exists.
                    store.synced.set()
                if err.status != 410:
                    store.error = str(err)
                    log.warning("cache of %s: %s; listing again", kind[1], err)
                    self._stop.wait(self._retry_after)

    def _event(self, kind: Kind, store: _Store, event: objects.Object) -> None:
        version = ((event.get("object") or {}).get("metadata") or {}).get("resourceVersion")
        if version:
            store.version = str(version)
        if event.get("type") not in ("ADDED", "MODIFIED", "DELETED"):
            return  # a BOOKMARK only moves the version on
        self._apply_event(kind, event)


def bytes_per_object(cache: LiveCache) -> float:
    """The cache's mean size per object (compact JSON bytes), 0 when empty."""
    count, size, _ = cache.stats()
    return size / count if count else 0.0
