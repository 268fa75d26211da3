"""The traffic split and mirror schedule (`router.traffic`): exact over every window, smooth,
deterministic."""

from __future__ import annotations

import collections
import itertools

import pytest

from reconciler.router import traffic


def picks(plan: traffic.Plan, count: int) -> list[tuple[str, tuple[str, ...]]]:
    steps = [plan.next() for _ in range(count)]
    assert all(step is not None for step in steps)
    return [step for step in steps if step is not None]


def test_smooth_weighted_round_robin_is_nginxs() -> None:
    # nginx's own example: weights 5, 1, 1 give a a b a c a a.
    assert traffic.smooth_weighted({"a": 5, "b": 1, "c": 1}, 7) == list("aabacaa")
    assert traffic.smooth_weighted({"a": 0, "b": 0}, 5) == []
    assert traffic.smooth_weighted({"a": 3, "b": 0}, 3) == ["a", "a", "a"]


@pytest.mark.parametrize(
    "weights",
    [{"blue": 90, "green": 10}, {"a": 50, "b": 50}, {"a": 33, "b": 33, "c": 34}, {"x": 100},
     {"a": 1, "b": 99}, {"a": 7, "b": 0, "c": 93}],
)  # fmt: skip
def test_every_window_of_100_picks_is_exact(weights: dict[str, int]) -> None:
    plan = traffic.Plan(weights, {})
    chosen = [name for name, _ in picks(plan, 1000)]
    wanted = {name: weight for name, weight in weights.items() if weight}
    # Aligned windows are exact, and any 100 consecutive picks are within one of the weights.
    for start in range(0, 1000, 100):
        assert collections.Counter(chosen[start : start + 100]) == wanted
    for start in range(0, 900):
        window = collections.Counter(chosen[start : start + 100])
        assert all(abs(window[name] - weight) <= 1 for name, weight in wanted.items())


def test_the_split_interleaves_rather_than_bursts() -> None:
    chosen = [name for name, _ in picks(traffic.Plan({"blue": 90, "green": 10}, {}), 100)]
    runs = [len(list(group)) for name, group in itertools.groupby(chosen) if name == "blue"]
    assert max(runs) <= 9 and chosen.count("green") == 10
    assert max(len(list(g)) for n, g in itertools.groupby(chosen) if n == "green") == 1


def test_mirror_copies_are_exact_per_100_and_spread() -> None:
    plan = traffic.Plan({"blue": 100}, {"green": 10, "shadow": 25, "off": 0})
    steps = picks(plan, 300)
    for start in range(0, 300, 100):
        window = steps[start : start + 100]
        copied = collections.Counter(m for _, mirrors in window for m in mirrors)
        assert copied == {"green": 10, "shadow": 25}
    green = [i for i, (_, mirrors) in enumerate(steps[:100]) if "green" in mirrors]
    assert [b - a for a, b in itertools.pairwise(green)] == [10] * 9


def test_the_cycle_repeats_and_is_the_same_for_the_same_weights() -> None:
    one, two = (
        traffic.Plan({"a": 60, "b": 40}, {"c": 5}),
        traffic.Plan({"a": 60, "b": 40}, {"c": 5}),
    )
    first = picks(one, 100)
    assert picks(one, 100) == first  # the cycle starts over where it began
    assert picks(two, 100) == first  # deterministic: no randomness, no clock
    assert len(one.cycle) == 100


def test_no_positive_weight_means_no_pick_and_no_copy() -> None:
    plan = traffic.Plan({"a": 0, "b": 0}, {"c": 10})
    assert plan.next() is None and plan.cycle == ()


def test_weights_that_are_not_percents_stay_exact_over_their_window() -> None:
    plan = traffic.Plan({"a": 2, "b": 1}, {})
    assert [name for name, _ in picks(plan, 6)] == list("abaaba")
    mirrored = traffic.Plan({"a": 2, "b": 1}, {"m": 50})
    assert len(mirrored.cycle) == 300  # lcm(3, 100): both the split and the copies are exact
    steps = picks(mirrored, 300)
    assert sum(1 for _, m in steps if m) == 150
    assert collections.Counter(name for name, _ in steps) == {"a": 200, "b": 100}
