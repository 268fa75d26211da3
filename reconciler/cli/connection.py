"""Opening the cluster a command reads: `connect`, and `--concurrency`, bounded by its pool.

`connect` makes the first contact with the API server, within the command's
`--request-timeout`: a server that cannot be reached is an error there and then (exit 2, saying
what was tried and what to do), the same for every command; a loop that outlives an outage
(`sync`, the controller, `router serve`) logs it and goes on. It also sets how long a command
waits for an API server that stopped answering once it had answered (`kube` retries for 2
minutes; `$RECONCILER_API_RETRY_SECONDS` changes that) and prints, on stderr, the one line saying
what it waits for.

Apart from `common` because these need the kubernetes client (through `kube`) and the other
helpers do not: commands that run without a cluster (`validate`, `render`, `install`, a `diff`
of two revisions) import `common` alone and start without loading the client.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click

from reconciler import kube
from reconciler.cli import common
from reconciler.engine import executor

F = TypeVar("F", bound=Callable[..., Any])
RETRY_ENV = "RECONCILER_API_RETRY_SECONDS"
_log = logging.getLogger(__name__)


def concurrency_option(command: F) -> F:
    """--concurrency: how many dry runs or applies are in flight at once (into `concurrency`)."""
    return click.option(
        "--concurrency",
        type=click.IntRange(1, kube.CONNECTIONS),
        default=executor.WORKERS,
        show_default=True,
        help="API requests (dry runs, applies) in flight at once.",
    )(command)


def retry_seconds(environ: Mapping[str, str] = os.environ) -> float:
    """The bound on waiting for an unreachable API server: `$RECONCILER_API_RETRY_SECONDS`,
    else `kube.RETRY_FOR_SECONDS`; exit 2 naming the variable when it is not a number >= 0."""
    raw = environ.get(RETRY_ENV, "").strip()
    if not raw:
        return kube.RETRY_FOR_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not math.isfinite(seconds) or seconds < 0:
        click.echo(f"error: {RETRY_ENV}={raw!r}: not a number of seconds (0 or more)", err=True)
        sys.exit(2)
    return seconds


def _waiting(line: str) -> None:
    click.echo(line, err=True)


def unreachable(err: kube.Unreachable, origin: str) -> str:
    """What a failed first contact tried (the server, where its address came from), how it
    failed, and what to do."""
    if err.why.startswith("TLS"):
        hint = "is the kubeconfig's certificate authority this server's?"
    elif err.why.startswith("cannot resolve"):
        hint = "is the server's host name right?"
    else:
        hint = "is the cluster running?"
    gave_up = f"; gave up after {err.waited:.0f} s" if err.waited else ""
    return (
        f"cannot reach the Kubernetes API server at {err.server} ({origin}): {err.why}{gave_up}; "
        f"{hint} check with `kubectl cluster-info`"
    )


def connect(kubeconfig: str | None, context: str | None, *, daemon: bool = False) -> kube.Cluster:
    """A connection whose server has answered, or exit 2 saying why the kubeconfig cannot be
    used or what could not be reached. `daemon`: a loop with retries of its own, which logs a
    server it cannot reach and is handed the connection all the same."""
    seconds = retry_seconds()
    try:
        cluster = kube.connect(kubeconfig, context, retry_for=seconds)
    except Exception as err:  # the client's ConfigException, which only `kube` may import
        hint = "" if kubeconfig else " (no usable $KUBECONFIG or ~/.kube/config, not in a pod)"
        click.echo(f"error: cannot use the kubeconfig: {err}{hint}", err=True)
        sys.exit(2)
    cluster.waiting = _waiting
    try:
        kube.reach(cluster, common.request_timeout())
    except kube.Unreachable as err:
        if daemon:
            _log.error("%s; retrying", unreachable(err, cluster.origin))
            return cluster
        click.echo(f"error: {unreachable(err, cluster.origin)}", err=True)
        sys.exit(2)
    return cluster
