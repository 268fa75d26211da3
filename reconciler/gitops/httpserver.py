"""The GitOps loop's HTTP endpoints: `/metrics`, `/healthz`, `/readyz` and the push webhook.

`--metrics-addr`, `--health-addr` and `--webhook-addr` may name one address or several; each
distinct address gets one listener carrying the routes assigned to it. The handlers only read
the loop's state and call `Controller.trigger`; the webhook verdicts come from `webhook` (pure).

The webhook port faces the network, so nothing a client sends may cost more than `Limits` allows:

- one asyncio loop on one thread serves every connection (an idle connection costs a few KB, not
  a thread); at most `max_connections` are open at once, the rest are answered 503 and closed;
- each connection carries one request (`Connection: close`); a read or write that makes no
  progress for `idle_timeout` seconds, or a request not fully arrived after `request_timeout`,
  ends it (408);
- requests are parsed with httptools (llhttp, uvicorn's parser): a malformed request line or
  header, a Content-Length that is not a non-negative integer, a Content-Length together with
  Transfer-Encoding, are 400; headers past `max_head` bytes are 431;
- a body is read only for `POST /hook`, only when framed: a Content-Length (over `max_body` is
  413 before a byte of it is read) or chunked (read up to the same cap, then 413); neither is
  411. All bodies held at once stay under `body_budget` (past it: 503, retry later). An answer
  given before the body was read half-closes and drops what still comes for `linger` seconds, so
  the client sees the answer rather than a reset;
- the signature check, the JSON parse and the endpoints' callbacks run on a pool of `workers`
  threads, never on the loop; whatever they raise is a 500 in the log, not a traceback to the
  client.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import http
import logging
import socket
import threading
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import httptools

from reconciler.gitops import webhook

log = logging.getLogger(__name__)

MAX_HOOK_BODY = 25 * 1024 * 1024  # GitHub caps webhook payloads at 25 MB
WEBHOOK_PATH = "/hook"
_READ_SIZE = 64 * 1024
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_T = TypeVar("_T")


@dataclass(frozen=True)
class Limits:
    """What one client (or all of them together) may cost the process."""

    max_body: int = MAX_HOOK_BODY
    max_head: int = 64 * 1024  # request line and headers
    body_budget: int = 64 * 1024 * 1024  # body bytes held at once, all connections together
    idle_timeout: float = 5.0  # seconds a read or write may make no progress
    request_timeout: float = 30.0  # seconds for a whole request to arrive
    max_connections: int = 1024
    workers: int = 2
    linger: float = 2.0  # seconds an answered, unread upload is dropped before the close


@dataclass
class Endpoints:
    """What the routes answer from. `healthy`/`ready` are read on every probe."""

    metrics: Callable[[], bytes]
    healthy: Callable[[], bool]
    ready: Callable[[], bool]
    trigger: Callable[[str], None]
    webhook_secret: bytes = b""
    ref: str | None = None  # the branch/tag followed: pushes elsewhere are ignored
    routes_by_address: dict[str, set[str]] = field(default_factory=dict)
    deliveries: webhook.Deliveries = field(default_factory=webhook.Deliveries)


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str = "text/plain"


def _text(status: int, message: str) -> Answer:
    return Answer(status, (message + "\n").encode())


def _split(address: str) -> tuple[str, int]:
    """`:8080`, `0.0.0.0:8080`, `127.0.0.1:0` -> (host, port); no host means every interface."""
    host, _, port = address.rpartition(":")
    return host or "0.0.0.0", int(port)


def route(method: str, path: str, routes: frozenset[str]) -> str | Answer:
    """Which endpoint a request is for ("metrics", "healthz", "readyz", "hook"), or the answer
    when none is (404, or 405 for a known path asked with another method). Pure."""
    path = path.split("?", 1)[0]
    served = {
        "/metrics": ("GET", "metrics", "metrics"),
        "/healthz": ("GET", "health", "healthz"),
        "/readyz": ("GET", "health", "readyz"),
        WEBHOOK_PATH: ("POST", "webhook", "hook"),
    }.get(path)
    if served is None or served[1] not in routes:
        return _text(404, "not found")
    if method != served[0]:
        return _text(405, f"use {served[0]}")
    return served[2]


def framing(content_length: int | None, chunked: bool, max_body: int) -> Answer | None:
    """Whether a webhook body may be read: None when it may (a Content-Length up to the cap, or
    chunked: counted against the cap as it comes), else the answer. Pure."""
    if chunked:
        return None
    if content_length is None:
        return _text(411, "a Content-Length (or chunked encoding) is required")
    if content_length > max_body:
        return _text(413, f"payload too large (at most {max_body} bytes)")
    return None


class _Budget:
    """The body bytes all connections may hold at once (used on the loop's thread only)."""

    def __init__(self, total: int) -> None:
        self.left = total

    def take(self, size: int) -> bool:
        if size > self.left:
            return False
        self.left -= size
        return True

    def give(self, size: int) -> None:
        self.left += size


class _Request:
    """One request, collected from httptools callbacks. `early` is set when the answer is known
    before the body is read (the body is then not kept)."""

    def __init__(
        self,
        routes: frozenset[str],
        limits: Limits,
        budget: _Budget,
        send_continue: Callable[[], None],
    ) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.routes = routes
        self.limits = limits
        self.budget = budget
        self.send_continue = send_continue
        self.url = b""
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self.held = 0  # bytes taken from the budget
        self.endpoint: str | None = None
        self.early: Answer | None = None
        self.head_bytes = 0  # bytes fed before the headers were complete
        self.head_done = False
        self.complete = False

    # -- httptools callbacks (they must not raise: the parser would turn it into an error) ----

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.head_done = True
        method = self.parser.get_method().decode("latin-1")
        routed = route(method, self.url.decode("latin-1"), self.routes)
        if isinstance(routed, Answer):
            self.early = routed
            return
        self.endpoint = routed
        if routed != "hook":
            return  # a GET: its answer does not depend on a body, which is never read
        # llhttp has checked the framing: one Content-Length of digits, not with chunked.
        declared = self.headers.get("content-length")
        length = int(declared) if declared is not None else None
        chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        self.early = framing(length, chunked, self.limits.max_body)
        if self.early is None and length is not None:
            self._hold(length)
        if self.early is None and self.headers.get("expect", "").lower() == "100-continue":
            self.send_continue()

    def on_body(self, chunk: bytes) -> None:
        if self.early is not None or self.endpoint != "hook":
            return
        if len(self.body) + len(chunk) > self.limits.max_body:  # only chunked gets here
            self.early = _text(413, f"payload too large (at most {self.limits.max_body} bytes)")
            self.body = bytearray()
            return
        if "content-length" not in self.headers:
            self._hold(len(chunk))
        if self.early is None:
            self.body += chunk

    def on_message_complete(self) -> None:
        self.complete = True

    def _hold(self, size: int) -> None:
        if self.budget.take(size):
            self.held += size
        else:
            self.early = _text(503, "too many webhook bodies at once; retry later")
            self.body = bytearray()

    def release(self) -> None:
        self.budget.give(self.held)
        self.held = 0
        self.body = bytearray()


class _Tracked(asyncio.StreamReaderProtocol):
    """A connection's stream protocol that keeps its transport in `transports` while open,
    so that `Servers.close` can close every one of them."""

    def __init__(
        self,
        transports: set[asyncio.Transport],
        reader: asyncio.StreamReader,
        connected: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    ) -> None:
        super().__init__(reader, connected)
        self._transports = transports
        self._tracked: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._tracked = cast(asyncio.Transport, transport)  # a TCP connection's
        self._transports.add(self._tracked)
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._tracked is not None:
            self._transports.discard(self._tracked)
        super().connection_lost(exc)


class Servers:
    """The running listeners; `addresses` are the bound (host, port) per configured address.
    The sockets are bound here, so a port in use fails the caller at once."""

    def __init__(self, endpoints: Endpoints, limits: Limits | None = None) -> None:
        self._endpoints = endpoints
        self._limits = limits or Limits()
        self._budget = _Budget(self._limits.body_budget)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self._limits.workers, thread_name_prefix="http worker"
        )
        self._transports: set[asyncio.Transport] = set()
        self._serving = 0  # connections being served
        self._refusing = 0  # connections being told 503
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="http", daemon=True)
        self._thread.start()
        self._servers: list[asyncio.Server] = []
        self.addresses: dict[str, tuple[str, int]] = {}
        try:
            for address, routes in endpoints.routes_by_address.items():
                sock = socket.create_server(_split(address), backlog=128)
                bound = sock.getsockname()
                self.addresses[address] = (str(bound[0]), int(bound[1]))
                self._servers.append(self._run(self._listen(sock, frozenset(routes))))
                served = ", ".join(sorted(routes))
                log.info(
                    "serving on %s (bound %s:%d): %s", address, *self.addresses[address], served
                )
        except BaseException:
            self.close()
            raise

    def _run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    async def _listen(self, sock: socket.socket, routes: frozenset[str]) -> asyncio.Server:
        async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._connection(reader, writer, routes)

        def protocol() -> asyncio.StreamReaderProtocol:
            return _Tracked(self._transports, asyncio.StreamReader(limit=_READ_SIZE), connected)

        return await asyncio.get_running_loop().create_server(protocol, sock=sock)

    def close(self) -> None:
        async def stop() -> None:
            # Stop accepting, then let the accepts already under way make their transports
            # before the servers close: on Python 3.11 an accept that finishes after its
            # server's close drops the new socket without closing it.
            loop = asyncio.get_running_loop()
            for server in self._servers:
                for listening in server.sockets:
                    loop.remove_reader(listening.fileno())
            await asyncio.sleep(0)
            for server in self._servers:
                server.close()
            # Every task on this private loop is a connection's (or an accept about to make
            # one): each ends once its transport is cut, and may make another transport first.
            for _ in range(3):
                for transport in list(self._transports):
                    transport.abort()
                tasks = asyncio.all_tasks() - {asyncio.current_task()}
                if not tasks:
                    return
                await asyncio.wait(tasks, timeout=1.0)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self._run(stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- one connection -----------------------------------------------------------------------

    async def _connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, routes: frozenset[str]
    ) -> None:
        limit = self._limits.max_connections
        refused = self._serving >= limit
        if refused and self._refusing >= limit:
            writer.transport.abort()  # a flood: not even an answer
            return
        request = _Request(routes, self._limits, self._budget, lambda: writer.write(_CONTINUE))
        if refused:
            self._refusing += 1
        else:
            self._serving += 1
        try:
            if refused:
                answer: Answer | None = _text(503, "too many connections; retry later")
            else:
                answer = await self._exchange(reader, request)
            if answer is not None:
                writer.write(_wire(answer))
                await asyncio.wait_for(writer.drain(), self._limits.idle_timeout)
                if request.early is not None or not request.complete:
                    await self._linger(reader, writer)
        except (ConnectionError, TimeoutError):
            pass  # the client left or stalled: nothing more to say to it
        except Exception:
            log.exception("HTTP endpoint failed")  # a bug of ours, not the client's
        finally:
            if refused:
                self._refusing -= 1
            else:
                self._serving -= 1
            request.release()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _exchange(self, reader: asyncio.StreamReader, request: _Request) -> Answer | None:
        """Read `request` as far as its answer needs, and make that answer (None: the client
        left or stalled before it was complete: it gets nothing)."""
        try:
            async with asyncio.timeout(self._limits.request_timeout):
                while not request.complete and request.early is None:
                    data = await asyncio.wait_for(
                        reader.read(_READ_SIZE), self._limits.idle_timeout
                    )
                    if not data:
                        return None
                    if not request.head_done:
                        # Counted as fed: llhttp keeps a header that is still arriving whole.
                        request.head_bytes += len(data)
                    try:
                        request.parser.feed_data(data)
                    except httptools.HttpParserUpgrade:
                        return _text(400, "protocol upgrades are not supported")
                    except httptools.HttpParserError as err:
                        if not request.complete:  # bytes after the request are not read
                            log.debug("malformed HTTP request: %s", err)
                            return _text(400, "malformed HTTP request")
                    if not request.head_done and request.head_bytes > self._limits.max_head:
                        return _text(431, "request headers too large")
                    if request.head_done and request.endpoint not in (None, "hook"):
                        break  # a GET is answered on its headers
        except TimeoutError:
            return _text(408, "request timed out")
        if request.early is not None:
            return request.early
        return await self._answer(request)

    async def _answer(self, request: _Request) -> Answer:
        endpoints = self._endpoints
        if request.endpoint == "metrics":
            return Answer(200, await self._call(endpoints.metrics), "text/plain; version=0.0.4")
        if request.endpoint in ("healthz", "readyz"):
            probe = endpoints.healthy if request.endpoint == "healthz" else endpoints.ready
            ok = await self._call(probe)
            failed = "unhealthy" if request.endpoint == "healthz" else "not ready"
            return _text(200, "ok") if ok else _text(503, failed)
        body, request.body = bytes(request.body), bytearray()  # one copy held, not two
        verdict = await self._call(
            lambda: webhook.judge(
                endpoints.webhook_secret,
                body,
                request.headers,
                endpoints.ref,
                endpoints.deliveries,
            )
        )
        if verdict.trigger:
            await self._call(lambda: endpoints.trigger("webhook push"))
        else:
            log.info("webhook: %s", verdict.message)
        return _text(verdict.status, verdict.message)

    async def _call(self, function: Callable[[], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, function)

    async def _linger(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answered before the body was read: half-close, then drop what still comes for a
        while, so the client reads the answer instead of a reset."""
        if writer.can_write_eof():
            writer.write_eof()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._limits.linger):
                while await reader.read(_READ_SIZE):
                    pass


def _wire(answer: Answer) -> bytes:
    """The response bytes: every connection carries one request, so each says close."""
    reason = http.HTTPStatus(answer.status).phrase
    head = (
        f"HTTP/1.1 {answer.status} {reason}\r\n"
        f"Content-Type: {answer.content_type}\r\n"
        f"Content-Length: {len(answer.body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + answer.body
