"""Push-event webhooks for `reconciler sync`: is this request really from the git host?

GitHub (and Gitea, Forgejo, GitLab-compatible setups configured the same way) sign the request
body with a shared secret: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`. A
request without a valid signature is rejected, so nobody on the network can make the controller
fetch at will; a valid one only *triggers* a fetch (the controller still reads the repo itself,
so a forged payload could never change what is applied). Pure: bytes in, a verdict out.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass

SIGNATURE_HEADER = "X-Hub-Signature-256"
EVENT_HEADER = "X-GitHub-Event"
_PREFIX = "sha256="


def signature(secret: bytes, body: bytes) -> str:
    """The header value a git host sends for `body` (what a test or a relay signs with)."""
    return _PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verified(secret: bytes, body: bytes, header: str | None) -> bool:
    """True when `header` is the body's signature under `secret` (constant-time compare)."""
    if not secret or not header or not header.startswith(_PREFIX):
        return False
    return hmac.compare_digest(signature(secret, body), header.strip())


@dataclass(frozen=True)
class Verdict:
    """What to answer and whether to fetch now."""

    status: int
    message: str
    trigger: bool


def judge(secret: bytes, body: bytes, headers: dict[str, str], ref: str | None) -> Verdict:
    """A webhook request -> the response. `ref` is the branch or tag the loop follows (None:
    any push triggers). A ping (sent when the hook is created) is acknowledged; a push to
    another ref is accepted but ignored."""
    lowered = {k.lower(): v for k, v in headers.items()}
    if not verified(secret, body, lowered.get(SIGNATURE_HEADER.lower())):
        return Verdict(401, "missing or invalid X-Hub-Signature-256", False)
    event = lowered.get(EVENT_HEADER.lower(), "push")
    if event == "ping":
        return Verdict(200, "pong", False)
    if event != "push":
        return Verdict(202, f"ignored event {event!r}", False)
    try:
        pushed = str(json.loads(body or b"{}").get("ref", ""))
    except (ValueError, AttributeError):
        return Verdict(400, "the body is not a JSON object", False)
    if ref and pushed and pushed not in (ref, f"refs/heads/{ref}", f"refs/tags/{ref}"):
        return Verdict(202, f"ignored a push to {pushed}", False)
    return Verdict(202, "fetching", True)
