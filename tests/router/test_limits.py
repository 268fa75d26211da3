"""Hostile request heads on real sockets: URL and header limits, junk after a request.

The router's limits are nginx's (`large_client_header_buffers 4 8k`): a URL over 8 KiB is answered
414, a header line over 8 KiB or a head over 32 KiB (or more than 100 headers, Envoy's count) 431,
all while the head is parsed and before any auth, and the connection is closed. Bytes that are not
a request after a valid one in the same packet get a 400 after the valid request's answer. A head
still not complete after the header timeout (nginx's `client_header_timeout`) is answered 408,
however steadily its bytes trickle in. The memory test runs `reconciler router serve` as its own
process and reads its peak RSS from /proc.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from pathlib import Path

import pytest

from reconciler.router import front
from tests.router import harness
from tests.router.harness import deployment, run, running, write_config

KEY = "k" * 43
SCORE = b"POST /api/v1/service/m/score HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"


def backend_count(backend: harness.BackendProcess) -> int:
    with urllib.request.urlopen(f"{backend.url}/stats", timeout=5) as response:
        return int(json.loads(response.read())["count"])


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One whole response (Content-Length framed, as every answer of the router here is)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), 10)
    return status, headers, body


async def exchange(port: int, data: bytes) -> tuple[list[tuple[int, dict[str, str], bytes]], bool]:
    """Send `data` in one write; every response up to the router's close, and whether it
    closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    responses = []
    closed = False
    try:
        while True:
            try:
                responses.append(await read_response(reader))
            except asyncio.IncompleteReadError as err:
                assert err.partial == b"", err.partial
                closed = True
                break
            except TimeoutError:
                break
    finally:
        writer.close()
    return responses, closed


def request(path: bytes = b"/api/v1/service/m/score", headers: bytes = b"") -> bytes:
    return b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n" + headers + b"\r\n{}"


@pytest.fixture
def config(tmp_path: Path, backends: list[harness.BackendProcess]) -> Path:
    entry = deployment("m", [backends[0].url], auth={"mode": "key", "keys": [KEY]})
    return write_config(tmp_path / "router.yaml", [entry])


AUTH = f"Authorization: Bearer {KEY}\r\n".encode()
CLOSE = b"Connection: close\r\n"  # a lone request: the router closes after its answer


def test_a_url_over_8_kib_is_refused_414_before_the_backend(
    config: Path, backends: list[harness.BackendProcess]
) -> None:
    query = b"?q=" + b"a" * (front.MAX_URL_BYTES - 40)
    long_query = b"?q=" + b"a" * front.MAX_URL_BYTES

    async def scenario() -> None:
        async with running(config) as (router, _):
            before = backend_count(backends[0])
            answers, _ = await exchange(
                router.port, request(b"/api/v1/service/m/score" + query, AUTH + CLOSE)
            )
            assert [a[0] for a in answers] == [200]
            answers, closed = await exchange(
                router.port, request(b"/api/v1/service/m/score" + long_query, AUTH)
            )
            assert [a[0] for a in answers] == [414]
            assert closed
            assert backend_count(backends[0]) == before + 1

    run(scenario())


