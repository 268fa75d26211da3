"""Opening the cluster a command reads: `connect`, and `--concurrency`, bounded by its pool.

Apart from `common` because these need the kubernetes client (through `kube`) and the other
helpers do not: commands that run without a cluster (`validate`, `render`, `install`, a `diff`
of two revisions) import `common` alone and start without loading the client.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from reconciler import kube
from reconciler.engine import executor

F = TypeVar("F", bound=Callable[..., Any])


def concurrency_option(command: F) -> F:
    """--concurrency: how many dry runs or applies are in flight at once (into `concurrency`)."""
    return click.option(
        "--concurrency",
        type=click.IntRange(1, kube.CONNECTIONS),
        default=executor.WORKERS,
        show_default=True,
        help="API requests (dry runs, applies) in flight at once.",
    )(command)


def connect(kubeconfig: str | None, context: str | None) -> kube.Cluster:
    """A connection, or exit 2 saying why the kubeconfig cannot be used."""
    try:
        return kube.connect(kubeconfig, context)
    except Exception as err:  # the client's ConfigException, which only `kube` may import
        hint = "" if kubeconfig else " (no usable $KUBECONFIG or ~/.kube/config, not in a pod)"
        click.echo(f"error: cannot use the kubeconfig: {err}{hint}", err=True)
        sys.exit(2)
