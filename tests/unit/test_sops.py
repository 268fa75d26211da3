"""SOPS decryption (`model.sops`, `model.decryption`) against files the real `sops` encrypted.

A PEM key in SOPS's binary store, a whole YAML manifest, a Flux-style `encrypted_regex` Secret:
each decrypts to exactly what was encrypted. A wrong key, no key and every kind of tampering (a
value, the MAC, a value swapped to another key) are rejected with a `FILE:LINE` problem and no
plaintext, and a repo with such a file is invalid (so nothing of it is applied).
"""

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from reconciler import objects, source
from reconciler.cli import main as cli
from reconciler.model import decryption, repo, sops
from tests.helpers import commit_all, extension, self_signed_pem, write_repo
from tests.sopsfixtures import AgeKey, age_key, encrypt

HTTPS = "enableInference: true\ninferenceRouterServiceType: NodePort\nsslCname: ml.example.com\n"
PROTECTED = "sslCertPemFile: certs/cert.pem\nsslKeyPemFile: certs/key.pem"


@pytest.fixture(scope="module")
def key() -> AgeKey:
    return age_key()


def _ids(key: AgeKey) -> list[sops.Identity]:
    return sops.parse_identities(key.identity)


def test_binary_pem_round_trip(tmp_path: Path, key: AgeKey) -> None:
    _, pem = self_signed_pem()
    target = tmp_path / "key.pem"
    target.write_bytes(pem)
    encrypt(target, key)
    encrypted = target.read_bytes()
    assert pem not in encrypted and sops.is_encrypted("key.pem", encrypted)
    assert sops.decrypt("key.pem", encrypted, _ids(key)) == pem


def test_yaml_manifest_round_trip_keeps_types_and_lines(tmp_path: Path, key: AgeKey) -> None:
    text = (
        "kind: Thing\nmetadata:\n  name: x\nspec:\n  count: 5\n  ratio: 1.5\n  on: true\n"
        "  items: [a, 2]\n  pem: |\n    line1\n    line2\n  empty: ''\n"
    )
    target = tmp_path / "thing.yaml"
    target.write_text(text)
    encrypt(target, key)
    plain = sops.decrypt("thing.yaml", target.read_bytes(), _ids(key)).decode()
    import yaml

    assert yaml.safe_load(plain) == yaml.safe_load(text)
    assert "sops" not in yaml.safe_load(plain)


def test_flux_style_encrypted_regex(tmp_path: Path, key: AgeKey) -> None:
    target = tmp_path / "secret.yaml"
    target.write_text("apiVersion: v1\nkind: Secret\nstringData:\n  token: s3cr3t-value\n")
    encrypt(target, key, extra=("--encrypted-regex", "^(data|stringData)$"))
    assert "kind: Secret" in target.read_text() and "s3cr3t-value" not in target.read_text()
    plain = sops.decrypt("secret.yaml", target.read_bytes(), _ids(key)).decode()
    assert "token: s3cr3t-value" in plain


def test_values_left_in_clear_count_in_the_mac_as_sops_writes_them(
    tmp_path: Path, key: AgeKey
) -> None:
    """With encrypted_regex most values stay in clear text, and sops's MAC covers them in Go's
    spelling (True/False, shortest floats): the MAC computed here must agree."""
    target = tmp_path / "mixed.yaml"
    target.write_text(
        "on: true\noff: false\ncount: 7\nratio: 0.25\nbig: 1.0e+20\nwhole: 5.0\n"
        "tiny: 1.0e-07\nname: plain\nsecret:\n  token: hidden\n"
    )
    encrypt(target, key, extra=("--encrypted-regex", "^secret$"))
    assert "hidden" not in target.read_text()
    plain = sops.decrypt("mixed.yaml", target.read_bytes(), _ids(key)).decode()
    assert "token: hidden" in plain


def test_json_store_round_trip(tmp_path: Path, key: AgeKey) -> None:
    document = {"a": "x", "n": 3, "f": 2.5, "b": False, "list": ["y", {"z": 1}], "none": None}
    target = tmp_path / "values.json"
    target.write_text(json.dumps(document))
    encrypt(target, key)
    assert json.loads(sops.decrypt("values.json", target.read_bytes(), _ids(key))) == document


