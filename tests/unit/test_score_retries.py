"""`reconciler score` tries a load answer again (`score.post`): a 429 or 503 with Retry-After,
as the router sends while no backend is free, against a real HTTP server on loopback."""

from __future__ import annotations

import http.server
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from reconciler.cli import score


class _Scripted(http.server.BaseHTTPRequestHandler):
    """Answers each POST with the next (status, headers) of the server's script, then 200."""

    def do_POST(self) -> None:
        server: _Server = self.server  # type: ignore[assignment]
        self.rfile.read(int(self.headers["Content-Length"]))
        server.bodies += 1
        status, headers = server.script.pop(0) if server.script else (200, {})
        payload = b"[0.475]" if status == 200 else b'{"error": "busy"}'
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *_: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    script: list[tuple[int, dict[str, str]]]
    bodies: int


@pytest.fixture
def server() -> Iterator[_Server]:
    running = _Server(("127.0.0.1", 0), _Scripted)
    running.script, running.bodies = [], 0
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    try:
        yield running
    finally:
        running.shutdown()
        running.server_close()


def request(server: _Server) -> urllib.request.Request:
    url = f"http://127.0.0.1:{server.server_address[1]}/api/v1/endpoint/mnist/score"
    return urllib.request.Request(url, b'{"data": [[1, 2, 3]]}', method="POST")


def test_a_load_answer_with_retry_after_is_tried_again_after_the_time_it_says(
    server: _Server,
) -> None:
    server.script = [(503, {"Retry-After": "1"}), (429, {"Retry-After": "0"})]
    waits: list[float] = []
    assert score.post(request(server), 10, waits.append) == b"[0.475]"
    assert waits == [1.0, 0.0] and server.bodies == 3  # the body was sent again each time


@pytest.mark.parametrize(
    "answer",
    [
        (503, {}),  # no Retry-After: not a load answer (e.g. an endpoint whose weights are all 0)
        (503, {"Retry-After": "Fri, 04 Dec 2026 05:00:00 GMT"}),  # a date: not waited for
        (503, {"Retry-After": "60"}),  # longer than MAX_RETRY_AFTER
        (500, {"Retry-After": "1"}),  # not a load answer
    ],
)
def test_other_failures_are_not_tried_again(
    server: _Server, answer: tuple[int, dict[str, str]]
) -> None:
    server.script = [answer]
    waits: list[float] = []
    with pytest.raises(urllib.error.HTTPError) as failed:
        score.post(request(server), 10, waits.append)
    failed.value.close()
    assert failed.value.code == answer[0] and waits == [] and server.bodies == 1


def test_a_router_still_busy_after_every_retry_gives_its_last_answer(server: _Server) -> None:
    server.script = [(503, {"Retry-After": "1"})] * (score.RETRIES + 2)
    waits: list[float] = []
    with pytest.raises(urllib.error.HTTPError) as failed:
        score.post(request(server), 10, waits.append)
    assert failed.value.code == 503 and b"busy" in failed.value.read()
    failed.value.close()
    assert waits == [1.0] * score.RETRIES and server.bodies == score.RETRIES + 1
