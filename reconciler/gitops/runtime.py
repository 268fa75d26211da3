"""The loop as a running process, from typed settings: what `reconciler sync` and `reconciler
controller` run once their options are read.

The settings come in groups, one per concern: `Source` (the repo and how it is fetched, or a
work tree followed as it is saved), `controller.Settings` (the schedule and the reconcile
options), `LeaderElection` (a Lease in the loop's own namespace) and `Serving` (the metrics,
probe and webhook addresses), `notifications` (the parsed `--notifications` file); `in_cluster`
is how the in-cluster controller differs. `run` builds the runtime from them around one
`controller.Controller`: the live-state cache and its drift watch, the HTTP endpoints
(`httpserver`), the leader elector, the notifier (`notifydispatch`, the controller's `on_tick`),
a file watch (watchfiles) for a work tree, and the signals. SIGINT and SIGTERM stop it
gracefully: the tick in progress finishes, the lease is released so a standby takes over at once.

Sits on top of the other loop modules; the command line (`cli.sync`) maps its options onto the
settings and opens the cluster, and settings that cannot run are a `SettingsError` it reports
as a usage error.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
import os
import signal
import socket
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import watchfiles

from reconciler import __version__, buildinfo, kube, leaderelection, source
from reconciler.engine import livecache
from reconciler.gitops import (
    controller,
    gitcredentials,
    gitsource,
    heap,
    httpserver,
    install,
    loopmetrics,
    notifyconfig,
    notifydispatch,
)
from reconciler.model import decryption, sops

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_LEASE = "mlext-reconciler"
DEFAULT_CACHE_DIR = ".cache/gitsource"


class SettingsError(ValueError):
    """Settings that cannot run (two refs, a webhook with no secret, a git URL that is not one)."""


@dataclass(frozen=True)
class Source:
    """Where revisions come from: one ref of a git repo (remote or local), or with `watch` a
    work tree reconciled as it is, on every save."""

    repo: str
    branch: str | None = None
    tag: str | None = None
    revision: str | None = None
    path: str = ""  # the manifests folder in the repo
    watch: bool = False
    shallow: bool = True
    fetch_timeout: float = gitsource.DEFAULT_TIMEOUT
    cache_dir: str | None = None  # where the git mirror is kept (None: DEFAULT_CACHE_DIR)
    git_credentials: str | None = None  # a mounted Secret's folder, with Flux's keys
    git_token_file: str | None = None  # an HTTPS token

    def __post_init__(self) -> None:
        refs = [ref for ref in (self.branch, self.tag, self.revision) if ref]
        if len(refs) > 1:
            raise SettingsError("give at most one of --branch, --tag and --revision")
        if self.watch and (refs or not Path(self.repo).is_dir()):
            raise SettingsError("--watch follows a local work tree: --repo PATH, no ref")

    @property
    def folder(self) -> Path:
        """The work tree's manifests folder (with `watch`)."""
        return Path(self.repo) / self.path

    @property
    def ref(self) -> str | None:
        """The branch or tag a webhook push must name to trigger a tick (None: any)."""
        return self.branch or self.tag

    def fetcher(self) -> controller.Fetch:
        if self.watch:
            return lambda: source.DirectorySnapshot(self.folder)
        credentials = None
        if self.git_credentials:
            credentials = gitcredentials.Credentials.from_directory(self.git_credentials)
        elif self.git_token_file:
            credentials = gitcredentials.Credentials.from_token_file(self.git_token_file)
        try:
            git_source = gitsource.GitSource(
                self.repo,
                self.cache_dir or DEFAULT_CACHE_DIR,
                branch=self.branch,
                tag=self.tag,
                revision=self.revision,
                path=self.path,
                shallow=self.shallow,
                timeout=self.fetch_timeout,
                credentials=credentials,
            )
        except gitsource.GitSourceError as err:
            raise SettingsError(str(err)) from err
        return lambda: git_source.fetch().snapshot


