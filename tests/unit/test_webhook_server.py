"""The loop's HTTP endpoints under hostile input (issue 27): every malformed request gets a 4xx
and no traceback, a body is read only when framed and only up to the cap, idle connections are
closed and cost no thread, a replayed delivery triggers no second fetch.

Most tests talk raw bytes over a socket to a server in this process (the shapes http.client
would refuse to send); the memory and thread counts are read from /proc of a server started as
a process of its own, so that nothing of pytest is counted."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.gitops import httpserver, webhook

SECRET = b"s3cret"
ROOT = Path(__file__).resolve().parents[2]
SMALL = httpserver.Limits(
    max_body=4096, idle_timeout=0.5, request_timeout=3.0, linger=0.5, body_budget=6000
)


class Running:
    """A server in this process and the triggers it made."""

    def __init__(self, limits: httpserver.Limits) -> None:
        self.triggers: list[str] = []
        self.servers = httpserver.Servers(
            httpserver.Endpoints(
                metrics=lambda: b"loop_ticks 1\n",
                healthy=lambda: True,
                ready=lambda: False,
                trigger=self.triggers.append,
                webhook_secret=SECRET,
                ref="main",
                routes_by_address={"127.0.0.1:0": {"webhook", "metrics", "health"}},
            ),
            limits,
        )
        self.port = self.servers.addresses["127.0.0.1:0"][1]

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        return sock

    def exchange(self, raw: bytes) -> tuple[int, bytes]:
        """Send `raw`, read until the server closes: (status, body)."""
        with self.connect() as sock:
            sock.sendall(raw)
            return parse(read_all(sock))


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def parse(response: bytes) -> tuple[int, bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1."), response[:200]
    return int(head.split()[1]), body


@pytest.fixture
def server() -> Iterator[Running]:
    running = Running(SMALL)
    yield running
    running.servers.close()


def push(body: bytes, delivery: str = "", extra: str = "", sign: bytes = SECRET) -> bytes:
    headers = (
        f"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
        f"X-GitHub-Event: push\r\n{webhook.SIGNATURE_HEADER}: {webhook.signature(sign, body)}\r\n"
    )
    if delivery:
        headers += f"{webhook.DELIVERY_HEADER}: {delivery}\r\n"
    return (headers + extra + "\r\n").encode() + body


MAIN = json.dumps({"ref": "refs/heads/main", "after": "abc"}).encode()


def test_a_signed_push_triggers_a_fetch(server: Running) -> None:
    assert server.exchange(push(MAIN)) == (202, b"fetching\n")
    assert server.triggers == ["webhook push"]


@pytest.mark.parametrize("length", ["-1", "abc", "1e3", "+5", "5, 5", "99999999999999999999999"])
def test_a_content_length_that_is_not_a_non_negative_integer_is_400(
    server: Running, length: str
) -> None:
    raw = push(MAIN).replace(
        f"Content-Length: {len(MAIN)}".encode(), f"Content-Length: {length}".encode()
    )
    assert server.exchange(raw)[0] == 400
    assert server.triggers == []


def test_a_huge_declared_length_is_413_before_any_body_is_sent(server: Running) -> None:
    with server.connect() as sock:
        sock.sendall(b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n\r\n")
        status, _ = parse(read_all(sock))  # no body was sent: the answer cannot have waited
    assert status == 413


def test_a_post_without_framing_is_411(server: Running) -> None:
    assert server.exchange(b"POST /hook HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 411


def test_a_chunked_body_is_read_up_to_the_same_cap(server: Running) -> None:
    def chunked(body: bytes) -> bytes:
        head = (
            push(body)
            .split(b"\r\n\r\n")[0]
            .replace(f"Content-Length: {len(body)}".encode(), b"Transfer-Encoding: chunked")
        )
        pieces = [body[i : i + 1000] for i in range(0, len(body), 1000)]
        return (
            head
            + b"\r\n\r\n"
            + b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in pieces)
            + b"0\r\n\r\n"
        )

    assert server.exchange(chunked(MAIN)) == (202, b"fetching\n")
    too_big = json.dumps({"ref": "refs/heads/main", "pad": "x" * SMALL.max_body}).encode()
    assert server.exchange(chunked(too_big))[0] == 413
    assert server.triggers == ["webhook push"]


def test_a_content_length_with_chunked_is_400(server: Running) -> None:
    raw = push(MAIN, extra="Transfer-Encoding: chunked\r\n")
    assert server.exchange(raw)[0] == 400


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,  # the JSON parser refuses it with RecursionError
        b'{"ref": ' * 50_000 + b"1" + b"}" * 50_000,
        b"[1, 2]",
        b'"refs/heads/main"',
        b'{"ref": null}',
        b"\xff\xfe not json",
    ],
)
def test_a_signed_body_that_is_not_a_push_payload_is_400(server: Running, body: bytes) -> None:
    limits = httpserver.Limits(idle_timeout=2.0, request_timeout=5.0, linger=0.5)
    roomy = Running(limits)  # the deep ones are bigger than SMALL's cap
    try:
        assert roomy.exchange(push(body))[0] == 400
        assert roomy.triggers == []
    finally:
        roomy.servers.close()


@pytest.mark.parametrize(
    "raw",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS hello\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
        b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        b"POST /hook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc",
    ],
)
def test_a_malformed_request_is_400(server: Running, raw: bytes) -> None:
    assert server.exchange(raw)[0] == 400


def test_headers_past_the_limit_are_431(server: Running) -> None:
    raw = b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * (SMALL.max_head + 65536) + b"\r\n\r\n"
    with server.connect() as sock:
        with contextlib.suppress(OSError):  # the server answers before taking it all
            sock.sendall(raw)
        assert parse(read_all(sock))[0] == 431


def test_unsigned_requests_and_missing_headers_are_401(server: Running) -> None:
    unsigned = b"POST /hook HTTP/1.1\r\nContent-Length: %d\r\n\r\n%b" % (len(MAIN), MAIN)
    assert server.exchange(unsigned)[0] == 401
    assert server.exchange(push(MAIN, sign=b"another secret"))[0] == 401
    assert server.triggers == []


def test_a_replayed_delivery_triggers_no_second_fetch(server: Running) -> None:
    assert server.exchange(push(MAIN, delivery="d-1"))[0] == 202
    assert server.exchange(push(MAIN, delivery="d-1"))[0] == 200  # redelivered
    other = json.dumps({"ref": "refs/heads/main", "after": "def"}).encode()
    assert server.exchange(push(other, delivery="d-1"))[0] == 200  # a known ID, a new body
    assert server.exchange(push(other, delivery="d-3"))[0] == 202
    assert server.triggers == ["webhook push", "webhook push"]


def test_the_same_body_without_a_delivery_id_triggers_every_time(server: Running) -> None:
    """A relay or CI step that signs one fixed body after every push keeps working."""
    assert server.exchange(push(MAIN, delivery="d-1"))[0] == 202
    assert server.exchange(push(MAIN, delivery="d-2"))[0] == 202  # the same body, a new ID
    assert server.exchange(push(MAIN))[0] == 202
    assert server.exchange(push(MAIN))[0] == 202
    assert server.triggers == ["webhook push"] * 4


def test_an_unsigned_request_cannot_use_up_a_delivery_id(server: Running) -> None:
    assert server.exchange(push(MAIN, delivery="d-1", sign=b"forged"))[0] == 401
    assert server.exchange(push(MAIN, delivery="d-1"))[0] == 202
    assert server.triggers == ["webhook push"]


def test_the_delivery_record_forgets_after_the_window_and_stays_bounded() -> None:
    now = [0.0]
    seen = webhook.Deliveries(window=60.0, capacity=3, clock=lambda: now[0])
    assert seen.first_time("a")
    assert not seen.first_time("a")
    now[0] = 61.0
    assert seen.first_time("a")
    for key in "bcdef":
        assert seen.first_time(key)
    assert len(seen) == 3
    assert seen.first_time("a")  # pushed out by newer ones


def test_bodies_held_at_once_stay_within_the_budget(server: Running) -> None:
    """Two uploads of about 4000 bytes each do not fit a 6000-byte budget together: the second
    is told to retry, and the first still goes through."""
    body = json.dumps({"ref": "refs/heads/main", "pad": "x" * 3900}).encode()
    assert SMALL.body_budget < 2 * len(body) and len(body) < SMALL.max_body
    raw = push(body, extra="Expect: 100-continue\r\n")
    head = raw[: -len(body)]
    with server.connect() as first:
        first.sendall(head)
        # The 100 comes once the server has set the body's bytes aside.
        assert first.recv(100).startswith(b"HTTP/1.1 100 Continue")
        assert server.exchange(push(body))[0] == 503
        first.sendall(body)
        assert parse(read_all(first))[0] == 202
    assert server.exchange(push(body))[0] == 202  # the budget came back


def test_connections_past_the_limit_are_refused() -> None:
    running = Running(httpserver.Limits(max_connections=2, idle_timeout=5.0))
    try:
        with running.connect() as one, running.connect() as two:
            one.sendall(b"GET /metr")
            two.sendall(b"GET /metr")
            assert running.exchange(b"GET /healthz HTTP/1.1\r\n\r\n")[0] == 503
            one.sendall(b"ics HTTP/1.1\r\n\r\n")
            assert parse(read_all(one)) == (200, b"loop_ticks 1\n")
    finally:
        running.servers.close()


def test_the_probes_metrics_and_unknown_routes(server: Running) -> None:
    assert server.exchange(b"GET /healthz HTTP/1.1\r\n\r\n") == (200, b"ok\n")
    assert server.exchange(b"GET /readyz HTTP/1.1\r\n\r\n") == (503, b"not ready\n")
    assert server.exchange(b"GET /metrics?x=1 HTTP/1.1\r\n\r\n") == (200, b"loop_ticks 1\n")
    assert server.exchange(b"GET /nope HTTP/1.1\r\n\r\n")[0] == 404
    assert server.exchange(b"GET /hook HTTP/1.1\r\n\r\n")[0] == 405
    assert server.exchange(b"DELETE /metrics HTTP/1.1\r\n\r\n")[0] == 405


def test_expect_100_continue_is_answered_before_the_body(server: Running) -> None:
    raw = push(MAIN, extra="Expect: 100-continue\r\n")
    head, body = raw[: -len(MAIN)], raw[-len(MAIN) :]
    with server.connect() as sock:
        sock.sendall(head)
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        assert parse(read_all(sock))[0] == 202


# --- measured on a server process of its own ----------------------------------------------

SERVER = textwrap.dedent(
    """
    import sys, threading
    from reconciler.gitops import httpserver
    limits = httpserver.Limits(idle_timeout=float(sys.argv[1]))
    servers = httpserver.Servers(httpserver.Endpoints(
        metrics=lambda: b"", healthy=lambda: True, ready=lambda: True,
        trigger=lambda why: None, webhook_secret=b"s3cret",
        routes_by_address={"127.0.0.1:0": {"webhook", "metrics", "health"}}), limits)
    print(servers.addresses["127.0.0.1:0"][1], flush=True)
    threading.Event().wait()
    """
)


class Process:
    def __init__(self, idle_timeout: float) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(idle_timeout)],
            stdout=subprocess.PIPE,
            cwd=ROOT,
            text=True,
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())

    def status(self, key: str) -> int:
        """A number from /proc/PID/status: VmRSS and VmHWM in kB, Threads."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise KeyError(key)

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.fixture
def process() -> Iterator[Process]:
    running = Process(idle_timeout=0.5)
    yield running
    running.close()


