"""`reconciler diff --cluster`: the head planned against the live cluster, as a revision diff.

The one part of `diff` that needs a cluster, apart from `cli/diff.py` so that a diff of two
revisions (the common case, a PR check) starts without the kubernetes client and the planner:
`diff` imports this module only for `--cluster`. The plan is `reconcile.plan_each`'s, the
server-side dry run `reconciler plan` uses, made a revision diff as `plan` makes it
(`reconcile.as_revision_diff`: its notes and traffic summary).
"""

from __future__ import annotations

import sys

import click

from reconciler import kube, source
from reconciler.cli import connection
from reconciler.cli import reconcile as reconcilecli
from reconciler.engine import reconcile, revision, revisiondiff


def against_cluster(
    head: source.Snapshot, kubeconfig: str | None, context: str | None
) -> revisiondiff.RevisionDiff:
    """The head planned against the live cluster: what `reconciler apply` would change. Objects
    the API server would reject are problems (exit 2), as an invalid head is, and so is an
    extension another source owns (`apply` would refuse it)."""
    declared = revision.Revision(head)
    if not declared.valid:
        where = f"cluster {context}" if context else "cluster"
        return revisiondiff.RevisionDiff(where, declared.revision, problems=tuple(declared.errors))
    cluster = connection.connect(kubeconfig, context)
    try:
        planned = list(reconcile.plan_each(cluster, declared, reconcile.Options(dry_run=True)))
    except kube.KubeError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    return reconcilecli.as_revision_diff(context, declared, planned)
