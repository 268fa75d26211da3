"""Leader election (`leaderelection`): the pure rules, and the elector driven step by step
against an in-memory Lease store with resourceVersion semantics and an injected clock.

The same elector against the real API server: tests/cluster/test_leaderelection_on_cluster.py.
"""

from __future__ import annotations

import copy
import datetime

import pytest

from reconciler import kube, leaderelection, objects
from reconciler.leaderelection import Action, Observation, Record

WALL = datetime.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=datetime.UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class MemoryLeases:
    """Leases as the API server keeps them: a resourceVersion per write, conditional updates,
    409 for a create of an existing name or an update of a changed lease."""

    def __init__(self) -> None:
        self.leases: dict[tuple[str, str], objects.Object] = {}
        self.version = 0
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise kube.KubeError("cannot reach the API server", 0)

    def get(self, namespace: str, name: str) -> objects.Object | None:
        self._check()
        found = self.leases.get((namespace, name))
        return copy.deepcopy(found) if found else None

    def _store(self, lease: objects.Object) -> objects.Object:
        self.version += 1
        stored = copy.deepcopy(lease)
        stored["metadata"]["resourceVersion"] = str(self.version)
        key = (stored["metadata"]["namespace"], stored["metadata"]["name"])
        self.leases[key] = stored
        return copy.deepcopy(stored)

    def create(self, lease: objects.Object) -> objects.Object:
        self._check()
        if (lease["metadata"]["namespace"], lease["metadata"]["name"]) in self.leases:
            raise kube.KubeError("already exists", 409)
        return self._store(lease)

    def update(self, lease: objects.Object) -> objects.Object:
        self._check()
        live = self.leases[(lease["metadata"]["namespace"], lease["metadata"]["name"])]
        if live["metadata"]["resourceVersion"] != lease["metadata"].get("resourceVersion"):
            raise kube.KubeError("the object has been modified", 409)
        return self._store(lease)

    def holder(self) -> str:
        return leaderelection.record_of(self.leases[("ns", "lock")]).holder


class Candidate:
    def __init__(self, store: MemoryLeases, clock: FakeClock, identity: str) -> None:
        self.events: list[str] = []
        self.elector = leaderelection.LeaderElector(
            store,
            "ns",
            "lock",
            identity,
            lease_duration=15,
            renew_deadline=10,
            retry_period=2,
            on_started_leading=lambda: self.events.append("started"),
            on_stopped_leading=lambda: self.events.append("stopped"),
            clock=clock,
            # Wall time moves with the fake clock: each renewal writes a new renewTime.
            wall_clock=lambda: WALL + datetime.timedelta(seconds=clock.now - 100.0),
            jitter=lambda: 0.0,
        )


# --- The pure rules -----------------------------------------------------------------------------


def record(holder: str, renew: str = "t1", duration: int = 15) -> Record:
    return Record(holder, duration, "t0", renew, 3)


def test_decide() -> None:
    now = 50.0
    assert leaderelection.decide(None, "me", now, 15) is Action.CREATE
    assert leaderelection.decide(Observation(record("me"), 0), "me", now, 15) is Action.RENEW
    assert leaderelection.decide(Observation(record(""), now), "me", now, 15) is Action.ACQUIRE
    fresh = Observation(record("other"), now - 14.9)
    assert leaderelection.decide(fresh, "me", now, 15) is Action.FOLLOW
    stale = Observation(record("other"), now - 15)
    assert leaderelection.decide(stale, "me", now, 15) is Action.ACQUIRE
    # A record without a duration falls back to the candidate's own.
    unknown = Observation(record("other", duration=0), now - 10)
    assert leaderelection.decide(unknown, "me", now, 5) is Action.ACQUIRE


def test_expiry_runs_on_the_observers_clock_from_the_last_change() -> None:
    first = leaderelection.observe(None, record("other", "t1"), 10.0)
    # The same record seen again later: still timed from when it was first seen.
    assert leaderelection.observe(first, record("other", "t1"), 20.0) is first
    # A renewal (a new renewTime) restarts the clock, whatever the wall times in it say.
    renewed = leaderelection.observe(first, record("other", "t2"), 24.0)
    assert renewed.at == 24.0
    assert leaderelection.decide(renewed, "me", 38.0, 15) is Action.FOLLOW
    assert leaderelection.decide(renewed, "me", 39.0, 15) is Action.ACQUIRE


def test_claimed_and_released_records() -> None:
    now = "2024-05-01T12:00:00.123456Z"
    assert leaderelection.microtime(WALL) == now
    assert leaderelection.claimed(None, "me", 15, WALL) == Record("me", 15, now, now, 0)
    renewed = leaderelection.claimed(Record("me", 15, "t0", "t1", 3), "me", 15, WALL)
    assert renewed == Record("me", 15, "t0", now, 3)
    taken = leaderelection.claimed(Record("other", 15, "t0", "t1", 3), "me", 15, WALL)
    assert taken == Record("me", 15, now, now, 4)
    assert leaderelection.released(renewed, WALL) == Record("", 1, now, now, 3)


