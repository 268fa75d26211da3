"""The GitOps loop behind `reconciler sync` and `reconciler controller`: follow a source, keep
the cluster on its latest good revision.

One `Controller` reconciles the whole repo per tick, as `reconciler apply` does (the same
`reconcile` phases: observe with a server-side dry run, plan, record, apply, prune, health),
reading live state from the watch-backed `livecache` it is constructed with: an in-sync tick
sends no request at all (the `tick_api_requests` metric counts them by verb), and an extension
that was in sync is not planned again while nothing its plan came from changed (`planmemo`):

- fetch the source (a git remote through `gitsource`, or a work tree); load and validate;
- an invalid revision applies nothing: the last good one stays in force, and the problems go
  verbatim into every affected extension's record and an Event (once per rejected revision);
- a valid one is applied. Re-applying the revision already applied is how drift is corrected:
  an edited field is put back by server-side apply and a deleted object is created again, and
  whatever the plan had to change is counted as drift. With `drift="report"` an unchanged
  revision is only planned (dry run): the drifted objects go to the record's `status.drift`,
  an Event and the `drifted_objects` metric, and nothing is written to them;
- suspended extensions (`reconciler extension suspend`) are skipped by `reconcile` itself;
- an extension another source owns (`engine.owners`) is refused: the tick fails, naming both
  sources, and nothing is applied, pruned or written to its record. With `Options.adopt` the
  loop takes such extensions over, but only until its first tick that carries out every
  extension: from then on it refuses like any other source, so two loops told to adopt do not
  take an extension back and forth (each time pruning what only the other declares);
- a trigger that comes during a tick (a push while the last one is still carried out) cuts it
  short after the extension in progress: the rest are left to the next tick, which starts at
  once on the newer revision; for at most MAX_DEFER seconds in a row, so that a stream of
  triggers cannot starve the extensions after the first. The cut tick's outcome writes finish
  while the next one fetches, loads and renders (`recordstore.Deferred`).

Ticks come every `interval` (with jitter, so replicas of many controllers don't fetch in step),
and at once when `trigger` is called (a webhook, a file saved under `--watch`, a watch event on
an owned object). Errors talking to git or the API back off exponentially, capped at the
interval. Only the leader ticks when leader election is on (`leading`); the others wait.

After each tick that got as far as a revision, `on_tick` is called (on the tick's thread) with a
`TickReport`: typed facts of what the tick did to each extension, for whoever follows the loop
(`notifications`); it must return at once and never raise into the tick.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from reconciler import kube, objects, source
from reconciler.engine import (
    livecache,
    planmemo,
    plans,
    reconcile,
    record,
    recordstore,
    reuse,
    revision,
)
from reconciler.gitops import driftwatch, heap, loopmetrics
from reconciler.printers import events as eventlines

log = logging.getLogger(__name__)

Fetch = Callable[[], source.Snapshot]
DRIFT_MODES = ("correct", "report")
# The longest a stream of triggers may keep cutting ticks short (extensions left to the next).
MAX_DEFER = 5.0


@dataclass(frozen=True)
class Settings:
    interval: float = 60.0
    jitter: float = 0.1  # +-10 % of the interval
    drift: str = "correct"  # or "report"
    options: reconcile.Options = dataclasses.field(default_factory=reconcile.Options)
    first_backoff: float = 1.0


@dataclass(frozen=True)
class TickOutcome:
    """What one tick did: `result` is a metric label (see `ControllerMetrics.reconciles`)."""

    result: str  # success | failed | invalid | error | superseded
    revision: str = ""
    message: str = ""
    drifted: int = 0


@dataclass(frozen=True)
class ExtensionReport:
    """What one tick did to one extension it carried out (suspended and refused ones are not
    reported): its record's outcome, and the revision its record named before the tick."""

    name: str
    state: str  # record.PENDING | record.SUCCEEDED | record.FAILED
    reason: str  # the outcome's: Succeeded, Progressing, ApplyFailed, HealthCheckFailed, ...
    reasons: tuple[str, ...] = ()
    applied_before: str = ""  # its lastAppliedRevision before this tick ("" never applied)
    drifted: int = 0  # objects put back (or with `report_only`, found changed)


