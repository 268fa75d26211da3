"""Carry out a plan's changes against a cluster: the only place a plan touches anything.

Applies the plan's creates and updates stage by stage in apply order (one stage per kind rank);
within a stage the objects are independent, so they are applied concurrently. After the CRD
stage every applied CRD must be Established before its custom resources come. The first stage
with a failure ends the apply (later stages would depend on it). Deletions (prune) go in the
plan's reverse order; a failed delete is reported and retried by the next apply. Progress goes
to `say` one line per stage.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from reconciler import kube, objects
from reconciler.engine import plans

Say = Callable[[str], None]
WORKERS = 8  # concurrent API requests (planning and applying); the server serves them in parallel


def _stages(steps: Iterable[plans.Step]) -> list[list[plans.Step]]:
    changing = [s for s in steps if s.action in (plans.Action.CREATE, plans.Action.UPDATE)]

    def rank(step: plans.Step) -> int:
        return objects.rank({"apiVersion": step.key.api_version, "kind": step.key.kind})

    return [list(group) for _, group in itertools.groupby(changing, key=rank)]


def _kinds(stage: list[plans.Step]) -> str:
    counts: dict[str, int] = {}
    for step in stage:
        counts[step.key.kind] = counts.get(step.key.kind, 0) + 1
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))


def apply_steps(
    cluster: kube.Cluster,
    plan: plans.Plan,
    create_only: frozenset[objects.Key],
    force_conflicts: bool,
    say: Say,
) -> list[str]:
    """Apply every create and update of `plan`; `create_only` objects are created when absent
    and never overwritten. Returns the failures (empty: all applied)."""

    def apply_one(step: plans.Step) -> str:
        assert step.desired is not None
        try:
            if step.key in create_only:
                kube.create_if_absent(cluster, step.desired)
            else:
                kube.apply(cluster, step.desired, force_conflicts=force_conflicts)
        except kube.KubeError as err:
            return f"{step.key}: {err}"
        return ""

    for stage in _stages(plan.steps):
        with ThreadPoolExecutor(WORKERS) as pool:
            failures = [f for f in pool.map(apply_one, stage) if f]
        if failures:
            say(f"  failed: {len(failures)} of {len(stage)} ({_kinds(stage)})")
            return failures
        say(f"  applied {_kinds(stage)}")
        for step in stage:
            if step.key.kind == "CustomResourceDefinition":
                try:
                    kube.wait_established(cluster, step.key.name)
                except kube.KubeError as err:
                    return [f"{step.key}: {err}"]
    return []


def prune(
    cluster: kube.Cluster, steps: Iterable[plans.Step], say: Say
) -> tuple[list[objects.Key], list[str]]:
    """Delete each step's object in the given order: (deleted or already gone, failures)."""
    deleted: list[objects.Key] = []
    failures: list[str] = []
    for step in steps:
        try:
            kube.delete(cluster, objects.reference(step.key))
        except kube.KubeError as err:
            failures.append(f"{step.key}: delete failed: {err}")
            continue
        deleted.append(step.key)
    if deleted or failures:
        say(f"  pruned {len(deleted)} objects" + (f", {len(failures)} failed" if failures else ""))
    return deleted, failures
