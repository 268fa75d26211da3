"""Make a cluster match a rendered repo, one extension at a time, in named phases.

This module runs the phases in order over a `revision.Revision` (loaded and rendered; what
planning takes of it is rendered: objects, key Secrets, extensions) and holds what passes
between them (`Options`, `ExtensionPlan`, `ExtensionResult`); the CLI and the GitOps loop call
it, and get its progress as `events` through the `emit` they pass (how they read is theirs:
`reconciler.printers`). The phases, as Flux's
kustomize-controller names them: **observe** (`observe`: the live objects, and the server's dry
run of every desired object so defaulting and admission count), **plan** (pure: `plans.build`
and `inventory.plan_prune`), **record** (the inventory grows to cover what is about to be
applied, before anything is), **apply** (`executor`), **prune** (`executor`), **health**
(`health` over the live objects), and the outcome written to the extension's `ExtensionStatus`
record with an Event (`recordstore`). Beside a whole reconcile: `delete_extension` (prune
everything one extension owns) and `refreshed_records` (the health phase alone, for every
record).

Safety rules this module owns:
- One source owns an extension (`owners`): an extension whose record names another source is
  refused before anything is observed: nothing is applied or pruned, and its record is not
  written, unless `Options.adopt` takes it over (its owner becomes this source, and what only
  the previous owner declared is pruned as usual).
- Nothing is applied for an extension when the dry run rejects any of its objects (a conflict
  with another field manager, an invalid field, an immutable field): the errors are the outcome.
- The inventory is written before applying (previous + desired; not when that is what it
  already holds) and after pruning (desired + what could not be deleted, with the outcome),
  each in one request,
  so a crash at any point leaves every object the reconciler may have created recorded, and the
  next apply finishes the job.
- A Job runs once per name: a Job in the inventory that is gone from the cluster (its TTL
  removed it after it finished) is not created again; to run it again, give it a new name.
- Deployment keys (auth Secrets) are created once and never rewritten.
- Replicas another manager (the router's autoscaler) owns are left out of what is applied.
"""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field, replace

from reconciler import kube, objects
from reconciler.engine import (
    events,
    executor,
    fingerprint,
    health,
    inventory,
    livecache,
    observe,
    owners,
    ownership,
    planmemo,
    plans,
    record,
    recordstore,
    revision,
    secretrefs,
)

ContentId = Callable[[objects.Object], Hashable | None]
Write = Callable[[recordstore.Write], None]

WAIT_INTERVAL = 1.0


@dataclass(frozen=True)
class Options:
    dry_run: bool = False
    prune: bool = True
    force_conflicts: bool = False
    allow_mass_prune: bool = False
    wait: bool = False
    timeout: float = 300.0
    concurrency: int = executor.WORKERS  # dry runs and applies in flight at once
    adopt: bool = False  # take over extensions another source owns (`owners`)


@dataclass
class ExtensionPlan:
    """Everything observed and decided for one extension before anything is changed."""

    name: str
    plan: plans.Plan
    # What to apply, replicas trimmed where another manager owns (none in a kept plan:
    # `_keys_only`).
    desired: list[objects.Object]
    generated: list[objects.Object]  # created once when absent, never updated (keys)
    previous: frozenset[objects.Key]
    prune: inventory.PruneDecision
    record_live: objects.Object | None
    live: dict[objects.Key, objects.Object | None]
    errors: list[str] = field(default_factory=list)  # dry-run rejections: nothing is applied
    finished_jobs: list[objects.Key] = field(default_factory=list)
    claim: owners.Claim | None = None  # set by `plan_each`; None: not checked (ours)

    @property
    def refused(self) -> bool:
        """Another source owns the extension: nothing was observed or planned, and nothing
        may be applied, pruned or written to its record."""
        return self.claim is not None and self.claim.refused

    @functools.cached_property
    def desired_keys(self) -> frozenset[objects.Key]:
        """Computed once: a tick asks five times, and each walks every desired object."""
        return inventory.of([*self.desired, *self.generated])


@dataclass
class ExtensionResult:
    name: str
    plan: plans.Plan
    outcome: record.Outcome
    seconds: float = 0.0  # to plan and carry it out (`carry_out_all` times it)
    removed: bool = False  # it left the repo, and now the cluster: its record is deleted


