"""The router's own answers to clients, as opposed to the backends' answers it relays.

Every error the router itself gives is JSON of one shape, `{"error": {"code": ..., "message":
...}}`, with the HTTP status alongside (`error`; a 401 also carries `WWW-Authenticate: Bearer`);
`too_large` is the 413 for a body over `max_body_bytes`, which closes the connection since the
rest of the body is not read; `ok` is a JSON status body (health, readiness, load reports).
Built by `proxy.Router` when it routes, authenticates, queues and fails over; no I/O here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from aiohttp import web


def _error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def error(status: int, code: str, message: str, auth: bool = False) -> web.Response:
    response = web.Response(
        status=status, body=_error_body(code, message), content_type="application/json"
    )
    if auth:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def ok(payload: Mapping[str, object]) -> web.Response:
    return web.Response(body=json.dumps(payload).encode(), content_type="application/json")


def too_large(limit: int) -> web.Response:
    response = error(413, "PayloadTooLarge", f"the request body is over {limit} bytes")
    response.force_close()  # the rest of the body is not read
    return response
