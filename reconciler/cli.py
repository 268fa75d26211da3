"""The `reconciler` command line: the one user-facing entry point besides the public API.

Each command is thin: it parses options, calls the pure pipeline (load -> validate -> ...) and
prints. Exit codes follow one convention everywhere: 0 ok, 1 invalid input / changes found,
2 usage error.
"""

from __future__ import annotations

import json
import sys

import click

from reconciler import __version__, repo, source


@click.group()
@click.version_option(__version__, prog_name="reconciler")
def main() -> None:
    """Declarative GitOps reconciler for the ML extension for Kubernetes."""


@main.command()
@click.argument("path", default=".", type=click.Path(exists=True, file_okay=True, dir_okay=True))
@click.option(
    "--output",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json prints the problems as a JSON list for tooling.",
)
def validate(path: str, output_format: str) -> None:
    """Load and validate the manifests repo at PATH (default: the current folder).

    Exit 0 when valid (warnings allowed), 1 with every problem, 2 on a usage error.
    """
    loaded = repo.load(source.DirectorySnapshot(path))
    if output_format == "json":
        click.echo(json.dumps([p.as_json() for p in loaded.problems], indent=2))
    else:
        for problem in loaded.problems:
            click.echo(str(problem))
        click.echo(_verdict(path, loaded))
    sys.exit(0 if loaded.valid else 1)


def _verdict(path: str, loaded: repo.Loaded) -> str:
    errors = len(loaded.errors)
    warnings = len(loaded.problems) - errors
    warned = f" ({warnings} warning{'s' if warnings != 1 else ''})" if warnings else ""
    if errors:
        return f"{errors} problem{'s' if errors != 1 else ''}{warned}"
    return f"{path} is valid: {loaded.repo.summary()}{warned}"


from reconciler.localcluster import cli as localcluster_cli  # noqa: E402

main.add_command(localcluster_cli.cluster)
