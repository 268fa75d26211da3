"""The `reconciler` command line: the one user-facing entry point besides the public API.

This module is the click group; each command group lives in a module of its own beside it
(`offline`: validate/render/schemas, `reconcile`: plan/apply/status, `diff`, `extension`,
`workload`, `preflight`, `sync`, `install`, `router` (with `simulate` and `routertop`), `score`,
`cluster`, `completion`), imported only when one of its commands runs (`lazygroup`). Each command
is thin: it parses options, calls the pipeline (load -> validate -> render -> plan -> apply) and
prints. Exit codes follow one convention everywhere: 0 ok, 1 invalid input / changes found, 2 usage
error (the table in docs/commands.md). One grammar too: `-o/--output` names a format and nothing
else, a name is the argument NAME and a folder the argument PATH (tests/unit/test_cli_grammar.py
walks every command to keep it so). Nothing outside `reconciler.cli` imports it.
"""

from __future__ import annotations

import click

from reconciler import __version__, buildinfo
from reconciler.cli import lazygroup

# Each command's module is imported only when that command runs (or `--help` lists them all):
# importing every module up front cost each command, even `--version`, over a second of start-up
# (the local plane, the router, git, the kubernetes client...).
COMMANDS = {
    "validate": "reconciler.cli.offline.validate",
    "render": "reconciler.cli.offline.render",
    "schemas": "reconciler.cli.offline.schemas",
    "plan": "reconciler.cli.reconcile.plan",
    "apply": "reconciler.cli.reconcile.apply",
    "status": "reconciler.cli.reconcile.status",
    "cluster": "reconciler.cli.cluster.cluster",
    "deployment": "reconciler.cli.workload.deployment",
    "endpoint": "reconciler.cli.workload.endpoint",
    "job": "reconciler.cli.workload.job",
    "preflight": "reconciler.cli.preflight.preflight",
    "extension": "reconciler.cli.extension.extension",
    "diff": "reconciler.cli.diff.diff",
    "sync": "reconciler.cli.sync.sync",
    "controller": "reconciler.cli.sync.controller_command",
    "install": "reconciler.cli.install.install",
    "router": "reconciler.cli.router.router",
    "score": "reconciler.cli.score.score",
    "completion": "reconciler.cli.completion.completion",
}


# `-h` as well as `--help`, for every command: click hands the setting down to subcommands.
@click.group(
    cls=lazygroup.LazyGroup,
    lazy_subcommands=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--version",
    is_flag=True,
    is_eager=True,
    expose_value=False,
    callback=lambda context, _param, wanted: _print_version(context) if wanted else None,
    help="Show the version and the commit it was built from, and exit.",
)
def main() -> None:
    """Declarative GitOps reconciler for the ML extension for Kubernetes."""


def _print_version(context: click.Context) -> None:
    """`reconciler 0.1.0 (commit 1a2b3c4)`; the commit is looked up only here (git may be
    asked), never at start-up."""
    click.echo(buildinfo.version_line(__version__, buildinfo.commit()))
    context.exit()
