"""A snapshot whose SOPS-encrypted files read as their plaintext, decrypted in memory.

`DecryptingSnapshot` wraps any `source.Snapshot` (a work tree, a git commit) with the age
identities the command was given (as data: reading a key file, the environment or a Secret is
the command line's and the engine's job). A file that `sops.is_encrypted` recognises reads as its
plaintext; one that cannot be decrypted raises `sops.SopsError`, which `repo.load` (for a
manifest) and `extensions` (for a protected PEM file) turn into a `FILE:LINE` problem, so such a
repo is invalid and nothing of it is applied. The plaintext lives only in this object's memory.

`opaque_without_key` is for `reconciler diff` with no key: an encrypted protected file (a PEM,
never a YAML manifest, which must be read to be compared) then reads as a stand-in naming the
SHA-256 of its ciphertext, so a changed encrypted file still shows as a changed (redacted)
Secret key, and `opaque` lists what could not be compared by value.

Pure: reads only through the wrapped snapshot.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

from reconciler import source
from reconciler.model import sops

OPAQUE_PREFIX = b"sops-encrypted-not-decrypted:"


class DecryptingSnapshot:
    """`inner` with its SOPS-encrypted files decrypted by `identities` when read."""

    def __init__(
        self,
        inner: source.Snapshot,
        identities: Sequence[sops.Identity] = (),
        *,
        opaque_without_key: bool = False,
    ) -> None:
        self.inner = inner
        self.identities = tuple(identities)
        self.opaque_without_key = opaque_without_key and not self.identities
        self._plain: dict[str, bytes] = {}
        self._encrypted: dict[str, bool] = {}
        self.opaque: set[str] = set()

    def encrypted(self, path: str) -> bool:
        """The file at `path` is SOPS-encrypted."""
        if path not in self._encrypted:
            self._encrypted[path] = sops.is_encrypted(path, self.inner.read_bytes(path))
        return self._encrypted[path]

    def read_bytes(self, path: str) -> bytes:
        if path in self._plain:
            return self._plain[path]
        raw = self.inner.read_bytes(path)
        if not self.encrypted(path):
            return raw
        if self.opaque_without_key and not path.endswith(sops.YAML_SUFFIXES):
            self.opaque.add(path)
            plain = OPAQUE_PREFIX + hashlib.sha256(raw).hexdigest().encode()
        else:
            plain = sops.decrypt(path, raw, self.identities)
        self._plain[path] = plain
        return plain

    def read_text(self, path: str) -> str:
        if not self.encrypted(path):
            return self.inner.read_text(path)
        return self.read_bytes(path).decode("utf-8", errors="replace")

    def decrypted(self) -> list[str]:
        """The files read so far that were SOPS-encrypted (and are held decrypted here)."""
        return sorted(p for p in self._plain if p not in self.opaque)

    def is_opaque(self, path: str) -> bool:
        """Reading `path` gives the stand-in, not its plaintext (no key, `opaque_without_key`).
        Never a YAML file: a manifest cannot be compared unread, so it needs the key."""
        opaque_kind = not path.endswith(sops.YAML_SUFFIXES)
        return self.opaque_without_key and opaque_kind and self.encrypted(path)

    def yaml_files(self) -> Iterator[str]:
        return self.inner.yaml_files()

    def exists(self, path: str) -> bool:
        return self.inner.exists(path)

    def is_dir(self, path: str) -> bool:
        return self.inner.is_dir(path)

    def size(self, path: str) -> int:
        return self.inner.size(path)

    def files_under(self, path: str) -> list[str]:
        return self.inner.files_under(path)

    def refusals(self, path: str) -> list[tuple[str, str]]:
        return self.inner.refusals(path)

    def display(self, path: str) -> str:
        return self.inner.display(path)

    def revision(self) -> str:
        return self.inner.revision()

    def origin(self) -> str:
        return self.inner.origin()


def wrap(snapshot: source.Snapshot) -> DecryptingSnapshot:
    """`snapshot` itself when it already decrypts, else it wrapped with no identity (so an
    encrypted file is reported as needing a key rather than read as ciphertext)."""
    if isinstance(snapshot, DecryptingSnapshot):
        return snapshot
    return DecryptingSnapshot(snapshot)


def is_opaque(snapshot: source.Snapshot, path: str) -> bool:
    return isinstance(snapshot, DecryptingSnapshot) and snapshot.is_opaque(path)
