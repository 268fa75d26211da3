"""Push-event webhooks for `reconciler sync`: is this request really from the git host, and is it
new?

GitHub (and Gitea, Forgejo, GitLab-compatible setups configured the same way) sign the request
body with a shared secret: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`. A
request without a valid signature is rejected, so nobody on the network can make the controller
fetch at will; a valid one only *triggers* a fetch (the controller still reads the repo itself,
so a forged payload could never change what is applied). A delivery the loop already acted on (a
redelivery: the same `X-GitHub-Delivery` ID) is answered without a second fetch for an hour
(`Deliveries`, bounded). Bodies are not de-duplicated: a relay or a CI step that sends the same
body after every push must keep triggering, and a replayed signed body can do no more than a
fetch the loop would make on its next tick anyway. `judge` is pure apart from that
record: bytes and headers in, a verdict out; any body (not JSON, not an object, nested too deep
for the parser) is a 4xx verdict, never an exception. The HTTP framing (how much of a body is
read at all) is `httpserver`'s.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

SIGNATURE_HEADER = "X-Hub-Signature-256"
EVENT_HEADER = "X-GitHub-Event"
DELIVERY_HEADER = "X-GitHub-Delivery"
_PREFIX = "sha256="


def signature(secret: bytes, body: bytes) -> str:
    """The header value a git host sends for `body` (what a test or a relay signs with)."""
    return _PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verified(secret: bytes, body: bytes, header: str | None) -> bool:
    """True when `header` is the body's signature under `secret` (constant-time compare)."""
    if not secret or not header or not header.startswith(_PREFIX):
        return False
    return hmac.compare_digest(signature(secret, body), header.strip())


class Deliveries:
    """The deliveries that triggered a fetch in the last `window` seconds, at most `capacity` of
    them (the oldest are forgotten first), so that memory stays bounded whatever is sent.
    Thread-safe: requests are judged on a small pool of worker threads."""

    def __init__(
        self,
        window: float = 3600.0,
        capacity: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window = window
        self._capacity = capacity
        self._clock = clock
        self._seen: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def first_time(self, delivery: str) -> bool:
        """Record a delivery's ID; False when it was recorded within the window (then it is not
        recorded again: the window runs from the first receipt)."""
        with self._lock:
            now = self._clock()
            # Insertion order is time order, so the expired ones are at the front.
            while self._seen and next(iter(self._seen.values())) <= now - self._window:
                self._seen.popitem(last=False)
            if delivery in self._seen:
                return False
            self._seen[delivery] = now
            while len(self._seen) > self._capacity:
                self._seen.popitem(last=False)
            return True


@dataclass(frozen=True)
class Verdict:
    """What to answer and whether to fetch now."""

    status: int
    message: str
    trigger: bool


def _pushed_ref(body: bytes) -> str | None:
    """The `ref` of a push payload ("" when it names none); None when the body is not a JSON
    object with a string `ref`. RecursionError is how the parser refuses deep nesting."""
    try:
        payload = json.loads(body or b"{}")
    except (ValueError, RecursionError):
        return None
    if not isinstance(payload, dict):
        return None
    ref = payload.get("ref", "")
    return ref if isinstance(ref, str) else None


def judge(
    secret: bytes,
    body: bytes,
    headers: dict[str, str],
    ref: str | None,
    deliveries: Deliveries | None = None,
) -> Verdict:
    """A webhook request -> the response. `ref` is the branch or tag the loop follows (None:
    any push triggers). A ping (sent when the hook is created) is acknowledged; a push to
    another ref is accepted but ignored; with `deliveries`, a delivery already acted on is
    acknowledged without a fetch. Only a signed request is recorded there, so an unsigned one
    cannot use up a real delivery's ID."""
    lowered = {k.lower(): v for k, v in headers.items()}
    header = lowered.get(SIGNATURE_HEADER.lower())
    if not verified(secret, body, header):
        return Verdict(401, "missing or invalid X-Hub-Signature-256", False)
    event = lowered.get(EVENT_HEADER.lower(), "push")
    if event == "ping":
        return Verdict(200, "pong", False)
    if event != "push":
        return Verdict(202, f"ignored event {event!r}", False)
    pushed = _pushed_ref(body)
    if pushed is None:
        return Verdict(400, "the body is not a JSON object with a string ref", False)
    if ref and pushed and pushed not in (ref, f"refs/heads/{ref}", f"refs/tags/{ref}"):
        return Verdict(202, f"ignored a push to {pushed}", False)
    delivery = lowered.get(DELIVERY_HEADER.lower(), "").strip()
    if deliveries is not None and delivery and not deliveries.first_time(delivery):
        return Verdict(200, "already received: no second fetch", False)
    return Verdict(202, "fetching", True)
