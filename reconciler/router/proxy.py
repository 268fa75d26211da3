"""The router's server: routing, auth, limits, admission, balancing, failover, reload.

Where a scoring request goes: `front` parses it and asks `Router._shed` whether the router has
room (`admission`: refused at once with 503 + Retry-After while the router's own event loop is
past its capacity) -> `Router.handle` -> the deployment's `tokens.Authenticator` -> body size
checks -> `balancer.Pool` for a backend (or the queue, whose `max_queue_wait_ms` counts from the
request's arrival; 429 when full, 503 when the wait is over, both with Retry-After) ->
`upstream.Client` sends it and the response comes back, whole when it arrived at once, streamed
otherwise -> the pool gets the backend back in a `finally`, so in-flight counts stay exact
whatever happens. The bytes on the wire (headers passed on, the request head, bodies streamed
with their limits, a response relayed chunk by chunk) are `forwarding`'s; the router's own JSON
answers (errors, 413, status) are `replies`'; the HTTP server itself is `front`.

Endpoints: `POST /api/v1/endpoint/{endpoint}/score` (or `/score` with `Host: {endpoint}.{cname}`)
-> the endpoint's Authenticator -> its deployment, named by the `azureml-model-deployment`
header or else the next step of its `traffic.Plan` -> the deployment's path above, without its
own auth check (the endpoint's was made). The pick and the deployment's lookup happen before
any await, so a reload cannot come between them. A step may also name mirror deployments: once
the body is buffered, a copy goes to each as a background task (`_copy`) whose answer is read
and dropped; it takes a free backend at once or is dropped (never queued), and a streamed body
is never copied. The answer carries `azureml-model-deployment: NAME`.

Failover: a request is sent again only when it provably never reached a backend
(`upstream.NeverSent`: the connection was refused, or a kept-alive connection was found closed or
reset before the first byte of the request was written); it then goes to another backend (up
to MAX_ATTEMPTS). A request that was written and then failed is answered 502 (504 past its
deadline) and never replayed, since the backend may have run it. A backend that refuses a
connection, or drops a fresh one, is marked down; a probe every `probe_interval` connects to each
down backend and brings it back.

Config reload: `reload`, run every `reload_interval`, stats the config file (and the key and TLS
files it names) and `apply`s a changed one in a single swap of the deployments map, reusing each
kept deployment's Pool (and, through `Pool.set_backends`, each kept Backend with its in-flight
count). Endpoints are swapped with the deployments; one whose split is unchanged keeps its Plan
(a changed split starts its cycle over). A request holds the objects it started with, so a
reload never drops one. An invalid new file is logged and ignored: the last good config stays
in force.

In-cluster hooks, used by the Kubernetes side (`router.incluster`): `Router.on_apply` listeners
hear of every config applied, `Router.set_backends(name, urls)` feeds endpoints discovered from
the deployment's Service, and `Router.set_authenticator` installs keys read from a deployment's
or endpoint's Secret. A reload keeps both unless the `backends` or `auth` section changed. All
of them run on the event loop thread: from a watch thread, go through
`loop.call_soon_threadsafe`.

The admin port (`admin_listen`, plain HTTP, a second `front.Server` on the same loop) serves
what is not for clients: `/metrics`, `GET /internal/load` (`coordinator.LOAD_PATH`: this
instance's load per deployment, `Router.samples`, which the scaling coordinator collects from
its peers) and the probes again. The scoring port answers 404 for the first two, so that
nothing reachable from outside the cluster tells of the deployments' load or names; in a
cluster the admin port is only on the headless admin Service (`render`), never on the router's
own (maybe public) one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from reconciler.router import (
    admission,
    autoscaler,
    balancer,
    coordinator,
    forwarding,
    front,
    metrics,
    replies,
    tokens,
    traffic,
    upstream,
)
from reconciler.router import config as routerconfig

log = logging.getLogger(__name__)

SERVICE_PREFIX = "/api/v1/service/"
_SERVICE_PREFIX_BYTES = SERVICE_PREFIX.encode()
ENDPOINT_PREFIX = "/api/v1/endpoint/"
_ENDPOINT_PREFIX_BYTES = ENDPOINT_PREFIX.encode()
# Names the deployment of an endpoint a request is for (the original product's header), and in
# an endpoint's answer the deployment that answered.
DEPLOYMENT_HEADER = "azureml-model-deployment"
_DEPLOYMENT_HEADER_BYTES = DEPLOYMENT_HEADER.encode()
# What `Router.set_authenticator` installs keys for.
DEPLOYMENT = "deployment"
ENDPOINT = "endpoint"
MAX_ATTEMPTS = 4
PROBE_TIMEOUT = 0.5
SHUTDOWN_TIMEOUT = 30.0
CLIENT_GONE = 499  # nginx's code for "the client closed the connection first", metrics only


@dataclass
class Deployment:
    """One deployment as the data path sees it; replaced whole on a reload."""

    config: routerconfig.Deployment
    pool: balancer.Pool
    auth: tokens.Authenticator
    timeout: float  # seconds from taking a backend to the end of the response
    queue_wait: float  # seconds a request may wait for a free backend
    answered_by: bytes = b""  # the DEPLOYMENT_HEADER line of an endpoint's answer


@dataclass
class Endpoint:
    """One endpoint as the data path sees it; replaced whole on a reload."""

    config: routerconfig.Endpoint
    auth: tokens.Authenticator
    plan: traffic.Plan  # kept across a reload that leaves the weights alone
    members: frozenset[str]  # the deployments the DEPLOYMENT_HEADER may name


class _Via:
    """A scoring request that came through an endpoint: its auth was checked there, its answer
    says which deployment gave it, and it may be copied to mirror deployments."""

    __slots__ = ("endpoint", "mirrors")

    def __init__(self, endpoint: str, mirrors: tuple[Deployment, ...]) -> None:
        self.endpoint = endpoint
        self.mirrors = mirrors


class Router:
    """A router server: its deployments, its backend connections and its metrics."""

    def __init__(
        self,
        cfg: routerconfig.RouterConfig,
        config_path: str | Path | None = None,
        probe_interval: float = 1.0,
        reload_interval: float = 1.0,
        instance: str | None = None,
    ) -> None:
        self.config = cfg
        # Who this instance is in its load reports: the pod's name in a cluster.
        self.instance = instance or socket.gethostname()
        self.config_path = Path(config_path) if config_path is not None else None
        self.probe_interval = probe_interval
        self.reload_interval = reload_interval
        self.deployments: dict[str, Deployment] = {}
        self.endpoints: dict[str, Endpoint] = {}
        self._hosts: dict[str, Endpoint] = {}  # "{endpoint}.{cname}" -> endpoint, when cname set
        self._copies: set[asyncio.Task[None]] = set()  # mirror copies in flight
        self.metrics = metrics.Metrics(self.pools)
        self._client: upstream.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: front.Server | None = None
        self._admin: front.Server | None = None
        self.admission = admission.Admission(cfg.overload_lag_ms / 1000)
        self._lag_timer: asyncio.TimerHandle | None = None
        self._lag_due = 0.0
        self._lag_mark = (0.0, 0.0)  # (perf_counter, _demand()) at the last tick
        self._schedstat: int | None = None
        self._ssl: ssl.SSLContext | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._watched: dict[str, object] = {}
        self._ready = False
        self.port = cfg.port
        self.admin_port = cfg.admin[1] if cfg.admin is not None else None
        # Called with the new config after each later apply (`config` holds the first): the
        # in-cluster side starts or stops following deployments' endpoints and Secrets here.
        self.on_apply: list[Callable[[routerconfig.RouterConfig], None]] = []
        self.apply(cfg)

    # -- configuration ------------------------------------------------------------------------

    def pools(self) -> dict[str, balancer.Pool]:
        return {name: d.pool for name, d in self.deployments.items()}

    def pool(self, name: str) -> balancer.Pool | None:
        deployment = self.deployments.get(name)
        return deployment.pool if deployment is not None else None

    def samples(self) -> dict[str, autoscaler.Sample]:
        """This instance's load per deployment, as the autoscaler takes it (loop thread only:
        the pools are not thread-safe)."""
        return {name: autoscaler.Sample.of(d.pool.load()) for name, d in self.deployments.items()}

    def set_backends(self, name: str, urls: list[str]) -> None:
        """The backends discovered for a deployment (its Service's ready endpoints). Ignored
        for a deployment that is gone or has static backends by now (a reload came first);
        idle connections to backends that left are closed."""
        deployment = self.deployments.get(name)
        if deployment is None or deployment.config.backends is not None:
            return
        before = {(b.host, b.port) for b in deployment.pool.backends}
        deployment.pool.set_backends(urls)
        if self._client is not None:
            kept = {(b.host, b.port) for d in self.deployments.values() for b in d.pool.backends}
            for host, port in before - kept:
                self._client.drop_host(host, port)

    def set_authenticator(
        self, name: str, authenticator: tokens.Authenticator, kind: str = DEPLOYMENT
    ) -> None:
        """Replace a deployment's or (kind ENDPOINT) an endpoint's auth (keys read from its
        Secret in-cluster)."""
        target = (self.endpoints if kind == ENDPOINT else self.deployments).get(name)
        if target is not None:
            target.auth = authenticator

    def authenticator(self, name: str, kind: str = DEPLOYMENT) -> tokens.Authenticator | None:
        """The auth in force for a deployment or (kind ENDPOINT) an endpoint."""
        target = (self.endpoints if kind == ENDPOINT else self.deployments).get(name)
        return target.auth if target is not None else None

    def apply(self, cfg: routerconfig.RouterConfig) -> None:
        """Make `cfg` the config in force, in one swap, keeping pools and backends that remain."""
        if self.deployments and (cfg.host, cfg.port, cfg.tls, cfg.admin) != (
            self.config.host,
            self.config.port,
            self.config.tls,
            self.config.admin,
        ):
            log.warning(
                "router config: listen, admin_listen and tls changes take effect after a restart"
            )
        old = self.deployments
        new: dict[str, Deployment] = {}
        for item in cfg.deployments:
            prev = old.get(item.name)
            if prev is None:
                pool = balancer.Pool(
                    item.max_concurrent_requests_per_instance, item.max_queue_length
                )
            else:
                pool = prev.pool
                pool.configure(item.max_concurrent_requests_per_instance, item.max_queue_length)
            if item.backends is not None:
                pool.set_backends(item.backends)
            elif prev is not None and prev.config.backends is not None:
                pool.set_backends([])  # static backends gone: discovery fills the pool from now on
            if prev is not None and prev.config.auth == item.auth:
                auth = prev.auth  # keeps keys set from the Secret and the checked-token cache
            else:
                auth = tokens.Authenticator(
                    item.auth.mode, item.name, item.auth.keys, item.auth.signing_key
                )
            new[item.name] = Deployment(
                item,
                pool,
                auth,
                timeout=item.request_timeout_ms / 1000,
                queue_wait=item.max_queue_wait_ms / 1000,
                answered_by=f"{DEPLOYMENT_HEADER}: {item.name}\r\n".encode("latin-1"),
            )
        old_endpoints = self.endpoints
        endpoints: dict[str, Endpoint] = {}
        for spec in cfg.endpoints:
            was = old_endpoints.get(spec.name)
            if was is not None and was.config.auth == spec.auth:
                endpoint_auth = was.auth
            else:
                endpoint_auth = tokens.Authenticator(
                    spec.auth.mode, spec.name, spec.auth.keys, spec.auth.signing_key
                )
            split = (spec.traffic, spec.mirror_traffic)
            if was is not None and (was.config.traffic, was.config.mirror_traffic) == split:
                plan = was.plan  # the split goes on where it was
            else:
                plan = traffic.Plan(spec.traffic, spec.mirror_traffic)
            endpoints[spec.name] = Endpoint(spec, endpoint_auth, plan, spec.members)
        # One swap of both maps, with no await between: a request sees the old or the new ones.
        self.deployments = new
        self.endpoints = endpoints
        self._hosts = (
            {f"{name}.{cfg.cname}".lower(): e for name, e in endpoints.items()} if cfg.cname else {}
        )
        self.config = cfg
        self.admission.target_lag = cfg.overload_lag_ms / 1000
        if self.admission.target_lag <= 0.0:
            self.admission.shed_fraction = 0.0
        for name in old.keys() - new.keys():
            self.metrics.forget(name)
        for name in old_endpoints.keys() - endpoints.keys():
            self.metrics.forget_endpoint(name)
        if self._client is not None:
            kept = {(b.host, b.port) for d in new.values() for b in d.pool.backends}
            for d in old.values():
                for b in d.pool.backends:
                    if (b.host, b.port) not in kept:
                        self._client.drop_host(b.host, b.port)
        for listener in self.on_apply:
            listener(cfg)

    def _watch_signature(self) -> dict[str, object]:
        """What changes when the config or a file it names changes: path -> (mtime, size, inode)."""
        if self.config_path is None:
            return {}
        base = self.config_path.parent
        paths = [self.config_path]
        for auth in [d.auth for d in self.config.deployments] + [
            e.auth for e in self.config.endpoints
        ]:
            paths += [base / f for f in auth.key_files]
            if auth.signing_key_file:
                paths.append(base / auth.signing_key_file)
        if self.config.tls is not None:
            paths += [Path(self.config.tls.cert), Path(self.config.tls.key)]
        signature: dict[str, object] = {}
        for path in paths:
            try:
                st = os.stat(path)  # follows the ConfigMap's ..data symlink swap
                signature[str(path)] = (st.st_mtime_ns, st.st_size, st.st_ino)
            except OSError:
                signature[str(path)] = None
        return signature

    def reload(self) -> bool:
        """Re-read the config file if it or a file it names changed; True when applied."""
        if self.config_path is None:
            return False
        signature = self._watch_signature()
        if signature == self._watched:
            return False
        previous, self._watched = self._watched, signature
        tls = self.config.tls
        renewed = tls is not None and any(
            previous.get(f) != signature.get(f) for f in (tls.cert, tls.key)
        )
        if self._ssl is not None and tls is not None and renewed:
            # New content in the same files (a renewed certificate): new handshakes use it.
            try:
                self._ssl.load_cert_chain(tls.cert, tls.key)
                log.info("router TLS certificate reloaded")
            except (OSError, ssl.SSLError) as err:
                log.error("router TLS certificate not reloaded: %s", err)
        try:
            cfg = routerconfig.load(self.config_path)
        except routerconfig.ConfigError as err:
            log.error(
                "router config %s not applied, the last good one stays:\n%s", self.config_path, err
            )
            return False
        if cfg == self.config:
            return False
        self.apply(cfg)
        self._watched = self._watch_signature()  # the new config may name other key files
        log.info("router config reloaded: %d deployments", len(cfg.deployments))
        return True

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        with contextlib.suppress(OSError):
            self._schedstat = os.open(
                f"/proc/self/task/{threading.get_native_id()}/schedstat", os.O_RDONLY
            )
        self._client = upstream.Client(loop)
        if self.config.tls is not None:
            self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._ssl.load_cert_chain(self.config.tls.cert, self.config.tls.key)
        self._server = front.Server(self.handle, loop, self._refuse, replies.SHED)
        await self._server.start(self.config.host, self.config.port, self._ssl, backlog=1024)
        self.port = self._server.port  # the real port when the config said 0
        if self.config.admin is not None:
            # No admission control there: the metrics and load reports matter most when the
            # router is overloaded.
            self._admin = front.Server(self.handle_admin, loop)
            host, port = self.config.admin
            await self._admin.start(host, port, None, backlog=128)
            self.admin_port = self._admin.port
        self._watched = self._watch_signature()
        self._tasks = [
            asyncio.create_task(self._every(self.probe_interval, self._probe)),
            asyncio.create_task(self._every(self.reload_interval, self._reload_async)),
        ]
        self._lag_mark = (time.perf_counter(), self._demand())
        self._lag_due = self._lag_mark[0] + admission.TICK
        self._lag_timer = loop.call_later(admission.TICK, self._measure_lag)
        self._ready = True
        log.info("router listening on %s:%d", self.config.host, self.port)

    async def stop(self) -> None:
        self._ready = False
        if self._lag_timer is not None:
            self._lag_timer.cancel()
            self._lag_timer = None
        if self._schedstat is not None:
            os.close(self._schedstat)
            self._schedstat = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._server is not None:
            # Stops accepting, lets requests in flight finish.
            await self._server.stop(SHUTDOWN_TIMEOUT)
            self._server = None
        if self._admin is not None:
            await self._admin.stop(1.0)
            self._admin = None
        copies, self._copies = list(self._copies), set()
        for task in copies:
            task.cancel()  # mirror copies: nobody waits for their answers
        for task in copies:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None:
            self._client.close()

    def _demand(self) -> float:
        """Seconds the loop thread has run or waited to run (Linux schedstat: CPU time plus
        run-queue delay), else the process's CPU time: time it wanted the CPU."""
        if self._schedstat is not None:
            with contextlib.suppress(OSError, ValueError):
                ran, waited = os.pread(self._schedstat, 64, 0).split()[:2]
                return (int(ran) + int(waited)) / 1e9
        return time.process_time()

    def _measure_lag(self) -> None:
        """How late this timer fired, and how much of the time since the last one the router
        ran or waited to run: admission control's view of the router's own load."""
        now, cpu = time.perf_counter(), self._demand()
        wall = now - self._lag_mark[0]
        busy = (cpu - self._lag_mark[1]) / wall if wall > 0 else 0.0
        self.admission.observe(now - self._lag_due, busy)
        self._lag_mark = (now, cpu)
        self._lag_due = now + admission.TICK
        assert self._loop is not None
        self._lag_timer = self._loop.call_later(admission.TICK, self._measure_lag)

    def _refuse(self, url: bytes) -> bool:
        """Whether to refuse a request while the router is over its capacity (asked by the front
        as soon as the URL is parsed): only scoring requests of known deployments and endpoints,
        never health (metrics and load reports are on the admin port, never refused). A
        Host-routed `/score` is refused before its Host is known: with `cname` set, that path
        means an endpoint's scoring."""
        if self.admission.shed_fraction == 0.0:
            return False
        if url.startswith(_SERVICE_PREFIX_BYTES):
            name, _, action = url[len(_SERVICE_PREFIX_BYTES) :].partition(b"/")
            deployment = self.deployments.get(name.decode("latin-1"))
            if deployment is None or not action.startswith(b"score") or self.admission.admit():
                return False
            self.metrics.refused(deployment.config.name)
            return True
        if url.startswith(_ENDPOINT_PREFIX_BYTES):
            name, _, action = url[len(_ENDPOINT_PREFIX_BYTES) :].partition(b"/")
            endpoint = self.endpoints.get(name.decode("latin-1"))
            if endpoint is None or not action.startswith(b"score") or self.admission.admit():
                return False
            self.metrics.endpoint_routed(endpoint.config.name, "")
            return True
        if self._hosts and (url == b"/score" or url.startswith(b"/score?")):
            if self.admission.admit():
                return False
            self.metrics.endpoint_routed("", "")
            return True
        return False

    async def _every(self, interval: float, job: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await job()
            except Exception:  # a background job must never die for good
                log.exception("router background job failed")

    async def _reload_async(self) -> None:
        self.reload()

    async def _probe(self) -> None:
        """Try each down backend; bring back those that accept a connection."""
        client = self._client
        assert client is not None
        checks = [
            self._probe_one(client, pool, backend)
            for pool in self.pools().values()
            for backend in pool.backends
            if not backend.up
        ]
        if checks:
            await asyncio.gather(*checks)
        client.sweep()
        for server in (self._server, self._admin):
            if server is not None:
                server.sweep()

    async def _probe_one(
        self, client: upstream.Client, pool: balancer.Pool, backend: balancer.Backend
    ) -> None:
        try:
            conn = await client.connect(backend.host, backend.port, PROBE_TIMEOUT)
        except upstream.UpstreamError:
            return
        client.park(conn)  # the probe's connection serves the next request
        if backend.in_pool and pool.mark_up(backend):
            log.info("backend %s is back", backend.url)

    # -- requests -----------------------------------------------------------------------------

    async def handle(self, request: front.Request) -> front.Reply | None:
        path = request.path
        if path.startswith(SERVICE_PREFIX):
            name, _, action = path[len(SERVICE_PREFIX) :].partition("/")
            deployment = self.deployments.get(name)
            if deployment is None:
                return replies.error(404, "NotFound", f"no deployment named {name!r}")
            if action == "score":
                if request.method != "POST":
                    return replies.error(405, "MethodNotAllowed", "score takes POST")
                return await self._score(request, deployment)
            if action == "" and request.method in ("GET", "HEAD"):
                if deployment.pool.live:
                    return replies.ok({"status": "Healthy"})
                return replies.error(503, "Unavailable", f"deployment {name!r} has no live backend")
            return replies.error(404, "NotFound", f"no route {path}")
        if path.startswith(ENDPOINT_PREFIX):
            name, _, action = path[len(ENDPOINT_PREFIX) :].partition("/")
            endpoint = self.endpoints.get(name)
            if endpoint is None:
                return replies.error(404, "NotFound", f"no endpoint named {name!r}")
            return await self._endpoint_route(request, endpoint, action)
        if self._hosts and (path == "/score" or path == "/"):
            endpoint = self._by_host(request)
            if endpoint is not None:
                return await self._endpoint_route(request, endpoint, path[1:])
        return self._probe_reply(path) or replies.error(404, "NotFound", f"no route {path}")

    def _probe_reply(self, path: str) -> front.Reply | None:
        """The answer to a liveness or readiness probe (on either port), None for other paths."""
        if path == "/healthz":
            return replies.ok({"status": "ok"})
        if path == "/readyz":
            if self._ready:
                return replies.ok({"status": "ready"})
            return replies.error(503, "Unavailable", "not ready")
        return None

    async def handle_admin(self, request: front.Request) -> front.Reply:
        """The admin port: metrics, the load report peers read, the probes."""
        path = request.path
        if path == "/metrics" and request.method in ("GET", "HEAD"):
            return front.Reply(
                200,
                self.metrics.exposition(),
                b"Content-Type: " + metrics.CONTENT_TYPE.encode() + b"\r\n",
            )
        if path == coordinator.LOAD_PATH and request.method == "GET":
            return replies.ok(coordinator.local_report(self.instance, self.samples()))
        return self._probe_reply(path) or replies.error(404, "NotFound", f"no route {path}")

    def _by_host(self, request: front.Request) -> Endpoint | None:
        """The endpoint a request's Host names (`{endpoint}.{cname}`, any port), if any."""
        host = request.header(b"host")
        if host is None:
            return None
        return self._hosts.get(host.partition(":")[0].lower())

    async def _endpoint_route(
        self, request: front.Request, endpoint: Endpoint, action: str
    ) -> front.Reply | None:
        if action == "score":
            if request.method != "POST":
                return replies.error(405, "MethodNotAllowed", "score takes POST")
            return await self._score_endpoint(request, endpoint)
        if action == "" and request.method in ("GET", "HEAD"):
            deployments = self.deployments
            for name, weight in endpoint.config.traffic.items():
                live = deployments.get(name)
                if weight > 0 and live is not None and live.pool.live:
                    return replies.ok({"status": "Healthy"})
            return replies.error(
                503,
                "Unavailable",
                f"endpoint {endpoint.config.name!r} has no live backend in a deployment "
                "that takes traffic",
            )
        return replies.error(404, "NotFound", f"no route {request.path}")

    async def _score_endpoint(
        self, request: front.Request, endpoint: Endpoint
    ) -> front.Reply | None:
        """Check the endpoint's auth, pick its deployment (the header's, else the split's) and
        score there; the pick and the lookups happen before any await, so a reload in between
        cannot part them."""
        name = endpoint.config.name
        auth = endpoint.auth
        if auth.mode != "none" and not auth.allows(request.header(b"authorization")):
            self.metrics.endpoint_routed(name, "")
            return replies.error(401, "Unauthorized", "missing or invalid credentials", auth=True)
        mirrors: tuple[str, ...] = ()
        target = request.header(_DEPLOYMENT_HEADER_BYTES)
        if target is not None:
            target = target.strip()
            if target not in endpoint.members:
                self.metrics.endpoint_routed(name, "")
                return replies.error(
                    404, "NotFound", f"endpoint {name!r} has no deployment named {target!r}"
                )
        else:
            step = endpoint.plan.next()
            if step is None:
                self.metrics.endpoint_routed(name, "")
                return replies.error(
                    503,
                    "Unavailable",
                    f"endpoint {name!r} sends no traffic to any deployment (all weights are "
                    f"0): name one in the {DEPLOYMENT_HEADER} header",
                )
            target, mirrors = step
        deployments = self.deployments
        deployment = deployments.get(target)
        if deployment is None:  # the config guarantees it; a guard, not a route
            self.metrics.endpoint_routed(name, "")
            return replies.error(503, "Unavailable", f"deployment {target!r} is not served")
        self.metrics.endpoint_routed(name, target)
        copies = tuple(deployments[m] for m in mirrors if m in deployments) if mirrors else ()
        reply = await self._score(request, deployment, _Via(name, copies))
        if reply is not None and not reply.headers.endswith(deployment.answered_by):
            reply.headers += deployment.answered_by  # the router's own answer, e.g. a 429
        return reply

    async def _score(
        self, request: front.Request, deployment: Deployment, via: _Via | None = None
    ) -> front.Reply | None:
        # perf_counter, not loop.time(): uvloop's clock only has millisecond resolution.
        started = request.arrived or time.perf_counter()
        tally = _Tally()
        code = 500
        try:
            reply = await self._score_checked(request, deployment, tally, via)
            code = reply.status if reply is not None else tally.status
            return reply
        except forwarding.ClientGone:
            code = CLIENT_GONE
            request.abort()
            return None
        except forwarding.Truncated as cut:
            code = cut.code
            return None
        finally:
            self.metrics.request_done(
                deployment.config.name, code, time.perf_counter() - started, tally.backend
            )

    async def _score_checked(
        self, request: front.Request, deployment: Deployment, tally: _Tally, via: _Via | None
    ) -> front.Reply | None:
        if via is None:  # through an endpoint, the endpoint's auth was checked instead
            auth = deployment.auth
            if auth.mode != "none" and not auth.allows(request.header(b"authorization")):
                return replies.error(
                    401, "Unauthorized", "missing or invalid credentials", auth=True
                )
        cfg = self.config
        length = request.content_length
        if length is not None and length > cfg.max_body_bytes:
            return replies.too_large(cfg.max_body_bytes)
        body: bytes | None = request.body_now()
        prefix: list[bytes] = []
        if body is None:
            try:
                if length is not None:
                    if length <= cfg.retry_buffer_bytes:
                        body = await request.read_all() if length else b""
                elif request.body_exists:
                    body, prefix = await forwarding.read_some(
                        request, cfg.retry_buffer_bytes, cfg.max_body_bytes
                    )
                else:
                    body = b""
            except forwarding.BodyTooLarge:
                return replies.too_large(cfg.max_body_bytes)
        if via is None:
            return await self._forward(request, deployment, body, prefix, length, tally, b"")
        if via.mirrors:
            self._mirror(request, via, body)
        return await self._forward(
            request, deployment, body, prefix, length, tally, deployment.answered_by
        )

    def _mirror(self, request: front.Request, via: _Via, body: bytes | None) -> None:
        """Start a copy of the request to each mirror deployment, in the background. A copy
        needs the whole body in hand (a streamed one is not copied) and a free backend at once
        (it never queues: mirror load must not grow a queue live requests could wait in)."""
        loop = self._loop
        assert loop is not None
        headers = forwarding.forward_headers(request.headers)
        for target in via.mirrors:
            backend = target.pool.try_acquire() if body is not None else None
            if backend is None or body is None:
                self.metrics.mirrored(via.endpoint, target.config.name, "dropped")
                continue
            task = loop.create_task(
                self._copy(via.endpoint, target, backend, headers, request.query, body)
            )
            self._copies.add(task)
            task.add_done_callback(self._copies.discard)

    async def _copy(
        self,
        endpoint: str,
        target: Deployment,
        backend: balancer.Backend,
        headers: bytes,
        query: str,
        body: bytes,
    ) -> None:
        """Send one mirror copy and drop its answer (read whole, so the connection is kept)."""
        client, loop = self._client, self._loop
        assert client is not None and loop is not None
        outcome = "failed"
        conn: upstream.Connection | None = None
        try:
            conn = await client.connection(backend.host, backend.port, loop.time() + target.timeout)
            conn.send(forwarding.request_head(query, backend, headers, body, len(body)) + body)
            await conn.read_head()
            async for _ in conn.chunks():
                pass
            client.release(conn)
            conn = None
            outcome = "answered"
        except upstream.UpstreamError as err:
            if isinstance(err, upstream.ConnectError) and target.pool.mark_down(backend):
                log.warning("backend %s taken out: %s", backend.url, err)
            log.debug("mirror copy to %s failed: %s", backend.url, err)
        finally:
            if conn is not None:
                client.discard(conn)
            target.pool.release(backend)
            self.metrics.mirrored(endpoint, target.config.name, outcome)

    async def _forward(
        self,
        request: front.Request,
        deployment: Deployment,
        body: bytes | None,
        prefix: list[bytes],
        length: int | None,
        tally: _Tally,
        answered_by: bytes,
    ) -> front.Reply | None:
        """Send the request to a backend, failing over only while nothing was sent, and answer
        (None when the answer was streamed back: `tally.status` then holds its status), with
        the `answered_by` header lines added to the backend's."""
        client, loop = self._client, self._loop
        assert client is not None and loop is not None
        pool = deployment.pool
        headers = forwarding.forward_headers(request.headers)
        query = request.query
        deadline: float | None = None
        attempt = 0
        while True:
            attempt += 1
            backend = pool.try_acquire()
            if backend is None:
                # The original product's queue timeout counts from the request's arrival.
                waited = time.perf_counter() - request.arrived if request.arrived else 0.0
                try:
                    backend = await pool.acquire(max(0.0, deployment.queue_wait - waited))
                except balancer.QueueFull:
                    return replies.busy(429, "TooManyRequests", "the deployment's queue is full")
                except balancer.QueueTimeout:
                    return replies.busy(503, "Unavailable", "no backend became free in time")
                if request.gone:
                    # The client left while queued: do not spend a backend on it.
                    pool.release(backend)
                    raise forwarding.ClientGone()
            began = time.perf_counter()
            if deadline is None:
                deadline = loop.time() + deployment.timeout
            conn: upstream.Connection | None = None
            try:
                conn = await client.connection(backend.host, backend.port, deadline)
                head = forwarding.request_head(query, backend, headers, body, length)
                if body is not None:
                    conn.send(head + body if len(body) < 65536 else head)
                    if len(body) >= 65536:
                        conn.send(body)
                else:
                    await forwarding.send_streamed(
                        conn, head, prefix, request, length, self.config.max_body_bytes, deadline
                    )
                await conn.read_head()
                out_headers = forwarding.response_headers(conn.headers)
                if answered_by:
                    out_headers += answered_by
                if conn.complete:
                    # The whole response is here (the usual case): answer in one piece.
                    status, data = conn.status, conn.take_body()
                    client.release(conn)
                    conn = None
                    return front.Reply(status, data, out_headers)
                tally.status = conn.status
                await forwarding.stream_back(request, conn, out_headers)
                client.release(conn)
                conn = None
                return None
            except upstream.NeverSent as err:
                # Nothing of the request left the router: safe to send it elsewhere.
                if isinstance(err, upstream.ConnectError) or (conn is not None and not conn.reused):
                    if pool.mark_down(backend):
                        log.warning("backend %s taken out: %s", backend.url, err)
                    client.drop_host(backend.host, backend.port)
                if attempt >= MAX_ATTEMPTS:
                    return replies.error(502, "BadGateway", "no backend could be reached")
                self.metrics.retry(deployment.config.name)
            except upstream.Disconnected:
                # The request was sent: the backend may have run it, so it is not replayed.
                if conn is not None and not conn.reused:
                    if pool.mark_down(backend):
                        log.warning(
                            "backend %s taken out: it dropped a new connection", backend.url
                        )
                    client.drop_host(backend.host, backend.port)
                return replies.error(
                    502, "BadGateway", "the backend closed the connection before answering"
                )
            except upstream.UpstreamTimeout:
                return replies.error(504, "GatewayTimeout", "the backend did not answer in time")
            except upstream.BrokenResponse as err:
                log.debug("backend %s: %s", backend.url, err)
                return replies.error(502, "BadGateway", "the backend's response was broken")
            except forwarding.BodyTooLarge:
                return replies.too_large(self.config.max_body_bytes)
            finally:
                if conn is not None:
                    client.discard(conn)
                pool.release(backend)
                tally.backend += time.perf_counter() - began


class _Tally:
    """What one scoring request's metrics need: seconds spent with backends, and the status of
    an answer streamed back."""

    __slots__ = ("backend", "status")

    def __init__(self) -> None:
        self.backend = 0.0
        self.status = 200
