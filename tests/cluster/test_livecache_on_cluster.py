"""The loop's live-state cache (`engine/livecache.py`) against the real API server: one LIST +
WATCH per kind, label-selected, kept current by the watch and by our own writes' responses."""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from reconciler import kube, objects
from reconciler.engine import fingerprint, livecache
from reconciler.gitops import driftwatch
from tests.cluster.kubehelpers import wait_until

pytestmark = pytest.mark.cluster


@pytest.fixture
def cluster(cluster_kubeconfig: str | None) -> Iterator[kube.Cluster]:
    """A connection per test (conftest's is per module): each test checks which write
    observers its connection still has once its cache stopped."""
    connection = kube.connect(cluster_kubeconfig)
    yield connection
    connection.api.close()


def config_map(namespace: str, name: str, owned: bool = True) -> objects.Object:
    labels = {objects.MANAGED_BY_LABEL: objects.MANAGED_BY} if owned else {}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "data": {"k": "v"},
    }


def test_the_cache_follows_owned_objects_and_reads_send_no_request(
    namespace: str, cluster: kube.Cluster, cluster_kubeconfig: str | None
) -> None:
    cache = livecache.LiveCache(cluster)
    events: list[tuple[str, objects.Object | None]] = []
    cache.subscribe(lambda event, before: events.append((event["type"], before)))
    try:
        ours = fingerprint.stamp(config_map(namespace, "ours"))
        key = objects.key(ours)
        assert cache.lookup([key]) == {key: None}

        applied = kube.apply(cluster, ours)
        # Our write's response is in the cache at once, before its watch event comes.
        assert (
            cache.lookup([key])[key]["metadata"]["resourceVersion"]
            == (  # type: ignore[index]
                applied["metadata"]["resourceVersion"]
            )
        )
        assert fingerprint.in_sync(ours, cache.lookup([key])[key], kube.FIELD_MANAGER)

        # Someone else's edit (another client) arrives through the watch; the field is no
        # longer ours.
        someone = kube.connect(cluster_kubeconfig)
        kube.merge_patch(someone, ours, {"data": {"k": "edited"}}, field_manager="kubectl-edit")
        someone.api.close()
        wait_until(
            lambda: (cache.lookup([key])[key] or {}).get("data"),
            lambda data: data == {"k": "edited"},
            "the edit in the cache",
            10,
        )
        assert not fingerprint.in_sync(ours, cache.lookup([key])[key], kube.FIELD_MANAGER)
        # Subscribers hear of it just after the store changes (the watch thread stores first).
        wait_until(
            lambda: [kind for kind, before in events if before is not None],
            lambda kinds: "MODIFIED" in kinds,
            "the edit's event to subscribers",
            10,
        )

        # Only our manager's managedFields entry is kept; a ConfigMap's status is not.
        kept = cache.lookup([key])[key]
        assert kept is not None
        assert {e["manager"] for e in kept["metadata"]["managedFields"]} == {kube.FIELD_MANAGER}

        # Objects without the managed-by label are not ours: not cached.
        stranger = config_map(namespace, "stranger", owned=False)
        kube.apply(cluster, stranger, field_manager="someone-else")
        assert cache.lookup([objects.key(stranger)])[objects.key(stranger)] is None

        kube.delete(cluster, ours)
        wait_until(lambda: cache.lookup([key])[key], lambda found: found is None, "deleted", 10)

        # Reading the cache sends nothing.
        before = collections.Counter(cluster.requests)
        for _ in range(20):
            cache.lookup([key, objects.key(stranger)])
        assert collections.Counter(cluster.requests) - before == collections.Counter()

        _, _, restarts = cache.stats()
        assert restarts == {"ConfigMap": 0}  # one LIST, then the watch only
    finally:
        cache.stop()
    assert not cluster.observers  # stopped: no longer takes in writes


def test_our_own_writes_are_never_drift_however_their_events_race_the_responses(
    namespace: str, cluster: kube.Cluster, cluster_kubeconfig: str | None
) -> None:
    """The watch can deliver a write's event before the write's response is back (seen on every
    other one-object change at 10,000 objects): such an event must not read as drift, or every
    apply triggers a second, needless reconcile. Many concurrent updates and deletes make the
    race likely; an outsider's edit in the middle of them is still heard."""
    cache = livecache.LiveCache(cluster)
    drift: list[str] = []
    cache.subscribe(
        lambda event, before: (
            drift.append(f"{event['type']} {event['object']['metadata']['name']}")
            if driftwatch.changed(event, before)
            else None
        )
    )
    names = [f"race-{n}" for n in range(60)]
    try:
        cache.lookup([objects.key(config_map(namespace, n)) for n in names])
        for n in names:
            kube.apply(cluster, config_map(namespace, n))
        for generation in range(3):
            with ThreadPoolExecutor(16) as pool:
                edited = [
                    {**config_map(namespace, n), "data": {"k": str(generation)}} for n in names
                ]
                list(pool.map(lambda obj: kube.apply(cluster, obj), edited))
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda n: kube.delete(cluster, config_map(namespace, n)), names[30:]))
        someone = kube.connect(cluster_kubeconfig)
        kube.merge_patch(
            someone, config_map(namespace, names[0]), {"data": {"k": "x"}}, field_manager="edit"
        )
        someone.api.close()
        wait_until(lambda: list(drift), lambda found: bool(found), "the outsider's edit", 10)
        time.sleep(1)  # any late event of our own writes would show by now
        assert drift == [f"MODIFIED {names[0]}"]
    finally:
        cache.stop()


def test_a_watch_the_server_ended_closes_quietly(cluster: kube.Cluster, namespace: str) -> None:
    """`close` after the server ended the watch (its timeout), as stopping the loop's cache
    does for a kind whose watch was between restarts."""
    watch = kube.watch(cluster, "v1", "ConfigMap", namespace=namespace, timeout_seconds=1)
    events = list(watch)  # until the server ends it
    assert {e["type"] for e in events} <= {"ADDED", "BOOKMARK"}
    watch.close()  # urllib3 2 raised here: the connection was back in the pool
