"""`reconciler sync` and `reconciler controller`: the GitOps loop as a command.

Click options mapped onto `gitops.runtime`'s typed settings, and one `runtime.run`; this module
also opens the cluster (`connection`) and reads the age identities (`decryptkeys`), the command
line's edges. `controller` is `sync` with in-cluster defaults (`runtime.in_cluster`): the pod's
service account, leader election on, probes and metrics served.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click

from reconciler import kube
from reconciler.cli import common, connection, decryptkeys
from reconciler.engine import reconcile
from reconciler.gitops import controller, runtime
from reconciler.printers import logformat

F = TypeVar("F", bound=Callable[..., Any])


def loop_options(command: F) -> F:
    """PATH (the manifests folder in the repo, default its root) and the options `sync` and
    `controller` share (applied bottom-up, so listed in reverse)."""
    options = [
        click.argument("folder", metavar="[PATH]", default=""),
        click.option("--repo", required=True, help="Git URL (https, ssh, file) or local path."),
        click.option("--branch", help="Follow this branch (default: the remote's HEAD)."),
        click.option("--tag", help="Follow this tag."),
        click.option("--revision", help="Pin this commit SHA."),
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
        click.option(
            "--notifications",
            "notifications_file",
            type=click.Path(dir_okay=False),
            help="YAML file of notification providers (Slack, Teams, generic webhook, GitHub "
            "commit status) and the events each gets; see docs/notifications.md.",
        ),
        click.option("--metrics-addr", help="Serve /metrics, e.g. :8080."),
        click.option("--health-addr", help="Serve /healthz and /readyz, e.g. :8081."),
        click.option("--leader-elect", is_flag=True, help="Reconcile only while holding a Lease."),
        click.option("--lease-name", default=runtime.DEFAULT_LEASE, show_default=True),
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
        click.option(
            "--log-format",
            type=click.Choice(logformat.FORMATS),
            default="text",
            show_default=True,
            help="json: one JSON object per line (time, level, logger, message, the event's "
            "fields).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.command()
@loop_options
@common.kube_options
def sync(**options: Any) -> None:
    """Keep the cluster on the manifests folder PATH of a git repo (default: its root): fetch
    --repo every --interval (with jitter), and on a
    webhook push or a file save; apply each new valid revision, revert drift, prune what left
    the repo. An invalid revision changes nothing (the last good one stays applied) and its
    problems go to `reconciler status`. Runs until SIGINT / SIGTERM."""
    _run(**options)


@click.command("controller")
@loop_options
def controller_command(**options: Any) -> None:
    """`sync` as an in-cluster controller (see `reconciler install`): the pod's service
    account, leader election, /healthz /readyz on :8081 and /metrics on :8080 unless given."""
    _run(kubeconfig=None, context=None, in_cluster=True, **options)


def _settings(
    *,
    repo: str,
    branch: str | None,
    tag: str | None,
    revision: str | None,
    folder: str,
    interval: str,
    fetch_timeout: str,
    no_shallow: bool,
    git_credentials: str | None,
    git_token_file: str | None,
    cache_dir: str | None,
    watch: bool,
    webhook_addr: str | None,
    webhook_secret_file: str | None,
    notifications_file: str | None,
    metrics_addr: str | None,
    health_addr: str | None,
    leader_elect: bool,
    lease_name: str,
    lease_namespace: str | None,
    lease_duration: str,
    drift: str,
    no_prune: bool,
    allow_mass_prune: bool,
    adopt: bool,
    concurrency: int,
    once: bool,
) -> runtime.Settings:
    """The options as the loop's settings."""
    return runtime.Settings(
        source=runtime.Source(
            repo,
            branch=branch,
            tag=tag,
            revision=revision,
            path=folder,
            watch=watch,
            shallow=not no_shallow,
            fetch_timeout=common.parse_duration(fetch_timeout),
            cache_dir=cache_dir,
            git_credentials=git_credentials,
            git_token_file=git_token_file,
        ),
        loop=controller.Settings(
            interval=common.parse_duration(interval),
            drift=drift,
            options=reconcile.Options(
                prune=not no_prune,
                # As Flux's controllers do: fields the repo sets are ours, so an edit by
                # anyone else (`kubectl edit` takes the field over) is reverted, not a
                # conflict.
                force_conflicts=True,
                allow_mass_prune=allow_mass_prune,
                concurrency=concurrency,
                adopt=adopt,
            ),
        ),
        leader_election=runtime.LeaderElection(
            enabled=leader_elect,
            name=lease_name,
            namespace=lease_namespace,
            duration=common.parse_duration(lease_duration),
        ),
        serving=runtime.Serving(
            metrics=metrics_addr,
            health=health_addr,
            webhook=webhook_addr,
            webhook_secret_file=webhook_secret_file,
        ),
        notifications=runtime.notifications(notifications_file) if notifications_file else None,
        once=once,
    )


def _run(
    *,
    kubeconfig: str | None,
    context: str | None,
    decryption_key: str | None,
    decryption_secret: str | None,
    verbose: bool,
    log_format: str,
    in_cluster: bool = False,
    **options: Any,
) -> None:
    """The options as settings, the cluster opened, the age identities read, and the loop run;
    with --once, the tick's outcome printed and the exit code by it (0 ok, 1 failed or invalid,
    2 an error)."""
    logformat.configure(log_format, logging.DEBUG if verbose else logging.INFO)
    with _usage_errors():
        settings = _settings(**options)
    if in_cluster:
        settings = runtime.in_cluster(settings)
    # The loop outlives a server it cannot reach (it retries with its backoff); --once exits.
    cluster = connection.connect(kubeconfig, context, daemon=not settings.once)
    identities = decryptkeys.identities(decryption_key)
    if decryption_secret:
        namespace = runtime.own_namespace(settings.leader_election.namespace)
        found = kube.get_secret(cluster, namespace, decryption_secret)
        identities += decryptkeys.from_secret(found, namespace, decryption_secret)
    with _usage_errors():
        outcome = runtime.run(settings, cluster, identities)
    if outcome is not None:
        click.echo(f"{outcome.result}: revision {outcome.revision} {outcome.message}".rstrip())
        sys.exit(0 if outcome.result == "success" else 1 if outcome.result != "error" else 2)


@contextlib.contextmanager
def _usage_errors() -> Iterator[None]:
    """Settings that cannot run, as click's usage error (exit 2)."""
    try:
        yield
    except runtime.SettingsError as err:
        raise click.UsageError(str(err)) from err
