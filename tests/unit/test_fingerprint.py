"""The desired-state fingerprint (`engine/fingerprint.py`) and what the live cache keeps
(`engine/livecache.strip`): when planning may skip the server's dry run."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from reconciler import objects
from reconciler.engine import fingerprint, livecache, plans

MANAGER = "mlext-reconciler"


def config_map(data: dict[str, str], revision: str = "abc") -> objects.Object:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "gateway",
            "namespace": "azureml",
            "labels": {objects.MANAGED_BY_LABEL: objects.MANAGED_BY},
            "annotations": {objects.SOURCE_REVISION_ANNOTATION: revision},
        },
        "data": data,
    }


def fields_of(obj: Any) -> Any:
    """A managedFields `fieldsV1` naming every map field of `obj` as an apply would."""
    if not isinstance(obj, dict) or not obj:
        return {}
    return {f"f:{k}": fields_of(v) for k, v in obj.items() if v is not None}


def live_after_apply(sent: objects.Object, manager: str = MANAGER) -> objects.Object:
    """The live object right after `manager` applied `sent` (fields as the server records)."""
    live = copy.deepcopy(sent)
    owned = {k: v for k, v in sent.items() if k not in ("apiVersion", "kind")}
    fields = fields_of(owned)
    fields["f:metadata"].pop("f:name", None)
    fields["f:metadata"].pop("f:namespace", None)
    live["metadata"]["resourceVersion"] = "7"
    live["metadata"]["managedFields"] = [
        {"manager": manager, "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": fields}
    ]
    return live


def test_the_fingerprint_ignores_the_source_revision_and_itself() -> None:
    a = config_map({"k": "v"}, revision="one")
    b = config_map({"k": "v"}, revision="two")
    assert fingerprint.of(a) == fingerprint.of(b)
    assert fingerprint.of(fingerprint.stamp(a)) == fingerprint.of(a)
    assert fingerprint.of(config_map({"k": "w"})) != fingerprint.of(a)
    assert len(fingerprint.of(a)) == 32


def test_an_object_applied_by_us_and_untouched_is_in_sync() -> None:
    sent = fingerprint.stamp(config_map({"k": "v"}))
    assert fingerprint.in_sync(sent, live_after_apply(sent), MANAGER)


def test_a_changed_desired_object_a_missing_one_or_another_applier_is_not_in_sync() -> None:
    sent = fingerprint.stamp(config_map({"k": "v"}))
    live = live_after_apply(sent)
    changed = fingerprint.stamp(config_map({"k": "w"}))
    assert not fingerprint.in_sync(changed, live, MANAGER)
    assert not fingerprint.in_sync(sent, None, MANAGER)
    assert not fingerprint.in_sync(sent, live_after_apply(sent, manager="kubectl"), MANAGER)


def test_a_field_another_manager_took_over_is_not_in_sync() -> None:
    sent = fingerprint.stamp(config_map({"k": "v", "other": "x"}))
    live = live_after_apply(sent)
    # `kubectl edit` of data.k: the server moves the field to kubectl-edit's entry.
    entry = live["metadata"]["managedFields"][0]
    entry["fieldsV1"]["f:data"].pop("f:k")
    live["metadata"]["managedFields"].append(
        {"manager": "kubectl-edit", "operation": "Update", "fieldsV1": {"f:data": {"f:k": {}}}}
    )
    live["data"]["k"] = "edited"
    assert not fingerprint.in_sync(sent, live, MANAGER)


def test_a_field_inside_an_atomic_map_is_covered_by_owning_the_map() -> None:
    sent = fingerprint.stamp(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "s", "namespace": "n"},
            "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]},
        }
    )
    live = live_after_apply(sent)
    fields = live["metadata"]["managedFields"][0]["fieldsV1"]
    fields["f:spec"]["f:selector"] = {}  # atomic: owned whole, its keys not listed
    fields["f:spec"]["f:ports"] = {'k:{"port":80,"protocol":"TCP"}': {".": {}, "f:port": {}}}
    assert fingerprint.in_sync(sent, live, MANAGER)


def test_the_plan_updates_an_object_whose_only_difference_is_a_missing_fingerprint() -> None:
    desired = fingerprint.stamp(config_map({"k": "v"}))
    legacy = copy.deepcopy(desired)
    del legacy["metadata"]["annotations"][fingerprint.ANNOTATION]
    key = objects.key(desired)
    plan = plans.build([desired], {key: desired}, {key: legacy})
    (step,) = plan.steps
    assert step.action is plans.Action.UPDATE
    assert [c.path for c in step.changes] == [f"metadata.annotations.{fingerprint.ANNOTATION}"]
    unchanged = plans.build([desired], {key: desired}, {key: desired})
    assert unchanged.steps[0].action is plans.Action.UNCHANGED


def test_the_cache_keeps_our_fields_and_a_scalers_replicas_and_drops_other_status() -> None:
    live = live_after_apply(fingerprint.stamp(config_map({"k": "v"})))
    live["status"] = {"anything": 1}
    live["metadata"]["managedFields"] += [
        {"manager": "kube-controller-manager", "operation": "Update", "fieldsV1": {"f:x": {}}},
        {
            "manager": "mlext-router",
            "operation": "Update",
            "subresource": "scale",
            "fieldsV1": {"f:spec": {"f:replicas": {}}},
        },
    ]
    kept = livecache.strip(live)
    assert "status" not in kept
    managers = [e["manager"] for e in kept["metadata"]["managedFields"]]
    assert managers == [MANAGER, "mlext-router"]
    assert kept["metadata"]["managedFields"][0] == live["metadata"]["managedFields"][0]
    deployment = {"kind": "Deployment", "metadata": {}, "status": {"readyReplicas": 1}}
    assert livecache.strip(deployment)["status"] == {"readyReplicas": 1}


values = st.recursive(
    st.one_of(st.integers(), st.text(max_size=5), st.booleans()),
    lambda inner: st.dictionaries(st.text(min_size=1, max_size=4), inner, max_size=3),
    max_leaves=10,
)


@given(st.dictionaries(st.text(min_size=1, max_size=6), values, max_size=4))
def test_every_freshly_applied_object_is_in_sync_with_itself(data: dict[str, Any]) -> None:
    obj = config_map({})
    obj["data"] = data
    sent = fingerprint.stamp(obj)
    assert fingerprint.in_sync(sent, live_after_apply(sent), MANAGER)


JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-2, 2)
    | st.sampled_from([0.0, 1.0, -0.0])
    | st.text(max_size=2),
    lambda inner: (
        st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=2), inner, max_size=2)
    ),
    max_leaves=6,
)


@given(st.lists(JSONISH, min_size=2, max_size=4), st.booleans())
def test_remembered_answers_are_the_computed_ones(values: list[Any], owned_whole: bool) -> None:
    """Fingerprints and field-coverage answers are remembered by exact content, so values that
    are equal but of other types (`1`, `1.0`, `True`) or order never share an answer, and any
    revision shares the answer of its shape."""
    sent = [fingerprint.stamp({**config_map({}), "data": {"v": v}}) for v in values]
    for obj in sent:
        assert fingerprint.of(obj) == fingerprint._of_clean(fingerprint._hashed(obj))
    live = live_after_apply(sent[0])
    if not owned_whole:
        live["metadata"]["managedFields"][0]["fieldsV1"]["f:data"] = {"f:v": {}}
    for obj in sent:
        for revision in ("one", "two"):
            annotations = {
                **obj["metadata"]["annotations"],
                objects.SOURCE_REVISION_ANNOTATION: revision,
            }
            again = {**obj, "metadata": {**obj["metadata"], "annotations": annotations}}
            fields = live["metadata"]["managedFields"][0]["fieldsV1"]
            expected = fingerprint.recorded(again) == fingerprint.recorded(
                live
            ) and fingerprint._owns_all(fields, again)
            assert fingerprint.in_sync(again, live, MANAGER) == expected


def test_a_live_object_is_named_by_its_uid_and_version_and_an_edit_is_seen() -> None:
    """Our managedFields set of a live object from the server is remembered under its uid and
    resourceVersion (nothing encoded each tick); an edit gives a new version, and is seen."""
    sent = fingerprint.stamp(config_map({"k": "v", "other": "x"}))
    live = live_after_apply(sent)
    live["metadata"]["uid"] = "3f1c0d6e"
    assert fingerprint.in_sync(sent, live, MANAGER)
    edited = copy.deepcopy(live)
    edited["metadata"]["resourceVersion"] = "8"
    edited["metadata"]["managedFields"][0]["fieldsV1"]["f:data"].pop("f:k")
    assert not fingerprint.in_sync(sent, edited, MANAGER)
