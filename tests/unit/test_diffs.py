"""Diffs between object versions: normalisation, field changes, secrets never shown."""

import base64
import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from reconciler import objects
from reconciler.engine import diffs

DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "name": "gateway",
        "namespace": "azureml",
        "annotations": {objects.SOURCE_REVISION_ANNOTATION: "abc"},
    },
    "spec": {"replicas": 1, "template": {"spec": {"containers": [{"image": "x:1"}]}}},
}


def secret(**data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "tls", "namespace": "azureml"},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def test_server_fields_and_revision_do_not_count() -> None:
    live = copy.deepcopy(DEPLOYMENT)
    live["metadata"].update(
        {"resourceVersion": "7", "uid": "u", "managedFields": [{"manager": "x"}],
         "creationTimestamp": "2026-01-01T00:00:00Z", "generation": 3,
         "annotations": {objects.SOURCE_REVISION_ANNOTATION: "def"}}
    )  # fmt: skip
    live["status"] = {"readyReplicas": 1}
    assert diffs.changes(live, DEPLOYMENT) == []
    assert diffs.unified(live, DEPLOYMENT) == ""


def test_field_level_changes() -> None:
    new = copy.deepcopy(DEPLOYMENT)
    new["spec"]["replicas"] = 3
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "x:2"
    assert diffs.changes(DEPLOYMENT, new) == [
        diffs.Change("spec.replicas", 1, 3),
        diffs.Change("spec.template.spec.containers[0].image", "x:1", "x:2"),
    ]
    text = diffs.unified(DEPLOYMENT, new)
    assert "-  replicas: 1\n+  replicas: 3\n" in text
    assert text.startswith("--- a/Deployment/azureml/gateway\n")


def test_created_and_deleted() -> None:
    assert diffs.changes(None, DEPLOYMENT)
    assert diffs.unified(DEPLOYMENT, None).count("\n-") > 5


def test_changed_secret_names_keys_never_values() -> None:
    old, new = secret(cert="CERT-ONE", key="KEY-ONE"), secret(cert="CERT-ONE", key="KEY-TWO")
    assert diffs.changed_secret_keys(old, new) == ["key"]
    shown = diffs.unified(old, new) + repr(diffs.changes(old, new))
    for value in ("CERT-ONE", "KEY-ONE", "KEY-TWO"):
        assert value not in shown
        assert base64.b64encode(value.encode()).decode() not in shown
    assert diffs.changes(old, new) == [diffs.Change("data.key", objects.REDACTED, diffs.CHANGED)]
    assert diffs.changes(old, copy.deepcopy(old)) == []


def test_a_secret_field_that_is_not_a_map_is_masked_whole() -> None:
    old = {**secret(), "data": "TOKEN-ONE"}
    new = {**secret(), "data": "TOKEN-TWO"}
    shown = diffs.unified(old, new) + repr(diffs.changes(old, new))
    assert "TOKEN-ONE" not in shown and "TOKEN-TWO" not in shown
    assert diffs.changes(old, new) == [diffs.Change("data", objects.REDACTED, diffs.CHANGED)]
    assert diffs.changes(old, copy.deepcopy(old)) == []


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=15,
)


@given(st.dictionaries(st.text(max_size=6), JSON, max_size=5), st.booleans())
def test_an_object_never_differs_from_itself(body: dict[str, Any], is_secret: bool) -> None:
    obj = {**body, "apiVersion": "v1", "kind": "Secret" if is_secret else "ConfigMap",
           "metadata": {"name": "x"}}  # fmt: skip
    assert diffs.changes(obj, copy.deepcopy(obj)) == []
    assert diffs.unified(obj, copy.deepcopy(obj)) == ""
    assert diffs.changes(obj, obj) == diffs.changes(obj, obj)  # deterministic


def test_the_rollout_revision_and_field_order_are_not_changes() -> None:
    desired = {"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "a", "namespace": "n"}, "spec": {"replicas": 1}}  # fmt: skip
    live = {"metadata": {"name": "a", "namespace": "n",
                         "annotations": {"deployment.kubernetes.io/revision": "1"}},
            "spec": {"replicas": 1}, "kind": "Deployment", "apiVersion": "apps/v1"}  # fmt: skip
    assert diffs.changes(live, desired) == []
    assert diffs.unified(live, desired) == ""
