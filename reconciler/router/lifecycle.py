"""The router's life beside its requests: listening, stopping, reloading, probing, measuring.

Sits under `proxy` (which builds a `Lifecycle` for its table and dispatcher) and over `front`
(the two servers), `upstream` (the backend client it makes and sweeps) and `admission`.

`start` opens the scoring port (`front.Server` with the dispatcher's `handle` and `refuse`) and
the admin port (plain HTTP: `/metrics`, `GET /internal/load` (`coordinator.LOAD_PATH`: this
instance's load per deployment, which the scaling coordinator collects from its peers) and the
probes again, never refused, since they matter most when the router is overloaded); the scoring
port answers 404 for the first two, so that nothing reachable from outside the cluster tells of
the deployments' load or names. `stop` stops accepting and lets requests in flight finish.

Background jobs: every `probe_interval` each down backend is connected to and brought back when
it accepts; every `reload_interval` the config file (and the key and TLS files it names) is
stat'ed and a changed one loaded and applied (`ConfigWatch`); an invalid new file is logged and
ignored, so the last good config stays in force. `LagMeter` ticks every `admission.TICK` and
tells `admission` how late the tick came and how busy the loop thread was.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from reconciler.router import (
    admission,
    balancer,
    coordinator,
    dispatch,
    front,
    metrics,
    replies,
    served,
    upstream,
)
from reconciler.router import config as routerconfig

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 0.5
_ABSENT = object()  # a file the config did not name before (None: named, but not there)
SHUTDOWN_TIMEOUT = 30.0


class LagMeter:
    """Admission control's view of the router's own load: how late a timer fires, and how much
    of the time since the last one the loop thread ran or waited to run."""

    def __init__(self, rule: admission.Admission) -> None:
        self._rule = rule
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._mark = (0.0, 0.0)  # (perf_counter, _demand()) at the last tick
        self._schedstat: int | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        with contextlib.suppress(OSError):
            self._schedstat = os.open(
                f"/proc/self/task/{threading.get_native_id()}/schedstat", os.O_RDONLY
            )
        self._mark = (time.perf_counter(), self._demand())
        self._due = self._mark[0] + admission.TICK
        self._timer = loop.call_later(admission.TICK, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._schedstat is not None:
            os.close(self._schedstat)
            self._schedstat = None

    def _demand(self) -> float:
        """Seconds the loop thread has run or waited to run (Linux schedstat: CPU time plus
        run-queue delay), else the process's CPU time: time it wanted the CPU."""
        if self._schedstat is not None:
            with contextlib.suppress(OSError, ValueError):
                ran, waited = os.pread(self._schedstat, 64, 0).split()[:2]
                return (int(ran) + int(waited)) / 1e9
        return time.process_time()

    def _tick(self) -> None:
        now, cpu = time.perf_counter(), self._demand()
        wall = now - self._mark[0]
        busy = (cpu - self._mark[1]) / wall if wall > 0 else 0.0
        self._rule.observe(now - self._due, busy)
        self._mark = (now, cpu)
        self._due = now + admission.TICK
        assert self._loop is not None
        self._timer = self._loop.call_later(admission.TICK, self._tick)


