"""Plans as data: actions in apply order, deletions last, diffs masked, deterministic."""

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from reconciler import objects
from reconciler.engine import plans
from reconciler.printers import plans as plantext


def deployment(name: str, image: str = "x:1") -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"template": {"spec": {"containers": [{"image": image}]}}}}  # fmt: skip


NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}}


def served(obj: dict[str, Any]) -> dict[str, Any]:
    """What the server would store: the object plus server-owned fields."""
    live = copy.deepcopy(obj)
    live["metadata"].update({"uid": "1", "resourceVersion": "9", "managedFields": []})
    live["status"] = {"observedGeneration": 1}
    return live


def test_create_update_unchanged_then_delete() -> None:
    a, b, c = deployment("a"), deployment("b", "x:2"), deployment("c")
    gone = objects.key(deployment("old"))
    live = {
        objects.key(a): served(a),
        objects.key(b): served(deployment("b")),
        gone: served(deployment("old")),
    }
    would_be = {objects.key(o): served(o) for o in (a, b)}
    plan = plans.build([c, b, a, NAMESPACE], would_be, live, prune=[gone])
    assert [(s.action.value, s.key.name) for s in plan.steps] == [
        ("create", "ns"),
        ("unchanged", "a"),
        ("update", "b"),
        ("create", "c"),
        ("delete", "old"),
    ]
    update = plan.of(plans.Action.UPDATE)[0]
    assert [c.path for c in update.changes] == ["spec.template.spec.containers[0].image"]
    assert plan.has_changes
    assert plantext.summary(plan) == "2 to create, 1 to update, 1 to delete, 1 unchanged"
    text = plantext.text(plan)
    assert "~ update Deployment/ns/b\n" in text and "+      - image: x:2" in text
    assert "= unchanged" not in text and "= unchanged" in plantext.text(plan, show_unchanged=True)


def test_secret_updates_never_show_values() -> None:
    old = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "ns"},
           "data": {"key.pem": "T0xELUtFWQ=="}}  # fmt: skip
    new = copy.deepcopy(old)
    new["data"]["key.pem"] = "TkVXLUtFWQ=="
    plan = plans.build([new], {objects.key(new): new}, {objects.key(old): old})
    text = plantext.text(plan)
    assert "T0xELUtFWQ==" not in text and "TkVXLUtFWQ==" not in text
    assert "key.pem: '<redacted: changed>'" in text


@given(
    st.lists(st.sampled_from("abcdef"), unique=True, max_size=6), st.sampled_from(["x:1", "y:2"])
)
def test_applying_what_is_live_plans_nothing(names: list[str], image: str) -> None:
    desired = [deployment(n, image) for n in names]
    live = {objects.key(o): served(o) for o in desired}
    plan = plans.build(desired, live, live)
    assert not plan.has_changes
    assert plan == plans.build(list(reversed(desired)), live, live)  # order-independent
