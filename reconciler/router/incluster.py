"""The router in a cluster: discovered backends, keys from Secrets and the scaling side.

Sits between `proxy.Router`, the data path, which knows nothing of Kubernetes, and the pieces
that talk to the API server through `kube`: one `discovery.EndpointWatcher` per deployment
without static backends (its Service's EndpointSlices, port `workloadobjects.SERVICE_PORT_NAME`),
a poll of each deployment's and endpoint's auth Secret (every `SECRET_REFRESH_SECONDS`, so that
`reconciler deployment regen-key` takes effect without a restart; one code path for both kinds,
a Secret two of them share is read once), and `coordinator.start_in_cluster` (the
peers, the coordinator Lease, the scale subresource). `reconciler router serve` runs it when it
runs in-cluster (`wanted`: the `--in-cluster` flag, else whether the pod environment says so);
locally none of it runs and the config's static backends and inline keys are all there is.

Threads and the event loop: the watchers, the Secret poll and the coordinator each run on
threads of their own. Whatever they hand to the router hops onto the loop
(`loop.call_soon_threadsafe`), because the router's pools and authenticators are loop-only; the
coordinator reads this instance's load on the loop too (`_local_load`). `_applied`, the
`Router.on_apply` listener that follows config reloads, runs on the loop and never blocks it: a
watcher no longer wanted is stopped on a thread of its own.

Pure and tested alone: which deployments are discovered (`discovered`), whose keys come from a
Secret (`secret_sources`: deployments and endpoints, each keyed by `Keyed`, its kind and name),
which are autoscaled (`scaled`), and who this instance is (`identity`, from the environment the
router template sets).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler import kube
from reconciler.render import workloadobjects
from reconciler.router import autoscaler, coordinator, discovery, proxy, routes, tokens
from reconciler.router import config as routerconfig

log = logging.getLogger(__name__)

# Set in every pod by the kubelet: the router runs in a cluster unless told otherwise.
IN_CLUSTER_VARIABLE = "KUBERNETES_SERVICE_HOST"
# Set by templates/components/router.yaml.j2 (the first two from the downward API).
POD_NAME = "POD_NAME"
POD_NAMESPACE = "POD_NAMESPACE"
ROUTER_SERVICE = "ROUTER_SERVICE"
SECRET_REFRESH_SECONDS = 30.0
# How long the coordinator waits for the event loop to read the pools; a loop this late means
# the instance is overloaded, and that round is better skipped than decided on no data.
LOAD_TIMEOUT = 1.0


def wanted(flag: bool | None, environ: Mapping[str, str]) -> bool:
    """Whether to run the in-cluster side: the explicit flag, else whether this is a pod."""
    if flag is not None:
        return flag
    return bool(environ.get(IN_CLUSTER_VARIABLE))


class MissingEnvironment(Exception):
    """In-cluster mode without the variables that say who this instance is."""


@dataclass(frozen=True)
class Identity:
    """Who this router instance is: its pod, the namespace and the router's own Service."""

    pod: str
    namespace: str
    router_service: str


def identity(environ: Mapping[str, str]) -> Identity:
    """The instance's identity from the environment; MissingEnvironment names what is unset."""
    names = (POD_NAME, POD_NAMESPACE, ROUTER_SERVICE)
    missing = [name for name in names if not environ.get(name)]
    if missing:
        raise MissingEnvironment(
            f"in-cluster mode needs {', '.join(missing)} in the environment "
            "(the router's pod template sets them)"
        )
    return Identity(environ[POD_NAME], environ[POD_NAMESPACE], environ[ROUTER_SERVICE])


@dataclass(frozen=True)
class Endpoints:
    """Where a deployment's backends are discovered: a Service's EndpointSlices."""

    namespace: str
    service: str


# What keys are read for: (routes.DEPLOYMENT or routes.ENDPOINT, its name). An implicit endpoint
# has its deployment's name, so the kind tells them apart.
Keyed = tuple[str, str]


@dataclass(frozen=True)
class SecretSource:
    """The Secret a deployment's or endpoint's keys come from, and the auth mode they are read
    for."""

    namespace: str
    secret: str
    mode: str

    @property
    def where(self) -> tuple[str, str]:
        return self.namespace, self.secret


def discovered(cfg: routerconfig.RouterConfig, namespace: str) -> dict[str, Endpoints]:
    """The deployments whose backends are discovered (no static `backends`), by name."""
    return {
        d.name: Endpoints(d.namespace or namespace, d.service or d.name)
        for d in cfg.deployments
        if d.backends is None
    }


