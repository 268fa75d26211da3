"""Protected settings are kept out of every message by their place, not by matching their text.

Whatever a value under `spec.configProtected` holds (a path that normalises to another text, a
PEM pasted in place of a path, a key's DER body in base64, a value of the wrong type, a bad
`secretRef`), no problem message quotes it; a value shaped like key material where a path
belongs is refused as such. The cluster side (record, Event, `status`) is in
`tests/cluster/test_secrets_on_cluster.py`.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler.cli import main as cli
from reconciler.model import settings
from tests.helpers import extension, self_signed_pem, write_repo

F = "ext.yaml"
MARKER = "hunter2"
_, PEM = self_signed_pem()
PEM_TEXT = PEM.decode()
DER_BODY = "".join(line for line in PEM_TEXT.splitlines() if "-----" not in line)
HTTPS = "enableInference: true\ninferenceRouterServiceType: ClusterIP\nsslCname: a.example.com"


def validate(tmp_path: Path, protected_key_value: object) -> str:
    """`reconciler validate` output for a repo whose sslKeyPemFile is the given YAML value."""
    key_line = "sslKeyPemFile: " + json.dumps(protected_key_value)  # JSON is YAML
    text = extension(HTTPS, protected=f"sslCertPemFile: cert.pem\n{key_line}")
    root = write_repo(tmp_path, {F: text, "cert.pem": self_signed_pem()[0]})
    result = CliRunner().invoke(cli.main, ["validate", str(root)])
    assert result.exit_code == 1, result.output
    assert f"{F}:13: spec.configProtected.sslKeyPemFile" in result.output
    return result.output


def leaked(output: str, value: str) -> bool:
    return MARKER in output or any(
        line in output for line in value.splitlines() if len(line) > 8 and "-----" not in line
    )


@pytest.mark.parametrize(
    "value",
    [
        f"certs//{MARKER}.pem",
        f"certs/./{MARKER}.pem",
        f"../../{MARKER}.pem",
        f"/etc/{MARKER}.pem",
        PEM_TEXT,
        DER_BODY,
        "x" * 5000 + MARKER,
    ],
    ids=["double-slash", "dot", "outside", "absolute", "pem", "der-base64", "huge"],
)
def test_no_message_quotes_a_protected_string(tmp_path: Path, value: str) -> None:
    assert not leaked(validate(tmp_path, value), value)


@pytest.mark.parametrize(
    "value",
    [
        [MARKER, PEM_TEXT],
        {"secretRef": {"name": "my-tls", "key": f"{MARKER} {MARKER}"}},
        {"secretRef": {"name": "my-tls"}, MARKER: PEM_TEXT},
        {"secretRef": {"name": "my-tls", "key": ["k", MARKER]}},
    ],
    ids=["list", "bad-key", "extra-field", "key-not-a-string"],
)
def test_no_schema_message_quotes_a_protected_value(tmp_path: Path, value: object) -> None:
    output = validate(tmp_path, value)
    assert PEM_TEXT.splitlines()[1] not in output
    assert f"{MARKER} {MARKER}" not in output and f"'{MARKER}'" not in output


@pytest.mark.parametrize("value", [PEM_TEXT, DER_BODY], ids=["pem", "der-base64"])
def test_key_material_where_a_path_belongs_is_refused_by_its_shape(
    tmp_path: Path, value: str
) -> None:
    output = validate(tmp_path, value)
    assert "sslKeyPemFile: holds key material, not a path (the value is not shown)" in output


@pytest.mark.parametrize(
    "value",
    ["certs/key.pem", "tls/" + "a1b2c3d4" * 8 + ".pem", "secrets/production/eu-west/tls/key"],
)
def test_paths_are_not_mistaken_for_key_material(value: str) -> None:
    assert not settings.looks_like_key_material(value)


def test_a_base64_path_that_is_not_der_is_a_path() -> None:
    not_der = base64.b64encode(b"\x04" + bytes(60)).decode()
    assert len(not_der) >= 64 and not settings.looks_like_key_material(not_der)
    assert settings.looks_like_key_material(DER_BODY)
