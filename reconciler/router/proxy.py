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
count). A request holds the objects it started with, so a reload never drops one. An invalid new
file is logged and ignored: the last good config stays in force.

In-cluster hooks, used by the Kubernetes side (`router.incluster`): `Router.on_apply` listeners
hear of every config applied, `Router.set_backends(name, urls)` feeds endpoints discovered from
the deployment's Service, and `Router.set_authenticator` installs keys read from its Secret. A
reload keeps both unless the deployment's `backends` or `auth` section changed. All of them run
on the event loop thread: from a watch thread, go through `loop.call_soon_threadsafe`. Every
instance answers `GET /internal/load` (`coordinator.LOAD_PATH`) with its own load per deployment
(`Router.samples`), which the scaling coordinator collects from its peers.
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
    upstream,
)
from reconciler.router import config as routerconfig

log = logging.getLogger(__name__)

SERVICE_PREFIX = "/api/v1/service/"
_SERVICE_PREFIX_BYTES = SERVICE_PREFIX.encode()
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
        self.metrics = metrics.Metrics(self.pools)
        self._client: upstream.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: front.Server | None = None
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

    def set_authenticator(self, name: str, authenticator: tokens.Authenticator) -> None:
        """Replace a deployment's auth (keys read from its Secret in-cluster)."""
        deployment = self.deployments.get(name)
        if deployment is not None:
            deployment.auth = authenticator

    def apply(self, cfg: routerconfig.RouterConfig) -> None:
        """Make `cfg` the config in force, in one swap, keeping pools and backends that remain."""
        if self.deployments and (cfg.host, cfg.port, cfg.tls) != (
            self.config.host,
            self.config.port,
            self.config.tls,
        ):
            log.warning("router config: listen and tls changes take effect after a restart")
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
            )
        self.deployments = new
        self.config = cfg
        self.admission.target_lag = cfg.overload_lag_ms / 1000
        if self.admission.target_lag <= 0.0:
            self.admission.shed_fraction = 0.0
        for name in old.keys() - new.keys():
            self.metrics.forget(name)
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
        for d in self.config.deployments:
            paths += [base / f for f in d.auth.key_files]
            if d.auth.signing_key_file:
                paths.append(base / d.auth.signing_key_file)
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
        as soon as the URL is parsed): only scoring requests of known deployments, never
        health, metrics or load reports."""
        if self.admission.shed_fraction == 0.0 or not url.startswith(_SERVICE_PREFIX_BYTES):
            return False
        name, _, action = url[len(_SERVICE_PREFIX_BYTES) :].partition(b"/")
        deployment = self.deployments.get(name.decode("latin-1"))
        if deployment is None or not action.startswith(b"score") or self.admission.admit():
            return False
        self.metrics.refused(deployment.config.name)
        return True

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
        if self._server is not None:
            self._server.sweep()

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
        if path == "/healthz":
            return replies.ok({"status": "ok"})
        if path == "/readyz":
            if self._ready:
                return replies.ok({"status": "ready"})
            return replies.error(503, "Unavailable", "not ready")
        if path == coordinator.LOAD_PATH and request.method == "GET":
            return replies.ok(coordinator.local_report(self.instance, self.samples()))
        if path == "/metrics":
            return front.Reply(
                200,
                self.metrics.exposition(),
                b"Content-Type: " + metrics.CONTENT_TYPE.encode() + b"\r\n",
            )
        return replies.error(404, "NotFound", f"no route {path}")

    async def _score(self, request: front.Request, deployment: Deployment) -> front.Reply | None:
        # perf_counter, not loop.time(): uvloop's clock only has millisecond resolution.
        started = request.arrived or time.perf_counter()
        tally = _Tally()
        code = 500
        try:
            reply = await self._score_checked(request, deployment, tally)
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
        self, request: front.Request, deployment: Deployment, tally: _Tally
    ) -> front.Reply | None:
        auth = deployment.auth
        if auth.mode != "none" and not auth.allows(request.header(b"authorization")):
            return replies.error(401, "Unauthorized", "missing or invalid credentials", auth=True)
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
        return await self._forward(request, deployment, body, prefix, length, tally)

    async def _forward(
        self,
        request: front.Request,
        deployment: Deployment,
        body: bytes | None,
        prefix: list[bytes],
        length: int | None,
        tally: _Tally,
    ) -> front.Reply | None:
        """Send the request to a backend, failing over only while nothing was sent, and answer
        (None when the answer was streamed back: `tally.status` then holds its status)."""
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
