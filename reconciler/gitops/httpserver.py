"""The GitOps loop's HTTP endpoints: `/metrics`, `/healthz`, `/readyz` and the push webhook.

`--metrics-addr`, `--health-addr` and `--webhook-addr` may name one address or several; each
distinct address gets one threaded stdlib server carrying the routes assigned to it (the loop is
synchronous and these are a handful of requests a minute, so no async stack is needed here).
The handlers only read the loop's state and call `Controller.trigger`; the verdicts come from
`webhook` (pure).
"""

from __future__ import annotations

import http.server
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from reconciler.gitops import webhook

log = logging.getLogger(__name__)

MAX_HOOK_BODY = 25 * 1024 * 1024  # GitHub caps webhook payloads at 25 MB
WEBHOOK_PATH = "/hook"


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


def _split(address: str) -> tuple[str, int]:
    """`:8080`, `0.0.0.0:8080`, `127.0.0.1:0` -> (host, port); no host means every interface."""
    host, _, port = address.rpartition(":")
    return host or "0.0.0.0", int(port)


class Servers:
    """The running servers; `addresses` are the bound (host, port) per configured address."""

    def __init__(self, endpoints: Endpoints) -> None:
        self._servers: list[http.server.ThreadingHTTPServer] = []
        self.addresses: dict[str, tuple[str, int]] = {}
        for address, routes in endpoints.routes_by_address.items():
            handler = _handler(endpoints, frozenset(routes))
            server = http.server.ThreadingHTTPServer(_split(address), handler)
            server.daemon_threads = True
            self._servers.append(server)
            bound = server.server_address
            self.addresses[address] = (str(bound[0]), int(bound[1]))
            threading.Thread(
                target=server.serve_forever, name=f"http {address}", daemon=True
            ).start()
            log.info("serving %s on %s", ", ".join(sorted(routes)), address)

    def close(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()


def _handler(
    endpoints: Endpoints, routes: frozenset[str]
) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            log.debug("%s " + format, self.address_string(), *args)

        def _answer(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics" and "metrics" in routes:
                self._answer(200, endpoints.metrics(), "text/plain; version=0.0.4")
            elif path == "/healthz" and "health" in routes:
                ok = endpoints.healthy()
                self._answer(200 if ok else 503, b"ok\n" if ok else b"unhealthy\n")
            elif path == "/readyz" and "health" in routes:
                ok = endpoints.ready()
                self._answer(200 if ok else 503, b"ok\n" if ok else b"not ready\n")
            else:
                self._answer(404, b"not found\n")

        def do_POST(self) -> None:
            if self.path.split("?", 1)[0] != WEBHOOK_PATH or "webhook" not in routes:
                self._answer(404, b"not found\n")
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_HOOK_BODY:
                self._answer(413, b"payload too large\n")
                return
            body = self.rfile.read(length)
            verdict = webhook.judge(
                endpoints.webhook_secret, body, dict(self.headers.items()), endpoints.ref
            )
            if verdict.trigger:
                endpoints.trigger("webhook push")
            else:
                log.info("webhook: %s", verdict.message)
            self._answer(verdict.status, (verdict.message + "\n").encode())

    return Handler
