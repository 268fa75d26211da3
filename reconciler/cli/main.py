"""The `reconciler` command line: the one user-facing entry point besides the public API.

This module is the click group; each command group lives in a module of its own beside it
(`offline`: validate/render, `reconcile`: plan/apply/status, `diff`, `extension`, `workload`,
`preflight`, `sync`, `install`, `router` (with `routertop`), `score`, `cluster`). Each command
is thin: it parses options, calls the pipeline (load -> validate -> render -> plan -> apply)
and prints. Exit codes follow one convention everywhere: 0 ok, 1 invalid input / changes found,
2 usage error. Nothing outside `reconciler.cli` imports it.
"""

from __future__ import annotations

import click

from reconciler import __version__
from reconciler.cli import (
    cluster,
    diff,
    extension,
    install,
    offline,
    preflight,
    reconcile,
    router,
    routertop,
    score,
    sync,
    workload,
)


@click.group()
@click.version_option(__version__, prog_name="reconciler")
def main() -> None:
    """Declarative GitOps reconciler for the ML extension for Kubernetes."""


main.add_command(offline.validate)
main.add_command(offline.render)
main.add_command(reconcile.plan)
main.add_command(reconcile.apply)
main.add_command(reconcile.status)
main.add_command(cluster.cluster)
main.add_command(workload.deployment)
main.add_command(workload.endpoint)
main.add_command(workload.job)
main.add_command(preflight.preflight)
main.add_command(extension.extension)
main.add_command(diff.diff)
main.add_command(sync.sync)
main.add_command(sync.controller_command)
main.add_command(install.install)
main.add_command(router.router)
router.router.add_command(routertop.top)
main.add_command(score.score)
