"""`reconciler router ...`: run the inference router, issue its tokens, size deployments.

Thin like every command: options in, a call into `proxy`, `incluster`, `tokens` or `sizing`,
output out. Exit codes as elsewhere: 0 ok, 1 invalid input (a bad config file), 2 usage error.

`serve` runs in-cluster (`incluster.InCluster`: discovered backends, keys from Secrets, scaling)
when `--in-cluster` says so or, by default, when the process runs in a pod; `--kubeconfig` and
`--context` point that side at a cluster from outside one (tests, debugging).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import sys
from pathlib import Path

import click

from reconciler import kube
from reconciler.cli import common, connection, lazygroup
from reconciler.router import config as routerconfig
from reconciler.router import incluster, proxy, sizing, tokens

log = logging.getLogger(__name__)

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


# `top` reads the local plane's pods and `simulate` the whole router model: imported only when
# run, so `router serve` in the router's pod starts without them.
@click.group(
    cls=lazygroup.LazyGroup,
    lazy_subcommands={
        "simulate": "reconciler.cli.simulate.simulate",
        "top": "reconciler.cli.routertop.top",
    },
)
def router() -> None:
    """The bundled inference router (azureml-fe): serve, tokens and sizing."""


@router.command()
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="router.yaml, as rendered into the router's ConfigMap; re-read when it changes.",
)
@click.option(
    "--in-cluster/--no-in-cluster",
    "in_cluster",
    default=None,
    help="Discover backends, read keys from Secrets and scale deployments through the API "
    "server (needs POD_NAME, POD_NAMESPACE, ROUTER_SERVICE). Default: when running in a pod "
    "($KUBERNETES_SERVICE_HOST set).",
)
@common.kube_options
@click.option("--probe-interval", type=float, default=1.0, show_default=True, hidden=True)
@click.option("--reload-interval", type=float, default=1.0, show_default=True, hidden=True)
@click.option(
    "--secret-refresh",
    type=click.FloatRange(min=0, min_open=True),
    default=incluster.SECRET_REFRESH_SECONDS,
    show_default=True,
    hidden=True,
)
def serve(
    config_path: Path,
    in_cluster: bool | None,
    kubeconfig: str | None,
    context: str | None,
    probe_interval: float,
    reload_interval: float,
    secret_refresh: float,
) -> None:
    """Serve scoring requests for the deployments in the config until SIGTERM."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
        )
    try:
        cfg = routerconfig.load(config_path)
    except routerconfig.ConfigError as err:
        click.echo(str(err), err=True)
        sys.exit(1)
    side: tuple[kube.Cluster, incluster.Identity] | None = None
    if incluster.wanted(in_cluster, os.environ):
        try:
            who = incluster.identity(os.environ)
        except incluster.MissingEnvironment as err:
            raise click.UsageError(str(err)) from err
        side = (connection.connect(kubeconfig, context, daemon=True), who)
    elif kubeconfig or context:
        raise click.UsageError(
            "--kubeconfig and --context are for in-cluster mode: add --in-cluster"
        )
    else:
        # Said once at startup: outside a cluster nothing fills these in.
        for name in incluster.discovered(cfg, ""):
            log.warning("deployment %s has no static backends and is not discovered here", name)
        for kind, name in incluster.secret_sources(cfg, ""):
            log.warning("%s %s takes its keys from a Secret, not read here", kind, name)
    server = proxy.Router(
        cfg,
        config_path,
        probe_interval,
        reload_interval,
        instance=side[1].pod if side else None,
    )
    _run(_serve_until_signal(server, side, secret_refresh))


async def _serve_until_signal(
    server: proxy.Router,
    side: tuple[kube.Cluster, incluster.Identity] | None,
    secret_refresh: float,
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    cluster_side = None
    if side is not None:
        cluster_side = incluster.InCluster(*side, server, secret_refresh=secret_refresh)
        await cluster_side.start()  # keys before the first request
    await server.start()
    click.echo(f"router listening on {server.config.host}:{server.port}", err=True)
    if server.config.admin is not None:
        click.echo(
            f"router admin (metrics, load reports) on {server.config.admin[0]}:{server.admin_port}",
            err=True,
        )
    try:
        await stop.wait()
    finally:
        if cluster_side is not None:
            # Hand the coordinator Lease over first: a standby decides while this one drains.
            await cluster_side.release()
        # Stop accepting, let requests in flight finish (the pod's grace period covers this),
        # with discovery still following the backends meanwhile.
        await server.stop()
        if cluster_side is not None:
            await cluster_side.close()


def _run(main: object) -> None:
    assert asyncio.iscoroutine(main)
    try:
        import uvloop  # the faster event loop, when installed (it is a dependency on Linux)
    except ImportError:  # pragma: no cover - platforms without uvloop
        asyncio.run(main)
        return
    uvloop.run(main)


@router.command()
@click.argument("name")
@click.option(
    "--signing-key-file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="File holding the signing key (its Secret's signingKey, decoded).",
)
@click.option("--ttl", default="1h", show_default=True, help="Lifetime: 3600, 90s, 30m, 1h, 1d.")
@common.output_option("json", "yaml")
def token(name: str, signing_key_file: Path, ttl: str, output_format: str) -> None:
    """Print a token for the token-mode deployment or endpoint NAME (accessToken, expiryOn,
    refreshAfter). NAME is the token's audience: it opens that name's route only, so a
    deployment's token does not open an endpoint's route (their names differ)."""
    seconds = parse_duration(ttl)
    if seconds is None or seconds <= 0:
        raise click.BadParameter(f"{ttl!r} is not a positive duration", param_hint="--ttl")
    key = signing_key_file.read_text(encoding="utf-8").strip()
    if not key:
        raise click.BadParameter(f"{signing_key_file} is empty", param_hint="--signing-key-file")
    common.print_data(tokens.issue(name, key, seconds).as_json(), output_format)


def parse_duration(text: str) -> int | None:
    """Seconds in `3600`, `90s`, `30m`, `1h` or `1d`; None when it is none of those."""
    match = _DURATION.match(text)
    if match is None:
        return None
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


@router.command()
@click.option("--rps", type=click.FloatRange(min=0), required=True, help="Target requests/s.")
@click.option(
    "--request-seconds",
    type=click.FloatRange(min=0),
    required=True,
    help="Seconds one request takes on a replica.",
)
@click.option(
    "--target",
    type=click.FloatRange(min=0, min_open=True, max=100),
    default=70,
    show_default=True,
    help="Target utilization percentage.",
)
@click.option(
    "--per-replica",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="max_concurrent_requests_per_instance.",
)
def replicas(rps: float, request_seconds: float, target: float, per_replica: int) -> None:
    """Print the replicas the documented sizing rule gives:
    ceil(rps * request_seconds / (target / 100) / per_replica)."""
    click.echo(str(sizing.replicas(rps, request_seconds, target, per_replica)))
