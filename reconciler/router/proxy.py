"""The router's server: HTTP in (aiohttp), routing, auth, limits, balancing, failover, reload.

Where a scoring request goes: `Router.handle` -> the deployment's `tokens.Authenticator` -> body
size checks -> `balancer.Pool` for a backend (or the queue) -> `upstream.Client` sends it and
the response comes back, whole when it arrived at once, streamed otherwise -> the pool gets the
backend back in a `finally`, so in-flight counts stay exact whatever happens. The bytes on the
wire (headers passed on, the request head, bodies streamed with their limits, a response relayed
chunk by chunk) are `forwarding`'s; the router's own JSON answers (errors, 413, status) are
`replies`'.

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
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from reconciler.router import (
    autoscaler,
    balancer,
    coordinator,
    forwarding,
    metrics,
    replies,
    tokens,
    upstream,
)
from reconciler.router import config as routerconfig

log = logging.getLogger(__name__)

SERVICE_PREFIX = "/api/v1/service/"
MAX_ATTEMPTS = 4
PROBE_TIMEOUT = 0.5
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
        self._runner: web.ServerRunner | None = None
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
        self._client = upstream.Client(loop)
        server = web.Server(
            self.handle,
            access_log=None,
            # A refused upload is read and thrown away for at most this long, so that the
            # client sees the 413 instead of a reset; it is never buffered.
            lingering_time=2.0,
        )
        self._runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=30.0)
        await self._runner.setup()
        if self.config.tls is not None:
            self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._ssl.load_cert_chain(self.config.tls.cert, self.config.tls.key)
        site = web.TCPSite(
            self._runner,
            self.config.host or None,
            self.config.port,
            ssl_context=self._ssl,
            backlog=1024,
        )
        await site.start()
        addresses = self._runner.addresses
        if addresses:
            self.port = int(addresses[0][1])  # the real port when the config said 0
        self._watched = self._watch_signature()
        self._tasks = [
            asyncio.create_task(self._every(self.probe_interval, self._probe)),
            asyncio.create_task(self._every(self.reload_interval, self._reload_async)),
        ]
        self._ready = True
        log.info("router listening on %s:%d", self.config.host, self.port)

    async def stop(self) -> None:
        self._ready = False
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._runner is not None:
            await self._runner.cleanup()  # stops accepting, lets in-flight requests finish
            self._runner = None
        if self._client is not None:
            self._client.close()

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

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path, _, query = request.raw_path.partition("?")
        if path.startswith(SERVICE_PREFIX):
            name, _, action = path[len(SERVICE_PREFIX) :].partition("/")
            deployment = self.deployments.get(name)
            if deployment is None:
                return replies.error(404, "NotFound", f"no deployment named {name!r}")
            if action == "score":
                if request.method != "POST":
                    return replies.error(405, "MethodNotAllowed", "score takes POST")
                return await self._score(request, deployment, query)
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
            return web.Response(
                body=self.metrics.exposition(), headers={"Content-Type": metrics.CONTENT_TYPE}
            )
        return replies.error(404, "NotFound", f"no route {path}")

    async def _score(
        self, request: web.BaseRequest, deployment: Deployment, query: str
    ) -> web.StreamResponse:
        # perf_counter, not loop.time(): uvloop's clock only has millisecond resolution.
        started = time.perf_counter()
        timing = [0.0]  # seconds spent with backends
        code = 500
        try:
            response = await self._score_checked(request, deployment, query, timing)
            code = response.status
            return response
        except forwarding.ClientGone:
            code = CLIENT_GONE
            gone = web.Response(status=CLIENT_GONE)
            gone.force_close()
            return gone
        except forwarding.Truncated as cut:
            code = cut.code
            return cut.response
        finally:
            self.metrics.request_done(
                deployment.config.name, code, time.perf_counter() - started, timing[0]
            )

    async def _score_checked(
        self, request: web.BaseRequest, deployment: Deployment, query: str, timing: list[float]
    ) -> web.StreamResponse:
        auth = deployment.auth
        if auth.mode != "none" and not auth.allows(request.headers.get("Authorization")):
            return replies.error(401, "Unauthorized", "missing or invalid credentials", auth=True)
        cfg = self.config
        length = request.content_length
        if length is not None and length > cfg.max_body_bytes:
            return replies.too_large(cfg.max_body_bytes)
        if "Expect" in request.headers and request.headers["Expect"].lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body: bytes | None = None
        prefix: list[bytes] = []
        try:
            if length is not None:
                if length <= cfg.retry_buffer_bytes:
                    body = await request.content.readexactly(length) if length else b""
            elif request.body_exists:
                body, prefix = await forwarding.read_some(
                    request, cfg.retry_buffer_bytes, cfg.max_body_bytes
                )
            else:
                body = b""
        except forwarding.BodyTooLarge:
            return replies.too_large(cfg.max_body_bytes)
        except (asyncio.IncompleteReadError, ConnectionError) as err:
            raise forwarding.ClientGone() from err
        return await self._forward(request, deployment, query, body, prefix, length, timing)

    async def _forward(
        self,
        request: web.BaseRequest,
        deployment: Deployment,
        query: str,
        body: bytes | None,
        prefix: list[bytes],
        length: int | None,
        timing: list[float],
    ) -> web.StreamResponse:
        """Send the request to a backend, failing over on connection errors, and answer."""
        client, loop = self._client, self._loop
        assert client is not None and loop is not None
        pool = deployment.pool
        headers = forwarding.forward_headers(request.raw_headers)
        deadline: float | None = None
        attempt = 0
        while True:
            attempt += 1
            backend = pool.try_acquire()
            if backend is None:
                try:
                    backend = await pool.acquire(deployment.queue_wait)
                except balancer.QueueFull:
                    return replies.error(429, "TooManyRequests", "the deployment's queue is full")
                except balancer.QueueTimeout:
                    return replies.error(503, "Unavailable", "no backend became free in time")
                if request.transport is None:
                    # The client left while queued: do not spend a backend on it.
                    pool.release(backend)
                    raise forwarding.ClientGone()
            began = time.perf_counter()
            if deadline is None:
                deadline = loop.time() + deployment.timeout
            conn: upstream.Connection | None = None
            try:
                conn = await client.connection(backend.host, backend.port, deadline)
                target = f"{backend.prefix}/score?{query}" if query else f"{backend.prefix}/score"
                head = forwarding.request_head(target, backend, headers, body, length)
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
                    return web.Response(status=status, body=data, headers=out_headers)
                response = await forwarding.stream_back(request, conn, out_headers)
                client.release(conn)
                conn = None
                return response
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
                timing[0] += time.perf_counter() - began
