"""HTTP/1.1 forwarding mechanics for the router: one request's bytes out to a backend and back.

`dispatch` decides where a scoring request goes and what to answer; this module moves it on
the wire, with no choice of backend, no retries and no answers of its own. Out: `forward_headers`
(the client's headers minus hop-by-hop ones, Authorization, and those named in Connection, as
wire bytes, built once per request), `request_head` (the request line, Host and framing for one
backend), and the body either read first (`read_some`, for a body of unknown length small
enough to replay) or streamed as it arrives (`send_streamed`, chunked when the client sent no
length). Back: `response_headers` (the backend's headers minus hop-by-hop ones, as wire bytes)
and `stream_back` (a response that did not arrive at once, relayed chunk by chunk).

Failures come back as exceptions for the router to answer: `BodyTooLarge` (over `max_body_bytes`,
a 413), `ClientGone` (the client left: nothing to answer), `Truncated` (the backend failed after
the response began: the client's connection is cut) and `upstream`'s own errors. Sits between
`dispatch` (above) and `upstream` (the backend connections); `front.Request` on the client side.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence

from reconciler.router import balancer, front, upstream

_REQUEST_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"authorization",
        b"content-length",
        b"expect",
    }
)
_RESPONSE_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
    }
)


class BodyTooLarge(Exception):
    pass


ClientGone = front.ClientGone


class Truncated(Exception):
    """The backend failed after the response began: the client's connection was cut."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code  # what the metrics record: 502 or 504


# -- request: client -> backend ---------------------------------------------------------------


def forward_headers(raw: Sequence[tuple[bytes, bytes]]) -> bytes:
    """The request headers to pass on, as wire bytes: all but hop-by-hop and Authorization."""
    parts: list[bytes] = []
    named: frozenset[bytes] = frozenset()
    for name, value in raw:
        lowered = name.lower()
        if lowered in _REQUEST_HOP:
            if lowered == b"connection":
                # Headers named in Connection are hop-by-hop too (RFC 9110 7.6.1).
                named = named | {t.strip().lower() for t in value.split(b",")}
            continue
        parts += (name, b": ", value, b"\r\n")
    if named:
        parts = []
        for name, value in raw:
            lowered = name.lower()
            if lowered not in _REQUEST_HOP and lowered not in named:
                parts += (name, b": ", value, b"\r\n")
    return b"".join(parts)


@functools.lru_cache(maxsize=4096)
def _start_line(prefix: str, query: str, host: str, port: int) -> bytes:
    """`POST <prefix>/score?<query> HTTP/1.1` and the Host line, for a backend (cached: the
    same few backends and queries come back on every request)."""
    target = f"{prefix}/score?{query}" if query else f"{prefix}/score"
    authority = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    return f"POST {target} HTTP/1.1\r\nHost: {authority}\r\n".encode("latin-1")


def request_head(
    query: str, backend: balancer.Backend, headers: bytes, body: bytes | None, length: int | None
) -> bytes:
    """The request line, Host, the headers passed on and the body's framing, for `backend`'s
    `/score` (below its path prefix) with the client's query string."""
    if body is not None:
        framing = b"Content-Length: %d\r\n" % len(body)
    elif length is not None:
        framing = b"Content-Length: %d\r\n" % length
    else:
        framing = b"Transfer-Encoding: chunked\r\n"
    return b"".join(
        (_start_line(backend.prefix, query, backend.host, backend.port), headers, framing, b"\r\n")
    )


async def read_some(
    request: front.Request, buffer_limit: int, max_body: int
) -> tuple[bytes | None, list[bytes]]:
    """Read a body of unknown length up to `buffer_limit`: the whole body if it is that small
    (bytes, []), else (None, the chunks read so far) and the rest streams."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.readany()
        if not chunk:
            return b"".join(chunks), []
        size += len(chunk)
        if size > max_body:
            raise BodyTooLarge()
        chunks.append(chunk)
        if size > buffer_limit:
            return None, chunks


async def send_streamed(
    conn: upstream.Connection,
    head: bytes,
    prefix: list[bytes],
    request: front.Request,
    length: int | None,
    max_body: int,
    deadline: float,
) -> None:
    """Send a body too large to buffer as it arrives from the client, counting it."""
    chunked = length is None
    conn.send(head)
    size = 0
    pending = list(prefix)
    try:
        # The deadline also covers a client that stalls mid-upload while holding a backend.
        async with asyncio.timeout_at(deadline):
            while True:
                if conn.head_done:
                    # The backend answered before taking the whole body (an early error):
                    # stop uploading and relay its answer.
                    conn.unfinished = True
                    return
                if pending:
                    chunk = pending.pop(0)
                else:
                    chunk = await request.readany()
                    if not chunk:
                        break
                size += len(chunk)
                if size > max_body:
                    raise BodyTooLarge()
                if chunked:
                    conn.send(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                else:
                    conn.send(chunk)
                await conn.drain()
    except TimeoutError as err:
        raise upstream.UpstreamTimeout("the request body did not arrive in time") from err
    if chunked:
        conn.send(b"0\r\n\r\n")


# -- response: backend -> client --------------------------------------------------------------


def response_headers(raw: list[tuple[bytes, bytes]]) -> bytes:
    """The backend's headers to relay, as wire bytes: all but hop-by-hop ones."""
    parts: list[bytes] = []
    for name, value in raw:
        if name.lower() not in _RESPONSE_HOP:
            parts += (name, b": ", value, b"\r\n")
    return b"".join(parts)


async def stream_back(request: front.Request, conn: upstream.Connection, headers: bytes) -> None:
    """Relay a response that did not arrive at once, chunk by chunk as the backend sends."""
    length: int | None = None
    for name, value in conn.headers:
        if name.lower() == b"content-length":
            length = int(value)
    chunked = length is None
    try:
        await request.start(conn.status, headers, length)
        async for chunk in conn.chunks():
            await request.write(chunk, chunked)
        await request.finish(chunked)
    except upstream.UpstreamError as err:
        # The status line is gone already: the only honest signal left is a cut connection.
        request.abort()
        code = 504 if isinstance(err, upstream.UpstreamTimeout) else 502
        raise Truncated(code) from err
