"""Pure parts of the GitOps loop: webhook signatures, tick timing, drift events, drift status,
the order and errors of deferred outcome writes."""

from __future__ import annotations

import json
import threading

import pytest

from reconciler import kube, objects
from reconciler.engine import plans, record, recordstore
from reconciler.gitops import controller, driftwatch, loopmetrics, webhook

SECRET = b"s3cret"


def signed(body: bytes, **headers: str) -> dict[str, str]:
    return {webhook.SIGNATURE_HEADER: webhook.signature(SECRET, body), **headers}


def test_a_push_signed_with_the_secret_triggers_a_fetch() -> None:
    body = json.dumps({"ref": "refs/heads/main"}).encode()
    verdict = webhook.judge(SECRET, body, signed(body, **{"X-GitHub-Event": "push"}), "main")
    assert (verdict.status, verdict.trigger) == (202, True)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {webhook.SIGNATURE_HEADER: "sha256=" + "0" * 64},
        {webhook.SIGNATURE_HEADER: webhook.signature(b"other", b'{"ref": "x"}')},
        {webhook.SIGNATURE_HEADER: "sha1=abc"},
    ],
)
def test_unsigned_or_wrongly_signed_requests_are_rejected(headers: dict[str, str]) -> None:
    verdict = webhook.judge(SECRET, b'{"ref": "x"}', headers, None)
    assert (verdict.status, verdict.trigger) == (401, False)


def test_no_secret_means_nothing_is_accepted() -> None:
    body = b"{}"
    assert not webhook.judge(b"", body, {webhook.SIGNATURE_HEADER: ""}, None).trigger


def test_a_tampered_body_fails_the_signature() -> None:
    body = b'{"ref": "refs/heads/main"}'
    headers = signed(body)
    assert webhook.judge(SECRET, body + b" ", headers, None).status == 401


@pytest.mark.parametrize(
    ("ref", "pushed", "trigger"),
    [
        ("main", "refs/heads/main", True),
        ("main", "refs/heads/other", False),
        ("release/1.0", "refs/heads/release/1.0", True),
        ("1.0", "refs/heads/release/1.0", False),
        ("v1", "refs/tags/v1", True),
        (None, "refs/heads/anything", True),
    ],
)
def test_only_pushes_to_the_followed_ref_trigger(
    ref: str | None, pushed: str, trigger: bool
) -> None:
    body = json.dumps({"ref": pushed}).encode()
    assert webhook.judge(SECRET, body, signed(body), ref).trigger is trigger


def test_a_ping_is_answered_without_a_fetch() -> None:
    verdict = webhook.judge(SECRET, b"{}", signed(b"{}", **{"X-GitHub-Event": "ping"}), None)
    assert (verdict.status, verdict.trigger) == (200, False)


def loop(rng: float = 0.5, interval: float = 60.0) -> controller.Controller:
    settings = controller.Settings(interval=interval)
    metrics = loopmetrics.ControllerMetrics("0.0.0", None)
    return controller.Controller(None, lambda: None, settings, metrics, rng=lambda: rng)  # type: ignore[arg-type]


@pytest.mark.parametrize(("rng", "expected"), [(0.0, 54.0), (0.5, 60.0), (1.0, 66.0)])
def test_the_interval_is_jittered_by_ten_percent(rng: float, expected: float) -> None:
    assert loop(rng).next_delay() == pytest.approx(expected)


def test_errors_back_off_exponentially_up_to_the_interval() -> None:
    ticking = loop(interval=20.0)
    delays = []
    for _ in range(7):
        ticking.tick()  # the fetch returns None: every tick is an error
        delays.append(ticking.next_delay())
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 20.0, 20.0]
    assert ticking.last is not None and ticking.last.result == "error"
    text = ticking.metrics.exposition().decode()
    assert 'mlext_reconciler_reconciles_total{result="error"} 7.0' in text


def deployment(generation: int | None, version: str) -> objects.Object:
    metadata: dict[str, object] = {"name": "blue", "namespace": "ml", "resourceVersion": version}
    if generation is not None:
        metadata["generation"] = generation
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata}


