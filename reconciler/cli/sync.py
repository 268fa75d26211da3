"""`reconciler sync` and `reconciler controller`: the GitOps loop as a command.

Wires the pieces: the source (`gitsource` for a remote or a local repo's branch, or the work tree
itself with `--watch`), the loop (`controller`), leader election on a Lease (`leaderelection`),
the live-state cache (`engine.livecache`, one watch per rendered kind) and the drift watch on it
(`driftwatch`), the HTTP endpoints (`httpserver`: metrics, probes, webhook),
file watching (watchfiles) and signals. `controller` is `sync` with in-cluster defaults: the pod's
service account, leader election on, probes and metrics served, SIGTERM handled gracefully (the
tick in progress finishes, the lease is released so a standby takes over at once).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import watchfiles

from reconciler import kube, leaderelection, source
from reconciler.cli import common, connection, decryptkeys
from reconciler.engine import livecache, reconcile
from reconciler.gitops import (
    controller,
    driftwatch,
    gitcredentials,
    gitsource,
    heap,
    httpserver,
    loopmetrics,
)
from reconciler.model import decryption

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_LEASE = "mlext-reconciler"


def loop_options(command: F) -> F:
    """The options `sync` and `controller` share (applied bottom-up, so listed in reverse)."""
    options = [
        click.option("--repo", required=True, help="Git URL (https, ssh, file) or local path."),
        click.option("--branch", help="Follow this branch (default: the remote's HEAD)."),
        click.option("--tag", help="Follow this tag."),
        click.option("--revision", help="Pin this commit SHA."),
        click.option("--path", "folder", default="", help="The manifests folder in the repo."),
        click.option("--interval", default="60s", show_default=True, help="Time between ticks."),
        click.option(
            "--fetch-timeout", default="60s", show_default=True, help="Limit on one git fetch."
        ),
        click.option("--no-shallow", is_flag=True, help="Fetch full history (default depth 1)."),
        click.option(
            "--git-credentials",
            type=click.Path(file_okay=False),
            help="Folder of a mounted Secret with Flux's keys: username/password or "
            "bearerToken (HTTPS), identity/known_hosts (SSH), ca.crt.",
        ),
        click.option(
            "--git-token-file",
            type=click.Path(dir_okay=False),
            help="File holding an HTTPS token (sent as the password of basic auth).",
        ),
        click.option(
            "--cache-dir",
            type=click.Path(file_okay=False),
            help="Where the git mirror is kept (default: .cache/gitsource, or "
            "/var/cache/reconciler in the controller).",
        ),
        click.option(
            "--watch",
            is_flag=True,
            help="--repo is a local work tree: reconcile it as it is, on every save.",
        ),
        click.option("--webhook-addr", help="Serve POST /hook for push events, e.g. :9292."),
        click.option(
            "--webhook-secret-file",
            type=click.Path(dir_okay=False, exists=True),
            help="The shared secret push events are signed with (required with a webhook).",
        ),
        click.option(
            "--decryption-key",
            type=click.Path(dir_okay=False, exists=True),
            help="age key file for SOPS-encrypted files (default: $SOPS_AGE_KEY_FILE, "
            "$SOPS_AGE_KEY).",
        ),
        click.option(
            "--decryption-secret",
            help="A Secret in the controller's namespace whose *.agekey keys hold the age "
            "identities for SOPS-encrypted files (as Flux's decryption secretRef).",
        ),
        click.option("--metrics-addr", help="Serve /metrics, e.g. :8080."),
        click.option("--health-addr", help="Serve /healthz and /readyz, e.g. :8081."),
        click.option("--leader-elect", is_flag=True, help="Reconcile only while holding a Lease."),
        click.option("--lease-name", default=DEFAULT_LEASE, show_default=True),
        click.option("--lease-namespace", help="Default: the pod's namespace, else 'default'."),
        click.option(
            "--lease-duration",
            default="15s",
            show_default=True,
            help="A dead leader's lease runs out after this; a standby then takes over.",
        ),
        click.option(
            "--drift",
            type=click.Choice(controller.DRIFT_MODES),
            default="correct",
            show_default=True,
            help="correct: revert changes to owned objects; report: only record them.",
        ),
        click.option("--no-prune", is_flag=True, help="Never delete what left the repo."),
        click.option("--allow-mass-prune", is_flag=True, help="Lift the prune safety limit."),
        click.option(
            "--adopt",
            is_flag=True,
            help="Take over extensions the repo declares that another source owns (their "
            "objects only that source declared are pruned); until the first complete tick.",
        ),
        connection.concurrency_option,
        click.option("--once", is_flag=True, help="One reconcile, then exit (0 ok, 1 failed)."),
        click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.command()
@loop_options
@common.kube_options
def sync(**options: Any) -> None:
    """Keep the cluster on a git repo: fetch --repo every --interval (with jitter), and on a
    webhook push or a file save; apply each new valid revision, revert drift, prune what left
    the repo. An invalid revision changes nothing (the last good one stays applied) and its
    problems go to `reconciler status`. Runs until SIGINT / SIGTERM."""
    _run(**options)


@click.command("controller")
@loop_options
def controller_command(**options: Any) -> None:
    """`sync` as an in-cluster controller (see `reconciler install`): the pod's service
    account, leader election, /healthz /readyz on :8081 and /metrics on :8080 unless given."""
    options["leader_elect"] = True
    options["health_addr"] = options["health_addr"] or ":8081"
    options["metrics_addr"] = options["metrics_addr"] or ":8080"
    options["cache_dir"] = options["cache_dir"] or "/var/cache/reconciler"
    _run(kubeconfig=None, context=None, **options)


def _fetcher(options: dict[str, Any]) -> tuple[controller.Fetch, str | None]:
    """The source as a fetch function, and the ref a webhook push must name (None: any)."""
    refs = [options[k] for k in ("branch", "tag", "revision") if options[k]]
    if len(refs) > 1:
        raise click.UsageError("give at most one of --branch, --tag and --revision")
    if options["watch"]:
        if refs or not Path(options["repo"]).is_dir():
            raise click.UsageError("--watch follows a local work tree: --repo PATH, no ref")
        folder = Path(options["repo"]) / options["folder"]
        return (lambda: source.DirectorySnapshot(folder)), None
    credentials = None
    if options["git_credentials"]:
        credentials = gitcredentials.Credentials.from_directory(options["git_credentials"])
    elif options["git_token_file"]:
        credentials = gitcredentials.Credentials.from_token_file(options["git_token_file"])
    try:
        git_source = gitsource.GitSource(
            options["repo"],
            options["cache_dir"] or ".cache/gitsource",
            branch=options["branch"],
            tag=options["tag"],
            revision=options["revision"],
            path=options["folder"],
            shallow=not options["no_shallow"],
            timeout=common.parse_duration(options["fetch_timeout"]),
            credentials=credentials,
        )
    except gitsource.GitSourceError as err:
        raise click.UsageError(str(err)) from err
    return (lambda: git_source.fetch().snapshot), options["branch"] or options["tag"]


def _lease_namespace(given: str | None) -> str:
    if given:
        return given
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    if SERVICE_ACCOUNT_NAMESPACE.is_file():
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    return "default"


def _identity() -> str:
    """Unique per process: two candidates on one host must not share an identity."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def _routes(options: dict[str, Any]) -> dict[str, set[str]]:
    routes: dict[str, set[str]] = {}
    for option, route in (
        ("metrics_addr", "metrics"),
        ("health_addr", "health"),
        ("webhook_addr", "webhook"),
    ):
        if options[option]:
            routes.setdefault(options[option], set()).add(route)
    return routes


