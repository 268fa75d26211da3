"""The scoring port's requests: admission, routing, auth, limits, forwarding, failover, mirrors.

Sits under `proxy` (which builds a `Dispatcher` on the router's `served.Table` and hands its
`handle` and `refuse` to the scoring port's `front.Server`) and over `routes` (the URL's one
parse), `forwarding` (the bytes on the wire), `upstream` (the backend client) and `balancer`.

`refuse` is asked as soon as the front has a request's URL while admission control sheds: only
scoring requests of known deployments and endpoints are refused, never health. `handle` routes
the request; a deployment's scoring checks its auth (an endpoint's scoring checked the
endpoint's instead and picked the deployment: the header's, else the next step of its
`traffic.Plan`, before any await so that a reload cannot come between), then the body's size,
then `_forward` takes a backend (or waits in the queue) and sends the request.

Failover: a request is sent again only when it provably never reached a backend
(`upstream.NeverSent`), to another backend, up to MAX_ATTEMPTS. A request that was written and
then failed is answered 502 (504 past its deadline) and never replayed, since the backend may
have run it. A backend that refuses a connection, or drops a fresh one, is marked down (the
router's probe brings it back).

Mirrors: once the body is buffered, a copy goes to each mirror deployment of the endpoint's
step as a background task whose answer is read and dropped; it takes a free backend at once or
is dropped (never queued), and a streamed body is never copied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from reconciler.router import (
    admission,
    balancer,
    forwarding,
    front,
    metrics,
    replies,
    routes,
    served,
    upstream,
)

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 4
CLIENT_GONE = 499  # nginx's code for "the client closed the connection first", metrics only
_DEPLOYMENT_HEADER_BYTES = served.DEPLOYMENT_HEADER.encode()
# The routes that name what they are for in the path (a deployment or an endpoint).
_NAMED = (routes.DEPLOYMENT, routes.ENDPOINT)
# A body this large is written apart from the head rather than copied into one buffer with it.
_SEPARATE_BODY = 65536


class _Via:
    """A scoring request that came through an endpoint: its auth was checked there, its answer
    says which deployment gave it, and it may be copied to mirror deployments."""

    __slots__ = ("endpoint", "mirrors")

    def __init__(self, endpoint: str, mirrors: tuple[served.Deployment, ...]) -> None:
        self.endpoint = endpoint
        self.mirrors = mirrors


class _Tally:
    """What one scoring request's metrics need: seconds spent with backends, and the status of
    an answer streamed back."""

    __slots__ = ("backend", "status")

    def __init__(self) -> None:
        self.backend = 0.0
        self.status = 200


class _Outgoing:
    """What `_forward` sends to each backend it tries: the same request every time."""

    __slots__ = ("answered_by", "body", "headers", "length", "prefix")

    def __init__(
        self,
        headers: bytes,
        body: bytes | None,
        prefix: list[bytes],
        length: int | None,
        answered_by: bytes,
    ) -> None:
        self.headers = headers
        self.body = body  # None: streamed from the client, after `prefix`
        self.prefix = prefix
        self.length = length
        self.answered_by = answered_by  # header lines added to the backend's answer


class Dispatcher:
    """Answers the scoring port's requests from the table in force."""

    def __init__(
        self, table: served.Table, metrics: metrics.Metrics, admission: admission.Admission
    ) -> None:
        self._table = table
        self._metrics = metrics
        self.admission = admission
        self._client: upstream.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._copies: set[asyncio.Task[None]] = set()  # mirror copies in flight
        self.ready = False  # what /readyz says

    def start(self, loop: asyncio.AbstractEventLoop, client: upstream.Client) -> None:
        self._loop, self._client = loop, client

    async def stop(self) -> None:
        """Cancel the mirror copies in flight: nobody waits for their answers."""
        copies, self._copies = list(self._copies), set()
        for task in copies:
            task.cancel()
        for task in copies:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- routing ------------------------------------------------------------------------------

    def refuse(self, url: bytes) -> bool:
        """Whether to refuse a request while the router is over its capacity: only scoring
        requests of known deployments and endpoints. A Host-routed `/score` is refused before
        its Host is known: with `cname` set, that path means an endpoint's scoring."""
        if self.admission.shed_fraction == 0.0:
            return False
        route = routes.parse(url.decode("latin-1"))
        if not route.scores:
            return False
        table = self._table
        if route.kind in _NAMED:
            known = table.find(route.name, route.kind) is not None
        else:
            known = route.kind == routes.BY_HOST and bool(table.hosts)
        if not known or self.admission.admit():
            return False
        if route.kind == routes.DEPLOYMENT:
            self._metrics.refused(route.name)
        else:
            self._metrics.endpoint_routed(route.name, "")  # "" for a Host-routed one
        return True

    async def handle(self, request: front.Request) -> front.Reply | None:
        route = routes.parse(request.path)
        table = self._table
        if route.kind in _NAMED:
            target = table.find(route.name, route.kind)
            if target is None:
                return replies.error(404, "NotFound", f"no {route.kind} named {route.name!r}")
            return await self._route(request, target, route.action)
        if route.kind == routes.BY_HOST and table.hosts:
            host = request.header(b"host")
            endpoint = table.hosts.get(host.partition(":")[0].lower()) if host else None
            if endpoint is not None:
                return await self._route(request, endpoint, route.action)
        return replies.probe(request.path, self.ready) or replies.no_route(request.path)

    async def _route(
        self,
        request: front.Request,
        target: served.Deployment | served.Endpoint,
        action: str,
    ) -> front.Reply | None:
        """A deployment's or an endpoint's action: `score`, or its status."""
        if action == "score":
            if request.method != "POST":
                return replies.error(405, "MethodNotAllowed", "score takes POST")
            if isinstance(target, served.Endpoint):
                return await self._score_endpoint(request, target)
            return await self._score(request, target)
        if action == "" and request.method in ("GET", "HEAD"):
            return self._status(target)
        return replies.no_route(request.path)

    def _status(self, target: served.Deployment | served.Endpoint) -> front.Reply:
        """Healthy when a live backend can answer: the deployment's own, or one of a deployment
        the endpoint sends traffic to."""
        name = target.config.name
        if isinstance(target, served.Deployment):
            if target.pool.live:
                return replies.ok({"status": "Healthy"})
            return replies.error(503, "Unavailable", f"deployment {name!r} has no live backend")
        deployments = self._table.deployments
        for member, weight in target.config.traffic.items():
            live = deployments.get(member)
            if weight > 0 and live is not None and live.pool.live:
                return replies.ok({"status": "Healthy"})
        return replies.error(
            503,
            "Unavailable",
            f"endpoint {name!r} has no live backend in a deployment that takes traffic",
        )

    def _pick(
        self, request: front.Request, endpoint: served.Endpoint
    ) -> tuple[str, tuple[str, ...]] | front.Reply:
        """The deployment an endpoint's request goes to and the mirrors it is copied to (the
        header's deployment, else the split's next step), or the answer when there is none."""
        name = endpoint.config.name
        target = request.header(_DEPLOYMENT_HEADER_BYTES)
        if target is None:
            step = endpoint.plan.next()
            if step is not None:
                return step
            return replies.error(
                503,
                "Unavailable",
                f"endpoint {name!r} sends no traffic to any deployment (all weights are "
                f"0): name one in the {served.DEPLOYMENT_HEADER} header",
            )
        target = target.strip()
        if target not in endpoint.members:
            return replies.error(
                404, "NotFound", f"endpoint {name!r} has no deployment named {target!r}"
            )
        return target, ()

    async def _score_endpoint(
        self, request: front.Request, endpoint: served.Endpoint
    ) -> front.Reply | None:
        """Check the endpoint's auth, pick its deployment and score there; the pick and the
        lookups happen before any await, so a reload in between cannot part them."""
        name = endpoint.config.name
        auth = endpoint.auth
        if auth.mode != "none" and not auth.allows(request.header(b"authorization")):
            self._metrics.endpoint_routed(name, "")
            return replies.error(401, "Unauthorized", "missing or invalid credentials", auth=True)
        picked = self._pick(request, endpoint)
        if isinstance(picked, front.Reply):
            self._metrics.endpoint_routed(name, "")
            return picked
        target, mirrors = picked
        deployments = self._table.deployments
        deployment = deployments.get(target)
        if deployment is None:  # the config guarantees it; a guard, not a route
            self._metrics.endpoint_routed(name, "")
            return replies.error(503, "Unavailable", f"deployment {target!r} is not served")
        self._metrics.endpoint_routed(name, target)
        copies = tuple(deployments[m] for m in mirrors if m in deployments) if mirrors else ()
        reply = await self._score(request, deployment, _Via(name, copies))
        if reply is not None and not reply.headers.endswith(deployment.answered_by):
            reply.headers += deployment.answered_by  # the router's own answer, e.g. a 429
        return reply

    # -- scoring ------------------------------------------------------------------------------

    async def _score(
        self, request: front.Request, deployment: served.Deployment, via: _Via | None = None
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
            self._metrics.request_done(
                deployment.config.name, code, time.perf_counter() - started, tally.backend
            )

    async def _score_checked(
        self,
        request: front.Request,
        deployment: served.Deployment,
        tally: _Tally,
        via: _Via | None,
    ) -> front.Reply | None:
        if via is None:  # through an endpoint, the endpoint's auth was checked instead
            auth = deployment.auth
            if auth.mode != "none" and not auth.allows(request.header(b"authorization")):
                return replies.error(
                    401, "Unauthorized", "missing or invalid credentials", auth=True
                )
        read = await self._read_body(request)
        if isinstance(read, front.Reply):
            return read
        body, prefix = read
        headers = forwarding.forward_headers(request.headers)
        if via is None:
            out = _Outgoing(headers, body, prefix, request.content_length, b"")
        else:
            if via.mirrors:
                self._mirror(request, via, headers, body)
            out = _Outgoing(headers, body, prefix, request.content_length, deployment.answered_by)
        return await self._forward(request, deployment, out, tally)

    async def _read_body(
        self, request: front.Request
    ) -> tuple[bytes | None, list[bytes]] | front.Reply:
        """The body when it fits the retry buffer (None and its first pieces when it is to be
        streamed), or the 413 for one over the limit."""
        cfg = self._table.config
        length = request.content_length
        if length is not None and length > cfg.max_body_bytes:
            return replies.too_large(cfg.max_body_bytes)
        body = request.body_now()
        if body is not None:
            return body, []
        try:
            if length is not None:
                if length > cfg.retry_buffer_bytes:
                    return None, []
                return (await request.read_all() if length else b""), []
            if request.body_exists:
                return await forwarding.read_some(
                    request, cfg.retry_buffer_bytes, cfg.max_body_bytes
                )
            return b"", []
        except forwarding.BodyTooLarge:
            return replies.too_large(cfg.max_body_bytes)

    # -- forwarding and failover --------------------------------------------------------------

    async def _forward(
        self, request: front.Request, deployment: served.Deployment, out: _Outgoing, tally: _Tally
    ) -> front.Reply | None:
        """Send the request to a backend, failing over only while nothing was sent, and answer
        (None when the answer was streamed back: `tally.status` then holds its status)."""
        loop = self._loop
        assert loop is not None
        pool = deployment.pool
        deadline: float | None = None
        attempt = 0
        while True:
            attempt += 1
            backend = await self._acquire(request, deployment)
            if isinstance(backend, front.Reply):
                return backend
            began = time.perf_counter()
            if deadline is None:
                deadline = loop.time() + deployment.timeout
            try:
                return await self._exchange(request, pool, backend, out, deadline, tally)
            except upstream.NeverSent:
                if attempt >= MAX_ATTEMPTS:
                    return replies.error(502, "BadGateway", "no backend could be reached")
                self._metrics.retry(deployment.config.name)
            finally:
                pool.release(backend)
                tally.backend += time.perf_counter() - began

    async def _acquire(
        self, request: front.Request, deployment: served.Deployment
    ) -> balancer.Backend | front.Reply:
        """A free backend, at once or after waiting in the queue; the answer when the queue is
        full or the wait is over."""
        pool = deployment.pool
        backend = pool.try_acquire()
        if backend is not None:
            return backend
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
        return backend

    async def _exchange(
        self,
        request: front.Request,
        pool: balancer.Pool,
        backend: balancer.Backend,
        out: _Outgoing,
        deadline: float,
        tally: _Tally,
    ) -> front.Reply | None:
        """One try with one backend: the answer, or NeverSent when it may go to another."""
        client = self._client
        assert client is not None
        conn: upstream.Connection | None = None
        try:
            conn = await client.connection(backend.host, backend.port, deadline)
            await self._send(conn, request, backend, out, deadline)
            await conn.read_head()
            reply = await self._answer(request, conn, out.answered_by, tally)
            client.release(conn)
            conn = None
            return reply
        except upstream.NeverSent as err:
            # Nothing of the request left the router: safe to send it elsewhere.
            if isinstance(err, upstream.ConnectError) or (conn is not None and not conn.reused):
                self._take_out(pool, backend, str(err))
            raise
        except upstream.Disconnected:
            # The request was sent: the backend may have run it, so it is not replayed.
            if conn is not None and not conn.reused:
                self._take_out(pool, backend, "it dropped a new connection")
            return replies.error(
                502, "BadGateway", "the backend closed the connection before answering"
            )
        except upstream.UpstreamTimeout:
            return replies.error(504, "GatewayTimeout", "the backend did not answer in time")
        except upstream.BrokenResponse as err:
            log.debug("backend %s: %s", backend.url, err)
            return replies.error(502, "BadGateway", "the backend's response was broken")
        except forwarding.BodyTooLarge:
            return replies.too_large(self._table.config.max_body_bytes)
        finally:
            if conn is not None:
                client.discard(conn)

    async def _send(
        self,
        conn: upstream.Connection,
        request: front.Request,
        backend: balancer.Backend,
        out: _Outgoing,
        deadline: float,
    ) -> None:
        head = forwarding.request_head(request.query, backend, out.headers, out.body, out.length)
        body = out.body
        if body is None:
            limit = self._table.config.max_body_bytes
            await forwarding.send_streamed(
                conn, head, out.prefix, request, out.length, limit, deadline
            )
        elif len(body) < _SEPARATE_BODY:
            conn.send(head + body)
        else:
            conn.send(head)
            conn.send(body)

    @staticmethod
    async def _answer(
        request: front.Request, conn: upstream.Connection, answered_by: bytes, tally: _Tally
    ) -> front.Reply | None:
        """The backend's answer: whole when it is all here (the usual case), else streamed
        back to the client (None; `tally.status` holds its status)."""
        headers = forwarding.response_headers(conn.headers) + answered_by
        if conn.complete:
            return front.Reply(conn.status, conn.take_body(), headers)
        tally.status = conn.status
        await forwarding.stream_back(request, conn, headers)
        return None

    def _take_out(self, pool: balancer.Pool, backend: balancer.Backend, why: str) -> None:
        """A backend that refused a connection or dropped a fresh one: down until a probe
        connects, and its idle connections closed."""
        if pool.mark_down(backend):
            log.warning("backend %s taken out: %s", backend.url, why)
        assert self._client is not None
        self._client.drop_host(backend.host, backend.port)

    # -- mirrors ------------------------------------------------------------------------------

    def _mirror(
        self, request: front.Request, via: _Via, headers: bytes, body: bytes | None
    ) -> None:
        """Start a copy of the request to each mirror deployment, in the background. A copy
        needs the whole body in hand (a streamed one is not copied) and a free backend at once
        (it never queues: mirror load must not grow a queue live requests could wait in)."""
        loop = self._loop
        assert loop is not None
        for target in via.mirrors:
            backend = target.pool.try_acquire() if body is not None else None
            if backend is None or body is None:
                self._metrics.mirrored(via.endpoint, target.config.name, "dropped")
                continue
            task = loop.create_task(
                self._copy(via.endpoint, target, backend, headers, request.query, body)
            )
            self._copies.add(task)
            task.add_done_callback(self._copies.discard)

    async def _copy(
        self,
        endpoint: str,
        target: served.Deployment,
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
            self._metrics.mirrored(endpoint, target.config.name, outcome)