def test_one_of_several_recipients_is_enough(tmp_path: Path, key: AgeKey) -> None:
    target = tmp_path / "key.pem"
    target.write_bytes(b"-----BEGIN X-----\n")
    other = age_key()
    encrypt(target, other, key)
    assert sops.decrypt("key.pem", target.read_bytes(), _ids(key)) == b"-----BEGIN X-----\n"


def _tamper_value(text: str) -> str:
    """Flip one character of the first encrypted payload (still valid base64)."""
    match = re.search(r"ENC\[AES256_GCM,data:([A-Za-z0-9+/]{4})", text)
    assert match is not None
    old = match.group(1)
    new = ("B" if old[0] != "B" else "C") + old[1:]
    return text.replace(f"data:{old}", f"data:{new}", 1)


def test_tampering_is_rejected(tmp_path: Path, key: AgeKey) -> None:
    target = tmp_path / "thing.yaml"
    target.write_text("a: one\nb: two\n")
    encrypt(target, key)
    text = target.read_text()
    tampered_value = _tamper_value(text)
    with pytest.raises(sops.SopsError, match="the value at a does not decrypt") as raised:
        sops.decrypt("thing.yaml", tampered_value.encode(), _ids(key))
    assert raised.value.line == 1  # the line of the tampered value's key
    # Two values swapped: each is bound to its key path (the additional data), so neither opens.
    lines = text.splitlines()
    a, b = lines[0].split(": ", 1)[1], lines[1].split(": ", 1)[1]
    swapped = text.replace(a, "@A@").replace(b, a).replace("@A@", b)
    with pytest.raises(sops.SopsError, match="tampered with or moved"):
        sops.decrypt("thing.yaml", swapped.encode(), _ids(key))
    # A value removed: every remaining value decrypts, the MAC does not match.
    removed = "\n".join(line for line in lines if not line.startswith("b:")) + "\n"
    with pytest.raises(sops.SopsError, match="MAC mismatch"):
        sops.decrypt("thing.yaml", removed.encode(), _ids(key))


def test_wrong_and_missing_keys(tmp_path: Path, key: AgeKey) -> None:
    target = tmp_path / "key.pem"
    target.write_bytes(b"secret material\n")
    encrypt(target, key)
    with pytest.raises(sops.SopsError, match="no given age identity is one of its recipients"):
        sops.decrypt("key.pem", target.read_bytes(), _ids(age_key()))
    with pytest.raises(sops.SopsError, match="no age identity was given"):
        sops.decrypt("key.pem", target.read_bytes(), [])


def test_a_bad_key_file_names_the_line_not_the_content() -> None:
    with pytest.raises(sops.SopsError) as raised:
        sops.parse_identities("# comment\nAGE-SECRET-KEY-NOT-A-KEY\n")
    assert raised.value.message == "line 2 is not an age identity (AGE-SECRET-KEY-1...)"


def _https_repo(tmp_path: Path, key: AgeKey) -> tuple[Path, bytes]:
    cert, pem = self_signed_pem()
    root = write_repo(
        tmp_path / "repo",
        {
            "extension.yaml": extension(HTTPS, protected=PROTECTED),
            "certs/cert.pem": cert,
            "certs/key.pem": pem,
        },
    )
    encrypt(root / "certs/key.pem", key)
    return root, pem


def _secret_data(rendered: list[objects.Object]) -> dict[str, str]:
    (secret,) = [o for o in rendered if o["kind"] == "Secret"]
    return dict(secret["data"])


def test_an_encrypted_tls_key_renders_into_the_router_secret(tmp_path: Path, key: AgeKey) -> None:
    from reconciler.render import render

    root, pem = _https_repo(tmp_path, key)
    snapshot = decryption.DecryptingSnapshot(source.DirectorySnapshot(root), _ids(key))
    loaded = repo.load(snapshot)
    assert loaded.valid, [str(p) for p in loaded.problems]
    rendered = render.render_repo(loaded.repo, snapshot, "unversioned").objects
    import base64

    assert base64.b64decode(_secret_data(rendered)["key.pem"]) == pem