def by_extension(rendered: Iterable[objects.Object]) -> dict[str, list[objects.Object]]:
    """Rendered objects grouped by the extension that owns them (the part-of label)."""
    groups: dict[str, list[objects.Object]] = {}
    for obj in rendered:
        owner = obj["metadata"]["labels"][objects.PART_OF_LABEL]
        groups.setdefault(owner, []).append(obj)
    return groups


# --- observe, plan ----------------------------------------------------------------------------


def plan_extension(
    cluster: kube.Cluster,
    name: str,
    rendered: list[objects.Object],
    generated: list[objects.Object],
    record_live: objects.Object | None,
    options: Options,
    claimed_elsewhere: frozenset[objects.Key] = frozenset(),
    reads: livecache.Reads | None = None,
    content_id: ContentId = lambda obj: None,
) -> ExtensionPlan:
    """Observe the cluster for one extension and plan it; changes nothing. `claimed_elsewhere`:
    what the repo's other extensions declare (never pruned here). Only objects whose
    fingerprint says they changed (or that are missing, or whose fields someone else took) are
    dry-run; the others are unchanged as they are live. `content_id`: what render knows each
    object by (`render.Rendered.content_id`), for looking up its fingerprint."""
    previous = record.inventory_of(record_live)
    keyed = [(objects.key(obj), obj) for obj in rendered]  # each key made once
    declared = frozenset(key for key, _ in keyed) | inventory.of(generated)
    live = observe.live_objects(cluster, declared | previous, reads)
    finished_jobs = [
        key for key, obj in keyed if obj["kind"] == "Job" and key in previous and live[key] is None
    ]
    finished = set(finished_jobs)
    stamped = [
        (key, fingerprint.stamp(sent, content_id(obj) if sent is obj else None))
        for key, obj in keyed
        if key not in finished
        for sent in [ownership.respect_scaler(obj, live[key], kube.FIELD_MANAGER)]
    ]
    desired = [obj for _, obj in stamped]
    unchanged = observe.in_sync(stamped, live)
    would_be, errors = observe.dry_run(
        cluster,
        [obj for key, obj in stamped if key not in unchanged],
        live,
        force_conflicts=options.force_conflicts,
        workers=options.concurrency,
    )
    for key in unchanged:  # in sync, so live: the server would keep it as it is
        current = live[key]
        if current is not None:
            would_be[key] = current
    for secret in generated:  # created once: an existing one is never compared or changed
        current = live[objects.key(secret)]
        if current is not None:
            would_be[objects.key(secret)] = current
            unchanged.add(objects.key(secret))
    decision = inventory.plan_prune(
        previous,
        declared,
        live,
        name,
        allow_mass_prune=options.allow_mass_prune,
        claimed_elsewhere=claimed_elsewhere,
    )
    to_delete = decision.delete if options.prune else ()
    plan = plans.build([*desired, *generated], would_be, live, to_delete, unchanged)
    return ExtensionPlan(
        name,
        plan,
        desired,
        generated,
        previous,
        decision,
        record_live,
        live,
        errors,
        finished_jobs,
    )


# --- record, apply, prune, health -------------------------------------------------------------


def assess(
    cluster: kube.Cluster, keys: Iterable[objects.Key], reads: livecache.Reads | None = None
) -> tuple[health.Provisioning, dict[objects.Key, objects.Object | None]]:
    """The provisioning state of an extension's objects now. Jobs do not count: a training
    run is not the extension rolling out (`reconciler job status` follows them). A workload
    that is not healthy is assessed with its namespace's pods, which say why."""
    counted = sorted(k for k in keys if k.kind != "Job")
    live = observe.live_objects(cluster, counted, reads)
    healths = {k: health.of(live[k]) for k in counted}
    unhealthy = [
        k
        for k, found in healths.items()
        if found.state is not health.State.HEALTHY
        and k.kind in health.POD_KINDS
        and live[k] is not None
    ]
    if unhealthy:
        pods = observe.pods_in(cluster, {k.namespace for k in unhealthy})
        healths.update({k: health.of(live[k], pods) for k in unhealthy})
    return health.provisioning_state(healths.items()), live


def outcome_of(state: health.Provisioning) -> record.Outcome:
    reason = {"Succeeded": "Succeeded", "Pending": "Progressing"}.get(
        state.state, "HealthCheckFailed"
    )
    return record.Outcome(state.state, reason, state.reasons)