@dataclass(frozen=True)
class LeaderElection:
    """Reconcile only while holding a Lease (when `enabled`)."""

    enabled: bool = False
    name: str = DEFAULT_LEASE
    namespace: str | None = None  # None: the loop's own namespace (`own_namespace`)
    duration: float = 15.0  # a dead leader's lease runs out after this

    def elector(
        self, cluster: kube.Cluster, loop: controller.Controller
    ) -> leaderelection.LeaderElector:
        """The candidate: client-go's proportions of renew deadline and retry period to the
        duration, and an identity unique per process (two on one host must not share one)."""
        identity = f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"
        return leaderelection.LeaderElector(
            leaderelection.KubeLeases(cluster),
            own_namespace(self.namespace),
            self.name,
            identity,
            lease_duration=self.duration,
            renew_deadline=self.duration * 2 / 3,
            retry_period=self.duration * 2 / 15,
            on_started_leading=lambda: loop.trigger("became the leader"),
        )


@dataclass(frozen=True)
class Serving:
    """The addresses (`host:port`, `:port`) served; None: not served. Two may be the same."""

    metrics: str | None = None  # /metrics
    health: str | None = None  # /healthz and /readyz
    webhook: str | None = None  # POST /hook
    webhook_secret_file: str | None = None  # the shared secret push events are signed with

    def __post_init__(self) -> None:
        if self.webhook and not self.webhook_secret_file:
            raise SettingsError(
                "--webhook-addr needs --webhook-secret-file (unsigned pushes "
                "are rejected, so there must be a secret to sign them with)"
            )

    def routes(self) -> dict[str, set[str]]:
        routes: dict[str, set[str]] = {}
        for address, route in (
            (self.metrics, "metrics"),
            (self.health, "health"),
            (self.webhook, "webhook"),
        ):
            if address:
                routes.setdefault(address, set()).add(route)
        return routes

    def webhook_secret(self) -> bytes:
        if not self.webhook_secret_file:
            return b""
        return Path(self.webhook_secret_file).read_bytes().strip()


@dataclass(frozen=True)
class Settings:
    """Everything `run` needs besides the cluster; `once`: one tick, no runtime around it."""

    source: Source
    loop: controller.Settings = dataclasses.field(default_factory=controller.Settings)
    leader_election: LeaderElection = LeaderElection()
    serving: Serving = Serving()
    notifications: notifyconfig.Config | None = None
    once: bool = False


def notifications(path: str) -> notifyconfig.Config:
    """The `--notifications` file, parsed; its problems (FILE:LINE) as a SettingsError."""
    try:
        return notifyconfig.load(path)
    except notifyconfig.ConfigError as err:
        raise SettingsError(f"invalid notifications file:\n{err}") from err


def notifier(settings: Settings, cluster: kube.Cluster) -> notifydispatch.Notifier | None:
    """The notifier of `settings.notifications` (None without one), its secrets checked once
    now: a provider with no address or no token it needs is a SettingsError at start, not a
    warning at its first event. A `secretRef` is read from the loop's own namespace."""
    if settings.notifications is None:
        return None
    namespace = own_namespace(settings.leader_election.namespace)

    def read_secret(name: str, key: str) -> str | None:
        found = kube.get_secret(cluster, namespace, name)
        value = ((found or {}).get("data") or {}).get(key)
        try:
            return base64.b64decode(value).decode() if value else None
        except (binascii.Error, UnicodeDecodeError):
            return None

    for provider in settings.notifications.providers:
        secrets = provider.secrets(read_secret)
        where = f"notifications provider {provider.name}"
        try:
            missing = [
                what
                for what, value, needed in (
                    ("address", secrets.address, True),
                    ("token", secrets.token, provider.type in notifyconfig.NEEDS_TOKEN),
                )
                if needed and not value()
            ]
        except (OSError, kube.KubeError) as err:
            raise SettingsError(f"{where}: its secrets cannot be read: {err}") from err
        if missing:
            raise SettingsError(f"{where}: no {' and no '.join(missing)} found where it names")
    return notifydispatch.Notifier(settings.notifications, read_secret)