def test_wrong_key_missing_key_and_tampering_are_file_line_problems(
    tmp_path: Path, key: AgeKey
) -> None:
    root, _ = _https_repo(tmp_path, key)
    where = f"{root}/extension.yaml:13: spec.configProtected.sslKeyPemFile: the file it names"
    for identities, message in (
        ([], "is SOPS-encrypted and no age identity was given"),
        (_ids(age_key()), "no given age identity is one of its recipients"),
    ):
        loaded = repo.load(
            decryption.DecryptingSnapshot(source.DirectorySnapshot(root), identities)
        )
        assert not loaded.valid
        assert [str(p) for p in loaded.errors] == [f"{where}: {message}" + _suffix(message, key)]
    stored = json.loads((root / "certs/key.pem").read_text())
    stored["data"] = _tamper_value(stored["data"])
    (root / "certs/key.pem").write_text(json.dumps(stored))
    loaded = repo.load(decryption.DecryptingSnapshot(source.DirectorySnapshot(root), _ids(key)))
    assert [str(p) for p in loaded.errors] == [
        f"{where}: the value at data does not decrypt: the file was tampered with or moved "
        "after encryption"
    ]


def _suffix(message: str, key: AgeKey) -> str:
    if "recipients" in message:
        return f" ({key.recipient})"
    return (
        " (--decryption-key FILE, SOPS_AGE_KEY_FILE or SOPS_AGE_KEY; the controller's "
        "--decryption-secret)"
    )


def test_an_encrypted_manifest_is_read_decrypted(tmp_path: Path, key: AgeKey) -> None:
    root = write_repo(tmp_path / "repo", {"ext.yaml": extension("enableTraining: true")})
    encrypt(root / "ext.yaml", key, extra=("--encrypted-regex", "^(config)$"))
    plain = decryption.DecryptingSnapshot(source.DirectorySnapshot(root), _ids(key))
    loaded = repo.load(plain)
    assert loaded.valid and loaded.repo.extensions["azureml-extension"].settings.training
    without = repo.load(source.DirectorySnapshot(root))
    (problem,) = without.errors
    assert problem.file == f"{root}/ext.yaml" and problem.line > 0
    assert "no age identity was given" in problem.message


def test_no_plaintext_in_any_output(tmp_path: Path, key: AgeKey) -> None:
    """validate (text, json), render (yaml, json, --out-dir) and a failed run: the key's
    PEM body never appears, in full or in part."""
    root, pem = _https_repo(tmp_path, key)
    key_file = key.write(tmp_path / "age.txt")
    body = [line for line in pem.decode().splitlines() if "-----" not in line]
    runner = CliRunner()
    runs = [
        ["validate", str(root), "--decryption-key", str(key_file)],
        ["validate", str(root), "--decryption-key", str(key_file), "-o", "json"],
        ["render", str(root), "--decryption-key", str(key_file)],
        ["render", str(root), "--decryption-key", str(key_file), "-o", "json"],
        ["render", str(root), "--decryption-key", str(key_file), "--out-dir", str(tmp_path / "o")],
        [
            "render",
            str(root),
            "--decryption-key",
            str(key_file),
            "--show-secrets",
            "--out-dir",
            str(tmp_path / "o2"),
        ],
        ["validate", str(root)],
        ["render", str(root)],
    ]
    for args in runs:
        result = runner.invoke(cli.main, args)
        assert result.exit_code in (0, 1, 2), result.output
        if "--show-secrets" in args:
            assert result.exit_code == 2 and "--show-secrets would write" in result.output
            assert not (tmp_path / "o2").exists()
        for line in body:
            assert line not in result.output, args
    for written in (tmp_path / "o").rglob("*"):
        if written.is_file():
            assert not any(line in written.read_text() for line in body)
    assert (
        "<redacted>"
        in runner.invoke(cli.main, ["render", str(root), "--decryption-key", str(key_file)]).output
    )


