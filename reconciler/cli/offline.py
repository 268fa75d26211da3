"""`reconciler validate`, `reconciler render` and `reconciler schemas`: no cluster.

The offline commands of the command line (`reconciler.cli`): load + validate, then render,
printing problems as `FILE:LINE: field: message` and objects with Secret values redacted; and
the JSON Schemas editors use, written out (`model.editorschemas`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from reconciler import objects, source
from reconciler.cli import common, decryptkeys, outdir
from reconciler.engine import revision
from reconciler.model import editorschemas, problems


@click.command()
@click.argument("path", default=".", type=click.Path(exists=True, file_okay=True, dir_okay=True))
@common.output_option(
    "text",
    "json",
    "yaml",
    help="json / yaml: the problems as a list, for tooling.",
)
@decryptkeys.option
@common.one_shot
def validate(path: str, output_format: str, decryption_key: str | None) -> None:
    """Load and validate the manifests repo at PATH (default: the current folder).

    Exit 0 when valid (warnings allowed), 1 with every problem, 2 on a usage error.
    """
    head = revision.Revision(decryptkeys.snapshot(source.DirectorySnapshot(path), decryption_key))
    if output_format != "text":
        common.print_data([p.as_json() for p in head.loaded.problems], output_format)
    else:
        for problem in head.loaded.problems:
            click.echo(str(problem))
        click.echo(_verdict(path, head))
    sys.exit(0 if head.valid else 1)


@click.command()
@click.argument("path", default=".", type=click.Path(exists=True, file_okay=True, dir_okay=True))
@common.output_option(
    "yaml",
    "json",
    help="yaml: a multi-document stream; json: one List like kubectl -o json.",
)
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write one file per object into this folder instead of printing.",
)
@click.option(
    "--show-secrets",
    is_flag=True,
    help="Write real Secret values (only with --out-dir; files are made readable by you only).",
)
@decryptkeys.option
@common.one_shot
def render(
    path: str,
    output_format: str,
    out_dir: Path | None,
    show_secrets: bool,
    decryption_key: str | None,
) -> None:
    """Render every Kubernetes object the repo at PATH declares, in apply order.

    Secret values are redacted unless --show-secrets is given with --out-dir. An invalid repo
    prints its problems (on stderr) and no objects, and exits 1.
    """
    if show_secrets and out_dir is None:
        raise click.UsageError("--show-secrets only writes to files: give --out-dir too")
    snapshot = decryptkeys.snapshot(source.DirectorySnapshot(path), decryption_key)
    head = revision.Revision(snapshot)
    for problem in head.loaded.problems:
        click.echo(str(problem), err=True)
    if not head.valid:
        click.echo(_verdict(path, head), err=True)
        sys.exit(1)
    if show_secrets and snapshot.decrypted():
        shown = ", ".join(snapshot.display(p) for p in snapshot.decrypted())
        click.echo(
            f"error: --show-secrets would write what was decrypted from {shown} to disk: "
            "refused (SOPS-encrypted material stays in memory)",
            err=True,
        )
        sys.exit(2)
    printable = [obj if show_secrets else objects.redact(obj) for obj in head.rendered.objects]
    if out_dir is None:
        text = objects.to_json(printable) if output_format == "json" else objects.to_yaml(printable)
        click.echo(text, nl=False)
        return
    written = outdir.write_objects(out_dir, printable, output_format, private=show_secrets)
    click.echo(f"wrote {written} objects to {out_dir}", err=True)


def _verdict(path: str, head: revision.Revision) -> str:
    errors = len(head.errors)
    warnings = sum(p.severity is problems.Severity.WARNING for p in head.loaded.problems)
    warned = f" ({warnings} warning{'s' if warnings != 1 else ''})" if warnings else ""
    if errors:
        return f"{errors} problem{'s' if errors != 1 else ''}{warned}"
    return f"{path} is valid: {head.loaded.repo.summary()}{warned}"


@click.command()
@click.argument("directory", metavar="PATH", type=click.Path(file_okay=False, path_type=Path))
def schemas(directory: Path) -> None:
    """Write the manifests' JSON Schemas for editors into the folder PATH, one per kind and shape
    (draft-07, self-contained, the Extension's settings enumerated); `schemas/editor/` in the
    repo is this command's output. Prints each file written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for name, schema in editorschemas.published().items():
        path = directory / f"{name}.json"
        path.write_text(editorschemas.text(schema), encoding="utf-8")
        click.echo(path)
