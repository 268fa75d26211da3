"""When the loop may hand out an extension's last plan again (`engine.planmemo`), pure."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from reconciler import objects
from reconciler.engine import planmemo

KEY = objects.Key("v1", "ConfigMap", "ns", "gateway")
OTHER = objects.Key("v1", "ConfigMap", "ns", "other")


def made_from(
    ids: tuple[str, ...] = ("a",), previous: frozenset[objects.Key] = frozenset()
) -> planmemo.Inputs:
    found = planmemo.inputs(
        [{"id": i} for i in ids],
        lambda obj: obj["id"],
        frozenset(),
        previous,
        frozenset({OTHER}),
        ("options",),
    )
    assert found is not None
    return found


def looking_at(
    live: dict[objects.Key, objects.Object | None],
) -> Callable[[Iterable[objects.Key]], planmemo.Live]:
    def look_up(keys: Iterable[objects.Key]) -> dict[objects.Key, objects.Object | None]:
        return {key: live.get(key) for key in keys}

    return look_up


def test_a_kept_plan_is_handed_out_while_inputs_and_live_objects_are_the_same() -> None:
    plans: planmemo.Plans[str] = planmemo.Plans()
    live = {KEY: {"metadata": {"resourceVersion": "1"}}}
    plans.keep("ext", made_from(), live, "the plan", in_sync=True)
    assert plans.get("ext", made_from(), looking_at(live)) == "the plan"
    assert plans.reused == 1
    assert plans.get("other-ext", made_from(), looking_at(live)) is None


def test_any_changed_input_or_live_object_means_planning_again() -> None:
    plans: planmemo.Plans[str] = planmemo.Plans()
    live: dict[objects.Key, objects.Object | None] = {KEY: {"metadata": {"resourceVersion": "1"}}}
    plans.keep("ext", made_from(), live, "the plan", in_sync=True)
    assert plans.get("ext", made_from(("b",)), looking_at(live)) is None
    assert plans.get("ext", made_from(previous=frozenset({KEY})), looking_at(live)) is None
    # The cache holds a new object for every change: an equal copy is not the same object.
    copied = {KEY: {"metadata": {"resourceVersion": "1"}}}
    assert plans.get("ext", made_from(), looking_at(copied)) is None
    assert plans.get("ext", made_from(), looking_at({KEY: None})) is None
    assert plans.reused == 0


def test_only_in_sync_plans_with_content_ids_are_kept() -> None:
    plans: planmemo.Plans[str] = planmemo.Plans()
    live = {KEY: None}
    unknown = planmemo.inputs([{}], lambda obj: None, frozenset(), frozenset(), frozenset(), 0)
    assert unknown is None  # an object without a content id: never reused
    plans.keep("ext", unknown, live, "the plan", in_sync=True)
    assert plans.get("ext", unknown, looking_at(live)) is None
    plans.keep("ext", made_from(), live, "the plan", in_sync=True)
    plans.keep("ext", made_from(), live, "a plan with changes", in_sync=False)
    assert plans.get("ext", made_from(), looking_at(live)) is None
    plans.keep("ext", made_from(), live, "the plan", in_sync=True)
    plans.forget_others(["another"])
    assert plans.get("ext", made_from(), looking_at(live)) is None
