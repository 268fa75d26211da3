"""`reconciler diff --cluster`: the head planned against the live cluster, as a revision diff.

The one part of `diff` that needs a cluster, apart from `cli/diff.py` so that a diff of two
revisions (the common case, a PR check) starts without the kubernetes client and the planner:
`diff` imports this module only for `--cluster`. The plan is `reconcile.plan_each`'s, the
server-side dry run `reconciler plan` uses, with `plan`'s notes.
"""

from __future__ import annotations

import sys

import click

from reconciler import kube, source
from reconciler.cli import connection
from reconciler.cli import reconcile as reconcilecli
from reconciler.engine import reconcile, revision, revisiondiff
from reconciler.model import problems


def against_cluster(
    head: source.Snapshot, kubeconfig: str | None, context: str | None
) -> revisiondiff.RevisionDiff:
    """The head planned against the live cluster: what `reconciler apply` would change. Objects
    the API server would reject are problems (exit 2), as an invalid head is, and so is an
    extension another source owns (`apply` would refuse it)."""
    where = f"cluster {context}" if context else "cluster"
    declared = revision.Revision(head)
    if not declared.valid:
        return revisiondiff.RevisionDiff(where, declared.revision, problems=tuple(declared.errors))
    cluster = connection.connect(kubeconfig, context)
    try:
        planned = list(reconcile.plan_each(cluster, declared, reconcile.Options(dry_run=True)))
    except kube.KubeError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    rejected = tuple(
        problems.Problem(head.display(""), 0, "", f"the API server would reject {error}")
        for extension_plan in planned
        for error in extension_plan.errors
    ) + tuple(
        problems.Problem(head.display(""), 0, "", p.claim.message())
        for p in planned
        if p.claim is not None and p.refused
    )
    notes = tuple(note for p in planned for note in reconcilecli.plan_notes(p))
    return revisiondiff.RevisionDiff(
        where,
        declared.revision,
        tuple(revisiondiff.ExtensionDiff(p.name, p.plan) for p in planned if not p.refused),
        rejected,
        notes,
    )