@pytest.mark.parametrize("framing", [b"Content-Length: -1\r\n", b""])
def test_a_400_mb_unframed_upload_is_refused_without_being_buffered(
    process: Process, framing: bytes
) -> None:
    """Streams up to 400 MB (unsigned) and stops when an answer comes; the server's peak
    memory must not have grown by anything like it."""
    # Warm the server up (its first request imports and allocates what every request needs).
    with socket.create_connection(("127.0.0.1", process.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
        read_all(sock)
    rss_before = process.status("VmRSS")
    chunk = b"{" * (1 << 20)
    with socket.create_connection(("127.0.0.1", process.port), timeout=30) as sock:
        sock.sendall(b"POST /hook HTTP/1.1\r\nHost: x\r\n" + framing + b"\r\n")
        answered = b""
        try:
            for _ in range(400):
                if select.select([sock], [], [], 0)[0]:
                    break
                sock.sendall(chunk)
            answered = sock.recv(65536)
        except OSError:
            pass  # the server closed after its answer while we were still sending
        assert 400 <= parse(answered)[0] < 500
    grown = process.status("VmHWM") - rss_before
    assert grown < 16 * 1024, f"the server's peak memory grew by {grown} kB"


def test_idle_connections_cost_no_thread_and_are_closed(process: Process) -> None:
    threads_before = process.status("Threads")
    sockets = [
        socket.create_connection(("127.0.0.1", process.port), timeout=10) for _ in range(300)
    ]
    try:
        for sock in sockets[:100]:
            sock.sendall(b"POST /hook HTTP/1.1\r\nContent-Le")  # a slow client, stalled
        # Every connection is accepted before the server can time any out (the answer to
        # this request comes after the 300 accepts, which were queued before it).
        with socket.create_connection(("127.0.0.1", process.port), timeout=10) as probe:
            probe.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
            read_all(probe)
        # The loop's thread and the worker pool: no thread per connection.
        assert process.status("Threads") <= max(threads_before, 2) + 2
        for sock in sockets:
            answer = read_all(sock)  # returns once the server closes (the timeout is 10 s)
            assert answer == b"" or parse(answer)[0] == 408
    finally:
        for sock in sockets:
            sock.close()


def test_the_server_stops_with_connections_open() -> None:
    running = Running(SMALL)
    with running.connect() as sock:
        sock.sendall(b"GET /metr")
        running.servers.close()
        # Closed before it was accepted, it is reset with the listening socket's queue.
        with contextlib.suppress(ConnectionResetError):
            assert read_all(sock) == b""
    assert not [t for t in threading.enumerate() if t.name == "http"]
