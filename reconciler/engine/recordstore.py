"""The ExtensionStatus records as kept in the cluster: read, written, and announced with Events.

`record` builds the record and its status as pure data; this module is the I/O around it, through
the `kube` edge: the record CRD installed, every record read, a record's spec and status written
(a status only when it would change, so a no-op reconcile writes nothing), and a Kubernetes Event
for what is worth telling. `reconcile` writes each phase's outcome through it; the GitOps loop and
the CLI use it for what they record outside a reconcile (a rejected revision, drift).
`Deferred` lets the loop write an outcome while its next tick starts (see there).
"""

from __future__ import annotations

import concurrent.futures
import datetime
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from reconciler import kube, objects
from reconciler.engine import diffs, fingerprint, health, livecache, owners, record
from reconciler.model import extensions

log = logging.getLogger(__name__)


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


Write = Callable[[], None]


def inline(write: Write) -> None:
    """Write now: what a one-shot command does (it exits once the reconcile returns)."""
    write()


class Deferred:
    """Outcome writes the GitOps loop does not wait for: each runs on one thread, in the order
    given, while the loop goes on. An outcome write is the API server's time, which grows with
    the record's inventory; a commit pushed meanwhile does not wait for it:
    the next tick fetches, loads and renders first, and `settle`s only before it reads the
    records. Only outcomes are deferred: the inventory is always written before anything is
    applied (`reconcile`'s safety rule), and a crash before an outcome lands loses only the
    outcome, which the next reconcile writes again."""

    def __init__(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="record-writes")
        self._pending: list[concurrent.futures.Future[None]] = []

    def __call__(self, write: Write) -> None:
        self._pending.append(self._pool.submit(write))

    def settle(self) -> None:
        """Wait for every write given so far; raise the first one's error, if any."""
        pending, self._pending = self._pending, []
        errors = [e for e in (f.exception() for f in pending) if e is not None]
        if errors:
            raise errors[0]


def read_records(
    cluster: kube.Cluster, reads: livecache.Reads | None = None
) -> dict[str, objects.Object]:
    """Every extension's live record by name ({} before the first apply, when the record CRD
    is not there yet: checked first, which spares the client a full re-discovery). Read
    through `reads` when given (the loop's cache, a command's listing)."""
    reads = reads or livecache.Listing(cluster)
    if _record_crd(reads) is None:
        return {}
    listed = reads.of_kind(record.API_VERSION, record.KIND)
    return {r["metadata"]["name"]: r for r in listed}


def _record_crd(reads: livecache.Reads) -> objects.Object | None:
    key = objects.key(record.crd())
    return reads.lookup([key])[key]


def from_origin(records: dict[str, objects.Object], origin: str) -> dict[str, objects.Object]:
    """The records of the extensions the source at `origin` owns (`owners`)."""
    return {
        name: live
        for name, live in records.items()
        if record.claim(name, live, origin, adopt=False).verdict is owners.Verdict.OURS
    }