def test_a_status_update_is_not_drift_but_a_spec_change_and_a_delete_are() -> None:
    assert not driftwatch.changed({"type": "ADDED", "object": deployment(1, "1")}, None)
    before = deployment(1, "1")
    assert not driftwatch.changed({"type": "MODIFIED", "object": deployment(1, "2")}, before)
    assert driftwatch.changed({"type": "MODIFIED", "object": deployment(2, "3")}, before)
    assert driftwatch.changed({"type": "DELETED", "object": deployment(2, "4")}, before)
    assert not driftwatch.changed({"type": "BOOKMARK", "object": {"metadata": {}}}, None)


def test_kinds_without_a_generation_count_every_modification_but_our_own_write() -> None:
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    config_map["metadata"]["resourceVersion"] = "7"
    older = {**config_map, "metadata": {"name": "c", "resourceVersion": "6"}}
    assert driftwatch.changed({"type": "MODIFIED", "object": config_map}, older)
    # Our apply's response is already in the cache when its event comes: nothing to do.
    assert not driftwatch.changed({"type": "MODIFIED", "object": config_map}, config_map)


def test_drift_is_what_the_plan_of_the_applied_revision_creates_or_updates() -> None:
    keys = [objects.Key("apps/v1", "Deployment", "ml", n) for n in ("a", "b", "c", "d")]
    steps = (
        plans.Step(plans.Action.CREATE, keys[0]),
        plans.Step(plans.Action.UPDATE, keys[1]),
        plans.Step(plans.Action.UNCHANGED, keys[2]),
        plans.Step(plans.Action.DELETE, keys[3]),
    )
    assert controller.drifted_keys(plans.Plan(steps)) == {keys[0], keys[1]}


def test_the_drift_report_is_kept_until_the_drifted_set_changes_and_cleared_when_empty() -> None:
    key = objects.Key("apps/v1", "Deployment", "ml", "blue")
    first = record.status("x", None, "2026-01-01T00:00:00Z", drift={key})
    assert first["status"]["drift"]["count"] == 1
    same = record.status("x", first, "2026-01-02T00:00:00Z", drift={key})
    assert same["status"]["drift"] == first["status"]["drift"]  # no rewrite, same detectedAt
    cleared = record.status("x", same, "2026-01-03T00:00:00Z", drift=set())
    assert "drift" not in cleared["status"]
    assert record.drifted(first) == 1 and record.drifted(cleared) == 0


def test_suspended_is_read_from_the_record_spec() -> None:
    assert record.suspended({"spec": {"suspend": True}})
    assert not record.suspended({"spec": {}}) and not record.suspended(None)


def test_the_heap_policy_freezes_what_a_tick_leaves_and_collects_in_full_on_schedule() -> None:
    """No automatic collection during a tick; what survives it is frozen (collections between
    ticks skip it); once `full_every` has passed, a tick ends with everything collected."""
    import gc
    import weakref

    from reconciler.gitops import heap

    now = [0.0]
    policy = heap.Heap(full_every=60.0, clock=lambda: now[0])
    try:
        frozen = gc.get_freeze_count()
        with policy.tick():
            assert not gc.isenabled()
            kept = [{"n": i} for i in range(1000)]
        assert gc.isenabled() and gc.get_freeze_count() >= frozen + len(kept)
        assert policy.full_collections == 0
        node = _Node()
        node.me = node  # a cycle: only the cyclic collector frees it
        alive = weakref.ref(node)
        with policy.tick():
            pass  # it survives the tick: frozen
        del node
        gc.collect()
        assert alive() is not None  # frozen objects are not looked at
        now[0] = 61.0
        with policy.tick():
            pass
        assert alive() is None
        assert policy.full_collections == 1
    finally:
        gc.unfreeze()


class _Node:
    me: object = None


def test_deferred_outcome_writes_run_in_order_and_settle_raises_the_first_error() -> None:
    done: list[int] = []
    writes = recordstore.Deferred()
    gate = threading.Event()

    def write(n: int) -> recordstore.Write:
        def run() -> None:
            gate.wait(10)
            done.append(n)
            if n in (2, 3):
                raise kube.KubeError(f"write {n} refused", status=409)

        return run

    for n in (1, 2, 3, 4):
        writes(write(n))
    assert done == []  # given, not waited for
    gate.set()
    with pytest.raises(kube.KubeError, match="write 2 refused"):
        writes.settle()
    assert done == [1, 2, 3, 4]  # one thread, in order; an error does not stop the rest
    writes.settle()  # the errors were told once
    writes(write(5))
    writes.settle()
    assert done[-1] == 5
