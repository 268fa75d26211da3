"""The router's HTTP server on granian (RSGI): HTTP parsing and response writing in Rust.

The alternative to `front` (httptools on uvloop) selected by `reconciler router serve --front
granian`: same `Server` shape (`start`, `port`, `sweep`, `stop`) and a `Request` with the
interface `proxy.Router.handle` and `forwarding` use (`method`, `path`, `query`, raw `headers`,
`header`, `content_length`, `body_exists`, `body_now` / `read_all` / `readany`, `gone`, `abort`,
`arrived`, and the streamed answer's `start` / `write` / `finish`); a `front.Reply` is written
with `response_bytes`.

granian runs embedded (`granian.server.embed.Server`) in the router's own asyncio loop, so the
router's background jobs (reload, probes, the admission lag timer, in-cluster watches) share the
loop with the requests as with `front`; hyper and tokio run on a Rust thread of their own and
hand each request to the loop (`call_soon_threadsafe`), which runs it as an asyncio task (the
"asyncio" task implementation: the "rust" one has no real task, so `asyncio.timeout` inside
a request would not work).

Differences from `front`, all from what RSGI exposes: admission is asked once the request
reaches Python (the Rust side has parsed its head by then), with the path only; the body is
never available without an await (`body_now` is always None); `gone` is only known once a write
failed; an answer is cut (`abort`) by raising out of the request, which makes hyper drop the
connection; TLS takes the cert and key files at start (a renewed certificate needs a restart);
idle keep-alive connections are hyper's business (`sweep` does nothing); port 0 is resolved to
a free port before granian binds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from granian.constants import HTTPModes, Interfaces, TaskImpl
from granian.log import LogLevels
from granian.server import embed

from reconciler.router import front

log = logging.getLogger(__name__)

_START_TIMEOUT = 10.0


class _Aborted(Exception):
    """Raised out of a request whose answer must be cut: hyper then drops the connection."""


def _header_pairs(lines: bytes) -> list[tuple[str, str]]:
    """`b"Name: value\\r\\n"` wire lines (a `front.Reply`'s headers) as RSGI's (name, value)."""
    pairs: list[tuple[str, str]] = []
    if not lines:
        return pairs
    for line in lines.decode("latin-1").split("\r\n"):
        if line:
            name, _, value = line.partition(":")
            pairs.append((name, value.strip()))
    return pairs


class Request:
    """One request as `proxy.Router` sees it, on top of an RSGI scope and protocol."""

    __slots__ = (
        "_chunks",
        "_proto",
        "_scope",
        "_transport",
        "aborted",
        "arrived",
        "chunked",
        "content_length",
        "headers",
        "lost",
        "method",
        "path",
        "query",
        "responded",
        "started",
    )

    def __init__(self, scope: Any, proto: Any) -> None:
        self._scope = scope
        self._proto = proto
        self.arrived = time.perf_counter()
        self.method: str = scope.method
        self.path: str = scope.path
        self.query: str = scope.query_string
        items = scope.headers.items()
        self.headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in items]
        self.content_length: int | None = None
        self.chunked = False
        for name, value in items:
            if name == "content-length":
                try:
                    self.content_length = int(value)
                except ValueError:
                    self.content_length = None
            elif name == "transfer-encoding":
                self.chunked = "chunked" in value.lower()
        self._chunks: Any = None
        self._transport: Any = None
        self.started = False
        self.responded = False
        self.aborted = False
        self.lost = False

    # -- the request --------------------------------------------------------------------------

    def header(self, name: bytes) -> str | None:
        value: str | None = self._scope.headers.get(name.decode("latin-1"))
        return value

    @property
    def body_exists(self) -> bool:
        return self.chunked or bool(self.content_length)

    @property
    def gone(self) -> bool:
        return self.lost

    def body_now(self) -> bytes | None:
        return None  # RSGI has the body only through an await

    async def read_all(self) -> bytes:
        try:
            body: bytes = await self._proto()
        except Exception as err:  # granian's ProtocolClosed: the client left mid-upload
            self.lost = True
            raise front.ClientGone() from err
        return body

    async def readany(self) -> bytes:
        if self._chunks is None:
            self._chunks = self._proto.__aiter__()
        try:
            chunk: bytes = await self._chunks.__anext__()
        except StopAsyncIteration:
            return b""
        except Exception as err:
            self.lost = True
            raise front.ClientGone() from err
        return chunk

    # -- the answer ---------------------------------------------------------------------------

    def respond(self, reply: front.Reply) -> None:
        if self.responded or self.started:
            return
        self.responded = True
        headers = _header_pairs(reply.headers)
        if reply.close:
            headers.append(("connection", "close"))
        self._proto.response_bytes(reply.status, headers, reply.body)

    async def start(self, status: int, headers: bytes, length: int | None) -> None:
        pairs = _header_pairs(headers)
        if length is not None:
            pairs.append(("content-length", str(length)))
        self.started = True
        self._transport = self._proto.response_stream(status, pairs)

    async def write(self, chunk: bytes, chunked: bool) -> None:
        if not chunk:
            return
        try:
            await self._transport.send_bytes(chunk)
        except Exception as err:
            self.lost = True
            raise front.ClientGone() from err

    async def finish(self, chunked: bool) -> None:
        self.responded = True  # the stream ends when the request's coroutine returns

    def abort(self) -> None:
        """Cut the client's connection (raised once the handler returns)."""
        self.responded = True
        self.aborted = True


class _App:
    """The RSGI application: a request in, `handler`'s answer out."""

    def __init__(
        self,
        handler: Callable[[Any], Any],
        refuse: Callable[[bytes], bool] | None,
        refusal: front.Reply,
    ) -> None:
        self.handler = handler
        self.refuse = refuse
        self.refusal_status = refusal.status
        self.refusal_headers = _header_pairs(refusal.headers)
        self.refusal_body = refusal.body

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        refuse = self.refuse
        if refuse is not None and refuse(scope.path.encode("latin-1")):
            proto.response_bytes(self.refusal_status, self.refusal_headers, self.refusal_body)
            return
        request = Request(scope, proto)
        try:
            reply = await self.handler(request)
        except front.ClientGone:
            if not request.responded:
                raise _Aborted() from None
            return
        except Exception:
            log.exception("router: a request failed")
            if request.started:
                raise _Aborted() from None
            request.respond(front.Reply(500, b"", close=True))
            return
        if request.aborted:
            raise _Aborted()
        if reply is not None and not request.started:
            request.respond(reply)
        elif not request.responded:
            raise _Aborted()  # a streamed answer left unfinished


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class Server:
    """granian, embedded in the running loop, serving `handler`."""

    def __init__(
        self,
        handler: Callable[[Any], Any],
        loop: asyncio.AbstractEventLoop,
        refuse: Callable[[bytes], bool] | None = None,
        refusal: front.Reply | None = None,
    ) -> None:
        self.loop = loop
        self.app = _App(handler, refuse, refusal or front.Reply(503, b"", b"Retry-After: 1\r\n"))
        self._granian: embed.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    async def start(
        self, host: str | None, port: int, tls: tuple[str, str] | None, backlog: int
    ) -> None:
        address = host or "0.0.0.0"
        self.port = port or _free_port(address)
        self._granian = embed.Server(
            self.app,
            address=address,
            port=self.port,
            interface=Interfaces.RSGI,
            http=HTTPModes.http1,
            websockets=False,
            backlog=backlog,
            runtime_threads=1,
            task_impl=TaskImpl.asyncio,
            log_enabled=False,
            log_level=LogLevels.warning,
            ssl_cert=Path(tls[0]) if tls else None,
            ssl_key=Path(tls[1]) if tls else None,
        )
        self._task = self.loop.create_task(self._granian.serve())
        # granian binds in its Rust thread: wait until the port takes connections.
        probe = (
            "127.0.0.1" if address in ("0.0.0.0", "") else ("::1" if address == "::" else address)
        )
        deadline = self.loop.time() + _START_TIMEOUT
        while True:
            if self._task.done():
                self._task.result()  # raises granian's startup error
                raise RuntimeError("granian stopped at startup")
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection(probe, self.port)
                writer.close()
                return
            if self.loop.time() > deadline:
                raise RuntimeError(f"granian did not listen on port {self.port}")
            await asyncio.sleep(0.02)

    def sweep(self) -> None:
        """Idle keep-alive connections are hyper's to close."""

    async def stop(self, timeout: float) -> None:
        if self._granian is None or self._task is None:
            return
        self._granian.stop()  # type: ignore[no-untyped-call]
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(self._task, timeout)
        self._granian = None
        self._task = None
