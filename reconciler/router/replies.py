"""The router's own answers to clients, as opposed to the backends' answers it relays.

Every error the router itself gives is JSON of one shape, `{"error": {"code": ..., "message":
...}}`, with the HTTP status alongside (`error`; a 401 also carries `WWW-Authenticate: Bearer`,
and the load answers, 429 and 503, carry `Retry-After`); `too_large` is the 413 for a body over
`max_body_bytes`, which closes the connection since the rest of the body is not read; `ok` is a
JSON status body (health, readiness, load reports) and `probe` the probes' answers; `no_route` the
404 for a path nothing serves; `SHED` is the canned 503 that admission
control answers with, built once. Built by `dispatch` when it routes, authenticates,
queues, sheds and fails over; written by `front`; no I/O here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from reconciler.router import front

JSON = b"Content-Type: application/json\r\n"
RETRY_AFTER_SECONDS = 1


def _error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def error(
    status: int,
    code: str,
    message: str,
    auth: bool = False,
    retry_after: int | None = None,
    close: bool = False,
) -> front.Reply:
    headers = JSON
    if auth:
        headers += b"WWW-Authenticate: Bearer\r\n"
    if retry_after is not None:
        headers += b"Retry-After: %d\r\n" % retry_after
    return front.Reply(status, _error_body(code, message), headers, close)


def busy(status: int, code: str, message: str) -> front.Reply:
    """A 429 or 503 for load: the client may come back after Retry-After."""
    return error(status, code, message, retry_after=RETRY_AFTER_SECONDS)


def ok(payload: Mapping[str, object]) -> front.Reply:
    return front.Reply(200, json.dumps(payload).encode(), JSON)


def no_route(path: str) -> front.Reply:
    return error(404, "NotFound", f"no route {path}")


def probe(path: str, ready: bool) -> front.Reply | None:
    """The answer to a liveness or readiness probe (on either port), None for other paths."""
    if path == "/healthz":
        return ok({"status": "ok"})
    if path == "/readyz":
        return ok({"status": "ready"}) if ready else error(503, "Unavailable", "not ready")
    return None


def too_large(limit: int) -> front.Reply:
    # The rest of the body is not read: the connection closes after the answer.
    return error(413, "PayloadTooLarge", f"the request body is over {limit} bytes", close=True)


SHED = busy(503, "Overloaded", "the router is over its capacity; retry later")
