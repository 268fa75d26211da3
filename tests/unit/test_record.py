"""The ExtensionStatus record: complete statuses, carried-forward fields, inventory round trip."""

from reconciler import objects
from reconciler.engine import record

A = objects.Key("apps/v1", "Deployment", "azureml", "gateway")
ROLE = objects.Key("rbac.authorization.k8s.io/v1", "ClusterRole", "", "ml-gateway")


def test_inventory_round_trips_through_the_status() -> None:
    written = record.status("ml", None, "2026-01-01T00:00:00Z", inventory=[ROLE, A])
    assert written["status"]["inventory"]["count"] == 2
    assert record.inventory_of(written) == {A, ROLE}
    assert written["status"]["inventory"]["ids"] == [
        "apps/v1 Deployment azureml/gateway",
        "rbac.authorization.k8s.io/v1 ClusterRole ml-gateway",
    ]


def test_a_record_listing_its_inventory_as_entries_is_read_and_rewritten_as_ids() -> None:
    entries = [
        {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "azureml", "name": "gateway"},
        {"apiVersion": ROLE.api_version, "kind": "ClusterRole", "name": ROLE.name},
    ]
    before = {"status": {"inventory": {"count": 2, "entries": entries}}}
    assert record.inventory_of(before) == {A, ROLE}
    later = record.status("ml", before, "2026-01-01T00:00:00Z", attempted_revision="abc")
    assert "entries" not in later["status"]["inventory"]
    assert record.inventory_of(later) == {A, ROLE}


def test_a_status_carries_forward_what_is_not_given() -> None:
    first = record.status(
        "ml",
        None,
        "2026-01-01T00:00:00Z",
        outcome=record.Outcome(record.SUCCEEDED, "Succeeded"),
        inventory=[A],
        applied_revision="abc",
    )
    second = record.status("ml", first, "2026-01-02T00:00:00Z", attempted_revision="def")
    assert second["status"]["lastAppliedRevision"] == "abc"
    assert second["status"]["lastAttemptedRevision"] == "def"
    assert second["status"]["provisioningState"] == "Succeeded"
    assert record.inventory_of(second) == {A}


def test_the_ready_condition_moves_its_transition_time_only_on_a_change() -> None:
    ok = record.Outcome(record.SUCCEEDED, "Succeeded")
    first = record.status("ml", None, "2026-01-01T00:00:00Z", outcome=ok)
    same = record.status("ml", first, "2026-01-02T00:00:00Z", outcome=ok)
    assert same["status"] == first["status"]  # nothing to write on a no-op reconcile
    failed = record.Outcome(record.FAILED, "ApplyFailed", ("Deployment/azureml/gateway: boom",))
    changed = record.status("ml", same, "2026-01-03T00:00:00Z", outcome=failed)
    (ready,) = changed["status"]["conditions"]
    assert ready == {
        "type": "Ready",
        "status": "False",
        "reason": "ApplyFailed",
        "message": "Deployment/azureml/gateway: boom",
        "lastTransitionTime": "2026-01-03T00:00:00Z",
    }
    assert record.summary(changed)["reasons"] == ["Deployment/azureml/gateway: boom"]


def test_the_crd_shows_the_state_with_kubectl_get() -> None:
    crd = record.crd()
    assert crd["metadata"]["name"] == record.CRD_NAME
    (version,) = crd["spec"]["versions"]
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["State"] == ".status.provisioningState"
    assert version["subresources"] == {"status": {}}
