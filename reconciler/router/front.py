"""The router's HTTP/1.1 server front: client connections, request parsing, writing answers.

Sits under `dispatch` (which decides what to answer) and beside `upstream` (the backend side):
`Server` listens (plain or TLS, on the running uvloop loop) and gives every client connection a
`ClientConnection`, an asyncio protocol that parses requests with httptools (the C parser of
uvicorn) and hands each to the handler as a `Request` in a task of its own, one at a time per
connection (pipelined requests wait their turn). The handler returns a `Reply` (status, header
bytes, body: written in one piece) or streams its answer itself (`Request.start`, `write`,
`finish`). It replaced aiohttp's server, whose request and response objects cost about as
much CPU as the whole rest of the router.

What a request may use: `method`, `path`, `query`, raw `headers`, `header(name)`,
`content_length`, `body_exists`, the body (`read_all` / `readany`, flow-controlled: a client
sending faster than the backend takes is paused), `send_continue` (100-continue), `gone` (the
client left) and `abort` (cut the connection: an answer that cannot be finished).

Admission: `Server` asks its `refuse` hook with the request's URL, as soon as the URL is parsed
and before any header is kept or any task or object is made for it, whether to refuse it; a
refused request is answered at once with canned bytes (`refusal`: the router's 503 with
Retry-After, built once a second) and its body is parsed and dropped. That keeps a
refused request's cost a small fraction of a served one's, which is what lets the router stay
near its maximum goodput under overload.

Limits on the request head, nginx's (`large_client_header_buffers 4 8k`: a URL or a header
line may take one 8 KiB buffer, the whole head four) plus Envoy's count of headers: a URL over
MAX_URL_BYTES is answered 414, a header line over MAX_HEADER_LINE_BYTES, a head over
MAX_HEAD_BYTES or more than MAX_HEADERS headers 431, and the connection is closed. They are
checked while the head is parsed, before admission, auth or any handler: httptools keeps a
header whose end has not come yet inside itself, so a head is fed to it in pieces that never
take it past MAX_HEAD_BYTES, and a head that is still not complete by then is refused without
reading further (`data_received`). A parse error (bytes that are not HTTP, an Upgrade request)
stops parsing the connection: the requests parsed before it are answered in order, then the
error (400, or the limit's status), then the connection closes; a request whose body was broken
is answered the error itself if its answer had not begun (`Request.abort`). No client is left
without an answer.

Connections: keep-alive unless the client or an answer says close; idle ones are closed after
`keepalive_timeout`, and a request head not complete `header_timeout` after its first byte is
answered 408 and the connection closed (nginx's `client_header_timeout`): a client trickling its
headers holds a connection only that long, whatever the byte rate. An answer given before its
request body was read (413) closes the connection after lingering: the rest of the upload is read
and dropped for up to LINGER seconds, so that the client sees the answer and not a reset.
`Server.stop` stops accepting, closes idle connections, and waits for requests in flight to finish.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import email.utils
import logging
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import cast

import httptools

from reconciler.router import flow

log = logging.getLogger(__name__)

LINGER = 2.0  # seconds an early-answered upload is read and dropped before the close
# The request head's limits (see the module docstring): nginx's buffers, Envoy's header count.
MAX_URL_BYTES = 8 * 1024
MAX_HEADER_LINE_BYTES = 8 * 1024
MAX_HEAD_BYTES = 4 * 8 * 1024
MAX_HEADERS = 100
KEEPALIVE_TIMEOUT = 75.0
HEADER_TIMEOUT = 60.0  # nginx's client_header_timeout
_REASONS = {
    100: b"Continue",
    200: b"OK",
    201: b"Created",
    202: b"Accepted",
    204: b"No Content",
    301: b"Moved Permanently",
    302: b"Found",
    304: b"Not Modified",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    409: b"Conflict",
    413: b"Payload Too Large",
    414: b"URI Too Long",
    415: b"Unsupported Media Type",
    422: b"Unprocessable Entity",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    499: b"Client Closed Request",
    500: b"Internal Server Error",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
}
_NO_BODY_STATUSES = frozenset({204, 304})


class ClientGone(Exception):
    """The client closed its connection before the request was read or answered (or its body
    turned out not to be HTTP: nothing more of it will come)."""


class _OverLimit(Exception):
    """Raised in a parser callback: the head crossed a limit (`ClientConnection._too_large` says
    which status answers it)."""


class Reply:
    """An answer written in one piece: status, extra header lines (wire bytes), body."""

    __slots__ = ("body", "close", "headers", "status")

    def __init__(
        self, status: int, body: bytes = b"", headers: bytes = b"", close: bool = False
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers  # b"Name: value\r\n" lines, without Content-Length
        self.close = close  # close the connection after it (the body was not read)


Handler = Callable[["Request"], Awaitable["Reply | None"]]


def status_line(status: int) -> bytes:
    reason = _REASONS.get(status)
    if reason is None:
        reason = b"Unknown"
    return b"HTTP/1.1 %d %s\r\n" % (status, reason)


class _Clock:
    """The Date header, formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._line = b""

    def date_line(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._line = b"Date: " + email.utils.formatdate(now, usegmt=True).encode() + b"\r\n"
        return self._line


class Request:
    """One request as the handler sees it, and the way back to its client."""

    __slots__ = (
        "_body",
        "_broken",
        "_buffered",
        "_conn",
        "_ended",
        "_waiter",
        "arrived",
        "chunked",
        "content_length",
        "continue_sent",
        "expect_continue",
        "headers",
        "keep_alive",
        "method",
        "path",
        "query",
        "responded",
        "started",
    )

    def __init__(self, conn: ClientConnection, method: str, url: bytes) -> None:
        self._conn = conn
        self.method = method
        target = url.decode("latin-1")
        self.path, _, self.query = target.partition("?")
        self.headers: list[tuple[bytes, bytes]] = []
        self.content_length: int | None = None
        self.chunked = False
        self.expect_continue = False
        self.keep_alive = True
        self.arrived = 0.0  # time.perf_counter() when its head was parsed
        self._body: list[bytes] = []
        self._buffered = 0
        self._ended = False  # the whole body has been parsed
        self._broken = False  # its body was not HTTP: the rest never comes
        self._waiter: asyncio.Future[None] | None = None
        self.started = False  # a streamed answer's head is out
        self.responded = False  # the answer is complete
        self.continue_sent = False

    # -- the request --------------------------------------------------------------------------

    def header(self, name: bytes) -> str | None:
        """The first value of a header, by lower-case name."""
        for key, value in self.headers:
            if key.lower() == name:
                return value.decode("latin-1")
        return None

    @property
    def body_exists(self) -> bool:
        return self.chunked or bool(self.content_length)

    @property
    def gone(self) -> bool:
        return self._conn.lost

    def send_continue(self) -> None:
        """Answer `Expect: 100-continue`: the client may send the body now."""
        if self.expect_continue and not self.continue_sent and not self._conn.lost:
            self.continue_sent = True
            self._conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def body_now(self) -> bytes | None:
        """The whole body if it has already arrived (the usual case for small ones), else None."""
        if not self._ended:
            return None
        return self._take()

    async def read_all(self) -> bytes:
        """The whole body (the caller has checked its size)."""
        chunks: list[bytes] = []
        while True:
            chunk = await self.readany()
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    async def readany(self) -> bytes:
        """The next piece of the body as it arrives; b"" at its end. ClientGone if the client
        left first."""
        while True:
            if self._body:
                return self._take()
            if self._ended:
                return b""
            if self._conn.lost or self._broken:
                raise ClientGone()
            self.send_continue()
            loop = self._conn.loop
            waiter = self._waiter = loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    def _take(self) -> bytes:
        body = self._body
        if not body:
            return b""
        data = body[0] if len(body) == 1 else b"".join(body)
        body.clear()
        self._buffered = 0
        self._conn.flow.consumed()
        return data

    def _feed(self, data: bytes) -> None:
        self._body.append(data)
        self._buffered += len(data)
        self._conn.flow.buffered(self._buffered)
        self._wake()

    def _end(self) -> None:
        self._ended = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the answer ---------------------------------------------------------------------------

    def respond(self, reply: Reply) -> None:
        """Write a whole answer."""
        if self.responded or self.started:
            return
        self.responded = True
        conn = self._conn
        close = reply.close or not self.keep_alive or conn.closing
        if not close and not self._ended and not self.continue_sent and self.expect_continue:
            close = True  # the client waits to be told to send its body: it never will be
        body = reply.body
        has_body = reply.status not in _NO_BODY_STATUSES
        parts = [
            status_line(reply.status),
            conn.server.clock.date_line(),
            reply.headers,
        ]
        if has_body:
            parts.append(b"Content-Length: %d\r\n" % len(body))
        if close:
            parts.append(b"Connection: close\r\n")
        parts.append(b"\r\n")
        if has_body and self.method != "HEAD":
            parts.append(body)
        conn.write(b"".join(parts))
        conn.answered(self, close)

    async def start(self, status: int, headers: bytes, length: int | None) -> None:
        """Begin a streamed answer: its head now, the body by `write`, then `finish`."""
        conn = self._conn
        if conn.lost:
            raise ClientGone()
        self.started = True
        if length is None:
            framing = b"Transfer-Encoding: chunked\r\n"
        else:
            framing = b"Content-Length: %d\r\n" % length
        close = not self.keep_alive or conn.closing
        conn.write(
            b"".join(
                (
                    status_line(status),
                    conn.server.clock.date_line(),
                    headers,
                    framing,
                    b"Connection: close\r\n" if close else b"",
                    b"\r\n",
                )
            )
        )
        await conn.drain()

    async def write(self, chunk: bytes, chunked: bool) -> None:
        if not chunk:
            return
        conn = self._conn
        if conn.lost:
            raise ClientGone()
        conn.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
        await conn.drain()

    async def finish(self, chunked: bool) -> None:
        conn = self._conn
        if conn.lost:
            raise ClientGone()
        if chunked:
            conn.write(b"0\r\n\r\n")
        self.responded = True
        conn.answered(self, not self.keep_alive or conn.closing)
        await conn.drain()

    def abort(self) -> None:
        """Cut the client's connection: the answer began and cannot be finished. A request whose
        body was broken and whose answer has not begun gets the parse error's answer instead."""
        self.responded = True
        conn = self._conn
        if self._broken and not self.started and self is conn._active and not conn.lost:
            conn._active = None
            conn._next()  # writes the error and closes
            return
        conn.abort()


class ClientConnection(flow.Protocol):
    """One client's connection: parses its requests and runs them one at a time."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.loop = server.loop
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._current: Request | None = None  # being parsed
        self._active: Request | None = None  # being handled
        self._pending: collections.deque[Request] = collections.deque()
        # The request being parsed was refused or answered early: its body is read and dropped.
        self._dropping = False
        self._decided = False  # admission has been asked about the request being parsed
        # The head limits. `_in_head`: the parser is between messages or inside a head;
        # `_phase` counts heads and messages completed, so `data_received` can tell whether a
        # piece it fed stayed inside one head; `_head_fed` is how many bytes of the current head
        # were fed; `_head_size` and `_headers` are what the callbacks have seen of it.
        self._in_head = True
        self._phase = 0
        self._head_fed = 0
        self._head_size = 0
        self._headers = 0
        self._too_large = 0  # the status of the limit a callback found crossed
        # Parsing stopped (a malformed request or one over a limit): later bytes are dropped,
        # and `_error`, the answer to it, waits until the requests before it are answered.
        self._failed = False
        self._error: bytes | None = None
        self.flow = flow.Flow(self.loop)
        self._linger: asyncio.TimerHandle | None = None
        self.lost = False
        self._eof = False  # the client has half-closed
        self.closing = False  # close once the request being handled is answered
        self.idle_since = 0.0
        self.head_began: float | None = None  # loop time of the head being parsed's first byte

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self.flow.attach(self._transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.idle_since = self.loop.time()
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self._linger is not None or self._failed:
            return  # lingering after an early answer, or past a parse error: dropped
        parser = self._parser
        size = len(data)
        view: memoryview | None = None
        done = 0
        try:
            while done < size and self._linger is None:
                # Inside a head, never more than its limit allows: httptools buffers a header
                # until its end, and a head with no end must not grow in memory.
                take = size - done
                if self._in_head:
                    take = min(take, MAX_HEAD_BYTES + 1 - self._head_fed)
                if take == size:
                    piece: bytes | memoryview = data
                else:
                    if view is None:
                        view = memoryview(data)
                    piece = view[done : done + take]
                done += take
                counting, phase = self._in_head, self._phase
                parser.feed_data(piece)
                if self._in_head:
                    if counting and phase == self._phase:
                        self._head_fed += take  # every byte of the piece was this head's
                        if self._head_fed > MAX_HEAD_BYTES:
                            self._fail(431, b"request header fields too large")
                            return
                    else:
                        # A head began inside the piece, after a message: its bytes there are
                        # fewer than the piece's, and the callbacks' checks count them.
                        self._head_fed = 0
        except httptools.HttpParserUpgrade:
            self._fail(400, b"upgrades are not supported")
        except httptools.HttpParserCallbackError as err:
            if self._too_large:
                status = self._too_large
                self._fail(
                    status, b"URI too long" if status == 414 else b"request header fields too large"
                )
            else:
                log.warning("router: a request could not be parsed", exc_info=err.__context__)
                self._fail(400, b"malformed request")
        except httptools.HttpParserError as err:
            log.debug("bad request from a client: %s", err)
            self._fail(400, b"malformed request")

    def eof_received(self) -> bool | None:
        # A client that half-closes after its request still gets the answer; with nothing in
        # progress the connection just closes.
        self._eof = True
        if self._active is None and self._current is None and self._error is None:
            return None
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.server.connections.discard(self)
        if self._linger is not None:
            self._linger.cancel()
        for request in (self._current, self._active, *self._pending):
            if request is not None:
                request._wake()
        self.flow.lose()

    # -- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.head_began = self.loop.time()
        self._url = b""
        self._decided = False
        self._head_size = 0
        self._headers = 0

    def on_url(self, url: bytes) -> None:
        if len(self._url) + len(url) > MAX_URL_BYTES:
            self._too_large = 414
            raise _OverLimit()
        self._url += url
        self._head_size += len(url)

    def _admit(self) -> None:
        """Ask admission control about the request being parsed, once its URL is complete and
        before any of its headers is kept: a refused one costs no objects at all."""
        self._decided = True
        refuse = self.server.refuse
        if refuse is not None and self._active is None and not self._pending and refuse(self._url):
            self._dropping = True

    def on_header(self, name: bytes, value: bytes) -> None:
        line = len(name) + len(value) + 4  # "Name: value\r\n", as little as it can take
        self._head_size += line
        self._headers += 1
        if (
            line > MAX_HEADER_LINE_BYTES
            or self._head_size > MAX_HEAD_BYTES
            or self._headers > MAX_HEADERS
        ):
            self._too_large = 431
            raise _OverLimit()
        if not self._decided:
            self._admit()
        if self._dropping:
            return
        request = self._current
        if request is None:
            request = self._current = Request(
                self, self._parser.get_method().decode("latin-1"), self._url
            )
        request.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.head_began = None
        self._in_head = False
        self._phase += 1
        parser = self._parser
        if parser.should_upgrade():
            # Not served: the parser stops after this head and `data_received` answers 400.
            self._current = None
            return
        if not self._decided:
            self._admit()
        if self._dropping:
            # Refused: the canned answer now; the body, if any, is parsed and dropped.
            self.write(self.server.refusal(close=not parser.should_keep_alive()))
            if not parser.should_keep_alive():
                self.closing = True
                self._start_linger()
            return
        request = self._current
        if request is None:
            method = parser.get_method().decode("latin-1")
            request = self._current = Request(self, method, self._url)
        request.arrived = time.perf_counter()
        request.keep_alive = parser.should_keep_alive()
        for name, value in request.headers:
            lowered = name.lower()
            if lowered == b"content-length":
                try:
                    request.content_length = int(value)
                except ValueError:
                    request.content_length = None
            elif lowered == b"transfer-encoding":
                request.chunked = b"chunked" in value.lower()
            elif lowered == b"expect":
                request.expect_continue = value.lower() == b"100-continue"
        if self._active is None:
            self._start(request)
        else:
            self._pending.append(request)

    def on_body(self, body: bytes) -> None:
        request = self._current
        if request is not None:
            request._feed(body)

    def on_message_complete(self) -> None:
        self._in_head = True
        self._phase += 1
        if self._dropping:
            self._dropping = False
            self._next()
            return
        request = self._current
        self._current = None
        if request is not None:
            request._end()

    # -- used by requests ---------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        transport = self._transport
        if transport is not None and not self.lost:
            transport.write(data)

    async def drain(self) -> None:
        await self.flow.drain()
        if self.lost:
            raise ClientGone()

    def abort(self) -> None:
        self.lost = True
        self.flow.lose()
        if self._transport is not None:
            self._transport.abort()

    def answered(self, request: Request, close: bool) -> None:
        """`request`'s answer is written: close, linger, or go on to the next request (or the
        answer to a parse error after it)."""
        # A client that half-closed after pipelined requests still gets every answer.
        last = not self._pending and self._error is None
        if close or self.lost or (self._eof and last):
            self.closing = True
            if not request._ended and not self._eof:
                self._start_linger()
            elif self._transport is not None:
                self._transport.close()
            return
        if request is self._active and self._failed:
            self._active = None
            self._next()
            return
        if request is self._active:
            if not request._ended:
                # Answered before its body was read (an early error): drop the rest as it comes.
                self._dropping = True
                self._current = None
                request._body.clear()
                self.flow.consumed()
            self._active = None
            self.idle_since = self.loop.time()
            if not self._dropping:
                self._next()

    # -- internals ----------------------------------------------------------------------------

    def _start(self, request: Request) -> None:
        self._active = request
        self.loop.create_task(self._run(request))

    def _next(self) -> None:
        if self._active is not None:
            return
        if self._pending:
            self._start(self._pending.popleft())
        elif self._error is not None:
            error, self._error = self._error, None
            self.closing = True
            self.write(error)
            self._start_linger()

    async def _run(self, request: Request) -> None:
        try:
            reply = await self.server.handler(request)
        except ClientGone:
            if not request.responded:
                request.abort()
            return
        except Exception:
            log.exception("router: a request failed")
            if request.started:
                self.abort()
            else:
                request.respond(Reply(500, b"", close=True))
            return
        if reply is not None and not request.started:
            request.respond(reply)
        elif not request.responded:
            self.abort()  # a streamed answer left unfinished

    def _fail(self, status: int, message: bytes) -> None:
        """Stop parsing: the requests parsed before the bad one are answered, then `status`,
        then the connection closes. The bad one itself, if it got as far as a request (its body
        was broken), never reaches a handler or gets the error from `Request.abort`."""
        self._failed = True
        self._dropping = False
        broken, self._current = self._current, None
        if broken is not None:
            if broken in self._pending:
                self._pending.remove(broken)
            broken._broken = True
            broken._wake()
        self._error = (
            status_line(status)
            + self.server.clock.date_line()
            + b"Content-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
            % len(message)
            + message
        )
        self.flow.consumed()  # whatever else comes is read and dropped
        self._next()

    def _start_linger(self) -> None:
        if self._linger is not None or self._transport is None or self.lost:
            return
        transport = self._transport
        self._linger = self.loop.call_later(LINGER, transport.close)
        # Reading on, dropping what comes, until the client closes or the time is up.
        self.flow.consumed()
        with contextlib.suppress(Exception):
            if transport.can_write_eof():
                transport.write_eof()


class Server:
    """The listening socket and every client connection, serving `handler`."""

    def __init__(
        self,
        handler: Handler,
        loop: asyncio.AbstractEventLoop,
        refuse: Callable[[bytes], bool] | None = None,
        refusal: Reply | None = None,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT,
        header_timeout: float = HEADER_TIMEOUT,
    ) -> None:
        self.handler = handler
        self.loop = loop
        self.refuse = refuse
        self._refusal = refusal or Reply(503, b"", b"Retry-After: 1\r\n")
        self._refusal_bytes: dict[bool, tuple[int, bytes]] = {}
        self.keepalive_timeout = keepalive_timeout
        self.header_timeout = header_timeout
        self.clock = _Clock()
        self.connections: set[ClientConnection] = set()
        self._server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(
        self, host: str | None, port: int, ssl_context: ssl.SSLContext | None, backlog: int
    ) -> None:
        self._server = await self.loop.create_server(
            lambda: ClientConnection(self),
            host or None,
            port,
            ssl=ssl_context,
            backlog=backlog,
            reuse_address=True,
        )
        sockets = self._server.sockets
        if sockets:
            self.port = int(sockets[0].getsockname()[1])

    def refusal(self, close: bool) -> bytes:
        """The whole answer to a refused request, as bytes, rebuilt once a second (its Date)."""
        second = int(time.time())
        cached = self._refusal_bytes.get(close)
        if cached is not None and cached[0] == second:
            return cached[1]
        reply = self._refusal
        data = b"".join(
            (
                status_line(reply.status),
                self.clock.date_line(),
                reply.headers,
                b"Content-Length: %d\r\n" % len(reply.body),
                b"Connection: close\r\n" if close else b"",
                b"\r\n",
                reply.body,
            )
        )
        self._refusal_bytes[close] = (second, data)
        return data

    def sweep(self) -> None:
        """Close client connections idle longer than the keep-alive timeout, and answer 408 to
        those whose request head has taken longer than the header timeout."""
        now = self.loop.time()
        cutoff = now - self.keepalive_timeout
        head_cutoff = now - self.header_timeout
        for conn in list(self.connections):
            if conn._transport is None:
                continue
            began = conn.head_began
            if began is not None:
                if began < head_cutoff and not conn._failed:
                    conn.head_began = None
                    conn._fail(408, b"request header timeout")
            elif conn._active is None and conn._current is None and conn.idle_since < cutoff:
                conn._transport.close()

    async def stop(self, timeout: float) -> None:
        """Stop accepting, close idle connections, let requests in flight finish."""
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.closing = True
            if conn._active is None and conn._current is None and conn._transport is not None:
                conn._transport.close()
        deadline = self.loop.time() + timeout
        while self.connections and self.loop.time() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            conn.abort()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None