def wait_for_health(
    cluster: kube.Cluster,
    extension: str,
    keys: frozenset[objects.Key],
    timeout: float,
    emit: events.Emit,
) -> record.Outcome:
    deadline = time.monotonic() + timeout
    emit(events.Waiting(extension, timeout))
    last: tuple[str, ...] = ()
    while True:
        state, _ = assess(cluster, keys)
        if state.state != "Pending":
            return outcome_of(state)
        pending = state.reasons[:3]  # reported when it changes, not every poll
        if pending != last:
            emit(events.Progressing(extension, pending))
            last = pending
        if time.monotonic() > deadline:
            reasons = (f"not healthy after {timeout:g}s", *state.reasons)
            return record.Outcome(record.FAILED, "HealthCheckTimeout", reasons)
        time.sleep(WAIT_INTERVAL)


def carry_out(
    cluster: kube.Cluster,
    planned: ExtensionPlan,
    revision: str,
    options: Options,
    emit: events.Emit,
    reads: livecache.Reads | None = None,
    write_outcome: Write = recordstore.inline,
) -> ExtensionResult:
    """Apply, prune and assess one planned extension, recording each step in its record.
    With nothing changed, health is assessed from what `reads` read for the plan. The outcome's
    write (the last) goes through `write_outcome` (the loop's `recordstore.Deferred`)."""
    name = planned.name
    finish = functools.partial(_finish, cluster, planned, write_outcome=write_outcome)
    if planned.errors:
        outcome = record.Outcome(record.FAILED, "ApplyFailed", tuple(planned.errors))
        return finish(outcome, attempted=revision)
    live_record = _record_before_applying(cluster, planned, revision, options)
    create_only = inventory.of(planned.generated)
    failures = executor.apply_steps(
        cluster, name, planned.plan, create_only, options.force_conflicts, emit, options.concurrency
    )
    if failures:
        outcome = record.Outcome(record.FAILED, "ApplyFailed", tuple(failures))
        return finish(outcome, live=live_record, attempted=revision)
    deleted, delete_failures = executor.prune(
        cluster, name, planned.plan.of(plans.Action.DELETE), emit
    )
    remaining = _still_owned(planned, deleted)
    # Everything is as the revision says again: a drift report no longer holds. The inventory
    # after pruning goes with the outcome, in one write.
    if delete_failures:
        outcome = record.Outcome(record.FAILED, "PruneFailed", tuple(delete_failures))
        return finish(outcome, live=live_record, attempted=revision, inventory=remaining, drift=())
    outcome = _health_outcome(cluster, planned, options, emit, reads)
    return finish(outcome, live=live_record, applied=revision, inventory=remaining, drift=())


def _record_before_applying(
    cluster: kube.Cluster, planned: ExtensionPlan, revision: str, options: Options
) -> objects.Object | None:
    """The record phase: the inventory grows to cover what is about to be applied (previous +
    desired) and names the revision attempted. Returns the record as it now is."""
    if not options.wait and planned.desired_keys <= planned.previous:
        return planned.record_live
    # Record first: whatever is created from here on is in the inventory even if we
    # crash (and a long wait shows the revision it waits for). With nothing outside the
    # inventory, the outcome's write says it all: each write of an extension's record
    # is the API server's time, which grows with the inventory.
    return recordstore.write_status(
        cluster,
        planned.name,
        planned.record_live,
        inventory=planned.previous | planned.desired_keys,
        attempted_revision=revision,
    )


def _still_owned(planned: ExtensionPlan, deleted: Iterable[objects.Key]) -> frozenset[objects.Key]:
    """The inventory after pruning. Still ours: what the repo declares (a Job that finished and
    is gone too: listed, it is never created again), and what should go but is still there
    (prune refused or switched off, or its delete failed and is retried next time)."""
    decision = planned.prune
    dropped = {*deleted, *decision.kept_unowned, *decision.moved, *decision.kept_definitions}
    stale = planned.previous - planned.desired_keys
    return (
        planned.desired_keys
        | set(planned.finished_jobs)
        | {k for k in stale if planned.live.get(k) is not None and k not in dropped}
    )