@dataclass(frozen=True)
class TickReport:
    """The facts of one tick, for `on_tick`: a revision refused (`problems`, one line each, and
    the extensions whose records they went to) or carried out (each extension's outcome)."""

    revision: str
    origin: str
    result: str  # TickOutcome.result
    problems: tuple[str, ...] = ()  # FILE:LINE: field: message of a refused revision
    extensions: tuple[ExtensionReport, ...] = ()
    report_only: bool = False  # drift was only found (drift="report"), nothing written


OnTick = Callable[[TickReport], None]


class Controller:
    """The loop's state between ticks; `tick` is one reconcile, `run` the loop."""

    def __init__(
        self,
        cluster: kube.Cluster,
        fetch: Fetch,
        settings: Settings,
        metrics: loopmetrics.ControllerMetrics,
        *,
        cache: livecache.LiveCache | None = None,
        watch_drift: bool = False,
        heap: heap.Heap | None = None,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
        on_tick: OnTick | None = None,
    ) -> None:
        self.cluster = cluster
        self.on_tick = on_tick
        self.fetch = fetch
        self.settings = settings
        self.metrics = metrics
        self._rng = rng
        self._clock = clock
        self._wake = threading.Event()
        self._rejected = ""  # the invalid revision whose problems were last recorded
        # `--adopt`: on until a tick has carried out every extension (see the module docstring).
        self._adopting = settings.options.adopt
        self._failures = 0  # consecutive ticks that ended in an error (backoff)
        self._left_since: float | None = None  # when ticks began leaving extensions to the next
        self.last: TickOutcome | None = None
        # Files and render units unchanged since the last tick are not parsed or rendered again,
        # extensions in sync not planned again while nothing their plan came from changed.
        self.reuse = reuse.Reuse(plans=planmemo.Plans())
        # Where outcomes are written: a tick cut short by a newer trigger leaves them in flight.
        self.outcomes = recordstore.Deferred()
        self.ticks = 0
        # The watch-backed live state every tick reads (None: one LIST per kind per tick), and
        # with `watch_drift` the drift watch on it, so drift triggers a tick at once (off for a
        # caller that drives ticks itself: a trigger cuts the tick after it short).
        self.cache = cache
        self.drift_watch: driftwatch.DriftWatch | None = None
        if cache is not None:
            metrics.watch_cache(cache.stats)
            if watch_drift:
                self.drift_watch = driftwatch.DriftWatch(cache, self.trigger)
        # A long-running loop's: no tick waits for a full garbage collection.
        self.heap = heap

    # --- triggers ------------------------------------------------------------------------

    def trigger(self, why: str) -> None:
        """Reconcile now instead of at the next interval (thread-safe)."""
        log.info("reconcile requested: %s", why)
        self._wake.set()

    def next_delay(self) -> float:
        """Seconds until the next tick: the interval with jitter, or after an error an
        exponential backoff (1 s, 2 s, 4 s, ...) that never exceeds the interval."""
        interval = self.settings.interval
        if self._failures:
            backoff = self.settings.first_backoff * 2 ** (self._failures - 1)
            return float(min(backoff, interval))
        spread = interval * self.settings.jitter
        return float(max(0.0, interval + (self._rng() * 2 - 1) * spread))

    # --- one reconcile -------------------------------------------------------------------

    def tick(self) -> TickOutcome:
        started = time.monotonic()
        sent = self._requests()
        try:
            with self.heap.tick() if self.heap is not None else contextlib.nullcontext():
                outcome = self._tick()
                if not self._wake.is_set():
                    # Nothing waits for the next tick: this one ends once its writes are in
                    # (its outcome, requests and errors are its own, as without deferring).
                    self.outcomes.settle()
        except kube.KubeError as err:
            log.error("reconcile failed talking to the API server: %s", err)
            outcome = TickOutcome("error", message=str(err))
        except Exception as err:  # a source error, or a bug: the loop must survive it
            log.exception("reconcile failed")
            outcome = TickOutcome("error", message=str(err))
        self._failures = self._failures + 1 if outcome.result == "error" else 0
        self.metrics.tick_duration.labels(outcome.result).observe(time.monotonic() - started)
        self.metrics.reconciles.labels(outcome.result).inc()
        self.metrics.observe_requests(self._requests() - sent)
        self.last = outcome
        self.ticks += 1
        return outcome

    def _requests(self) -> collections.Counter[str]:
        """The API requests sent so far, by verb (none without a cluster, as in unit tests)."""
        return collections.Counter(getattr(self.cluster, "requests", {}))

    def _fetch(self) -> source.Snapshot:
        with self.metrics.fetch_duration.time():
            try:
                return self.fetch()
            except Exception:
                self.metrics.fetch_errors.inc()
                raise

    def _tick(self) -> TickOutcome:
        head = revision.Revision(self._fetch(), self.reuse)
        if head.valid:  # rendered while the last tick's outcome writes may be in flight
            kinds = {(o["apiVersion"], o["kind"]) for o in head.rendered.objects}
            self.reuse.forget_unused()
        # The last tick's outcomes are in before the records are read (it may have left them
        # to be written while this one fetched, loaded and rendered: `recordstore.Deferred`).
        self.outcomes.settle()
        reads = self.cache if self.cache is not None else livecache.Listing(self.cluster)
        every_record = recordstore.read_records(self.cluster, reads)
        records = recordstore.from_origin(every_record, head.origin)
        if not head.valid:
            return self._reject(head, records)
        self._rejected = ""
        unchanged = _applied_already(head, records)
        report_only = self.settings.drift == "report" and unchanged
        planned, results = self._carry_out(head, every_record, reads, report_only)
        left = self._left_to_next(head, every_record, results, report_only)
        if self.drift_watch is not None:
            self.drift_watch.follow(kinds)
        refusals = [
            "; ".join(r.outcome.reasons) for r in results if r.outcome.reason == "OwnedElsewhere"
        ]
        for refusal in refusals:
            log.error("%s", refusal)
        mine = [p for p in planned if not p.refused]
        drift = self._find_drift(head, mine, unchanged, report_only)
        self._observe(mine, results, drift, left, report_only)
        outcome = self._conclude(head, results, left, refusals, drift, report_only)
        reported = _reported(results, records, drift)
        self._report(
            TickReport(head.revision, head.origin, outcome.result, (), reported, report_only)
        )
        return outcome

    def _report(self, report: TickReport) -> None:
        """`report` to `on_tick`; whatever goes wrong there is logged, never the tick's."""
        if self.on_tick is None:
            return
        try:
            self.on_tick(report)
        except Exception:
            log.exception("reporting the reconcile failed")

    def _carry_out(
        self,
        head: revision.Revision,
        every_record: dict[str, objects.Object],
        reads: livecache.Reads,
        report_only: bool,
    ) -> tuple[list[reconcile.ExtensionPlan], list[reconcile.ExtensionResult]]:
        """Plan and carry out every extension of `head` (only planned, as a dry run, when
        `report_only`): its plans and their results."""
        options = dataclasses.replace(
            self.settings.options, dry_run=report_only, adopt=self._adopting
        )
        if not report_only:
            recordstore.ensure_record_crd(self.cluster, reads)
        # Each extension is carried out as soon as it is planned (`reconcile.plan_each`).
        planned: list[reconcile.ExtensionPlan] = []
        each = reconcile.plan_each(self.cluster, head, options, every_record, reads)
        results = reconcile.carry_out_all(
            self.cluster,
            head,
            _kept(each, planned),
            options,
            eventlines.logged(log),
            reads,
            stop_before_next=self._newer_waiting,
            write_outcome=self.outcomes,
        )
        return planned, results

    def _left_to_next(
        self,
        head: revision.Revision,
        every_record: dict[str, objects.Object],
        results: list[reconcile.ExtensionResult],
        report_only: bool,
    ) -> list[str]:
        """The extensions this tick left to the next (a newer trigger cut it short:
        `_newer_waiting`), noting since when ticks leave some; with none left, `--adopt` has
        done its job and ends."""
        done = {r.name for r in results}
        covered = reconcile.extension_names(head, every_record)
        left = [name for name in covered if name not in done]
        if not left:
            self._left_since = None
            if self._adopting and not report_only:
                self._adopting = False
                log.info("--adopt: done; from now on another source's extension is refused")
        else:
            if self._left_since is None:
                self._left_since = self._clock()
            log.info("a newer trigger is waiting: %s left to the next reconcile", ", ".join(left))
        return left

    def _find_drift(
        self,
        head: revision.Revision,
        mine: list[reconcile.ExtensionPlan],
        unchanged: bool,
        report_only: bool,
    ) -> dict[str, set[objects.Key]]:
        """The drifted objects of each extension of `head` (none unless the revision was
        applied already); reported in its record when `report_only`."""
        drift = {
            p.name: drifted_keys(p.plan) if unchanged else set()
            for p in mine
            if p.name in head.names
        }
        if report_only:
            for p in mine:
                if p.name in drift and not record.suspended(p.record_live):
                    recordstore.record_drift(self.cluster, p.name, p.record_live, drift[p.name])
        return drift

    def _conclude(
        self,
        head: revision.Revision,
        results: list[reconcile.ExtensionResult],
        left: list[str],
        refusals: list[str],
        drift: dict[str, set[objects.Key]],
        report_only: bool,
    ) -> TickOutcome:
        """The tick's outcome; a revision is the one in force (the `revision` metric) once
        every extension of it was applied."""
        failed = [r.name for r in results if r.outcome.state == record.FAILED]
        if not failed and not left and not report_only:
            self.metrics.revision.info({"revision": head.revision, "source": head.origin})
        drifted = sum(len(keys) for keys in drift.values())
        if drifted:
            verb = "found" if report_only else "reverted"
            log.warning(
                "drift %s: %d objects differed from revision %s", verb, drifted, head.revision
            )
        if failed:
            # A refusal names both sources: `sync --once` prints it as its outcome.
            message = "; ".join([f"extensions failed: {', '.join(failed)}", *refusals])
            return TickOutcome("failed", head.revision, message, drifted)
        if left:
            return TickOutcome("superseded", head.revision, f"left: {', '.join(left)}", drifted)
        return TickOutcome("success", head.revision, "", drifted)

    def _newer_waiting(self) -> bool:
        """Whether to leave the extensions not yet carried out to the next tick: a trigger (a
        push, a saved file, drift) came during this one, so the next tick starts at once and
        plans them anyway, on the newer revision; carrying them out here (for an unchanged
        one, its record's write for this revision) would only delay it. Not once ticks have
        left extensions for MAX_DEFER seconds: a stream of triggers must not keep the last
        extensions from being reconciled."""
        if not self._wake.is_set():
            return False
        return self._left_since is None or self._clock() - self._left_since < MAX_DEFER

    def _reject(self, head: revision.Revision, records: dict[str, objects.Object]) -> TickOutcome:
        """An invalid revision: nothing applied; its problems recorded once per revision, in
        the records this source owns only (those of extensions that left the repo too)."""
        found = head.error_lines()
        shown = "\n  ".join(found)
        log.error("revision %s is invalid, nothing applied:\n  %s", head.revision, shown)
        if head.revision != self._rejected:
            recorded = reconcile.record_problems(self.cluster, head, also=records)
            self.metrics.observe_states(dict.fromkeys(recorded.written, record.FAILED))
            for claim in recorded.refused:
                log.error("problems not recorded: %s", claim.message())
            self._rejected = head.revision
        names = sorted(head.names | set(records))
        refused = tuple(ExtensionReport(name, record.FAILED, "ValidationFailed") for name in names)
        self._report(TickReport(head.revision, head.origin, "invalid", tuple(found), refused))
        return TickOutcome("invalid", head.revision, f"{len(found)} problems")

    def _observe(
        self,
        planned: list[reconcile.ExtensionPlan],
        results: list[reconcile.ExtensionResult],
        drift: dict[str, set[objects.Key]],
        left: list[str],
        report_only: bool,
    ) -> None:
        """The tick's facts into the metrics: each extension it planned and carried out (one
        that was retired, its record gone, has none), and what it left to the next."""
        mine = {p.name: p for p in planned}
        seen = {}
        for result in results:
            if result.name not in mine or result.removed:
                continue  # another source's, or gone from the cluster
            suspended = result.outcome.reason == "Suspended"
            state = result.outcome.state
            if report_only:  # a dry run's outcome: the state is the record's
                state = record.summary(mine[result.name].record_live or {})["provisioningState"]
            pruned = 0 if report_only or suspended else len(result.plan.of(plans.Action.DELETE))
            seen[result.name] = loopmetrics.Extension(
                state=state,
                seconds=result.seconds,
                managed=len(mine[result.name].desired_keys),
                drifted=len(drift.get(result.name, ())),
                pruned=pruned,
                suspended=suspended,
            )
            if result.outcome.reason == "ApplyFailed":
                for reason in result.outcome.reasons:
                    kind = reason.split("/", 1)[0]
                    self.metrics.apply_errors.labels(result.name, kind).inc()
        self.metrics.observe_extensions(seen, left)

    # --- the loop ------------------------------------------------------------------------

    def run(self, stop: threading.Event, leading: Callable[[], bool] = lambda: True) -> None:
        """Tick until `stop` is set. A tick in progress always finishes (graceful shutdown
        never leaves a half-applied stage)."""
        while not stop.is_set():
            if leading():
                self.metrics.leader.set(1)
                self.tick()
                delay = self.next_delay()
            else:
                self.metrics.leader.set(0)
                delay = 1.0  # poll leadership; the elector takes over on its own thread
            self._wake.wait(delay)
            self._wake.clear()
        try:
            self.outcomes.settle()  # a write left in flight by the last tick lands first
        except Exception:
            log.exception("writing the last reconcile's outcome failed")
        log.info("stopped")


