"""Key, token and none auth, and the `reconciler router token` command."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import jwt
import yaml
from click.testing import CliRunner

from reconciler.cli import main as cli
from reconciler.cli import router as routercli
from reconciler.router import tokens

NOW = 1_800_000_000.0
# HS256 keys of at least 32 bytes, as the generated Secrets hold (PyJWT warns on shorter ones).
KEY = "k" * 43
OTHER = "o" * 43


def test_key_mode_accepts_either_key() -> None:
    auth = tokens.Authenticator("key", "d", ["primary-key", "secondary-key"])
    assert auth.allows("Bearer primary-key")
    assert auth.allows("bearer secondary-key")
    assert not auth.allows("Bearer primary-ke")
    assert not auth.allows("Bearer ")
    assert not auth.allows("primary-key")
    assert not auth.allows("Basic primary-key")
    assert not auth.allows(None)


def test_key_mode_without_keys_accepts_nothing() -> None:
    assert not tokens.Authenticator("key", "d", []).allows("Bearer ")
    assert not tokens.Authenticator("key", "d", [""]).allows("Bearer x")


def test_none_mode_accepts_everything() -> None:
    assert tokens.Authenticator("none", "d").allows(None)


def test_token_mode_checks_signature_audience_and_expiry() -> None:
    clock = [NOW]
    auth = tokens.Authenticator("token", "d", signing_key=KEY, clock=lambda: clock[0])
    issued = tokens.issue("d", KEY, 3600, now=NOW)
    assert auth.allows(f"Bearer {issued.access_token}")
    assert issued.expiry_on == int(NOW) + 3600
    assert issued.refresh_after == int(NOW) + 1800
    assert not auth.allows(f"Bearer {tokens.issue('d', OTHER, 3600, now=NOW).access_token}")
    assert not auth.allows(f"Bearer {tokens.issue('e', KEY, 3600, now=NOW).access_token}")
    assert not auth.allows("Bearer not.a.jwt")
    # Still valid a second before expiry (from the cache), refused from expiry on.
    clock[0] = NOW + 3599
    assert auth.allows(f"Bearer {issued.access_token}")
    clock[0] = NOW + 3600
    assert not auth.allows(f"Bearer {issued.access_token}")
    assert not auth.allows(f"Bearer {issued.access_token}")


def test_an_expired_token_is_refused_on_first_sight() -> None:
    auth = tokens.Authenticator("token", "d", signing_key=KEY, clock=lambda: NOW + 10)
    assert not auth.allows(f"Bearer {tokens.issue('d', KEY, 5, now=NOW).access_token}")


def test_tokens_carry_a_refresh_time() -> None:
    issued = tokens.issue("d", KEY, 600, now=NOW)
    claims = jwt.decode(
        issued.access_token,
        KEY,
        algorithms=["HS256"],
        audience="d",
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims[tokens.REFRESH_CLAIM] == issued.refresh_after


def test_token_mode_without_a_signing_key_accepts_nothing() -> None:
    token = tokens.issue("d", KEY, 600).access_token
    assert not tokens.Authenticator("token", "d").allows(f"Bearer {token}")


def test_from_secret_reads_the_secret_fields() -> None:
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    auth = tokens.from_secret("d", "key", {"primaryKey": b64("one"), "secondaryKey": b64("two")})
    assert auth.allows("Bearer one") and auth.allows("Bearer two")
    signed = tokens.from_secret("d", "token", {"signingKey": b64(KEY)})
    assert signed.allows(f"Bearer {tokens.issue('d', KEY, 60).access_token}")
    assert not tokens.from_secret("d", "key", {"primaryKey": "%%%"}).allows("Bearer %%%")


def test_token_command_prints_a_usable_token(tmp_path: Path) -> None:
    key_file = tmp_path / "signing"
    key_file.write_text(KEY + "\n")
    result = CliRunner().invoke(
        cli.main,
        ["router", "token", "d", "--signing-key-file", str(key_file),
         "--ttl", "30m"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert set(printed) >= {"accessToken", "expiryOn", "refreshAfter"}
    assert printed["expiryOn"] - printed["refreshAfter"] == 900
    assert tokens.Authenticator("token", "d", signing_key=KEY).allows(
        f"Bearer {printed['accessToken']}"
    )


def test_token_command_makes_an_endpoints_token_for_one_name(tmp_path: Path) -> None:
    key_file = tmp_path / "signing"
    key_file.write_text(KEY)
    args = ["router", "token", "--signing-key-file", str(key_file)]
    result = CliRunner().invoke(cli.main, [*args, "mnist", "-o", "yaml"])
    assert result.exit_code == 0, result.output
    token = yaml.safe_load(result.output)["accessToken"]
    assert tokens.Authenticator("token", "mnist", signing_key=KEY).allows(f"Bearer {token}")
    assert not tokens.Authenticator("token", "d", signing_key=KEY).allows(f"Bearer {token}")
    for extra in ([], ["mnist", "d"]):
        result = CliRunner().invoke(cli.main, [*args, *extra])
        assert result.exit_code == 2, result.output


def test_token_command_rejects_a_bad_ttl(tmp_path: Path) -> None:
    key_file = tmp_path / "signing"
    key_file.write_text(KEY)
    result = CliRunner().invoke(
        cli.main,
        ["router", "token", "d", "--signing-key-file", str(key_file),
         "--ttl", "soon"],
    )  # fmt: skip
    assert result.exit_code == 2


def test_durations() -> None:
    assert routercli.parse_duration("3600") == 3600
    assert routercli.parse_duration("90s") == 90
    assert routercli.parse_duration("30m") == 1800
    assert routercli.parse_duration("1h") == 3600
    assert routercli.parse_duration("2d") == 172800
    assert routercli.parse_duration("1w") is None
