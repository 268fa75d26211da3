"""Each provider type's HTTP request for an event: pure payload building, no sending.

`request(provider, event, address, token)` is the request a provider sends (None: the type has
nothing to say about that event):

- generic: the event as JSON; generic-hmac the same, signed as Flux's `generic-hmac` signs it:
  `X-Signature: sha256=<hex HMAC-SHA256 of the body>` (the token is the key);
- slack: an incoming webhook's JSON, `text` plus one coloured attachment with the details;
- msteams: a Teams incoming webhook / Workflows message carrying an Adaptive Card;
- github: a commit status, `POST {api}/repos/{owner}/{repo}/statuses/{sha}` with a `context`
  per extension (`reconciler/<extension>`); drift is not about the commit, so it sends none.

Below `notifydispatch`, which reads the secrets and sends what this builds.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from reconciler.engine import record
from reconciler.gitops import notifications, notifyconfig, webhook

SIGNATURE_HEADER = "X-Signature"
CONTEXT_PREFIX = "reconciler"
GITHUB_API = "https://api.github.com"
# GitHub cuts a status's description at 140 characters.
MAX_DESCRIPTION = 140
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_COLOURS = {notifications.INFO: "good", notifications.ERROR: "danger"}
_STATES = {record.SUCCEEDED: "success", record.PENDING: "pending", record.FAILED: "failure"}


@dataclass(frozen=True)
class Request:
    """One HTTP request, as data."""

    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"


def request(
    provider: notifyconfig.Provider, event: notifications.Event, address: str, token: str
) -> Request | None:
    """The request `provider` sends for `event`, with its address and token as read now."""
    if provider.type == "github":
        return _github(provider, event, address, token)
    payload = {"slack": _slack, "msteams": _teams}.get(provider.type, _generic)(event)
    body = json.dumps(payload, sort_keys=True).encode()
    headers = {"Content-Type": "application/json"}
    if provider.type == "generic-hmac":
        headers[SIGNATURE_HEADER] = webhook.signature(token.encode(), body)
    return Request(address, body, headers)


def _generic(event: notifications.Event) -> dict[str, Any]:
    return {
        "kind": event.kind,
        "reason": event.reason,
        "severity": event.severity,
        "extension": event.extension,
        "revision": event.revision,
        "source": event.origin,
        "state": event.state,
        "message": event.summary,
        "details": list(event.details),
        "reportingController": CONTEXT_PREFIX,
    }


def _slack(event: notifications.Event) -> dict[str, Any]:
    attachment: dict[str, Any] = {
        "color": _COLOURS[event.severity],
        "title": event.summary,
        "fields": [
            {"title": "revision", "value": event.revision, "short": False},
            {"title": "source", "value": event.origin, "short": False},
        ],
        "mrkdwn_in": ["text"],
    }
    if event.details:
        attachment["text"] = "\n".join(f"• {line}" for line in event.details)
    return {"text": event.summary, "attachments": [attachment]}


def _teams(event: notifications.Event) -> dict[str, Any]:
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": event.summary,
            "weight": "Bolder",
            "wrap": True,
            "color": "Good" if event.severity == notifications.INFO else "Attention",
        },
        {
            "type": "FactSet",
            "facts": [
                {"title": "Extension", "value": event.extension or "-"},
                {"title": "Revision", "value": event.revision},
                {"title": "Source", "value": event.origin},
            ],
        },
        *({"type": "TextBlock", "text": line, "wrap": True} for line in event.details),
    ]
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
        ],
    }


def github_state(event: notifications.Event) -> str | None:
    """The commit status an event sets: failure for a refused revision or an unhealthy one,
    error when it could not be applied, pending while rolling out, success when healthy."""
    if event.kind == "drift":
        return None
    if event.kind == "refused":
        return "failure"
    if event.reason == "ApplyFailed":
        return "error"
    return _STATES[event.state]


def github_api(provider: notifyconfig.Provider, host: str) -> str:
    """The API's base URL: `apiURL`, else github.com's API, else GitHub Enterprise's."""
    if provider.api_url:
        return provider.api_url
    return GITHUB_API if host == "github.com" else f"https://{host}/api/v3"


def _github(
    provider: notifyconfig.Provider, event: notifications.Event, address: str, token: str
) -> Request | None:
    state = github_state(event)
    found = notifyconfig.repository(address)
    if state is None or found is None or not _COMMIT.match(event.revision):
        return None  # a work tree's revision (`-dirty`, `unversioned`) is no commit
    host, owner, repo = found
    description = event.summary
    if len(description) > MAX_DESCRIPTION:
        description = description[: MAX_DESCRIPTION - 3] + "..."
    context = f"{CONTEXT_PREFIX}/{event.extension}" if event.extension else CONTEXT_PREFIX
    status = {"state": state, "context": context, "description": description}
    if provider.target_url:
        status["target_url"] = provider.target_url
    body = json.dumps(status).encode()
    url = f"{github_api(provider, host)}/repos/{owner}/{repo}/statuses/{event.revision}"
    headers = {
        "Accept": "application/vnd.github+json",
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "X-GitHub-Api-Version": "2022-11-28",
    }
    return Request(url, body, headers)