def test_lease_object_keeps_the_version_it_was_read_at() -> None:
    read = {
        "metadata": {
            "name": "lock",
            "namespace": "ns",
            "resourceVersion": "42",
            "labels": {"a": "b"},
            "managedFields": [{"manager": "x"}],
        },
        "spec": {"holderIdentity": "other"},
    }
    lease = leaderelection.lease_object("ns", "lock", record("me"), read)
    assert lease["metadata"] == {
        "name": "lock",
        "namespace": "ns",
        "resourceVersion": "42",
        "labels": {"a": "b"},
    }
    assert leaderelection.record_of(lease) == record("me")
    assert leaderelection.record_of({"spec": {}}) == Record("", 0, None, None, 0)


def test_timings_must_leave_room_for_a_takeover() -> None:
    store = MemoryLeases()
    with pytest.raises(ValueError, match="lease_duration > renew_deadline"):
        leaderelection.LeaderElector(
            store, "ns", "lock", "me", lease_duration=10, renew_deadline=10
        )
    with pytest.raises(ValueError, match="identity"):
        leaderelection.LeaderElector(store, "ns", "lock", "")


# --- The elector, step by step ------------------------------------------------------------------


def test_one_leader_and_a_takeover_when_it_stops_renewing() -> None:
    store, clock = MemoryLeases(), FakeClock()
    a, b = Candidate(store, clock, "a"), Candidate(store, clock, "b")
    assert a.elector.step() == 2  # created the lease; renews every retry period
    assert a.elector.is_leader() and a.events == ["started"]
    assert b.elector.step() >= 2
    assert not b.elector.is_leader() and b.elector.leader() == "a"
    # a renews; b keeps following as long as the record keeps changing.
    for _ in range(20):
        clock.advance(2)
        a.elector.step()
        b.elector.step()
        assert a.elector.is_leader() and not b.elector.is_leader()
    # a dies (no more steps): b takes over once the record is 15 s old by b's clock.
    clock.advance(2)
    b.elector.step()
    for _ in range(6):
        clock.advance(2)
        b.elector.step()
        assert not b.elector.is_leader()
    clock.advance(2)
    b.elector.step()
    assert b.elector.is_leader() and store.holder() == "b" and b.events == ["started"]
    assert leaderelection.record_of(store.leases[("ns", "lock")]).transitions == 1
    # a comes back: it sees b holding the lease and stops leading at once.
    a.elector.step()
    assert not a.elector.is_leader() and a.events == ["started", "stopped"]


def test_release_hands_over_at_the_next_attempt() -> None:
    store, clock = MemoryLeases(), FakeClock()
    a, b = Candidate(store, clock, "a"), Candidate(store, clock, "b")
    a.elector.step()
    b.elector.step()
    assert a.elector.release()
    assert a.events == ["started", "stopped"] and not a.elector.is_leader()
    assert store.holder() == ""
    clock.advance(2)
    b.elector.step()
    assert b.elector.is_leader()
    assert not a.elector.release()  # not the holder any more: nothing to release


def test_a_leader_that_cannot_renew_stops_leading_by_the_renew_deadline() -> None:
    store, clock = MemoryLeases(), FakeClock()
    a = Candidate(store, clock, "a")
    a.elector.step()
    store.down = True
    clock.advance(2)
    a.elector.step()
    assert a.elector.is_leader()  # one failed renewal is not yet the end
    # Without any step at all (the thread stuck in a request), is_leader turns False by itself.
    clock.advance(8)
    assert not a.elector.is_leader()
    a.elector.step()
    assert a.events == ["started", "stopped"]
    # The API server is back and nobody else took the lease: a renews and leads again.
    store.down = False
    a.elector.step()
    assert a.elector.is_leader() and a.events == ["started", "stopped", "started"]


def test_losing_a_race_is_not_leading() -> None:
    store, clock = MemoryLeases(), FakeClock()
    a, b = Candidate(store, clock, "a"), Candidate(store, clock, "b")
    a.elector.step()
    store.leases[("ns", "lock")]["spec"]["holderIdentity"] = ""  # released meanwhile
    original_update = store.update

    def racing_update(lease: objects.Object) -> objects.Object:
        # a wins between b's read and b's write.
        store.update = original_update  # type: ignore[method-assign]
        a.elector.step()
        return original_update(lease)

    store.update = racing_update  # type: ignore[method-assign]
    b.elector.step()
    assert not b.elector.is_leader() and store.holder() == "a"


def test_stop_without_release_leaves_the_lease_to_run_out() -> None:
    store, clock = MemoryLeases(), FakeClock()
    a = Candidate(store, clock, "a")
    a.elector.step()
    a.elector.stop(release=False)
    assert a.events == ["started", "stopped"] and store.holder() == "a"