def drifted_keys(plan: plans.Plan) -> set[objects.Key]:
    """Objects a plan of the already-applied revision must create or update: changed or
    deleted in the cluster by someone else."""
    return {s.key for s in plan.steps if s.action in (plans.Action.CREATE, plans.Action.UPDATE)}


def _applied_already(head: revision.Revision, records: dict[str, objects.Object]) -> bool:
    """Whether `head` was applied last to each of its extensions this source has a record of
    (and it has one at all): ticking it again corrects drift, or with drift="report" finds it."""
    return bool(records) and all(
        _last_applied(r) == head.revision for name, r in records.items() if name in head.names
    )


def _last_applied(live: objects.Object | None) -> str:
    """The revision a record names as last applied ("" none)."""
    return str(((live or {}).get("status") or {}).get("lastAppliedRevision") or "")


def _reported(
    results: list[reconcile.ExtensionResult],
    records: dict[str, objects.Object],
    drift: dict[str, set[objects.Key]],
) -> tuple[ExtensionReport, ...]:
    """The tick's outcome of each extension it carried out, for `on_tick` (`records`: as read
    before the tick)."""
    return tuple(
        ExtensionReport(
            r.name,
            r.outcome.state,
            r.outcome.reason,
            r.outcome.reasons,
            _last_applied(records.get(r.name)),
            len(drift.get(r.name, ())),
        )
        for r in results
        if r.outcome.reason not in ("Suspended", "OwnedElsewhere")
    )


def _kept(
    plans: Iterable[reconcile.ExtensionPlan], into: list[reconcile.ExtensionPlan]
) -> Iterator[reconcile.ExtensionPlan]:
    """`plans` as they come, each also kept in `into` (for what the tick does after)."""
    for extension_plan in plans:
        into.append(extension_plan)
        yield extension_plan