def _health_outcome(
    cluster: kube.Cluster,
    planned: ExtensionPlan,
    options: Options,
    emit: events.Emit,
    reads: livecache.Reads | None,
) -> record.Outcome:
    """The health phase: the outcome of an applied and pruned extension, waited for with
    `options.wait`; a prune refused (too many deletions) is named among its reasons."""
    if options.wait:
        keys = planned.desired_keys
        outcome = wait_for_health(cluster, planned.name, keys, options.timeout, emit)
    else:
        # `reads` holds what every write returned: no listing again.
        outcome = outcome_of(assess(cluster, planned.desired_keys, reads)[0])
    if not planned.prune.refused:
        return outcome
    return record.Outcome(
        outcome.state,
        outcome.reason,
        (
            *outcome.reasons,
            f"prune refused: {planned.prune.refused}; apply with --allow-mass-prune to delete them",
        ),
    )


def _finish(
    cluster: kube.Cluster,
    planned: ExtensionPlan,
    outcome: record.Outcome,
    *,
    live: objects.Object | None = None,
    applied: str | None = None,
    attempted: str | None = None,
    inventory: Iterable[objects.Key] | None = None,
    drift: Iterable[objects.Key] | None = None,
    write_outcome: Write = recordstore.inline,
) -> ExtensionResult:
    live = live or planned.record_live
    if live is not None or applied is not None:
        # An event when something happened, not for every periodic no-op reconcile.
        worth_an_event = (
            planned.plan.has_changes
            or outcome.state == record.FAILED
            or record.summary(planned.record_live or {})["provisioningState"] != outcome.state
            or planned.record_live is None
        )

        def write() -> None:
            written = recordstore.write_status(
                cluster,
                planned.name,
                live,
                outcome=outcome,
                applied_revision=applied,
                attempted_revision=attempted or applied,
                inventory=inventory,
                drift=drift,
            )
            if worth_an_event:
                recordstore.announce(cluster, written, outcome)

        write_outcome(write)
    return ExtensionResult(planned.name, planned.plan, outcome)


def extension_names(head: revision.Revision, records: dict[str, objects.Object]) -> list[str]:
    """The extensions a reconcile of `head` covers, sorted: the repo's, and those the cluster
    has a record of from its origin (they left it: retired). `records`: the live records, of
    any origin."""
    return sorted(head.names | set(recordstore.from_origin(records, head.origin)))


def plan_each(
    cluster: kube.Cluster,
    head: revision.Revision,
    options: Options,
    records: dict[str, objects.Object] | None = None,
    reads: livecache.Reads | None = None,
) -> Iterator[ExtensionPlan]:
    """Observe and plan every extension of the repo, and every extension the cluster has a
    record of from this repo (`head.origin`) that left it (all its objects are prune
    candidates), one at a time as they are asked for: carried out as it comes, the first
    extension's change is live without waiting for every other extension's plan. Extensions
    another repo installed are not this repo's business. `records`: the live records, when the
    caller has just read them; `reads`: where live state is read (default: one LIST per kind
    and namespace for this plan). The loop's last in-sync plans (`head.reuse.plans`) are
    handed out again while what they were made from is unchanged (`planmemo`). An extension
    of the repo whose record another source owns is not observed or planned: its plan is
    empty and `refused` (`owners`; `options.adopt` takes it over)."""
    reads = reads or livecache.Listing(cluster)
    records = recordstore.read_records(cluster, reads) if records is None else records
    rendered = head.rendered
    groups = by_extension(secretrefs.fill(cluster, rendered.objects))
    secrets = rendered.generated
    names = extension_names(head, records)
    everything = {
        name: inventory.of([*groups.get(name, []), *secrets.get(name, [])]) for name in names
    }
    kept = None if head.reuse is None else head.reuse.plans
    if kept is not None:
        kept.forget_others(names)
    for name in names:
        here, generated = groups.get(name, []), secrets.get(name, [])
        record_live = records.get(name)
        claim = record.claim(name, record_live, head.origin, options.adopt)
        if claim.refused:
            yield _refused(name, claim)
            continue
        claimed = frozenset().union(*(keys for other, keys in everything.items() if other != name))
        made_from = None
        if kept is not None:
            made_from = planmemo.inputs(
                here,
                rendered.content_id,
                inventory.of(generated),
                record.inventory_of(record_live),
                claimed,
                options,
            )
            again = kept.get(name, made_from, reads.lookup)
            if again is not None:
                reused = copy.copy(again)  # `carry_out` sets its record; `desired_keys` stays
                reused.record_live = record_live
                reused.claim = claim
                yield reused
                continue
        planned = plan_extension(
            cluster, name, here, generated, record_live, options, claimed, reads,
            rendered.content_id,
        )  # fmt: skip
        planned.claim = claim
        if kept is not None:
            nothing_to_apply = not planned.plan.has_changes and not planned.errors
            kept.keep(name, made_from, planned.live, _keys_only(planned), nothing_to_apply)
        yield planned


