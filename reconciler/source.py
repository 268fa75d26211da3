"""Where manifests come from: the file-system edge of the pipeline.

A `Snapshot` is a read-only view of one revision of a manifests repo: the YAML files in it and
the other files they point at (models, scoring scripts, PEM files). Everything after `source`
reads files only through a snapshot, so validation and rendering stay pure functions of it and
work the same on a work tree or (later) on a git revision.

Paths inside a snapshot are POSIX, relative to its root. `display()` turns one into what the user
should see in messages: the path they typed joined with the file's place below it.

Which YAML files are read for manifests is decided here too (`ManifestFilter`): not those in
hidden files and folders (`.git`, `.github`, `.venv`, `.cache`, `.sops.yaml`), `node_modules`, or
a Python virtual environment (a folder with `pyvenv.cfg`); not what the root's `.sourceignore`
excludes (gitignore syntax, as Flux's source-controller reads it); and in a git work tree not
what git ignores. The files manifests point at (models, code) are read wherever they are.
"""

from __future__ import annotations

import os
import posixpath
import urllib.parse
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import Protocol

import git
import pathspec

YAML_SUFFIXES = (".yaml", ".yml")
UNVERSIONED = "unversioned"
# gitignore-syntax patterns, relative to the snapshot's root, of paths not read for manifests.
SOURCEIGNORE = ".sourceignore"
# Folders never read for manifests, besides hidden ones: installed packages, not the repo's own.
_SKIPPED_FOLDERS = frozenset({"node_modules", "__pycache__"})
_VIRTUALENV_MARKER = "pyvenv.cfg"  # a folder holding it is a Python virtual environment


class Snapshot(Protocol):
    """A read-only view of one revision of a manifests repo."""

    def yaml_files(self) -> Iterator[str]:
        """Every `*.yaml` / `*.yml` below the root that may hold manifests, sorted: what
        `ManifestFilter` skips is left out."""
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


class ManifestFilter:
    """Which files below a snapshot's root are read for manifests.

    Skipped: hidden files and folders (a name starting with `.`: `.git`, `.github` and other CI
    folders, `.venv`, `.cache`, `.sops.yaml`), `node_modules` and `__pycache__`, a Python
    virtual environment whatever its name (a folder holding `pyvenv.cfg`), what `sourceignore`
    (the text of the root's `.sourceignore`, gitignore syntax) excludes, and the paths in
    `ignored` (what git ignores, as `git ls-files --others --ignored --directory` lists it:
    folders end in `/`). Paths are POSIX, relative to the root.
    """

    def __init__(self, sourceignore: str | None = None, ignored: Iterable[str] = ()) -> None:
        self._spec = (
            pathspec.GitIgnoreSpec.from_lines(sourceignore.splitlines()) if sourceignore else None
        )
        self._ignored_files: set[str] = set()
        self._ignored_folders: set[str] = set()
        for path in ignored:
            if path.endswith("/"):
                self._ignored_folders.add(path.rstrip("/"))
            else:
                self._ignored_files.add(path)

    def skips_folder(self, folder: str) -> bool:
        """`folder` (not the root) and everything below it are not read; a virtual environment
        is told by its contents (`is_virtualenv`)."""
        name = posixpath.basename(folder)
        return (
            name.startswith(".")
            or name in _SKIPPED_FOLDERS
            or folder in self._ignored_folders
            or (self._spec is not None and self._spec.match_file(f"{folder}/"))
        )

    @staticmethod
    def is_virtualenv(names: Collection[str]) -> bool:
        """A folder holding these file names is a Python virtual environment."""
        return _VIRTUALENV_MARKER in names

    def skips_file(self, path: str) -> bool:
        """The file `path` is not read (its folders are checked by `skips_folder`)."""
        return (
            posixpath.basename(path).startswith(".")
            or path in self._ignored_files
            or (self._spec is not None and self._spec.match_file(path))
        )

    def yaml_files(self, paths: Iterable[str]) -> list[str]:
        """The YAML files among `paths` (every file of a snapshot) that are read, sorted."""
        files = list(paths)
        virtualenvs = {
            posixpath.dirname(p) for p in files if posixpath.basename(p) == _VIRTUALENV_MARKER
        }
        skipped: dict[str, bool] = {"": False}

        def folder_skipped(folder: str) -> bool:
            if folder not in skipped:
                skipped[folder] = (
                    folder_skipped(posixpath.dirname(folder))
                    or folder in virtualenvs
                    or self.skips_folder(folder)
                )
            return skipped[folder]

        return sorted(
            p
            for p in files
            if p.endswith(YAML_SUFFIXES)
            and not self.skips_file(p)
            and not folder_skipped(posixpath.dirname(p))
        )


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
        """A file given is read whatever its name; in a folder, what `ManifestFilter` skips
        is not (nor walked into), with what git ignores when the folder is in a work tree."""
        if self._single_file is not None:
            yield self._single_file
            return
        sourceignore = self.root / SOURCEIGNORE
        keep = ManifestFilter(
            sourceignore.read_text(encoding="utf-8", errors="replace")
            if sourceignore.is_file()
            else None,
            git_ignored(self.root),
        )
        found: list[str] = []
        for folder, dirs, files in os.walk(self.root):
            rel = os.path.relpath(folder, self.root)
            rel = "" if rel == "." else Path(rel).as_posix()
            if rel and keep.is_virtualenv(files):
                dirs[:] = []
                continue
            dirs[:] = sorted(d for d in dirs if not keep.skips_folder(posixpath.join(rel, d)))
            for name in files:
                path = posixpath.join(rel, name)
                if name.endswith(YAML_SUFFIXES) and not keep.skips_file(path):
                    found.append(path)
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


def git_ignored(root: Path) -> list[str]:
    """What git ignores below `root` (untracked files its ignore rules exclude: `.gitignore`
    files, `.git/info/exclude`, `core.excludesFile`), relative to `root`, folders ending in
    `/`, as `git ls-files` lists them; nothing when `root` is in no work tree, or is itself
    ignored (the user named it: it is read)."""
    resolved = root.resolve()
    if not any((folder / ".git").exists() for folder in (resolved, *resolved.parents)):
        return []  # not in a work tree: no git to ask
    try:
        listed = git.Git(resolved).ls_files(
            "-z", "--others", "--ignored", "--exclude-standard", "--directory"
        )
    except git.GitCommandError:
        return []  # e.g. below an ignored folder, where git cannot list
    found = [path for path in str(listed).split("\0") if path]
    return [] if "./" in found else found


def without_credentials(url: str) -> str:
    """`https://user:token@host/repo` -> `https://host/repo` (a token must never be shown)."""
    parts = urllib.parse.urlsplit(url)
    if not parts.scheme or "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
