"""Where a request's URL points on the scoring port: the one place its prefixes are decoded.

Pure, under `dispatch`: admission control asks `parse` about the raw URL as soon as the front
has it (is this a scoring request of a deployment or an endpoint?), and the dispatcher asks it
again about the request's path to pick the handler. Both read the same `Route`, so what is
refused under overload and what is served cannot drift apart.

The routes: `/api/v1/service/{deployment}[/{action}]`, `/api/v1/endpoint/{endpoint}[/{action}]`,
and `/score` or `/` whose endpoint the Host header names (`{endpoint}.{cname}`, only when the
config sets `cname`). The action `score` scores; an empty action asks for the status.
"""

from __future__ import annotations

from typing import NamedTuple

SERVICE_PREFIX = "/api/v1/service/"
ENDPOINT_PREFIX = "/api/v1/endpoint/"

# Route.kind
DEPLOYMENT = "deployment"  # /api/v1/service/{name}/...
ENDPOINT = "endpoint"  # /api/v1/endpoint/{name}/...
BY_HOST = "host"  # /score or /: the Host header names the endpoint
OTHER = "other"  # the probes, or nothing


class Route(NamedTuple):
    """What a URL asks for: a kind, the deployment or endpoint it names, and the action. A
    tuple: one is made for every request, and a tuple is the cheapest immutable record."""

    kind: str
    name: str = ""  # the deployment or endpoint named in the path
    action: str = ""  # "score", "" (the status) or an unknown one

    @property
    def scores(self) -> bool:
        return self.action == "score"


_OTHER = Route(OTHER)
_HOST_SCORE = Route(BY_HOST, action="score")
_HOST_STATUS = Route(BY_HOST)


def parse(target: str) -> Route:
    """The route of a request target (a path, with or without its query)."""
    path = target.partition("?")[0]
    for prefix, kind in ((SERVICE_PREFIX, DEPLOYMENT), (ENDPOINT_PREFIX, ENDPOINT)):
        if path.startswith(prefix):
            name, _, action = path[len(prefix) :].partition("/")
            return Route(kind, name, action)
    if path == "/score":
        return _HOST_SCORE
    if path == "/":
        return _HOST_STATUS
    return _OTHER
