"""Inventory set functions and prune safety."""

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from reconciler import objects
from reconciler.engine import inventory


def key(kind: str, name: str, api: str = "apps/v1") -> objects.Key:
    return objects.Key(api, kind, "azureml", name)


def ours(extension: str = "ml") -> dict[str, Any]:
    return {"metadata": {"labels": {objects.MANAGED_BY_LABEL: objects.MANAGED_BY,
                                    objects.PART_OF_LABEL: extension}}}  # fmt: skip


A, B, C = key("Deployment", "a"), key("Deployment", "b"), key("Deployment", "c")
ROLE = key("Role", "a", "rbac.authorization.k8s.io/v1")


def test_prunes_what_left_the_repo_in_reverse_apply_order() -> None:
    previous = frozenset({A, B, C, ROLE})
    decision = inventory.plan_prune(previous, frozenset({A, B}), {C: ours(), ROLE: ours()}, "ml")
    assert decision.delete == (C, ROLE)  # the workload before its RBAC
    assert decision.refused == ""


def test_never_prunes_what_is_not_labelled_ours() -> None:
    previous = frozenset({A, B, C})
    live = {C: ours("someone-else")}
    decision = inventory.plan_prune(previous, frozenset({A, B}), live, "ml")
    assert decision.delete == ()
    assert decision.kept_unowned == (C,)


def test_objects_already_gone_are_not_deleted_again() -> None:
    decision = inventory.plan_prune(frozenset({A, B, C}), frozenset({A, B}), {C: None}, "ml")
    assert decision.delete == ()


def test_refuses_mass_prune_unless_allowed() -> None:
    previous = frozenset({A, B, C})
    live = {A: ours(), B: ours(), C: ours()}
    everything = inventory.plan_prune(previous, frozenset(), live, "ml")
    assert everything.delete == () and "renders nothing" in everything.refused
    most = inventory.plan_prune(previous, frozenset({A}), live, "ml")
    assert most.delete == () and "more than half" in most.refused
    allowed = inventory.plan_prune(previous, frozenset({A}), live, "ml", allow_mass_prune=True)
    assert set(allowed.delete) == {B, C}


KEYS = st.builds(
    key,
    st.sampled_from(["Deployment", "Service", "ConfigMap"]),
    st.text("abc", min_size=1, max_size=3),
)


@given(st.frozensets(KEYS, max_size=8), st.frozensets(KEYS, max_size=8))
def test_never_deletes_a_desired_or_unknown_object(
    previous: frozenset[objects.Key], desired: frozenset[objects.Key]
) -> None:
    live = {k: ours() for k in previous | desired}
    decision = inventory.plan_prune(previous, desired, live, "ml", allow_mass_prune=True)
    assert set(decision.delete) == previous - desired
    assert not set(decision.delete) & desired


CRD = objects.Key("apiextensions.k8s.io/v1", "CustomResourceDefinition", "", "jobs.example.io")


def test_a_crd_that_left_the_repo_is_kept_not_pruned() -> None:
    previous = frozenset({A, B, C, CRD})
    live = {C: ours(), CRD: ours()}
    decision = inventory.plan_prune(previous, frozenset({A, B}), live, "ml")
    assert decision.delete == (C,)
    assert decision.kept_definitions == (CRD,)


def test_what_another_extension_of_the_repo_declares_moved_and_is_not_pruned() -> None:
    previous = frozenset({A, B, C})
    decision = inventory.plan_prune(
        previous, frozenset({A}), {B: ours(), C: ours()}, "ml", claimed_elsewhere=frozenset({B})
    )
    assert decision.delete == (C,)
    assert decision.moved == (B,)
