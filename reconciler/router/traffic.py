"""An endpoint's traffic split and mirror copies as a precomputed schedule (pure, no I/O).

`dispatch` asks an endpoint's `Plan` which deployment takes the next request and which
mirror deployments get a copy of it. The split is smooth weighted round robin (nginx's: every
pick adds each weight to its deployment's running score, takes the highest score, and takes the
weights' total off the winner), which is exact over every window of `sum(weights)` consecutive
picks and interleaves them: 90/10 gives 9 blue, 1 green, 9 blue, ... never 90 then 10. Mirror
copies are the same algorithm over {copy: percent, no copy: 100 - percent} for each mirror
deployment, so 10 % means exactly 10 of every 100 requests, evenly spread.

Both are worked out once, when the config is applied, into one cycle of (deployment, mirrors)
steps; a request then costs an index and a modulo. A reload that changes the weights makes a
new Plan, so the cycle restarts from its beginning.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

K = TypeVar("K", bound=Hashable)

PERCENT = 100
# A cycle longer than this is cut to this many steps (weights that are not percents, with a
# huge least common multiple): still smooth, exact over each window of sum(weights) picks.
MAX_CYCLE = 100_000


def smooth_weighted(weights: Mapping[K, int], picks: int) -> list[K]:
    """`picks` choices by smooth weighted round robin over the positive `weights` (ties go to
    the one listed first); [] when no weight is positive."""
    live = [(key, weight) for key, weight in weights.items() if weight > 0]
    if not live:
        return []
    total = sum(weight for _, weight in live)
    current = [0] * len(live)
    chosen: list[K] = []
    for _ in range(picks):
        best = 0
        for i, (_, weight) in enumerate(live):
            current[i] += weight
            if current[i] > current[best]:
                best = i
        current[best] -= total
        chosen.append(live[best][0])
    return chosen


class Plan:
    """Which deployment serves each request of an endpoint, and which mirrors get a copy."""

    __slots__ = ("_next", "cycle")

    def __init__(self, traffic: Mapping[str, int], mirror: Mapping[str, int]) -> None:
        total = sum(w for w in traffic.values() if w > 0)
        length = 0
        if total:
            length = total
            if any(p > 0 for p in mirror.values()):
                length = math.lcm(total, PERCENT)
            length = min(length, MAX_CYCLE)
        picks = smooth_weighted(traffic, length)
        copies: list[list[str]] = [[] for _ in range(length)]
        for target, percent in mirror.items():
            if percent <= 0:
                continue
            for step, copy in enumerate(
                smooth_weighted({True: percent, False: PERCENT - percent}, length)
            ):
                if copy:
                    copies[step].append(target)
        # One immutable tuple per step: handing it out costs nothing.
        self.cycle: Sequence[tuple[str, tuple[str, ...]]] = tuple(
            (pick, tuple(extra)) for pick, extra in zip(picks, copies, strict=True)
        )
        self._next = 0

    def next(self) -> tuple[str, tuple[str, ...]] | None:
        """The next request's (deployment, mirror deployments); None when no weight is
        positive (only a request naming its deployment can be served)."""
        cycle = self.cycle
        if not cycle:
            return None
        step = self._next
        self._next = step + 1 if step + 1 < len(cycle) else 0
        return cycle[step]