def _run(**options: Any) -> None:
    logging.basicConfig(
        level=logging.DEBUG if options["verbose"] else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if options["webhook_addr"] and not options["webhook_secret_file"]:
        raise click.UsageError(
            "--webhook-addr needs --webhook-secret-file (unsigned pushes "
            "are rejected, so there must be a secret to sign them with)"
        )
    raw_fetch, ref = _fetcher(options)
    cluster = connection.connect(options["kubeconfig"], options["context"])
    identities = decryptkeys.identities(options["decryption_key"])
    if options["decryption_secret"]:
        namespace = _lease_namespace(options["lease_namespace"])
        key_secret = options["decryption_secret"]
        found = kube.get_secret(cluster, namespace, key_secret)
        identities += decryptkeys.from_secret(found, namespace, key_secret)

    def fetch() -> source.Snapshot:
        return decryption.DecryptingSnapshot(raw_fetch(), identities)

    settings = controller.Settings(
        interval=common.parse_duration(options["interval"]),
        drift=options["drift"],
        options=reconcile.Options(
            prune=not options["no_prune"],
            # As Flux's controllers do: fields the repo sets are ours, so an edit by anyone
            # else (`kubectl edit` takes the field over) is reverted, not a conflict.
            force_conflicts=True,
            allow_mass_prune=options["allow_mass_prune"],
            concurrency=options["concurrency"],
            adopt=options["adopt"],
        ),
    )
    metrics = loopmetrics.ControllerMetrics()
    loop = controller.Controller(cluster, fetch, settings, metrics)
    if options["once"]:
        outcome = loop.tick()
        click.echo(f"{outcome.result}: revision {outcome.revision} {outcome.message}".rstrip())
        sys.exit(0 if outcome.result == "success" else 1 if outcome.result != "error" else 2)

    stop = threading.Event()
    elector = _elector(options, cluster, loop) if options["leader_elect"] else None
    leading = elector.is_leader if elector else (lambda: True)
    cache = livecache.LiveCache(cluster)
    metrics.watch_cache(cache.stats)
    drift = driftwatch.DriftWatch(cache, loop.trigger)
    loop.cache, loop.drift_watch, loop.heap = cache, drift, heap.Heap()
    secret = (
        Path(options["webhook_secret_file"]).read_bytes().strip()
        if options["webhook_secret_file"]
        else b""
    )
    worker = threading.Thread(target=loop.run, args=(stop, leading), name="reconcile")
    servers = httpserver.Servers(
        httpserver.Endpoints(
            metrics=metrics.exposition,
            healthy=worker.is_alive,
            ready=lambda: worker.is_alive() and (loop.last is None or loop.last.result != "error"),
            trigger=loop.trigger,
            webhook_secret=secret,
            ref=ref,
            routes_by_address=_routes(options),
        )
    )
    for address, (host, port) in servers.addresses.items():
        click.echo(f"serving on {address} (bound {host}:{port})", err=True)

    def shut_down(signum: int, _frame: object) -> None:
        log.info("%s: finishing the current reconcile, then stopping", signal.Signals(signum).name)
        stop.set()
        loop.trigger("shutdown")

    signal.signal(signal.SIGTERM, shut_down)
    signal.signal(signal.SIGINT, shut_down)
    if elector:
        elector.start()
    worker.start()
    if options["watch"]:
        threading.Thread(
            target=_watch_files, args=(options, loop, stop), name="watchfiles", daemon=True
        ).start()
    while worker.is_alive():
        worker.join(0.5)  # the main thread stays free to take signals
    drift.stop()
    if elector:
        elector.stop(release=True)  # a standby takes over now, not after the lease runs out
    servers.close()


def _elector(
    options: dict[str, Any], cluster: kube.Cluster, loop: controller.Controller
) -> leaderelection.LeaderElector:
    duration = common.parse_duration(options["lease_duration"])
    return leaderelection.LeaderElector(
        leaderelection.KubeLeases(cluster),
        _lease_namespace(options["lease_namespace"]),
        options["lease_name"],
        _identity(),
        lease_duration=duration,
        renew_deadline=duration * 2 / 3,
        retry_period=duration * 2 / 15,
        on_started_leading=lambda: loop.trigger("became the leader"),
    )


def _watch_files(
    options: dict[str, Any], loop: controller.Controller, stop: threading.Event
) -> None:
    folder = Path(options["repo"]) / options["folder"]
    for changes in watchfiles.watch(folder, stop_event=stop, debounce=300):
        names = sorted({Path(path).name for _, path in changes})
        loop.trigger(f"saved {', '.join(names)}")
