"""SOPS-encrypted files, decrypted in memory with age identities (decryption only).

The SOPS file format: a YAML or JSON document whose keys stay in clear text and whose values are
`ENC[AES256_GCM,data:...,iv:...,tag:...,type:...]`, with a top-level `sops` map of metadata;
any other file (a PEM key) is SOPS's "binary" store, a JSON document `{"data": ENC[...], "sops":
{...}}`. Like `sops` itself, the store is chosen by the file's extension (`.yaml` / `.yml`,
`.json`, anything else binary). The 32-byte data key is age-encrypted once per recipient
(`sops.age[].enc`); each value is AES-256-GCM with the data key, its key path (`a:b:`) as
additional data; the MAC is the SHA-512 of every value in document order (comments excepted),
AES-GCM-encrypted with `lastmodified` as additional data. Decryption verifies the MAC, so a
value edited, added, removed or moved after encryption is rejected.

Supported: age recipients (x25519 identities, through `pyrage`), `unencrypted_suffix`,
`encrypted_suffix`, `unencrypted_regex`, `encrypted_regex`, `mac_only_encrypted`, several YAML
documents in one file. Not supported, rejected with a message saying so: PGP, AWS/GCP KMS,
Azure Key Vault and Vault transit key sources, Shamir key groups (`key_groups`), comment-regex
rules, and the dotenv / INI stores.

Its libraries (pyrage, cryptography's AES-GCM, ruamel's round-trip YAML) are imported where a
file turns out to be encrypted: a command over a repository with no secrets in it, the common
case, never loads them and does not pay for importing them at start-up.

Pure: bytes and identities in, bytes out. Every message in a `SopsError` is safe to print: it
names what failed, never a byte of the plaintext or of a key.
"""

from __future__ import annotations

import base64
import binascii
import decimal
import hashlib
import io
import json
import posixpath
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

_ENC = re.compile(r"^ENC\[AES256_GCM,data:(.*),iv:(.+),tag:(.+),type:(.+)\]$")
_AGE_ARMOR = re.compile(
    r"-----BEGIN AGE ENCRYPTED FILE-----(.*?)-----END AGE ENCRYPTED FILE-----", re.S
)
# sops' constant prefix of the MAC when only encrypted values are authenticated.
_MAC_ONLY_ENCRYPTED_INIT = hashlib.sha256(b"sops").digest()
_OTHER_KEY_SOURCES = ("pgp", "kms", "gcp_kms", "azure_kv", "hc_vault", "key_groups")
YAML_SUFFIXES = (".yaml", ".yml")

# A pyrage x25519 identity (pyrage ships no type hints).
Identity: TypeAlias = Any


class SopsError(Exception):
    """Why an encrypted file cannot be used; `line` is where in the file (0: the whole file)."""

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def parse_identities(text: str) -> list[Identity]:
    """The age identities of a key file (`age-keygen`'s format: `AGE-SECRET-KEY-1...` lines,
    `#` comments). A line that is not an identity is an error (without the line)."""
    import pyrage

    found: list[Identity] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            found.append(pyrage.x25519.Identity.from_str(line))
        except pyrage.IdentityError:
            raise SopsError(f"line {number} is not an age identity (AGE-SECRET-KEY-1...)") from None
    return found


def is_encrypted(path: str, data: bytes) -> bool:
    """`data` is a SOPS-encrypted file (it has SOPS metadata with a MAC)."""
    if b"sops" not in data or b"mac" not in data:
        return False
    try:
        tree = _load(path, data)
    except SopsError:
        return False
    return tree is not None


@dataclass(frozen=True)
class _Tree:
    store: str  # yaml | json | binary
    documents: list[Any]  # each with its `sops` key removed
    metadata: dict[str, Any]
    metadata_line: int


def _load(path: str, data: bytes) -> _Tree | None:
    store = _store_of(path)
    if store == "yaml":
        from ruamel.yaml import YAML
        from ruamel.yaml.comments import CommentedMap

        yaml = YAML(typ="rt")
        try:
            docs = [d for d in yaml.load_all(io.BytesIO(data)) if d is not None]
        except Exception:
            return None
        if not docs or not all(isinstance(d, CommentedMap) and "sops" in d for d in docs):
            return None
        metadata = docs[0]["sops"]
        line = docs[0].lc.key("sops")[0] + 1
        for doc in docs:
            del doc["sops"]
    else:
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(doc, dict) or "sops" not in doc:
            return None
        metadata = doc.pop("sops")
        docs, line = [doc], 0
        if store == "binary" and set(doc) != {"data"}:
            return None
    if not isinstance(metadata, dict) or "mac" not in metadata:
        return None
    return _Tree(store, docs, dict(metadata), line)


