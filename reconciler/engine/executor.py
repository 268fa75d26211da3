"""Carry out a plan's changes against a cluster: the only place a plan touches anything.

Applies the plan's creates and updates in apply order, in waves (`_WAVE_ENDS`): CRDs; namespaces;
the prerequisites of pods (service accounts, RBAC, secrets, config); workloads and services;
custom resources. Within a wave nothing depends on anything else, so its objects are applied
concurrently (bounded: `workers`) with no barrier between kinds. After the CRD wave every CRD
that is not Established yet (a new one) is waited for before its custom resources come. The
first wave with a failure ends the apply (later waves would depend on it). Deletions (prune) go
in the plan's reverse order; a failed delete is reported and retried by the next apply. Progress
goes to `emit` as `events` (one per kind rank applied, one for the prune).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from reconciler import kube, objects
from reconciler.engine import events, health, plans

WORKERS = 16  # default bound on concurrent API requests (dry runs, applies); `Options.concurrency`


# Ranks (objects.KIND_RANK) that end a wave: what a later kind really needs to exist first.
# CRDs (Established) before their resources, namespaces before what lives in them, and the
# prerequisites of pods (service accounts, RBAC, quotas, secrets, config) before the workloads,
# so that no pod starts without them. Within a wave every object is applied concurrently, in
# apply order, with no barrier between kinds.
_WAVE_ENDS = (
    objects.KIND_RANK["CustomResourceDefinition"],
    objects.KIND_RANK["Namespace"],
    objects.KIND_RANK["PersistentVolumeClaim"],
    objects.KIND_RANK["PodDisruptionBudget"],
)


def _rank(step: plans.Step) -> int:
    return objects.rank({"apiVersion": step.key.api_version, "kind": step.key.kind})


def _wave(step: plans.Step) -> int:
    rank = _rank(step)
    return next((n for n, end in enumerate(_WAVE_ENDS) if rank <= end), len(_WAVE_ENDS))


def _stages(steps: Iterable[plans.Step]) -> list[list[plans.Step]]:
    changing = [s for s in steps if s.action in (plans.Action.CREATE, plans.Action.UPDATE)]
    return [list(group) for _, group in itertools.groupby(changing, key=_wave)]


def _kinds(stage: list[plans.Step]) -> events.Kinds:
    counts: dict[str, int] = {}
    for step in stage:
        counts[step.key.kind] = counts.get(step.key.kind, 0) + 1
    return tuple(sorted(counts.items()))


def apply_steps(
    cluster: kube.Cluster,
    extension: str,
    plan: plans.Plan,
    create_only: frozenset[objects.Key],
    force_conflicts: bool,
    emit: events.Emit,
    workers: int = WORKERS,
) -> list[str]:
    """Apply every create and update of `extension`'s `plan`, wave by wave, at most `workers`
    requests at a time; `create_only` objects are created when absent and never overwritten.
    Returns the failures (empty: all applied)."""

    applied: dict[objects.Key, objects.Object] = {}

    def apply_one(step: plans.Step) -> str:
        assert step.desired is not None
        try:
            if step.key in create_only:
                kube.create_if_absent(cluster, step.desired)
            else:
                applied[step.key] = kube.apply(
                    cluster, step.desired, force_conflicts=force_conflicts
                )
        except kube.KubeError as err:
            return f"{step.key}: {err}"
        return ""

    for stage in _stages(plan.steps):
        with ThreadPoolExecutor(workers) as pool:
            failures = [f for f in pool.map(apply_one, stage) if f]
        if failures:
            emit(events.ApplyFailed(extension, len(failures), len(stage), _kinds(stage)))
            return failures
        for _, kind_steps in itertools.groupby(stage, key=_rank):
            emit(events.Applied(extension, _kinds(list(kind_steps))))
        for step in stage:
            # Only a CRD that is not Established yet (new) is waited for.
            established = health.of(applied.get(step.key)).state is health.State.HEALTHY
            if step.key.kind == "CustomResourceDefinition" and not established:
                try:
                    kube.wait_established(cluster, step.key.name)
                except kube.KubeError as err:
                    return [f"{step.key}: {err}"]
    return []


def prune(
    cluster: kube.Cluster, extension: str, steps: Iterable[plans.Step], emit: events.Emit
) -> tuple[list[objects.Key], list[str]]:
    """Delete each step's object of `extension` in the given order: (deleted or already gone,
    failures)."""
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
        emit(events.Pruned(extension, len(deleted), len(failures)))
    return deleted, failures
