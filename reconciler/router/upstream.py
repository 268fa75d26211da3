"""The router's HTTP/1.1 client to model backends: pooled keep-alive connections, httptools parsing.

Sits under `dispatch`: the dispatcher builds the request head, this module sends it over an idle
keep-alive connection to the backend (or a new one), parses the response with httptools (the C
parser uvicorn uses) and hands back status, headers and body chunks. It exists because the
general-purpose aiohttp client costs about 120 us per request on one core, which alone caps the
router near 6,000 requests per second; this one costs a fraction of that (measured: the same
proxy went from about 6,000 to about 18,000 rps on one core).

Failures are sorted by what the dispatcher may do about them, and only the first kind is retried:
- `NeverSent`: provably none of the request reached the backend, so it may go to another one.
  Either `ConnectError` (no connection: refused, unreachable, too slow) or `StaleConnection`
  (an idle keep-alive connection found closed or reset before the first byte of the request was
  written: a peek at the socket before reuse, and a write that failed at once).
- `Disconnected`: the connection closed after (some of) the request was written and before a
  single response byte. The backend may have run it: never replayed, the dispatcher answers 502.
  The one ambiguous case this leaves is a backend closing an idle connection in the same instant
  the router reuses it; the idle timeout below the backends' own keep-alive makes it rare.
- `BrokenResponse`: the connection failed, or the response was malformed, after it began.
- `UpstreamTimeout`: the deadline passed; the connection is dropped.
Only plain http:// is spoken: model pods are reached inside the cluster network.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
from collections.abc import AsyncIterator
from typing import cast

import httptools

from reconciler.router import flow

_NO_BODY_STATUSES = frozenset({204, 304})
DEADLINE_TICK = 0.02  # seconds
_TCP_INFO: int | None = getattr(socket, "TCP_INFO", None)  # Linux
_TCP_ESTABLISHED = 1  # tcpi_state, the first byte of struct tcp_info


class UpstreamError(Exception):
    """The exchange with a backend failed."""


class NeverSent(UpstreamError):
    """None of the request reached the backend: the only failure that may be retried."""


class ConnectError(NeverSent):
    """Could not connect to the backend."""


class StaleConnection(NeverSent):
    """A reused connection was closed or reset before any of the request was written."""


class Disconnected(UpstreamError):
    """The backend closed the connection after the request was sent, before any response."""


class BrokenResponse(UpstreamError):
    """The connection failed, or the response was malformed, after the response began."""


class UpstreamTimeout(UpstreamError):
    """The request's deadline passed before the response was complete."""