def write_status(
    cluster: kube.Cluster,
    name: str,
    live: objects.Object | None,
    *,
    outcome: record.Outcome | None = None,
    inventory: Iterable[objects.Key] | None = None,
    applied_revision: str | None = None,
    attempted_revision: str | None = None,
    drift: Iterable[objects.Key] | None = None,
    precondition: bool = False,
) -> objects.Object:
    """Write the record's status, unless it would not change (a no-op reconcile writes
    nothing). With `precondition`, only if the record is still as `live` was read (else 409):
    for writers other than the reconcile itself, which must not overwrite a newer outcome."""
    body = record.status(
        name,
        live,
        now(),
        outcome=outcome,
        inventory=inventory,
        applied_revision=applied_revision,
        attempted_revision=attempted_revision,
        drift=drift,
    )
    if live is not None and live.get("status") == body["status"]:
        return live
    if precondition and live is not None:
        body["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
    return kube.apply_status(cluster, body)


def announce(cluster: kube.Cluster, live: objects.Object, outcome: record.Outcome) -> None:
    """An Event on the record telling `outcome` (a warning when it failed)."""
    _event(cluster, live, outcome.reason, outcome.message, outcome.state == record.FAILED)


def _event(
    cluster: kube.Cluster, live: objects.Object, reason: str, message: str, warning: bool
) -> None:
    try:
        kube.create_event(cluster, record.event(live, reason, message, warning, now()))
    except kube.KubeError as err:  # an event is a courtesy; never fail a reconcile for it
        log.warning("could not record an event for %s: %s", live["metadata"]["name"], err)


def _apply_if_changed(
    cluster: kube.Cluster, obj: objects.Object, reads: livecache.Reads | None
) -> objects.Object:
    """Apply `obj` (with its fingerprint) unless it is in sync live, or the server's dry run
    says that would change nothing and the live copy already carries the fingerprint."""
    stamped = fingerprint.stamp(obj)
    key = objects.key(obj)
    live = reads.lookup([key])[key] if reads is not None else kube.get(cluster, obj)
    if fingerprint.in_sync(stamped, live, kube.FIELD_MANAGER):
        assert live is not None
        return live
    if (
        live is not None
        and fingerprint.recorded(live) == fingerprint.recorded(stamped)
        and not diffs.changes(live, kube.apply(cluster, stamped, dry_run=True))
    ):
        return live
    return kube.apply(cluster, stamped)


def ensure_record_crd(cluster: kube.Cluster, reads: livecache.Reads | None = None) -> None:
    """Install (or update) the ExtensionStatus CRD and wait until it is served (no wait, and
    no request, when it is in sync and Established). Installed just now, it holds no record:
    `reads` is told so, instead of asking the server."""
    new = reads is not None and _record_crd(reads) is None
    live = _apply_if_changed(cluster, record.crd(), reads)
    if health.of(live).state is not health.State.HEALTHY:
        kube.wait_established(cluster, record.CRD_NAME)
    if new and reads is not None:
        reads.known_empty(record.API_VERSION, record.KIND)


def ensure_record(
    cluster: kube.Cluster,
    extension: extensions.Extension,
    origin: str,
    reads: livecache.Reads | None = None,
) -> objects.Object:
    """Create (or update) the record of `extension` from the repo at `origin`, naming it the
    owner (which is how an adoption, or a record from before owners were kept, gets its
    owner: the caller has checked the claim); the live one."""
    return _apply_if_changed(cluster, record.record(extension, origin), reads)


@dataclass(frozen=True)
class Recorded:
    """Where `record_problems` wrote a rejected revision's problems, and where it would not:
    the records another source owns."""

    written: list[str]
    refused: list[owners.Claim]


def record_problems(
    cluster: kube.Cluster, names: Iterable[str], problems: list[str], revision: str, origin: str
) -> Recorded:
    """Write a rejected revision's problems into the records of the extensions that have one
    and that the source at `origin` owns; nothing else changes (the last good revision stays
    in force). A record another source owns is never written: an invalid repo naming someone
    else's extension must not mark it Failed (nor may a record naming no owner be claimed by
    a revision that applies nothing)."""
    records = read_records(cluster)
    written, refused = [], []
    for name in sorted(set(names) & set(records)):
        claim = record.claim(name, records[name], origin, adopt=False)
        if claim.verdict is not owners.Verdict.OURS:
            if claim.refused:
                refused.append(claim)
            continue
        outcome = record.Outcome(record.FAILED, "ValidationFailed", problems=tuple(problems))
        live = write_status(
            cluster, name, records[name], outcome=outcome, attempted_revision=revision
        )
        announce(cluster, live, outcome)
        written.append(name)
    return Recorded(written, refused)


def record_drift(
    cluster: kube.Cluster, name: str, live: objects.Object | None, drifted: set[objects.Key]
) -> None:
    """`--drift report`: the owned objects that differ from the applied revision, in the
    record's status, and an Event when that set changes."""
    if live is None:
        return
    before = (live.get("status") or {}).get("drift")
    written = write_status(cluster, name, live, drift=drifted)
    after = (written.get("status") or {}).get("drift")
    if after != before and drifted:
        listed = ", ".join(str(k) for k in sorted(drifted))
        message = f"{len(drifted)} objects differ from the applied revision: {listed}"
        _event(cluster, written, "DriftDetected", message, warning=True)
