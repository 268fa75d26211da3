"""Who may call a deployment: key, token and none modes of the router.

The product's auth modes: `docs/domain.md#online-deployments`.

Key mode accepts the deployment's primary or secondary key as `Authorization: Bearer <key>`,
compared in constant time. Token mode accepts short-lived tokens signed with the deployment's
signing key (JWT, HS256): `exp` is the expiry and `rfa` the time after which a client should fetch
a new one (the original product's `refreshAfter`); `aud` is the deployment so that a token cannot
be replayed against another deployment that happens to share a key. `issue` makes them, as
`reconciler router token` does. No I/O: keys arrive as strings (config file, key files or the
deployment's Secret, see `from_secret`).

Checking a JWT costs tens of microseconds, a lot on the router's hot path, so valid tokens are
remembered (bounded) until they expire: a client sends the same token many times.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import jwt

from reconciler.render import auth as authsecrets

ALGORITHM = "HS256"
REFRESH_CLAIM = "rfa"
_BEARER = "bearer "
_CACHE_LIMIT = 4096


@dataclass(frozen=True)
class AccessToken:
    """What `reconciler router token` prints, shaped like the original's get-access-token."""

    access_token: str
    expiry_on: int  # unix seconds
    refresh_after: int  # unix seconds

    def as_json(self) -> dict[str, object]:
        return {
            "accessToken": self.access_token,
            "tokenType": "Bearer",
            "expiryOn": self.expiry_on,
            "refreshAfter": self.refresh_after,
        }


def issue(
    deployment: str, signing_key: str, ttl_seconds: int, now: float | None = None
) -> AccessToken:
    """A token for `deployment`, valid for `ttl_seconds`, to be refreshed after half of that."""
    if ttl_seconds <= 0:
        raise ValueError("the token lifetime must be positive")
    issued = int(time.time() if now is None else now)
    expiry = issued + ttl_seconds
    refresh = issued + max(ttl_seconds // 2, 1)
    claims = {"aud": deployment, "iat": issued, "exp": expiry, REFRESH_CLAIM: refresh}
    return AccessToken(jwt.encode(claims, signing_key, algorithm=ALGORITHM), expiry, refresh)


class Authenticator:
    """Decides whether one request's Authorization header may call one deployment."""

    def __init__(
        self,
        mode: str,
        deployment: str,
        keys: Iterable[str] = (),
        signing_key: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if mode not in ("key", "token", "none"):
            raise ValueError(f"unknown auth mode {mode!r}")
        self.mode = mode
        self.deployment = deployment
        self._keys = tuple(k.encode() for k in keys if k)
        self._signing_key = signing_key or None
        self._clock = clock
        self._valid: dict[str, float] = {}  # token -> its expiry, for tokens already checked

    def allows(self, authorization: str | None) -> bool:
        """Whether a request with this Authorization header value may call the deployment."""
        if self.mode == "none":
            return True
        if authorization is None or authorization[:7].lower() != _BEARER:
            return False
        credential = authorization[7:].strip()
        if not credential:
            return False
        if self.mode == "key":
            return self._key_matches(credential.encode())
        return self._token_valid(credential)

    def _key_matches(self, given: bytes) -> bool:
        # Compare against every key, without stopping at a match, so the time taken does not
        # tell which key (or how much of it) matched.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(given, key)
        return matched

    def _token_valid(self, token: str) -> bool:
        if self._signing_key is None:
            return False
        now = self._clock()
        expiry = self._valid.get(token)
        if expiry is not None:
            if now < expiry:
                return True
            del self._valid[token]
            return False
        try:
            claims = jwt.decode(
                token,
                self._signing_key,
                algorithms=[ALGORITHM],
                audience=self.deployment,
                # Expiry is checked below against this authenticator's clock; `iat` is
                # informational and must not depend on the wall clock either.
                options={"require": ["exp", "aud"], "verify_exp": False, "verify_iat": False},
            )
        except jwt.InvalidTokenError:
            return False
        expiry_claim = claims.get("exp")
        if not isinstance(expiry_claim, int | float) or now >= expiry_claim:
            return False
        if len(self._valid) >= _CACHE_LIMIT:
            self._valid.clear()  # crude but bounded; the next requests re-check and refill it
        self._valid[token] = float(expiry_claim)
        return True


def from_secret(deployment: str, mode: str, data: Mapping[str, str]) -> Authenticator:
    """An Authenticator from a deployment's Secret `data` (base64 values, as the API returns).

    For the in-cluster key source: primaryKey/secondaryKey in key mode, signingKey in token mode.
    """
    decoded = {name: _b64decode(value) for name, value in data.items()}
    keys = [decoded[f] for f in authsecrets.KEY_FIELDS.values() if decoded.get(f)]
    return Authenticator(mode, deployment, keys, decoded.get(authsecrets.SIGNING_KEY_FIELD))


def _b64decode(value: str) -> str:
    try:
        return base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return ""