def in_cluster(settings: Settings) -> Settings:
    """As the in-cluster controller runs (`reconciler controller`, the Deployment `install`
    prints): leader election on; probes and metrics on the ports its manifests name and the
    git mirror in their cache volume, unless given."""
    serving = dataclasses.replace(
        settings.serving,
        metrics=settings.serving.metrics or f":{install.METRICS_PORT}",
        health=settings.serving.health or f":{install.HEALTH_PORT}",
    )
    return dataclasses.replace(
        settings,
        source=dataclasses.replace(
            settings.source, cache_dir=settings.source.cache_dir or install.CACHE_DIR
        ),
        leader_election=dataclasses.replace(settings.leader_election, enabled=True),
        serving=serving,
    )


def own_namespace(given: str | None = None) -> str:
    """The loop's own namespace (its Lease's, its decryption Secret's): `given`, else the pod's,
    else "default"."""
    if given:
        return given
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    if SERVICE_ACCOUNT_NAMESPACE.is_file():
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    return "default"


def run(
    settings: Settings, cluster: kube.Cluster, identities: Sequence[sops.Identity] = ()
) -> controller.TickOutcome | None:
    """With `settings.once`, one tick and its outcome. Else the loop with its runtime until
    SIGINT or SIGTERM (call from the main thread: it takes the signals); None."""
    raw_fetch = settings.source.fetcher()

    def fetch() -> source.Snapshot:
        return decryption.DecryptingSnapshot(raw_fetch(), list(identities))

    metrics = loopmetrics.ControllerMetrics(__version__, buildinfo.commit())
    notify = notifier(settings, cluster)
    try:
        if settings.once:
            loop = controller.Controller(cluster, fetch, settings.loop, metrics, on_tick=notify)
            return loop.tick()
        _run_loop(settings, cluster, fetch, metrics, notify)
        return None
    finally:
        if notify is not None:
            notify.close()  # what the last tick reported goes out before the process ends


def _run_loop(
    settings: Settings,
    cluster: kube.Cluster,
    fetch: controller.Fetch,
    metrics: loopmetrics.ControllerMetrics,
    notify: notifydispatch.Notifier | None,
) -> None:
    cache = livecache.LiveCache(cluster)
    loop = controller.Controller(
        cluster,
        fetch,
        settings.loop,
        metrics,
        cache=cache,
        watch_drift=True,
        heap=heap.Heap(),
        on_tick=notify,
    )
    elector = None
    if settings.leader_election.enabled:
        elector = settings.leader_election.elector(cluster, loop)
    _run_until_stopped(settings, loop, elector)
    cache.stop()
    if elector:
        elector.stop(release=True)  # a standby takes over now, not after the lease runs out


def _run_until_stopped(
    settings: Settings,
    loop: controller.Controller,
    elector: leaderelection.LeaderElector | None,
) -> None:
    """Tick on a thread, serve the endpoints, watch the work tree, until a signal comes."""
    stop = threading.Event()
    leading = elector.is_leader if elector else (lambda: True)
    worker = threading.Thread(target=loop.run, args=(stop, leading), name="reconcile")
    servers = httpserver.Servers(
        httpserver.Endpoints(
            metrics=loop.metrics.exposition,
            healthy=worker.is_alive,
            ready=lambda: worker.is_alive() and (loop.last is None or loop.last.result != "error"),
            trigger=loop.trigger,
            webhook_secret=settings.serving.webhook_secret(),
            ref=settings.source.ref,
            routes_by_address=settings.serving.routes(),
        )
    )

    def shut_down(signum: int, _frame: object) -> None:
        log.info("%s: finishing the current reconcile, then stopping", signal.Signals(signum).name)
        stop.set()
        loop.trigger("shutdown")

    signal.signal(signal.SIGTERM, shut_down)
    signal.signal(signal.SIGINT, shut_down)
    if elector:
        elector.start()
    worker.start()
    if settings.source.watch:
        watching = (settings.source.folder, loop, stop)
        threading.Thread(target=_watch_files, args=watching, name="watchfiles", daemon=True).start()
    while worker.is_alive():
        worker.join(0.5)  # the main thread stays free to take signals
    servers.close()


def _watch_files(folder: Path, loop: controller.Controller, stop: threading.Event) -> None:
    for changes in watchfiles.watch(folder, stop_event=stop, debounce=300):
        names = sorted({Path(path).name for _, path in changes})
        loop.trigger(f"saved {', '.join(names)}")
