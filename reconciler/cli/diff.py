"""`reconciler diff`: the manifests repo at two git revisions, compared object by object.

A thin command over `gitsnapshot` (a commit's files, no checkout), `revisiondiff` (load, render,
compare), `printers.revisiondiff` (print) and, for a head left out, `source.DirectorySnapshot`
(the work tree). Needs no cluster, unless `--cluster` asks to compare the head with the live
cluster instead of a base revision: then the plan comes from `clusterdiff`
(`reconcile.plan_each`, the server-side dry run `reconciler plan` uses), imported only then, and
is printed in the same formats. Exit codes follow `plan` and `kubectl diff`: 0 no changes,
1 changes, 2 error (an invalid head, a bad revision, PATH outside git, an object the server
would reject).
"""

from __future__ import annotations

import sys

import click

from reconciler import gitsnapshot, source
from reconciler.cli import common, decryptkeys
from reconciler.engine import revisiondiff
from reconciler.printers import revisiondiff as printed


@click.command()
@click.argument("path", default=".", type=click.Path(exists=True, file_okay=False))
@click.option("--base", help="The revision to compare against (e.g. origin/main).")
@click.option("--head", help="The revision to compare (default: the work tree, as it is now).")
@click.option(
    "--cluster",
    "against_cluster",
    is_flag=True,
    help="Compare the head with the live cluster (server-side dry run) instead of --base.",
)
@common.kube_options
@common.output_option(
    "text",
    "markdown",
    "json",
    "yaml",
    help="markdown: a PR comment (capped to 65,536 characters); json / yaml: for tooling.",
)
@decryptkeys.option
@common.one_shot
def diff(
    path: str,
    base: str | None,
    head: str | None,
    against_cluster: bool,
    kubeconfig: str | None,
    context: str | None,
    output_format: str,
    decryption_key: str | None,
) -> None:
    """What changed between two revisions of the repo at PATH (a folder in a git work tree):
    objects created, updated (with a diff; Secret values never shown) and deleted, per
    extension. No cluster is needed.

    A base where PATH does not exist, or an invalid base, is compared as an empty repo (a note
    says so). An invalid head prints its problems and exits 2. With --cluster the head is
    compared with what the cluster runs (as `reconciler plan` does) and PATH need not be in git
    unless --head names a revision.

    SOPS-encrypted files are decrypted with --decryption-key (or $SOPS_AGE_KEY_FILE /
    $SOPS_AGE_KEY); without a key they are compared by their encrypted content, and a note
    names each one.

    Exit 0 when there are no changes, 1 when there are, 2 on an error.
    """
    if against_cluster == bool(base):
        raise click.UsageError("give exactly one of --base REF and --cluster")
    try:
        head_tree: source.Snapshot = (
            gitsnapshot.GitSnapshot.at(path, head) if head else source.DirectorySnapshot(path)
        )
        if against_cluster:
            from reconciler.cli import clusterdiff  # the kubernetes client; only --cluster needs it

            head_snapshot = decryptkeys.snapshot(head_tree, decryption_key)
            result = clusterdiff.against_cluster(head_snapshot, kubeconfig, context)
        else:
            assert base is not None
            base_snapshot = decryptkeys.snapshot(
                gitsnapshot.GitSnapshot.at(path, base), decryption_key, opaque_without_key=True
            )
            head_snapshot = decryptkeys.snapshot(head_tree, decryption_key, opaque_without_key=True)
            result = revisiondiff.between(base_snapshot, head_snapshot)
    except gitsnapshot.GitSnapshotError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    if output_format in ("json", "yaml"):
        common.print_data(printed.as_data(result), output_format)
    elif output_format == "markdown":
        click.echo(printed.markdown(result), nl=False)
    else:
        style = _style if common.colour_wanted() else None
        click.echo(printed.text(result, style), nl=False)
    sys.exit(result.exit_code)


def _style(line: str, colour: str) -> str:
    return click.style(line, fg=colour)