def test_a_huge_header_or_too_many_headers_are_refused_431_before_auth(
    config: Path, backends: list[harness.BackendProcess]
) -> None:
    fits = b"X-Big: " + b"a" * (front.MAX_HEADER_LINE_BYTES - 16) + b"\r\n"
    line_too_long = b"X-Big: " + b"a" * front.MAX_HEADER_LINE_BYTES + b"\r\n"
    # Lines each within their limit, together over the head's.
    block = b"".join(
        b"X-Part-%d: " % i + b"b" * 4000 + b"\r\n" for i in range(front.MAX_HEAD_BYTES // 4000 + 1)
    )
    many = b"".join(b"X-%d: 1\r\n" % i for i in range(front.MAX_HEADERS + 1))
    # A header that never ends: whitespace does not count less than any other byte.
    endless_whitespace = b"X-Pad:" + b" " * (front.MAX_HEAD_BYTES + 10)

    async def scenario() -> None:
        async with running(config) as (router, _):
            before = backend_count(backends[0])
            answers, _ = await exchange(router.port, request(headers=fits + AUTH + CLOSE))
            assert [a[0] for a in answers] == [200]
            for headers in (line_too_long, block, many):
                # Without credentials: the limit answers first, not the 401.
                answers, closed = await exchange(router.port, request(headers=headers))
                assert [a[0] for a in answers] == [431], headers[:40]
                assert closed
            answers, closed = await exchange(router.port, SCORE + endless_whitespace)
            assert [a[0] for a in answers] == [431]
            assert closed
            assert backend_count(backends[0]) == before + 1

    run(scenario())


def test_junk_after_a_valid_request_is_answered_400_after_the_valid_answer(
    config: Path, backends: list[harness.BackendProcess]
) -> None:
    valid = request(headers=AUTH)

    async def scenario() -> None:
        async with running(config) as (router, _):
            before = backend_count(backends[0])
            answers, closed = await exchange(router.port, valid + b"\x00\x01 junk\r\n\r\n")
            assert [a[0] for a in answers] == [200, 400]
            assert json.loads(answers[0][2])["backend"] == backends[0].name
            assert closed
            # Two valid pipelined requests, then junk: both answered in order, then the 400.
            answers, closed = await exchange(router.port, valid + valid + b"GARBAGE\r\n\r\n")
            assert [a[0] for a in answers] == [200, 200, 400]
            assert closed
            # A valid request, then one whose header is over the limit: 200, then 431.
            too_big = request(headers=b"X-Big: " + b"a" * front.MAX_HEAD_BYTES + b"\r\n")
            answers, closed = await exchange(router.port, valid + too_big)
            assert [a[0] for a in answers] == [200, 431]
            assert closed
            # A request asking for an upgrade (not supported) after a valid one.
            upgrade = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n"
            answers, closed = await exchange(router.port, valid + upgrade)
            assert [a[0] for a in answers] == [200, 400]
            assert closed
            assert backend_count(backends[0]) == before + 5

    run(scenario())


def test_a_head_trickled_past_the_header_timeout_is_answered_408_and_closed(
    config: Path, backends: list[harness.BackendProcess]
) -> None:
    async def scenario() -> None:
        async with running(config) as (router, _):
            for server in router.lifecycle._servers:
                server.header_timeout = 0.5
            before = backend_count(backends[0])
            reader, writer = await asyncio.open_connection("127.0.0.1", router.port)
            answer = asyncio.ensure_future(read_response(reader))
            writer.write(SCORE + AUTH)
            # A header byte every 0.1 s: never idle, never complete. Only a clock stops it.
            for _ in range(30):
                if answer.done():
                    break
                writer.write(b"X")
                await writer.drain()
                await asyncio.sleep(0.1)
            status, _, body = await answer
            assert (status, body) == (408, b"request header timeout")
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed after it
            writer.close()
            # A whole request on a new connection is served as before.
            answers, _ = await exchange(router.port, request(headers=AUTH + CLOSE))
            assert [a[0] for a in answers] == [200]
            assert backend_count(backends[0]) == before + 1

    run(scenario())


def _peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"VmHWM:\s+(\d+) kB", status)
    assert found is not None
    return int(found.group(1)) * 1024


async def _send_endless_header(port: int, total: int) -> tuple[bytes, int]:
    """Send a request whose one header is `total` bytes, without credentials, all of it
    whatever the router answers meanwhile (until it closes); the answer's head (b"" if none
    came) and how many bytes of the header were sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = asyncio.ensure_future(reader.readuntil(b"\r\n\r\n"))
    writer.write(SCORE + b"X-Big: ")
    chunk = b"a" * (1 << 20)
    sent = 0
    try:
        while sent < total:
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)
        writer.write(b"\r\n\r\n{}")
        await writer.drain()
    except ConnectionError:
        pass  # the router closed after answering and lingering
    try:
        return await asyncio.wait_for(answer, 30), sent
    except (asyncio.IncompleteReadError, ConnectionError):
        return b"", sent
    finally:
        writer.close()


def test_a_100_mb_header_without_auth_is_refused_in_bounded_memory(
    tmp_path: Path, backends: list[harness.BackendProcess]
) -> None:
    entry = deployment("m", [backends[0].url], auth={"mode": "key", "keys": [KEY]})
    path = write_config(tmp_path / "router.yaml", [entry])
    with harness.serving(path) as served:

        async def scenario() -> tuple[int, bytes, int]:
            answers, _ = await exchange(served.port, request(headers=AUTH + CLOSE))
            assert [a[0] for a in answers] == [200]  # warmed up: every import and buffer made
            before = _peak_rss(served.process.pid)
            head, sent = await _send_endless_header(served.port, 100 * 1024 * 1024)
            # Far past the limit: the router read on (and dropped) while it lingered.
            assert sent >= 10 * 1024 * 1024, sent
            print(f"sent {sent / 2**20:.0f} MiB of header")
            return before, head, _peak_rss(served.process.pid)

        before, head, after = run(scenario())
        print(f"router peak RSS {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB")
        assert head.startswith(b"HTTP/1.1 431"), head
        assert after - before < 16 * 1024 * 1024, (before, after)
        assert served.process.poll() is None
