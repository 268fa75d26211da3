"""`reconciler diff`: the manifests repo at two git revisions, compared object by object.

A thin command over `gitsnapshot` (a commit's files, no checkout), `revisiondiff` (load, render,
compare, print) and, for a head left out, `source.DirectorySnapshot` (the work tree). Needs no
cluster. Exit codes follow `plan` and `kubectl diff`: 0 no changes, 1 changes, 2 error (an
invalid head, a bad revision, PATH outside git).
"""

from __future__ import annotations

import sys

import click

from reconciler import gitsnapshot, revisiondiff, source


@click.command()
@click.argument("path", default=".", type=click.Path(exists=True, file_okay=False))
@click.option("--base", required=True, help="The revision to compare against (e.g. origin/main).")
@click.option("--head", help="The revision to compare (default: the work tree, as it is now).")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "markdown", "json"]),
    default="text",
    show_default=True,
    help="markdown: a PR comment (capped to 65,536 characters); json: for tooling.",
)
def diff(path: str, base: str, head: str | None, output_format: str) -> None:
    """What changed between two revisions of the repo at PATH (a folder in a git work tree):
    objects created, updated (with a diff; Secret values never shown) and deleted, per
    extension. No cluster is needed.

    A base where PATH does not exist, or an invalid base, is compared as an empty repo (a note
    says so). An invalid head prints its problems and exits 2.

    Exit 0 when there are no changes, 1 when there are, 2 on an error.
    """
    try:
        base_snapshot = gitsnapshot.GitSnapshot.at(path, base)
        head_snapshot: source.Snapshot = (
            gitsnapshot.GitSnapshot.at(path, head) if head else source.DirectorySnapshot(path)
        )
    except gitsnapshot.GitSnapshotError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    result = revisiondiff.between(base_snapshot, head_snapshot)
    if output_format == "json":
        click.echo(revisiondiff.as_json(result), nl=False)
    elif output_format == "markdown":
        click.echo(revisiondiff.markdown(result), nl=False)
    else:
        style = _style if sys.stdout.isatty() else None
        click.echo(revisiondiff.text(result, style), nl=False)
    sys.exit(result.exit_code)


def _style(line: str, colour: str) -> str:
    return click.style(line, fg=colour)