def secret_sources(cfg: routerconfig.RouterConfig, namespace: str) -> dict[Keyed, SecretSource]:
    """The deployments and endpoints whose keys come from their Secret: key or token mode with
    `auth.secret` and no keys of their own (inline or from key files, which win: that is local
    use). An endpoint's Secret is in the router's namespace, where render puts it."""
    owners: list[tuple[Keyed, routerconfig.Auth, str]] = [
        ((routes.DEPLOYMENT, d.name), d.auth, d.namespace or namespace) for d in cfg.deployments
    ]
    owners += [((routes.ENDPOINT, e.name), e.auth, namespace) for e in cfg.endpoints]
    found = {}
    for keyed, auth, where in owners:
        if auth.secret is None or auth.mode == "none":
            continue
        if (auth.mode == "key" and auth.keys) or (auth.mode == "token" and auth.signing_key):
            continue
        found[keyed] = SecretSource(where, auth.secret, auth.mode)
    return found


def scaled(cfg: routerconfig.RouterConfig, namespace: str) -> list[coordinator.Target]:
    """The deployments the coordinator scales: autoscaled ones whose backends are discovered.
    A deployment with static backends is not a Deployment of this cluster."""
    return coordinator.targets_of([d for d in cfg.deployments if d.backends is None], namespace)