class ConfigWatch:
    """The config file and the files it names, as last seen: path -> (mtime, size, inode)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: dict[str, object] = {}

    def remember(self, cfg: routerconfig.RouterConfig) -> None:
        self._seen = self._signature(cfg)

    def changed(self, cfg: routerconfig.RouterConfig) -> set[str]:
        """The files that changed since last seen (now remembered as seen)."""
        now, before = self._signature(cfg), self._seen
        self._seen = now
        return {
            p for p in now.keys() | before.keys() if now.get(p, _ABSENT) != before.get(p, _ABSENT)
        }

    def _signature(self, cfg: routerconfig.RouterConfig) -> dict[str, object]:
        base = self.path.parent
        paths = [self.path]
        for auth in [d.auth for d in cfg.deployments] + [e.auth for e in cfg.endpoints]:
            paths += [base / f for f in auth.key_files]
            if auth.signing_key_file:
                paths.append(base / auth.signing_key_file)
        if cfg.tls is not None:
            paths += [Path(cfg.tls.cert), Path(cfg.tls.key)]
        signature: dict[str, object] = {}
        for path in paths:
            try:
                st = os.stat(path)  # follows the ConfigMap's ..data symlink swap
                signature[str(path)] = (st.st_mtime_ns, st.st_size, st.st_ino)
            except OSError:
                signature[str(path)] = None
        return signature


class Lifecycle:
    """The router's two servers, its backend client and its background jobs."""

    def __init__(
        self,
        table: served.Table,
        dispatcher: dispatch.Dispatcher,
        metrics: metrics.Metrics,
        apply: Callable[[routerconfig.RouterConfig], None],
        instance: str,
        config_path: Path | None,
        intervals: tuple[float, float],  # (probe, reload)
    ) -> None:
        self._table = table
        self._dispatcher = dispatcher
        self._metrics = metrics
        self._apply = apply
        self.instance = instance
        self._watch = ConfigWatch(config_path) if config_path is not None else None
        self._intervals = intervals
        self.lag = LagMeter(dispatcher.admission)
        self.client: upstream.Client | None = None
        self._ssl: ssl.SSLContext | None = None
        self._servers: list[front.Server] = []  # the scoring port's, then the admin port's
        self._tasks: list[asyncio.Task[None]] = []
        self.port = table.config.port
        self.admin_port = table.config.admin[1] if table.config.admin is not None else None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        cfg = self._table.config
        self.client = upstream.Client(loop)
        self._dispatcher.start(loop, self.client)
        if cfg.tls is not None:
            self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._ssl.load_cert_chain(cfg.tls.cert, cfg.tls.key)
        scoring = front.Server(self._dispatcher.handle, loop, self._dispatcher.refuse, replies.SHED)
        await scoring.start(cfg.host, cfg.port, self._ssl, backlog=1024)
        self._servers = [scoring]
        self.port = scoring.port  # the real port when the config said 0
        if cfg.admin is not None:
            # No admission control there: the metrics and load reports matter most when the
            # router is overloaded.
            admin = front.Server(self.handle_admin, loop)
            await admin.start(cfg.admin[0], cfg.admin[1], None, backlog=128)
            self._servers.append(admin)
            self.admin_port = admin.port
        if self._watch is not None:
            self._watch.remember(cfg)
        probe_interval, reload_interval = self._intervals
        self._tasks = [
            asyncio.create_task(_every(probe_interval, self._probe)),
            asyncio.create_task(_every(reload_interval, self._reload_async)),
        ]
        self.lag.start(loop)
        self._dispatcher.ready = True
        log.info("router listening on %s:%d", cfg.host, self.port)

    async def stop(self) -> None:
        self._dispatcher.ready = False
        self.lag.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for server, timeout in zip(self._servers, (SHUTDOWN_TIMEOUT, 1.0), strict=False):
            # The scoring port stops accepting and lets requests in flight finish.
            await server.stop(timeout)
        self._servers = []
        await self._dispatcher.stop()
        if self.client is not None:
            self.client.close()

    def drop(self, addresses: Iterable[served.Address]) -> None:
        """Close the idle connections to backends no deployment has any more."""
        if self.client is not None:
            for host, port in addresses:
                self.client.drop_host(host, port)

    def reload(self) -> bool:
        """Re-read the config file if it or a file it names changed; True when applied."""
        watch = self._watch
        if watch is None:
            return False
        cfg = self._table.config
        changed = watch.changed(cfg)
        if not changed:
            return False
        tls = cfg.tls
        if (
            self._ssl is not None
            and tls is not None
            and changed & {str(Path(tls.cert)), str(Path(tls.key))}
        ):
            # New content in the same files (a renewed certificate): new handshakes use it.
            try:
                self._ssl.load_cert_chain(tls.cert, tls.key)
                log.info("router TLS certificate reloaded")
            except (OSError, ssl.SSLError) as err:
                log.error("router TLS certificate not reloaded: %s", err)
        try:
            new = routerconfig.load(watch.path)
        except routerconfig.ConfigError as err:
            log.error("router config %s not applied, the last good one stays:\n%s", watch.path, err)
            return False
        if new == cfg:
            return False
        self._apply(new)
        watch.remember(new)  # the new config may name other key files
        log.info("router config reloaded: %d deployments", len(new.deployments))
        return True

    async def handle_admin(self, request: front.Request) -> front.Reply:
        """The admin port: metrics, the load report peers read, the probes."""
        path = request.path
        if path == "/metrics" and request.method in ("GET", "HEAD"):
            return front.Reply(
                200,
                self._metrics.exposition(),
                b"Content-Type: " + metrics.CONTENT_TYPE.encode() + b"\r\n",
            )
        if path == coordinator.LOAD_PATH and request.method == "GET":
            return replies.ok(coordinator.local_report(self.instance, self._table.samples()))
        return replies.probe(path, self._dispatcher.ready) or replies.no_route(path)

    async def _reload_async(self) -> None:
        self.reload()

    async def _probe(self) -> None:
        """Try each down backend; bring back those that accept a connection."""
        client = self.client
        assert client is not None
        checks = [
            _probe_one(client, pool, backend)
            for pool in self._table.pools().values()
            for backend in pool.backends
            if not backend.up
        ]
        if checks:
            await asyncio.gather(*checks)
        client.sweep()
        for server in self._servers:
            server.sweep()


async def _probe_one(
    client: upstream.Client, pool: balancer.Pool, backend: balancer.Backend
) -> None:
    try:
        conn = await client.connect(backend.host, backend.port, PROBE_TIMEOUT)
    except upstream.UpstreamError:
        return
    client.park(conn)  # the probe's connection serves the next request
    if backend.in_pool and pool.mark_up(backend):
        log.info("backend %s is back", backend.url)


async def _every(interval: float, job: Callable[[], Awaitable[None]]) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await job()
        except Exception:  # a background job must never die for good
            log.exception("router background job failed")
