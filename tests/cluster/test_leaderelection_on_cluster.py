"""Leader election (`leaderelection`) on a real coordination.k8s.io/v1 Lease.

Short timings (a 2 s lease, renewing every 0.4 s) keep each test to seconds. "Killed" means a
candidate in a separate process killed with SIGKILL: it releases nothing, so the other candidate
must wait the lease out.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from reconciler import kube, leaderelection
from tests.cluster.kubehelpers import wait_until

pytestmark = pytest.mark.cluster

LEASE = "coordinator"
DURATION, DEADLINE, RETRY = 2.0, 1.5, 0.4
# Worst case for a standby to notice: its last look at the record + the lease duration + one
# retry period with full jitter, plus one request.
TAKEOVER_BOUND = DURATION + 2 * RETRY * (1 + leaderelection.JITTER) + 0.5


def candidate(
    cluster: kube.Cluster, namespace: str, identity: str, duration: float = DURATION
) -> leaderelection.LeaderElector:
    return leaderelection.LeaderElector(
        leaderelection.KubeLeases(cluster, timeout=1.0),
        namespace,
        LEASE,
        identity,
        lease_duration=duration,
        renew_deadline=DEADLINE,
        retry_period=RETRY,
    )


def live_record(cluster: kube.Cluster, namespace: str) -> leaderelection.Record:
    lease = kube.get_lease(cluster, namespace, LEASE)
    assert lease is not None
    return leaderelection.record_of(lease)


def test_only_one_of_two_candidates_leads(cluster: kube.Cluster, namespace: str) -> None:
    a, b = candidate(cluster, namespace, "a"), candidate(cluster, namespace, "b")
    a.start()
    b.start()
    try:
        wait_until(lambda: a.is_leader() or b.is_leader(), bool, "a leader", timeout=10)
        deadline = time.monotonic() + 3 * DURATION
        while time.monotonic() < deadline:  # several lease durations of renewals
            leaders = [c.identity for c in (a, b) if c.is_leader()]
            assert len(leaders) <= 1, leaders
            time.sleep(0.02)
        leader = a if a.is_leader() else b
        record = live_record(cluster, namespace)
        assert record.holder == leader.identity
        assert record.lease_duration_seconds == 2 and record.transitions == 0
        assert (b if leader is a else a).leader() == leader.identity
    finally:
        a.stop()
        b.stop()


_KILLABLE = textwrap.dedent(
    """
    import sys, time
    from reconciler import kube, leaderelection
    kubeconfig, namespace, lease = sys.argv[1] or None, sys.argv[2], sys.argv[3]
    elector = leaderelection.LeaderElector(
        leaderelection.KubeLeases(kube.connect(kubeconfig), timeout=1.0), namespace, lease,
        "doomed", lease_duration=float(sys.argv[4]), renew_deadline=float(sys.argv[5]),
        retry_period=float(sys.argv[6]),
        on_started_leading=lambda: print("leading", flush=True))
    elector.start()
    time.sleep(600)
    """
)


def test_a_killed_leader_is_replaced_within_the_lease_duration(
    cluster: kube.Cluster, namespace: str, cluster_kubeconfig: str | None
) -> None:
    doomed = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _KILLABLE,
            cluster_kubeconfig or "",
            namespace,
            LEASE,
            str(DURATION),
            str(DEADLINE),
            str(RETRY),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    standby = candidate(cluster, namespace, "standby")
    try:
        assert doomed.stdout is not None
        assert doomed.stdout.readline().strip() == "leading"
        standby.start()
        time.sleep(2 * DURATION)  # the standby follows a live leader for two lease durations
        assert not standby.is_leader() and standby.leader() == "doomed"
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait()
        killed = time.monotonic()
        wait_until(standby.is_leader, bool, "the standby to take over", timeout=10)
        took = time.monotonic() - killed
        assert took <= TAKEOVER_BOUND, took
        record = live_record(cluster, namespace)
        assert (record.holder, record.transitions) == ("standby", 1)
    finally:
        if doomed.poll() is None:
            doomed.kill()
            doomed.wait()
        if doomed.stdout is not None:
            doomed.stdout.close()
        standby.stop()


def test_a_graceful_release_hands_over_at_once(cluster: kube.Cluster, namespace: str) -> None:
    # A long lease: a takeover faster than it can only come from the release.
    first = candidate(cluster, namespace, "first", duration=30.0)
    second = candidate(cluster, namespace, "second", duration=30.0)
    events: list[str] = []
    first._on_stopped = lambda: events.append("first stopped")
    first.start()
    try:
        wait_until(first.is_leader, bool, "the first candidate to lead", timeout=10)
        second.start()
        wait_until(second.leader, lambda who: who == "first", "the second to follow")
        first.stop()
        released = time.monotonic()
        assert events == ["first stopped"] and not first.is_leader()
        wait_until(second.is_leader, bool, "the second to take over", timeout=10)
        took = time.monotonic() - released
        assert took < RETRY * (1 + leaderelection.JITTER) + 0.5, took
        assert live_record(cluster, namespace).holder == "second"
    finally:
        first.stop()
        second.stop()


def test_a_stale_write_loses_with_a_conflict(cluster: kube.Cluster, namespace: str) -> None:
    record = leaderelection.claimed(None, "a", 15, leaderelection._utcnow())
    created = kube.create_lease(cluster, leaderelection.lease_object(namespace, LEASE, record))
    with pytest.raises(kube.KubeError) as exists:
        kube.create_lease(cluster, leaderelection.lease_object(namespace, LEASE, record))
    assert exists.value.status == 409
    taken = leaderelection.claimed(record, "b", 15, leaderelection._utcnow())
    kube.update_lease(cluster, leaderelection.lease_object(namespace, LEASE, taken, created))
    # a, still holding the version it read, cannot overwrite b's claim.
    renewed = leaderelection.claimed(record, "a", 15, leaderelection._utcnow())
    with pytest.raises(kube.KubeError) as stale:
        kube.update_lease(cluster, leaderelection.lease_object(namespace, LEASE, renewed, created))
    assert stale.value.status == 409
    assert live_record(cluster, namespace).holder == "b"