class InCluster:
    """The Kubernetes side of one router instance, attached to its `proxy.Router`.

    `start()` on the router's event loop before the router listens (it reads the keys first,
    so that no request is refused for want of them); at shutdown `release()` first (a standby
    router takes the coordinator Lease over at once), then drain the router, then `close()`."""

    def __init__(
        self,
        cluster: kube.Cluster,
        who: Identity,
        router: proxy.Router,
        *,
        secret_refresh: float = SECRET_REFRESH_SECONDS,
    ) -> None:
        self.cluster = cluster
        self.who = who
        self.router = router
        self.secret_refresh = secret_refresh
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watchers: dict[str, tuple[Endpoints, discovery.EndpointWatcher]] = {}
        # Shared with the Secret poll's thread, under the lock.
        self._lock = threading.Lock()
        self._sources: dict[Keyed, SecretSource] = {}
        self._data: dict[tuple[str, str], Mapping[str, str]] = {}  # last read, by (ns, name)
        self._missing: set[tuple[str, str]] = set()
        # Loop only: the authenticators this side installed, to tell when a reload replaced one.
        self._installed: dict[Keyed, tokens.Authenticator] = {}
        self._wake = threading.Event()
        self._closing = False
        self._poll: threading.Thread | None = None
        self._scaling: coordinator.Scaling | None = None

    # -- lifecycle (on the event loop) --------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        cfg = self.router.config
        namespace = self.who.namespace
        with self._lock:
            self._sources = secret_sources(cfg, namespace)
        await asyncio.to_thread(self._read_secrets)  # its hops run before this returns
        self._follow(cfg)
        self.router.on_apply.append(self._applied)
        self._poll = threading.Thread(target=self._poll_secrets, name="secrets", daemon=True)
        self._poll.start()
        self._scaling = coordinator.start_in_cluster(
            self.cluster,
            namespace=namespace,
            router_service=self.who.router_service,
            identity=self.who.pod,
            local_load=self._local_load,
            targets=scaled(cfg, namespace),
            # Peers' load reports are on their admin ports, plain HTTP, found through the
            # headless admin Service (render._router_context).
            peer_service=workloadobjects.router_admin_service(self.who.router_service),
            peer_port=workloadobjects.ROUTER_ADMIN_PORT_NAME,
            peer_scheme="http",
        )
        self.router.metrics.registry.register(coordinator.Gauges(self._scaling.coordinator))
        log.info(
            "in-cluster as %s in %s (Service %s): %d discovered, %d keyed by Secret, %d scaled",
            self.who.pod,
            namespace,
            self.who.router_service,
            len(self._watchers),
            len(self._sources),
            len(scaled(cfg, namespace)),
        )

    async def release(self) -> None:
        """Stop scaling and give the coordinator Lease up (blocking calls: on a thread)."""
        scaling, self._scaling = self._scaling, None
        if scaling is not None:
            await asyncio.to_thread(scaling.stop)

    async def close(self) -> None:
        """Stop following the config, the endpoints and the Secrets."""
        with contextlib.suppress(ValueError):
            self.router.on_apply.remove(self._applied)
        await self.release()
        watchers = [watcher for _, watcher in self._watchers.values()]
        self._watchers = {}
        self._closing = True
        self._wake.set()
        await asyncio.to_thread(self._join, watchers)

    def _join(self, watchers: list[discovery.EndpointWatcher]) -> None:
        for watcher in watchers:
            watcher.stop()
        if self._poll is not None:
            self._poll.join(5.0)

    # -- following the config (on the event loop) ---------------------------------------------

    def _applied(self, cfg: routerconfig.RouterConfig) -> None:
        """A reload was applied: follow its deployments' endpoints, Secrets and scaling."""
        namespace = self.who.namespace
        self._follow(cfg)
        sources = secret_sources(cfg, namespace)
        used = {source.where for source in sources.values()}
        with self._lock:
            previous, self._sources = self._sources, sources
            cached = {keyed: self._data.get(source.where) for keyed, source in sources.items()}
            # Keys of Secrets no deployment or endpoint uses any more are not kept in memory.
            self._data = {where: data for where, data in self._data.items() if where in used}
        unread = False
        for keyed, source in sources.items():
            current = self.router.authenticator(keyed[1], keyed[0])
            if previous.get(keyed) == source and current is self._installed.get(keyed):
                continue  # nothing changed for this one
            data = cached[keyed]
            if data is not None:
                self._install(keyed, source, data)  # at once, from the last read
            else:
                unread = True
        for keyed in list(self._installed):
            if keyed not in sources:
                del self._installed[keyed]
        if unread:
            self._wake.set()  # a Secret not read yet: read it now, not in a poll period
        if self._scaling is not None:
            self._scaling.configure(scaled(cfg, namespace))

    def _follow(self, cfg: routerconfig.RouterConfig) -> None:
        wanted_now = discovered(cfg, self.who.namespace)
        for name, (where, watcher) in list(self._watchers.items()):
            if wanted_now.get(name) != where:
                del self._watchers[name]
                # stop() joins the thread: not on the loop.
                threading.Thread(target=watcher.stop, name="endpoints-stop", daemon=True).start()
        # A deployment whose Service changed keeps its backends until the new watcher's first
        # list replaces them: the old replicas serve meanwhile, rather than none.
        for name, where in wanted_now.items():
            if name not in self._watchers:
                self._watchers[name] = (where, self._watch(name, where))

    def _watch(self, name: str, where: Endpoints) -> discovery.EndpointWatcher:
        started: list[discovery.EndpointWatcher] = []

        def changed(urls: list[str]) -> None:  # on the watcher's thread
            self._hop(self._set_backends, name, started[0], urls)

        watcher = discovery.EndpointWatcher(
            self.cluster,
            where.namespace,
            where.service,
            changed,
            port=workloadobjects.SERVICE_PORT_NAME,
        )
        started.append(watcher)
        watcher.start()
        return watcher

    def _set_backends(self, name: str, watcher: discovery.EndpointWatcher, urls: list[str]) -> None:
        current = self._watchers.get(name)
        if current is None or current[1] is not watcher:
            return  # a watcher stopped by a reload, late with its last news
        self.router.set_backends(name, urls)

    def _install(self, keyed: Keyed, source: SecretSource, data: Mapping[str, str]) -> None:
        kind, name = keyed
        # A token's audience is the deployment or endpoint it is for.
        authenticator = tokens.from_secret(name, source.mode, data)
        self.router.set_authenticator(name, authenticator, kind)
        self._installed[keyed] = authenticator

    def _install_read(self, where: tuple[str, str]) -> None:
        """A Secret's data changed: install it for every deployment and endpoint keyed by it."""
        with self._lock:
            data = self._data.get(where)
            users = {k: s for k, s in self._sources.items() if s.where == where}
        if data is None:
            return
        for keyed, source in users.items():
            self._install(keyed, source, data)
            log.info("%s %s: keys from Secret %s/%s", *keyed, *where)

    # -- threads ------------------------------------------------------------------------------

    def _hop(self, callback: Callable[..., None], *args: Any) -> None:
        """Run `callback(*args)` on the event loop, from any thread."""
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed at shutdown: nothing to do
            loop.call_soon_threadsafe(callback, *args)

    def _local_load(self) -> Mapping[str, autoscaler.Sample]:
        """This instance's load, read on the event loop (the coordinator's thread calls this)."""
        loop = self._loop
        assert loop is not None
        result: concurrent.futures.Future[dict[str, autoscaler.Sample]] = (
            concurrent.futures.Future()
        )

        def read() -> None:
            try:
                result.set_result(self.router.table.samples())
            except Exception as err:  # handed to the coordinator, which logs the round
                result.set_exception(err)

        loop.call_soon_threadsafe(read)
        return result.result(LOAD_TIMEOUT)

    def _poll_secrets(self) -> None:
        while True:
            self._wake.wait(self.secret_refresh)
            self._wake.clear()
            if self._closing:
                return
            try:
                self._read_secrets()
            except Exception:  # a bug in one round must not end the refresh for good
                log.exception("reading the auth Secrets failed")

    def _read_secrets(self) -> None:
        """Read every Secret keys come from, once (one bounded request each); a changed one is
        installed on the loop. An unreadable or deleted Secret leaves the last keys in force."""
        with self._lock:
            wanted_now = {source.where for source in self._sources.values()}
        for where in sorted(wanted_now):
            namespace, name = where
            try:
                secret = kube.get_secret(self.cluster, namespace, name)
            except kube.KubeError as err:  # the API server's message; it never holds the data
                log.warning("cannot read Secret %s/%s: %s", namespace, name, err)
                continue
            if secret is None:
                if where not in self._missing:
                    log.warning("Secret %s/%s not found: its users keep their keys", *where)
                    self._missing.add(where)
                continue
            self._missing.discard(where)
            data = dict(secret.get("data") or {})
            with self._lock:
                changed = self._data.get(where) != data
                self._data[where] = data
            if changed:
                self._hop(self._install_read, where)