class Connection(flow.Protocol):
    """One keep-alive connection to a backend, carrying one request at a time."""

    def __init__(self, client: Client, key: tuple[str, int]) -> None:
        self._client = client
        self.key = key
        self._loop = client.loop
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.reused = False
        self.idle = False  # parked in the client, no request out
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self.flow = flow.Flow(self._loop)
        self._slot: int | None = None  # the client's deadline wheel slot, while armed
        self._sock: socket.socket | None = None  # ours, for the peek before a reuse
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.complete = False
        self._body: list[bytes] = []
        self._body_size = 0
        self._got_bytes = False
        self._error: UpstreamError | None = None
        self._interim = False
        self._framed = False  # Content-Length or chunked: the body does not end at EOF
        self.keep_alive = False
        self.unfinished = False  # the request body was not sent whole: never reuse
        self.written = False  # some of this exchange's request was handed to the socket

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self._transport = cast(asyncio.Transport, transport)
        self.flow.attach(self._transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Request heads are small writes that must leave at once.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self.idle:
            # A backend must not speak while no request is out: the connection is unusable.
            self.close()
            return
        self._got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as err:
            self._fail(BrokenResponse(f"malformed response: {err}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._client.forget(self)
        if self._error is None and not self.complete:
            if self.head_done and not self._framed:
                # A response without Content-Length or chunking ends when the connection does.
                self.complete = True
                self.keep_alive = False
            elif self._got_bytes:
                self._error = BrokenResponse("the backend closed the connection mid-response")
            else:
                self._error = Disconnected("the backend closed the connection")
        self._wake()
        self.flow.lose()

    # -- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.headers = []
        self._framed = False

    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered == b"content-length" or (
            lowered == b"transfer-encoding" and b"chunked" in value.lower()
        ):
            self._framed = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            self._interim = True  # 100 Continue and the like: the real response follows
            return
        self.status = status
        if status in _NO_BODY_STATUSES:
            self._framed = True
        self.head_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)
        self._body_size += len(body)
        # A slow client must not make the router buffer a large response.
        self.flow.buffered(self._body_size)
        self._wake()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self.complete = True
        self.keep_alive = self._parser.should_keep_alive()
        self._wake()

    # -- used by the dispatcher ---------------------------------------------------------------

    def send(self, data: bytes) -> None:
        transport = self._transport
        if self._error is not None or transport is None or self.closed:
            if not self.written:
                raise StaleConnection("the connection closed before the request was written")
            raise self._error or Disconnected("the connection is closed")
        if self.written:
            transport.write(data)
            return
        if transport.is_closing():
            raise StaleConnection("the connection closed before the request was written")
        transport.write(data)
        if transport.is_closing():
            # The first write failed at once (the backend had reset the connection): the
            # socket took none of it.
            raise StaleConnection("the connection was reset before the request was written")
        self.written = True

    def usable(self) -> bool:
        """Whether an idle connection may carry a request: not closed, and the socket shows no
        end of stream or reset that the event loop has not reported yet."""
        sock = self._sock
        if self.closed or sock is None:
            return False
        try:
            if _TCP_INFO is not None:
                # The kernel's TCP state, one getsockopt: ESTABLISHED until the backend's FIN
                # (CLOSE_WAIT) or reset (CLOSE) arrives.
                return sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 1)[0] == _TCP_ESTABLISHED
            sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return True  # nothing to read: the connection is open and quiet
        except OSError:
            return False
        return False  # end of stream (b"") or bytes nobody asked for

    async def drain(self) -> None:
        """Wait until the backend has taken what was written (request body flow control)."""
        await self.flow.drain()
        if self._error is not None:
            raise self._error
        if self.closed:
            raise Disconnected("the backend closed the connection")

    async def read_head(self) -> None:
        """Wait for the response status and headers."""
        while not self.head_done:
            if self._error is not None:
                raise self._error
            await self._wait()
        if self._error is not None:
            raise self._error

    def take_body(self) -> bytes:
        """All of the body received so far (the whole body once `complete`)."""
        if not self._body:
            return b""
        data = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self._body.clear()
        self._body_size = 0
        self.flow.consumed()
        return data

    async def chunks(self) -> AsyncIterator[bytes]:
        """The response body as it arrives."""
        while True:
            if self._body:
                yield self.take_body()
                continue
            if self._error is not None:
                raise self._error
            if self.complete:
                return
            await self._wait()

    def set_deadline(self, when: float) -> None:
        self._client.arm(self, when)

    def close(self) -> None:
        self.closed = True
        self.flow.lose()
        if self._transport is not None:
            self._transport.abort()

    # -- internals ----------------------------------------------------------------------------

    def _begin(self) -> None:
        """Start a new exchange on this (possibly reused) connection."""
        self.idle = False
        self._reset()

    def _end(self) -> bool:
        """Finish the exchange; True when the connection can carry another request."""
        if self._slot is not None:
            self._client.disarm(self)
        reusable = self.complete and self.keep_alive and not self.unfinished
        return reusable and self._error is None and not self.closed

    def _expire(self) -> None:
        self._fail(UpstreamTimeout("the backend did not answer in time"))

    def _fail(self, error: UpstreamError) -> None:
        if self._error is None:
            self._error = error
        self.close()
        self._wake()

    async def _wait(self) -> None:
        waiter = self._loop.create_future()
        self._waiter = waiter
        try:
            await waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Client:
    """Keep-alive connections to every backend, reused most-recently-idle first."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        connect_timeout: float = 1.0,
        idle_timeout: float = 4.0,
    ) -> None:
        self.loop = loop
        self.connect_timeout = connect_timeout
        # Below the 5 s keep-alive of common model servers (uvicorn, gunicorn), so the router
        # drops an idle connection before the backend does and rarely races with its close.
        self.idle_timeout = idle_timeout
        self._idle: dict[tuple[str, int], list[Connection]] = {}
        # Deadlines sit in a wheel of DEADLINE_TICK slots checked by one timer, because a loop
        # timer per request (call_at + cancel) costs about 10 us of CPU with uvloop: a sixth of
        # the router's whole per-request budget. A deadline fires at most one tick late.
        self._wheel: dict[int, dict[Connection, None]] = {}
        self._ticker: asyncio.TimerHandle | None = None

    async def connection(self, host: str, port: int, deadline: float) -> Connection:
        """A connection to host:port for one exchange ending by `deadline` (loop time): the
        most recently idle one that is still usable, else a new one."""
        key = (host, port)
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn.usable():
                conn.close()
                continue
            conn._begin()
            conn.reused = True
            conn.set_deadline(deadline)
            return conn
        conn = await self.connect(
            host, port, min(self.connect_timeout, deadline - self.loop.time())
        )
        conn._begin()
        conn.set_deadline(deadline)
        return conn

    async def connect(self, host: str, port: int, timeout: float) -> Connection:
        """A new connection; ConnectError when refused, unreachable or too slow."""
        key = (host, port)
        if timeout <= 0:
            raise UpstreamTimeout("no time left to connect")
        sock: socket.socket | None = None
        handed = False
        try:
            async with asyncio.timeout(timeout):
                # The socket is made here, not by create_connection, so the connection can
                # peek at it before a reuse (the transport closes it when done).
                family, address = await self._address(host, port)
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setblocking(False)
                await self.loop.sock_connect(sock, address)
                _, protocol = await self.loop.create_connection(
                    lambda: Connection(self, key), sock=sock
                )
                handed = True
        except TimeoutError as err:
            raise ConnectError(f"connecting to {host}:{port} timed out") from err
        except OSError as err:
            raise ConnectError(f"cannot connect to {host}:{port}: {err.strerror or err}") from err
        finally:
            if sock is not None and not handed:
                sock.close()  # failed or cancelled before the transport took it
        protocol._sock = sock
        return protocol

    async def _address(self, host: str, port: int) -> tuple[int, tuple[str, int]]:
        """The socket family and address for host:port (a name is resolved, first answer)."""
        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                socket.inet_pton(family, host)
            except OSError:
                continue
            return family, (host, port)
        infos = await self.loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        if not infos:
            raise OSError(f"{host} has no address")
        family, _, _, _, address = infos[0]
        return family, (str(address[0]), int(address[1]))

    def arm(self, conn: Connection, deadline: float) -> None:
        slot = math.ceil(deadline / DEADLINE_TICK)  # the slot starts at or after the deadline
        bucket = self._wheel.get(slot)
        if bucket is None:
            bucket = self._wheel[slot] = {}
        bucket[conn] = None
        conn._slot = slot
        if self._ticker is None:
            self._ticker = self.loop.call_later(DEADLINE_TICK, self._tick)

    def disarm(self, conn: Connection) -> None:
        slot, conn._slot = conn._slot, None
        if slot is None:
            return
        bucket = self._wheel.get(slot)
        if bucket is not None:
            bucket.pop(conn, None)
            if not bucket:
                del self._wheel[slot]

    def _tick(self) -> None:
        self._ticker = None
        now = self.loop.time()
        for slot in [s for s in self._wheel if s * DEADLINE_TICK <= now]:
            for conn in self._wheel.pop(slot):
                conn._slot = None
                conn._expire()
        if self._wheel:
            self._ticker = self.loop.call_later(DEADLINE_TICK, self._tick)

    def release(self, conn: Connection) -> None:
        """The exchange on `conn` is over: keep the connection for the next one, or close it."""
        if conn._end():
            self.park(conn)
        else:
            conn.close()

    def discard(self, conn: Connection) -> None:
        """The exchange failed or was abandoned: the connection's state is unknown, close it."""
        conn._end()
        conn.close()

    def park(self, conn: Connection) -> None:
        """Keep a connection made outside an exchange (a successful probe) for later use."""
        conn.idle = True
        conn.idle_since = self.loop.time()
        self._idle.setdefault(conn.key, []).append(conn)

    def forget(self, conn: Connection) -> None:
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)

    def sweep(self) -> None:
        """Close connections idle longer than `idle_timeout` (called about once a second)."""
        cutoff = self.loop.time() - self.idle_timeout
        for key, idle in list(self._idle.items()):
            keep = [c for c in idle if not c.closed and c.idle_since > cutoff]
            for conn in idle:
                if conn not in keep:
                    conn.close()
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]

    def drop_host(self, host: str, port: int) -> None:
        """Close the idle connections to a backend that went away or down."""
        for conn in self._idle.pop((host, port), []):
            conn.close()

    def idle_count(self) -> int:
        return sum(len(v) for v in self._idle.values())

    def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