def record_problems(
    cluster: kube.Cluster, head: revision.Revision, also: Iterable[str] = ()
) -> recordstore.Recorded:
    """An invalid revision applies nothing: its problems go into the records of the extensions
    it declares (and `also`) that its source owns, never another source's (not even with
    --adopt: a revision that applies nothing takes nothing over)."""
    names = head.names | set(also)
    return recordstore.record_problems(
        cluster, names, head.error_lines(), head.revision, head.origin
    )


def _refused(name: str, claim: owners.Claim) -> ExtensionPlan:
    """The plan of an extension another source owns: nothing to do, nothing to prune, and no
    record (so nothing downstream can write the owner's)."""
    nothing = inventory.PruneDecision(delete=(), kept_unowned=())
    return ExtensionPlan(name, plans.Plan(()), [], [], frozenset(), nothing, None, {}, claim=claim)


def _keys_only(planned: ExtensionPlan) -> ExtensionPlan:
    """An in-sync plan as the loop keeps it: its steps and keys without the desired objects,
    which would keep a whole tick's render alive between ticks. Nothing is
    applied from a plan with nothing to apply."""
    steps = tuple(replace(step, desired=None) for step in planned.plan.steps)
    kept = replace(planned, plan=plans.Plan(steps), desired=[])
    kept.desired_keys = planned.desired_keys  # computed from the objects, before they go
    return kept


def reconcile(
    cluster: kube.Cluster, head: revision.Revision, options: Options, emit: events.Emit
) -> list[ExtensionResult]:
    """Plan each extension of `head` and (unless a dry run) carry its plan out, one extension
    after the other. Live state is listed once per kind and namespace, so a no-op apply sends
    no request per object."""
    reads = livecache.Listing(cluster)
    if not options.dry_run:
        recordstore.ensure_record_crd(cluster, reads)
    planned = plan_each(cluster, head, options, reads=reads)
    return carry_out_all(cluster, head, planned, options, emit, reads)


def carry_out_all(
    cluster: kube.Cluster,
    head: revision.Revision,
    planned: Iterable[ExtensionPlan],
    options: Options,
    emit: events.Emit,
    reads: livecache.Reads | None = None,
    stop_before_next: Callable[[], bool] | None = None,
    write_outcome: Write = recordstore.inline,
) -> list[ExtensionResult]:
    """Carry out every extension's plan of `head`, in order; a suspended one is skipped, one
    another source owns is refused (Failed, reason `OwnedElsewhere`, its record untouched), a
    dry run only reports. Extensions that left the repo are retired. `stop_before_next` is
    asked after each extension, and before carrying out a plan with nothing to apply: True
    leaves the rest unplanned, for the next reconcile (the loop's, when a newer revision is
    already waiting for it; an unchanged extension would only write its record for this
    revision before the newer one could start). Outcomes are written through `write_outcome`
    (see `carry_out`), a retired extension's inline (its record is deleted after)."""
    results = []
    started = time.monotonic()  # each extension's time runs from the ask for its plan
    for extension_plan in planned:
        nothing_to_apply = not extension_plan.plan.has_changes and not extension_plan.errors
        if nothing_to_apply and stop_before_next is not None and stop_before_next():
            break
        result = _carry_out_one(cluster, head, extension_plan, options, emit, reads, write_outcome)
        now = time.monotonic()
        result.seconds, started = now - started, now
        results.append(result)
        if stop_before_next is not None and stop_before_next():
            break
    return results


