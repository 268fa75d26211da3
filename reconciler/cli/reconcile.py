"""`reconciler plan`, `reconciler apply` and `reconciler status`: a repo against a live cluster.

Thin commands over `reconcile` (phases and safety rules), `printers` (how its plans and events
read) and `record` (what the cluster says). Exit codes: `plan` follows `kubectl diff` (0 no
changes, 1 changes, 2 error, an extension another source owns included); `apply` and `status`
give 0 when every extension is fine, 1 when one failed, another source owns it, or the repo is
invalid, 2 on a usage or connection error.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from reconciler import kube, source
from reconciler.cli import common, connection, decryptkeys, rendercache
from reconciler.engine import events, owners, reconcile, record, reuse, revision, revisiondiff
from reconciler.model import problems
from reconciler.printers import events as eventlines
from reconciler.printers import plans as plantext
from reconciler.printers import revisiondiff as revisionprinter

_PATH = click.Path(exists=True, file_okay=True, dir_okay=True)
_ADOPT_HELP = (
    "Take over extensions the repo declares that another source owns: this source becomes "
    "their owner, and their objects only that source declared are pruned."
)


def _snapshot(path: str, decryption_key: str | None) -> source.Snapshot:
    return decryptkeys.snapshot(source.DirectorySnapshot(path), decryption_key)


def _head(snapshot: source.Snapshot, reuse: reuse.Reuse) -> revision.Revision:
    """The repo, loaded, its problems printed; parsed and rendered only where it changed since
    the last `plan` or `apply` of the same folder (`reuse`: `rendercache.reusing`)."""
    head = revision.Revision(snapshot, reuse)
    for problem in head.loaded.problems:
        click.echo(str(problem), err=True)
    return head


def echo(event: events.Event) -> None:
    """The `events.Emit` of the commands that carry out a change: each event's line, as it
    happens."""
    click.echo(eventlines.text(event))


def _echo_json(event: events.Event) -> None:
    click.echo(eventlines.as_json(event))


def _failed_repo(head: revision.Revision) -> str:
    errors = len(head.errors)
    return f"{errors} problem{'s' if errors != 1 else ''}: nothing was applied"


@click.command()
@click.argument("path", default=".", type=_PATH)
@common.kube_options
@click.option("--show-unchanged", is_flag=True, help="List unchanged objects too.")
@click.option("--no-prune", is_flag=True, help="Leave objects that left the repo in place.")
@click.option("--allow-mass-prune", is_flag=True, help="Plan deletes beyond the safety limit.")
@click.option("--adopt", is_flag=True, help=_ADOPT_HELP)
@decryptkeys.option
@common.output_option(
    "text", "json", "yaml", help="json / yaml: the document `diff -o json` prints."
)
@common.one_shot
def plan(
    path: str,
    kubeconfig: str | None,
    context: str | None,
    show_unchanged: bool,
    no_prune: bool,
    allow_mass_prune: bool,
    adopt: bool,
    decryption_key: str | None,
    output_format: str,
) -> None:
    """What `apply` would do to the cluster for the repo at PATH: objects to create, update
    (with a field-level diff), delete, unchanged, and each endpoint whose traffic split
    changes. Uses the server's dry run, so defaulting and admission count. Changes nothing.

    Exit 0 when there are no changes, 1 when there are, 2 on an error (invalid repo, an object
    the server would reject, an extension another source owns without --adopt, no cluster).
    """
    options = reconcile.Options(
        dry_run=True, prune=not no_prune, allow_mass_prune=allow_mass_prune, adopt=adopt
    )
    snapshot = _snapshot(path, decryption_key)
    with rendercache.reusing(path, snapshot) as kept:
        head = _head(snapshot, kept)
        if not head.valid:
            click.echo(f"{_failed_repo(head)} (the repo is invalid)", err=True)
            sys.exit(2)
        cluster = connection.connect(kubeconfig, context)
        try:
            planned = list(reconcile.plan_each(cluster, head, options))
        except kube.KubeError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2)
    result = as_revision_diff(context, head, planned)
    if output_format != "text":
        common.print_data(revisionprinter.as_data(result), output_format)
    else:
        for line in revisionprinter.traffic_lines(result):
            click.echo(line)
    changed = False
    rejected = False
    for extension_plan in planned:
        text = output_format == "text"
        if text:
            click.echo(f"# extension {extension_plan.name}")
        if extension_plan.claim is not None and extension_plan.refused:
            # Not a plan with nothing to do: `apply` would refuse it (exit 2, as an error).
            click.echo(f"error: {extension_plan.claim.message()}", err=True)
            rejected = True
            continue
        if text:
            click.echo(plantext.text(extension_plan.plan, show_unchanged), nl=False)
            for note in plan_notes(extension_plan):
                click.echo(f"note: {note}")
        for error in extension_plan.errors:
            click.echo(f"error: {error}", err=True)
        changed = changed or extension_plan.plan.has_changes
        rejected = rejected or bool(extension_plan.errors)
    sys.exit(2 if rejected else 1 if changed else 0)


def as_revision_diff(
    context: str | None, head: revision.Revision, planned: list[reconcile.ExtensionPlan]
) -> revisiondiff.RevisionDiff:
    """The plans of the repo `head` against the cluster as a revision diff, the live cluster
    its base: what `plan -o json|yaml` and `diff --cluster` print, with `plan`'s notes and the
    traffic summary `diff --base` shows, read off the same plans. Objects the API server would
    reject and extensions another source owns are its problems (exit 2)."""
    shown = head.snapshot.display("")
    rejected = tuple(
        problems.Problem(shown, 0, "", f"the API server would reject {error}")
        for extension_plan in planned
        for error in extension_plan.errors
    ) + tuple(
        problems.Problem(shown, 0, "", p.claim.message())
        for p in planned
        if p.claim is not None and p.refused
    )
    extensions = tuple(revisiondiff.ExtensionDiff(p.name, p.plan) for p in planned if not p.refused)
    return revisiondiff.RevisionDiff(
        f"cluster {context}" if context else "cluster",
        head.revision,
        extensions,
        rejected,
        tuple(note for p in planned for note in plan_notes(p)),
        revisiondiff.traffic(extensions),
    )


def plan_notes(planned: reconcile.ExtensionPlan) -> list[str]:
    notes = []
    if planned.claim is not None and planned.claim.verdict is owners.Verdict.ADOPTED:
        notes.append(planned.claim.message())
    notes += [f"{key}: already ran (a Job runs once per name)" for key in planned.finished_jobs]
    if planned.prune.refused:
        notes.append(
            f"prune refused: {planned.prune.refused}; --allow-mass-prune deletes them anyway"
        )
    notes.extend(f"{key}: not deleted, no longer ours" for key in planned.prune.kept_unowned)
    notes.extend(
        f"{key}: left the repo but is kept (a CRD is never pruned: deleting it deletes every "
        "resource of its kind); delete it by hand if that is meant"
        for key in planned.prune.kept_definitions
    )
    return notes


@click.command()
@click.argument("path", default=".", type=_PATH)
@common.kube_options
@click.option("--wait", is_flag=True, help="Wait until every component is healthy.")
@click.option(
    "--timeout",
    default="5m",
    show_default=True,
    help="How long --wait waits (90s, 5m, 1h30m).",
)
@click.option("--dry-run", is_flag=True, help="Plan and check with the server; change nothing.")
@click.option("--no-prune", is_flag=True, help="Leave objects that left the repo in place.")
@click.option(
    "--force-conflicts", is_flag=True, help="Take over fields another field manager owns."
)
@click.option(
    "--allow-mass-prune",
    is_flag=True,
    help="Allow deleting everything, or more than half, of an extension's objects.",
)
@click.option("--adopt", is_flag=True, help=_ADOPT_HELP)
@decryptkeys.option
@connection.concurrency_option
@common.output_option("text", "json", help="json: one JSON line per event and per outcome.")
@common.one_shot
def apply(
    path: str,
    kubeconfig: str | None,
    context: str | None,
    wait: bool,
    timeout: str,
    dry_run: bool,
    no_prune: bool,
    force_conflicts: bool,
    allow_mass_prune: bool,
    adopt: bool,
    decryption_key: str | None,
    concurrency: int,
    output_format: str,
) -> None:
    """Make the cluster match the repo at PATH: server-side apply in dependency order, prune
    what left the repo, record the inventory and the provisioning state of every extension
    (`kubectl get mlext`).

    A repo with any problem applies nothing (the problems are recorded in the status of the
    extensions this repo owns). An extension whose record names another source (another repo,
    or another folder of this one) is refused, nothing applied, pruned or recorded, unless
    --adopt takes it over. Exit 0 when every extension is applied (and healthy with --wait),
    1 otherwise, 2 on a usage or connection error.

    With -o json, stdout is JSON lines: one per event as it happens (`planned`, `applied`,
    `pruned`, `waiting`, ...), then one `outcome` per extension.
    """
    options = reconcile.Options(
        dry_run=dry_run,
        prune=not no_prune,
        force_conflicts=force_conflicts,
        allow_mass_prune=allow_mass_prune,
        wait=wait,
        timeout=common.parse_duration(timeout),
        concurrency=concurrency,
        adopt=adopt,
    )
    snapshot = _snapshot(path, decryption_key)
    with rendercache.reusing(path, snapshot) as kept:
        head = _head(snapshot, kept)
        cluster = connection.connect(kubeconfig, context)
        try:
            if not head.valid:
                _reject(cluster, head, dry_run)
            emit = _echo_json if output_format == "json" else echo
            results = reconcile.reconcile(cluster, head, options, emit)
        except kube.KubeError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2)
    failed = False
    for result in results:
        failed = failed or result.outcome.state == record.FAILED
        if output_format == "json":
            click.echo(eventlines.outcome_as_json(result.name, result.outcome))
            continue
        if dry_run:
            click.echo(plantext.text(result.plan), nl=False)
        for reason in result.outcome.reasons:
            click.echo(f"  {reason}", err=result.outcome.state == record.FAILED)
        click.echo(f"extension {result.name}: {result.outcome.state}")
    sys.exit(1 if failed else 0)


def _reject(cluster: kube.Cluster, head: revision.Revision, dry_run: bool) -> None:
    """An invalid repo: nothing is applied; its problems go into the records of the
    extensions it owns (`reconcile.record_problems`)."""
    click.echo(_failed_repo(head), err=True)
    if not dry_run:
        recorded = reconcile.record_problems(cluster, head)
        if recorded.written:
            written = ", ".join(recorded.written)
            click.echo(f"recorded the problems in the status of: {written}", err=True)
        for claim in recorded.refused:
            click.echo(f"problems not recorded: {claim.message()}", err=True)
    sys.exit(1)


@click.command()
@common.kube_options
@common.output_option("table", "wide", "json", "yaml")
def status(kubeconfig: str | None, context: str | None, output_format: str) -> None:
    """Every extension on the cluster: name, provisioningState, last applied revision, the
    source that owns it, reasons.

    The state is recomputed from the live objects of each extension's inventory. Exit 1 when
    an extension is Failed.
    """
    cluster = connection.connect(kubeconfig, context)
    try:
        summaries = [record.summary(r) for r in reconcile.refreshed_records(cluster)]
    except kube.KubeError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    if output_format in ("json", "yaml"):
        keys = ("name", "provisioningState", "lastAppliedRevision", "owner", "reasons")
        common.print_data([{k: s[k] for k in keys} for s in summaries], output_format)
    else:
        click.echo(table(summaries, wide=output_format == "wide"))
    sys.exit(1 if any(s["provisioningState"] == record.FAILED for s in summaries) else 0)


def table(summaries: list[dict[str, Any]], wide: bool = False) -> str:
    """Aligned columns, reasons indented below their extension; `wide` (`-o wide`, as kubectl
    has it) adds the last attempted revision, the drifted objects and whether it is
    suspended."""
    if not summaries:
        return "no extensions on this cluster (apply a repo first)"
    header: tuple[str, ...] = ("NAME", "STATE", "REVISION", "OBJECTS", "OWNER")
    if wide:
        header += ("ATTEMPTED", "DRIFTED", "SUSPENDED")
    rows = [
        (
            s["name"],
            s["provisioningState"],
            s["lastAppliedRevision"][:12] or "-",
            str(s["objects"]),
            s["owner"] or "-",
            *(
                (s["lastAttemptedRevision"][:12] or "-", str(s["drifted"]), str(s["suspended"]))
                if wide
                else ()
            ),
        )
        for s in summaries
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for index, row in enumerate([header, *rows]):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if index:
            lines.extend(f"  {reason}" for reason in summaries[index - 1]["reasons"])
    return "\n".join(lines)