def test_diff_shows_a_changed_encrypted_key_by_key_never_by_value(
    tmp_path: Path, key: AgeKey
) -> None:
    """Two commits, the encrypted TLS key rotated between them: `reconciler diff` reports the
    router Secret's key.pem as changed (redacted) with the key and without it (then with a
    note saying what it could not compare), in every format, and no PEM line of either key."""
    root, old_pem = _https_repo(tmp_path, key)
    commit_all(root, "first")
    cert, new_pem = self_signed_pem()
    (root / "certs/cert.pem").write_bytes(cert)
    (root / "certs/key.pem").write_bytes(new_pem)
    encrypt(root / "certs/key.pem", key)
    commit_all(root, "rotated")
    key_file = key.write(tmp_path / "age.txt")
    body = [
        line
        for pem in (old_pem, new_pem)
        for line in pem.decode().splitlines()
        if "-----" not in line
    ]
    runner = CliRunner()
    for with_key in (True, False):
        for fmt in ("text", "markdown", "json"):
            args = ["diff", str(root), "--base", "HEAD~1", "--head", "HEAD", "-o", fmt]
            result = runner.invoke(
                cli.main, args + (["--decryption-key", str(key_file)] if with_key else [])
            )
            assert result.exit_code == 1, result.output
            assert "Secret" in result.output and "azureml-fe-v2-tls" in result.output
            assert "<redacted: changed>" in result.output
            assert not any(line in result.output for line in body), (with_key, fmt)
            noted = "is SOPS-encrypted and no decryption key was given" in result.output
            assert noted is not with_key


@pytest.fixture(autouse=True)
def _no_key_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOPS_AGE_KEY", raising=False)
    monkeypatch.delenv("SOPS_AGE_KEY_FILE", raising=False)


def test_the_key_from_the_environment_as_sops_reads_it(
    tmp_path: Path, key: AgeKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = _https_repo(tmp_path, key)
    runner = CliRunner()
    assert runner.invoke(cli.main, ["validate", str(root)]).exit_code == 1
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(key.write(tmp_path / "keys.txt")))
    assert runner.invoke(cli.main, ["validate", str(root)]).exit_code == 0
    monkeypatch.delenv("SOPS_AGE_KEY_FILE")
    monkeypatch.setenv("SOPS_AGE_KEY", key.identity)
    assert runner.invoke(cli.main, ["validate", str(root)]).exit_code == 0


def test_other_key_sources_are_refused_by_name(tmp_path: Path, key: AgeKey) -> None:
    """A file whose data key is only for PGP or KMS (its age entry replaced here, since no
    PGP or KMS is reachable from the tests) is refused saying only age is supported."""
    target = tmp_path / "key.pem"
    target.write_bytes(b"x\n")
    encrypt(target, key)
    stored = json.loads(target.read_text())
    age = stored["sops"].pop("age")
    stored["sops"]["pgp"] = [{"fp": "0000", "enc": age[0]["enc"]}]
    stored["sops"]["kms"] = [{"arn": "arn:aws:kms:x", "enc": "e30="}]
    with pytest.raises(sops.SopsError) as raised:
        sops.decrypt("key.pem", json.dumps(stored).encode(), _ids(key))
    assert raised.value.message == (
        "is encrypted for pgp, kms, not for age: only age recipients are supported"
    )


def test_a_memo_keeps_an_encrypted_manifest_as_a_load_without_it_would(
    tmp_path: Path, key: AgeKey
) -> None:
    """A file kept by its ciphertext's id is not parsed again, yet the snapshot still holds
    its plaintext (`decrypted()`), and a file that could not be decrypted keeps its problem."""
    from reconciler.model import memo

    root = write_repo(tmp_path / "repo", {"ext.yaml": extension("enableTraining: true")})
    encrypt(root / "ext.yaml", key, extra=("--encrypted-regex", "^(config)$"))
    shared = memo.Memo()
    for identities in (_ids(key), _ids(key)):
        plain = decryption.DecryptingSnapshot(source.DirectorySnapshot(root), identities)
        loaded = repo.load(plain, shared)
        alone = decryption.DecryptingSnapshot(source.DirectorySnapshot(root), identities)
        assert repr(loaded) == repr(repo.load(alone))
        assert plain.decrypted() == alone.decrypted() == ["ext.yaml"]
    assert shared.hits == 1
    failing = memo.Memo()
    for _ in range(2):
        without = repo.load(source.DirectorySnapshot(root), failing)
        assert repr(without) == repr(repo.load(source.DirectorySnapshot(root)))
        assert "no age identity was given" in without.errors[0].message
    assert failing.hits == 1