def _store_of(path: str) -> str:
    suffix = posixpath.splitext(path)[1].lower()
    if suffix in YAML_SUFFIXES:
        return "yaml"
    return "json" if suffix == ".json" else "binary"


def decrypt(path: str, data: bytes, identities: Sequence[Identity]) -> bytes:
    """The plaintext of the SOPS file `data` (at `path`, whose extension picks the store), or
    `SopsError` when it is not one, no identity opens it, or its MAC does not verify."""
    tree = _load(path, data)
    if tree is None:
        raise SopsError("is not a SOPS-encrypted file (no sops metadata with a mac)")
    line = tree.metadata_line
    data_key = _data_key(tree.metadata, identities, line)
    rules = _Rules.of(tree.metadata, line)
    digest = hashlib.sha512()
    if tree.metadata.get("mac_only_encrypted"):
        digest.update(_MAC_ONLY_ENCRYPTED_INIT)
    decrypted = [_walk(doc, [], data_key, rules, digest) for doc in tree.documents]
    _verify_mac(tree.metadata, data_key, digest.hexdigest().upper(), line)
    return _emit(tree.store, decrypted)


def _data_key(metadata: dict[str, Any], identities: Sequence[Identity], line: int) -> bytes:
    recipients = metadata.get("age") or []
    if not recipients:
        others = [k for k in _OTHER_KEY_SOURCES if metadata.get(k)]
        what = ", ".join(others) or "no key source"
        raise SopsError(
            f"is encrypted for {what}, not for age: only age recipients are supported", line
        )
    if not identities:
        raise SopsError(
            "is SOPS-encrypted and no age identity was given (--decryption-key FILE, "
            "SOPS_AGE_KEY_FILE or SOPS_AGE_KEY; the controller's --decryption-secret)",
            line,
        )
    import pyrage

    names = ", ".join(str(r.get("recipient", "?")) for r in recipients if isinstance(r, dict))
    for recipient in recipients:
        enc = recipient.get("enc") if isinstance(recipient, dict) else None
        if not isinstance(enc, str):
            continue
        try:
            key = pyrage.decrypt(_dearmor(enc), list(identities))
        except (pyrage.DecryptError, ValueError):
            continue
        if len(key) == 32:
            return bytes(key)
    raise SopsError(f"no given age identity is one of its recipients ({names})", line)


def _dearmor(enc: str) -> bytes:
    match = _AGE_ARMOR.search(enc)
    if match is None:
        raise ValueError("not an armored age file")
    try:
        return base64.b64decode("".join(match.group(1).split()), validate=True)
    except binascii.Error:
        raise ValueError("bad armor") from None


@dataclass(frozen=True)
class _Rules:
    """Which values a file encrypts (sops' `shouldBeEncrypted`, without the comment rules)."""

    unencrypted_suffix: str
    encrypted_suffix: str
    unencrypted_regex: re.Pattern[str] | None
    encrypted_regex: re.Pattern[str] | None
    mac_only_encrypted: bool = False

    @classmethod
    def of(cls, metadata: dict[str, Any], line: int) -> _Rules:
        for unsupported in ("unencrypted_comment_regex", "encrypted_comment_regex"):
            if metadata.get(unsupported):
                raise SopsError(f"uses {unsupported}, which is not supported", line)

        def pattern(name: str) -> re.Pattern[str] | None:
            value = metadata.get(name)
            return re.compile(str(value)) if value else None

        return cls(
            str(metadata.get("unencrypted_suffix") or ""),
            str(metadata.get("encrypted_suffix") or ""),
            pattern("unencrypted_regex"),
            pattern("encrypted_regex"),
            bool(metadata.get("mac_only_encrypted")),
        )

    def encrypted(self, path: Sequence[str]) -> bool:
        result = True
        if self.unencrypted_suffix and any(p.endswith(self.unencrypted_suffix) for p in path):
            result = False
        if self.encrypted_suffix:
            result = any(p.endswith(self.encrypted_suffix) for p in path)
        if self.unencrypted_regex and any(self.unencrypted_regex.search(p) for p in path):
            result = False
        if self.encrypted_regex:
            result = any(self.encrypted_regex.search(p) for p in path)
        return result