def _carry_out_one(
    cluster: kube.Cluster,
    head: revision.Revision,
    extension_plan: ExtensionPlan,
    options: Options,
    emit: events.Emit,
    reads: livecache.Reads | None,
    write_outcome: Write,
) -> ExtensionResult:
    claim = extension_plan.claim
    if claim is not None and claim.refused:
        # Before the dry run's answer too: `apply --dry-run` must say it would be refused.
        outcome = record.Outcome(record.FAILED, "OwnedElsewhere", (claim.message(),))
        return ExtensionResult(extension_plan.name, extension_plan.plan, outcome)
    emit(events.Planned(extension_plan.name, extension_plan.plan))
    if record.suspended(extension_plan.record_live):
        emit(events.Suspended(extension_plan.name))
        state = record.summary(extension_plan.record_live or {})["provisioningState"]
        outcome = record.Outcome(state, "Suspended", ("reconciliation is suspended",))
        return ExtensionResult(extension_plan.name, extension_plan.plan, outcome)
    if claim is not None and claim.verdict is owners.Verdict.ADOPTED:
        emit(events.Adopted(extension_plan.name, claim))
    if options.dry_run:
        state = record.FAILED if extension_plan.errors else record.PENDING
        outcome = record.Outcome(state, "DryRun", tuple(extension_plan.errors))
        return ExtensionResult(extension_plan.name, extension_plan.plan, outcome)
    extension = head.rendered.extensions.get(extension_plan.name)
    if extension is None and extension_plan.record_live:
        return _retire(cluster, extension_plan, head.revision, options, emit, reads)
    assert extension is not None, "an extension that left the repo and has no record: no plan"
    live = recordstore.ensure_record(cluster, extension, head.origin, reads)
    if extension_plan.record_live is None:
        extension_plan.record_live = live
    return carry_out(cluster, extension_plan, head.revision, options, emit, reads, write_outcome)


def _retire(
    cluster: kube.Cluster,
    planned: ExtensionPlan,
    revision: str,
    options: Options,
    emit: events.Emit,
    reads: livecache.Reads | None,
) -> ExtensionResult:
    """An extension that left the repo: prune what it owns (mass-prune rules apply), then drop
    its record once nothing is left."""
    if planned.prune.refused:
        outcome = record.Outcome(
            record.FAILED,
            "PruneRefused",
            (
                f"the extension left the repo; {planned.prune.refused}: apply with "
                "--allow-mass-prune to delete its objects",
            ),
        )
        return _finish(cluster, planned, outcome, attempted=revision)
    result = carry_out(cluster, planned, revision, options, emit, reads)
    if result.outcome.state != record.FAILED:
        kube.delete(cluster, record.ref(planned.name))
        emit(events.Removed(planned.name))
        result.removed = True
    return result


def delete_extension(cluster: kube.Cluster, name: str, emit: events.Emit) -> list[str]:
    """Remove every object extension `name` owns (by its inventory, in reverse apply order,
    only what still carries its labels) and then its record. Returns what could not be
    deleted (the record then stays, listing it)."""
    live_record = kube.get(cluster, record.ref(name))
    if live_record is None:
        return [f"the cluster has no record of an extension named {name!r}"]
    previous = record.inventory_of(live_record)
    live = observe.live_objects(cluster, previous)
    decision = inventory.plan_prune(previous, frozenset(), live, name, allow_mass_prune=True)
    steps = [plans.Step(plans.Action.DELETE, key) for key in decision.delete]
    deleted, failures = executor.prune(cluster, name, steps, emit)
    if failures:
        recordstore.write_status(cluster, name, live_record, inventory=previous - set(deleted))
        return failures
    kube.delete(cluster, record.ref(name))
    return []


# Outcomes about the last attempt rather than the objects' health: a status refresh keeps them.
_ATTEMPT_REASONS = frozenset(
    {"ValidationFailed", "ApplyFailed", "PruneFailed", "PruneRefused", "HealthCheckTimeout"}
)


def refreshed_records(cluster: kube.Cluster) -> list[objects.Object]:
    """Every record with its provisioning state recomputed from the live objects of its
    inventory (and written back when it changed, so `kubectl get mlext` agrees); an outcome
    about the last attempt (a rejected revision, a failed apply) is kept until the next one."""
    found = []
    for name, live in sorted(recordstore.read_records(cluster).items()):
        conditions = (live.get("status") or {}).get("conditions") or []
        reason = next((c.get("reason") for c in conditions if c.get("type") == "Ready"), None)
        if reason not in _ATTEMPT_REASONS:
            outcome = outcome_of(assess(cluster, record.inventory_of(live))[0])
            if record.summary(live)["provisioningState"] != outcome.state or (
                tuple((live.get("status") or {}).get("reasons") or ()) != outcome.reasons
            ):
                try:
                    live = recordstore.write_status(
                        cluster, name, live, outcome=outcome, precondition=True
                    )
                except kube.KubeError as err:
                    if err.status != 409:
                        raise
                    # A reconcile wrote the record since it was read: its word is newer.
                    found.append(kube.get(cluster, live) or live)
                    continue
                recordstore.announce(cluster, live, outcome)
        found.append(live)
    return found
