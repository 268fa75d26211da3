"""Where manifests come from: the file-system edge of the pipeline.

A `Snapshot` is a read-only view of one revision of a manifests repo: the YAML files in it and
the other files they point at (models, scoring scripts, PEM files). Everything after `source`
reads files only through a snapshot, so validation and rendering stay pure functions of it and
work the same on a work tree or (later) on a git revision.

Paths inside a snapshot are POSIX, relative to its root. `display()` turns one into what the user
should see in messages: the path they typed joined with the file's place below it.
"""

from __future__ import annotations

import os
import posixpath
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import git

YAML_SUFFIXES = (".yaml", ".yml")
UNVERSIONED = "unversioned"


class Snapshot(Protocol):
    """A read-only view of one revision of a manifests repo."""

    def yaml_files(self) -> Iterator[str]:
        """Every `*.yaml` / `*.yml` below the root, sorted, `.git` skipped."""
        ...

    def read_text(self, path: str) -> str: ...

    def read_bytes(self, path: str) -> bytes: ...

    def exists(self, path: str) -> bool: ...

    def is_dir(self, path: str) -> bool: ...

    def size(self, path: str) -> int:
        """Bytes in a file, or the sum over every file below a folder."""
        ...

    def files_under(self, path: str) -> list[str]:
        """Every file at or below `path`, sorted (a file gives itself)."""
        ...

    def display(self, path: str) -> str:
        """How to show `path` to the user in a message."""
        ...

    def revision(self) -> str:
        """The revision this snapshot is of (a commit id), stamped on rendered objects."""
        ...

    def origin(self) -> str:
        """Which repo this is, to tell its extensions from another repo's on one cluster."""
        ...


def normalize(path: str) -> str | None:
    """A snapshot-relative POSIX path, or None when `path` leaves the repo (`../..`, `/etc`)."""
    if posixpath.isabs(path) or os.path.isabs(path):
        return None
    norm = posixpath.normpath(path)
    if norm == ".." or norm.startswith("../"):
        return None
    return "" if norm == "." else norm


def join(folder: str, relative: str) -> str | None:
    """`relative` resolved against a folder inside the snapshot; None if it escapes the repo."""
    return normalize(posixpath.join(folder, relative) if folder else relative)


class DirectorySnapshot:
    """A snapshot of a folder on disk (a work tree), or of a single YAML file.

    Each YAML file is read from disk once and its bytes kept for the snapshot's life: loading
    a manifest hashes it (the memo's text id), checks it for SOPS metadata and parses it, and
    all three must see the same bytes even if the file is saved meanwhile (three reads were
    also ~a third of loading 4,400 manifests). Other files (models, code) are read each time:
    they can be large, and are only hashed or copied."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        given = Path(path)
        self._manifests: dict[str, bytes] = {}
        self._single_file: str | None = None
        if given.is_file():
            self.root = given.parent
            self._single_file = given.name
        else:
            self.root = given
        self._display_root = os.fspath(path) if self._single_file is None else os.fspath(self.root)

    def yaml_files(self) -> Iterator[str]:
        if self._single_file is not None:
            yield self._single_file
            return
        found: list[str] = []
        for folder, dirs, files in os.walk(self.root):
            dirs[:] = sorted(d for d in dirs if d != ".git")
            rel = os.path.relpath(folder, self.root)
            for name in files:
                if name.endswith(YAML_SUFFIXES):
                    found.append(name if rel == "." else Path(rel, name).as_posix())
        yield from sorted(found)

    def _path(self, path: str) -> Path:
        return self.root / path

    def read_text(self, path: str) -> str:
        if not path.endswith(YAML_SUFFIXES):
            return self._path(path).read_text(encoding="utf-8", errors="replace")
        # As reading the file in text mode does: universal newlines.
        text = self.read_bytes(path).decode("utf-8", errors="replace")
        return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text

    def read_bytes(self, path: str) -> bytes:
        if not path.endswith(YAML_SUFFIXES):
            return self._path(path).read_bytes()
        data = self._manifests.get(path)
        if data is None:
            data = self._manifests[path] = self._path(path).read_bytes()
        return data

    def exists(self, path: str) -> bool:
        return self._path(path).exists()

    def is_dir(self, path: str) -> bool:
        return self._path(path).is_dir()

    def size(self, path: str) -> int:
        target = self._path(path)
        if target.is_file():
            return target.stat().st_size
        return sum(p.stat().st_size for p in target.rglob("*") if p.is_file())

    def files_under(self, path: str) -> list[str]:
        target = self._path(path)
        if target.is_file():
            return [path]
        found = (p.relative_to(self.root).as_posix() for p in target.rglob("*") if p.is_file())
        return sorted(f for f in found if "/.git/" not in f"/{f}")

    def revision(self) -> str:
        """HEAD's commit id when the folder is in a git work tree (`-dirty` when it has
        uncommitted changes below the folder), else `unversioned`."""
        try:
            work_tree = git.Repo(self.root, search_parent_directories=True)
            commit = work_tree.head.commit.hexsha
        except (git.InvalidGitRepositoryError, git.NoSuchPathError, ValueError):
            return UNVERSIONED
        below = os.path.relpath(self.root.resolve(), Path(work_tree.working_dir).resolve())
        dirty = work_tree.is_dirty(untracked_files=True, path=None if below == "." else below)
        return f"{commit}-dirty" if dirty else commit

    def origin(self) -> str:
        """The git remote `origin` (without credentials) or, with no remote, the work tree's
        path, plus `//folder` when the repo is a folder inside it; outside git, the folder's
        absolute path."""
        try:
            work_tree = git.Repo(self.root, search_parent_directories=True)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            return str(self.root.resolve())
        base = str(Path(work_tree.working_dir).resolve())
        for remote in work_tree.remotes:
            if remote.name == "origin":
                base = without_credentials(next(iter(remote.urls), base))
        below = os.path.relpath(self.root.resolve(), Path(work_tree.working_dir).resolve())
        return base if below == "." else f"{base}//{Path(below).as_posix()}"

    def display(self, path: str) -> str:
        if self._display_root in ("", "."):
            return path or "."
        root = self._display_root.replace(os.sep, "/")
        return posixpath.join(root, path) if path else root


def without_credentials(url: str) -> str:
    """`https://user:token@host/repo` -> `https://host/repo` (a token must never be shown)."""
    parts = urllib.parse.urlsplit(url)
    if not parts.scheme or "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