def _walk(node: Any, path: list[str], key: bytes, rules: _Rules, digest: Any) -> Any:
    """`node` with every encrypted value decrypted, each value fed to the MAC in order."""
    if isinstance(node, dict):
        for name in list(node):
            try:
                node[name] = _walk(node[name], [*path, str(name)], key, rules, digest)
            except SopsError as err:
                _locate(err, node, "key", name)
                raise
        return node
    if isinstance(node, list):
        for index, item in enumerate(node):
            try:
                node[index] = _walk(item, path, key, rules, digest)
            except SopsError as err:
                _locate(err, node, "item", index)
                raise
        return node
    if node is None:
        return None
    encrypted = rules.encrypted(path)
    value = _decrypt_value(node, key, ":".join(path) + ":") if encrypted else node
    if encrypted or not rules.mac_only_encrypted:
        digest.update(_to_bytes(value))
    return value


def _locate(err: SopsError, node: Any, kind: str, at: Any) -> None:
    """Give a value's error the line of its key (YAML keeps lines; JSON does not)."""
    lines = getattr(node, "lc", None)
    if err.line == 0 and lines is not None:
        err.line = (lines.key(at) if kind == "key" else lines.item(at))[0] + 1


def _decrypt_value(value: Any, key: bytes, additional: str, where: str = "") -> Any:
    """One `ENC[...]` value; `where` names it in messages (its key path by default)."""
    dotted = additional.rstrip(":").replace(":", ".")
    where = where or f"the value at {dotted or '(top)'}"
    if not isinstance(value, str):
        raise SopsError(f"{where} is not encrypted: the file was edited after encryption")
    if value == "":
        return ""
    match = _ENC.match(value)
    if match is None:
        raise SopsError(f"{where} is not encrypted: the file was edited after encryption")
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        data, iv, tag = (base64.b64decode(match.group(i)) for i in (1, 2, 3))
        plain = AESGCM(key).decrypt(iv, data + tag, additional.encode())
    except (InvalidTag, binascii.Error, ValueError):
        raise SopsError(
            f"{where} does not decrypt: the file was tampered with or moved after encryption"
        ) from None
    return _typed(plain, match.group(4), where)


def _typed(plain: bytes, kind: str, where: str) -> Any:
    text = plain.decode("utf-8", errors="strict") if kind != "bytes" else ""
    converters: dict[str, Callable[[], Any]] = {
        "str": lambda: text,
        "int": lambda: int(text),
        "int64": lambda: int(text),
        "float": lambda: float(text),
        "bool": lambda: text.lower() == "true",
        "bytes": lambda: plain.decode("utf-8", errors="replace"),
        "comment": lambda: text,
    }
    if kind not in converters:
        raise SopsError(f"{where} has an unknown type {kind!r}")
    return converters[kind]()


def _to_bytes(value: Any) -> bytes:
    """sops' ToBytes: how a value enters the MAC."""
    if isinstance(value, bool):
        return b"True" if value else b"False"
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, float):
        return _go_float(value).encode()
    if isinstance(value, bytes):
        return value
    return str(value).encode()


def _go_float(value: float) -> str:
    """Go's strconv.FormatFloat(f, 'f', -1, 64): the shortest digits that read back as `value`,
    never an exponent, no trailing zeros (`1.5`, `5`, `100000000000000000000`, `0.0000001`)."""
    text = format(decimal.Decimal(repr(float(value))), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _verify_mac(metadata: dict[str, Any], key: bytes, computed: str, line: int) -> None:
    stored = metadata.get("mac")
    lastmodified = metadata.get("lastmodified")
    if not isinstance(stored, str) or not stored:
        raise SopsError("has no MAC: refusing an unauthenticated file", line)
    try:
        expected = _decrypt_value(stored, key, _timestamp(lastmodified), "the MAC")
    except SopsError:
        raise SopsError(
            "its MAC does not decrypt: the metadata was tampered with after encryption", line
        ) from None
    if expected != computed:
        raise SopsError(
            "MAC mismatch: the file was modified after it was encrypted (re-encrypt it with sops)",
            line,
        )


def _timestamp(value: Any) -> str:
    """`lastmodified` as sops formats it for the MAC (RFC 3339, as stored)."""
    if hasattr(value, "isoformat"):
        text = str(value.isoformat())
        return text.replace("+00:00", "Z")
    return str(value)


def _emit(store: str, documents: list[Any]) -> bytes:
    if store == "binary":
        return str(documents[0]["data"]).encode("utf-8")
    if store == "json":
        return (json.dumps(documents[0], indent=4) + "\n").encode()
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.width = 1 << 16
    out = io.StringIO()
    yaml.dump_all(documents, out)
    return out.getvalue().encode()
