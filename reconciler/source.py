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

Every file is read as `resolve` finds its path, in a work tree as in a commit: a symlink only to
a file or folder inside the root, never a FIFO, socket or device, never past MAX_FILE_BYTES.
What is refused is a `RefusedFile` (a FILE error for the user, never a traceback or a hang);
`Snapshot.refusals` says what below a path would be, without reading it.

Paths below the root (`resolve`, `walk`: pure logic, no I/O) are looked up the same way by both
snapshots: `DirectorySnapshot` (a work tree, where it asks `os.lstat`) and
`gitsnapshot.GitSnapshot` (a commit, where a symlink is a blob of mode 120000 holding its
target). Each answers two questions about a path below its root as a `Tree`, what is there
(`Entry`) and which names a folder holds, and the rest is shared, so a symlink is followed or
refused the same way in every mode:

- a symlink is followed as the kernel follows it, one name at a time, but only inside the repo:
  an absolute target, or a `..` that climbs above the root, is refused (a symlink in a model
  folder to /etc/passwd must not put the host's file into a ConfigMap and a PR comment);
- more than MAX_LINKS symlinks in one lookup (a loop, a -> b -> a) are refused, and so is a
  symlink to a folder the path already went through: walking it would never end;
- anything but a regular file or a folder (a FIFO, a socket, a device) is refused: reading a FIFO
  waits for a writer forever, /dev/zero never ends;
- a walk stops after MAX_WALK entries: symlinks to folders can make a small tree list
  exponentially many paths.
"""

from __future__ import annotations

import enum
import errno
import os
import posixpath
import stat
import urllib.parse
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
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
# The most a snapshot reads of one file. No manifest, PEM or MLmodel file comes near it; what
# reaches a pod through a ConfigMap is held to workloads.MAX_CONFIGMAP_BYTES (1 MB) before a
# byte of it is read. A symlink to /dev/zero named x.yaml ended in a MemoryError.
MAX_FILE_BYTES = 10 * 1024 * 1024
_OTHER_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


class RefusedFile(Exception):
    """A file of the repo that is not read: what it is (a symlink leading out of the repo or
    in a loop, a FIFO, a device) or its size. `shown` is the path as the user should see it."""

    def __init__(self, shown: str, reason: str) -> None:
        super().__init__(f"{shown}: {reason}")
        self.shown = shown
        self.reason = reason


class Snapshot(Protocol):
    """A read-only view of one revision of a manifests repo."""

    def yaml_files(self) -> Iterator[str]:
        """Every `*.yaml` / `*.yml` below the root that may hold manifests, sorted: what
        `ManifestFilter` skips is left out."""
        ...

    def read_text(self, path: str) -> str: ...

    def read_bytes(self, path: str) -> bytes:
        """The file's bytes; `RefusedFile` when it is not read (see `refusals`, or larger than
        MAX_FILE_BYTES)."""
        ...

    def exists(self, path: str) -> bool:
        """Something is at `path`: a file, a folder, or what `refusals` says is not read."""
        ...

    def is_dir(self, path: str) -> bool: ...

    def size(self, path: str) -> int:
        """Bytes in a file, or the sum over every file below a folder."""
        ...

    def files_under(self, path: str) -> list[str]:
        """Every file at or below `path` that can be read, sorted (a file gives itself); a
        symlink inside the repo is followed (the path is as reached through it)."""
        ...

    def refusals(self, path: str) -> list[tuple[str, str]]:
        """What at or below `path` is not read, and why (`resolve`), as (path, reason), sorted:
        empty when every file there can be read. Reads no file's content."""
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


# --- paths below the root, symlinks followed inside it (pure) -------------------------------


# As Linux's MAXSYMLINKS: a lookup that follows more symlinks than this is a loop.
MAX_LINKS = 40
# Files and folders a walk visits at most; a folder that reaches the pod through a ConfigMap
# (1 MB) holds far fewer.
MAX_WALK = 10_000


class Kind(enum.Enum):
    FILE = "file"  # a regular file
    FOLDER = "folder"
    LINK = "link"
    OTHER = "other"  # a FIFO, a socket, a device: never read
    MISSING = "missing"


@dataclass(frozen=True)
class Entry:
    """What is at one path, not following a symlink there. `detail`: a symlink's target, or
    what an OTHER is ("a FIFO")."""

    kind: Kind
    detail: str = ""


ABSENT = Entry(Kind.MISSING)


class Tree(Protocol):
    """A snapshot's files as `resolve` and `walk` ask about them (paths POSIX, relative to the root,
    "" the root itself)."""

    def entry(self, path: str) -> Entry:
        """What is at `path` (its last name not followed when a symlink; the folders above it
        are real folders)."""
        ...

    def names(self, folder: str) -> Iterable[str]:
        """The names in the real folder `folder`."""
        ...


@dataclass(frozen=True)
class Resolved:
    """Where a path leads. `path`: the same place with no symlink in it, when it is a file or a
    folder; `refusal`: why it is not read, when something is there but refused."""

    kind: Kind  # FILE, FOLDER or MISSING (also when refused)
    path: str | None = None
    refusal: str | None = None


@dataclass
class Walk:
    """What a walk of one path found: the readable files (the path as reached, and the same
    file with no symlink in its path), what was refused (path as reached, why), and whether it
    stopped at its limit (then the path walked is refused too)."""

    files: list[tuple[str, str]] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    cut: bool = False


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Outside(Exception):
    """A `..` climbed above the root (said by the symlink whose target did it)."""


def resolve(tree: Tree, path: str) -> Resolved:
    """Where `path` leads, following every symlink on the way inside the repo only."""
    norm = normalize(path)
    if norm is None:
        return Resolved(Kind.MISSING, refusal="outside the repo: only files inside it are read")
    where, entry = "", tree.entry("")
    if entry.kind is not Kind.FOLDER:
        return Resolved(Kind.MISSING)  # no root: an empty snapshot
    chain = [""]
    hops = [0]
    try:
        for name in norm.split("/") if norm else []:
            if entry.kind is not Kind.FOLDER:
                return Resolved(Kind.MISSING)  # a name below a file
            where, entry = _step(tree, where, name, chain, hops)
            if entry.kind is Kind.MISSING:
                return Resolved(Kind.MISSING)
    except _Refused as refused:
        return Resolved(Kind.MISSING, refusal=refused.reason)
    if entry.kind is Kind.OTHER:
        return Resolved(Kind.MISSING, refusal=_other(entry))
    return Resolved(entry.kind, where)


def walk(tree: Tree, path: str, limit: int = MAX_WALK) -> Walk:
    """Every file at or below `path` (the path itself when it is a file), following symlinks as
    `resolve` does, in sorted order; what is refused instead of read; at most `limit` entries."""
    found = Walk()
    start = resolve(tree, path)
    if start.refusal is not None:
        found.refused.append((path, start.refusal))
    if start.path is None:
        return found
    if start.kind is Kind.FILE:
        found.files.append((path, start.path))
        return found
    norm = normalize(path) or ""
    stack = [(norm, start.path, _chain_of(tree, norm))]
    visited = 0
    while stack:
        shown, real, chain = stack.pop()
        below: list[tuple[str, str, list[str]]] = []
        for name in sorted(tree.names(real)):
            visited += 1
            if visited > limit:
                found.cut = True
                found.refused.append((path, f"more than {limit:,} files and folders below it"))
                return found
            here = posixpath.join(shown, name) if shown else name
            inner = list(chain)
            try:
                where, entry = _step(tree, real, name, inner, [0])
            except _Refused as refused:
                found.refused.append((here, refused.reason))
                continue
            if entry.kind is Kind.FOLDER:
                below.append((here, where, inner))
            elif entry.kind is Kind.FILE:
                found.files.append((here, where))
            elif entry.kind is Kind.OTHER:
                found.refused.append((here, _other(entry)))
        stack.extend(reversed(below))
    found.files.sort()
    found.refused.sort()
    return found


def _chain_of(tree: Tree, path: str) -> list[str]:
    """The real folders a (resolvable) folder path goes through, from the root."""
    where, chain, hops = "", [""], [0]
    for name in path.split("/") if path else []:
        where, _ = _step(tree, where, name, chain, hops)
    return chain


def _step(
    tree: Tree, folder: str, name: str, chain: list[str], hops: list[int]
) -> tuple[str, Entry]:
    """One name of a path below the real folder `folder`, followed through symlinks. A folder
    it leads to joins `chain` (the folders the path went through), and is refused when it holds
    one of them: walking it would come back there forever."""
    here, entry = _name(tree, folder, name, hops)
    if entry.kind is Kind.FOLDER:
        if here != (posixpath.join(folder, name) if folder else name) and any(
            _holds(here, passed) for passed in chain
        ):
            shown = posixpath.join(folder, name) if folder else name
            raise _Refused(
                f"the symlink {shown} leads back to {here or 'the root'}, a folder on its own "
                "path: a symlink loop"
            )
        chain.append(here)
    return here, entry


def _name(tree: Tree, folder: str, name: str, hops: list[int]) -> tuple[str, Entry]:
    """`name` in the real folder `folder`: (its place with no symlink in it, what is there)."""
    here = posixpath.join(folder, name) if folder else name
    entry = tree.entry(here)
    if entry.kind is not Kind.LINK:
        return here, entry
    hops[0] += 1
    if hops[0] > MAX_LINKS:
        raise _Refused(f"more than {MAX_LINKS} symlinks in a row at {here}: a symlink loop")
    target = entry.detail
    outside = (
        f"the symlink {here} -> {target} leads outside the repo: only files inside it are read"
    )
    if target.startswith("/") or not target:
        raise _Refused(outside)
    try:
        where, reached = _follow(tree, folder, target, hops)
    except _Outside:
        raise _Refused(outside) from None
    if reached.kind is Kind.MISSING:
        raise _Refused(f"the symlink {here} -> {target} leads to nothing")
    return where, reached


def _follow(tree: Tree, folder: str, relative: str, hops: list[int]) -> tuple[str, Entry]:
    """A symlink's target, relative to the real folder that holds the symlink."""
    where, entry = folder, Entry(Kind.FOLDER)
    for name in relative.split("/"):
        if name in ("", "."):
            continue
        if entry.kind is not Kind.FOLDER:
            return where, ABSENT
        if name == "..":
            if not where:
                raise _Outside
            where = posixpath.dirname(where)
            continue
        where, entry = _name(tree, where, name, hops)
        if entry.kind is Kind.MISSING:
            return where, ABSENT
    return where, entry


def _holds(folder: str, path: str) -> bool:
    """`path` is `folder` or below it."""
    return not folder or path == folder or path.startswith(f"{folder}/")


def _other(entry: Entry) -> str:
    return f"{entry.detail or 'not a regular file'}: only regular files and folders are read"


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
    all three must see the same bytes even if the file is saved meanwhile (and three reads
    were a large part of loading a repo). Other files (models, code) are read each time:
    they can be large, and are only hashed or copied. Paths are resolved by `resolve` over
    `os.lstat`, so a symlink leading out of the folder is refused, not followed."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        given = Path(path)
        self._manifests: dict[str, bytes] = {}
        self._single_file: str | None = None
        # Anything but a folder (a FIFO too) is a single file, read (or refused) as one.
        if os.path.lexists(given) and not given.is_dir():
            self.root = given.parent
            self._single_file = given.name
        else:
            self.root = given
        self._display_root = os.fspath(path) if self._single_file is None else os.fspath(self.root)
        self._tree = _DiskTree(self.root)

    def yaml_files(self) -> Iterator[str]:
        """A file given is read whatever its name; in a folder, what `ManifestFilter` skips
        is not (nor walked into), with what git ignores when the folder is in a work tree. A
        symlink to a folder is not walked into; one named *.yaml that is refused is listed, so
        that reading it says why."""
        if self._single_file is not None:
            yield self._single_file
            return
        has_sourceignore = self.exists(SOURCEIGNORE) and not self.is_dir(SOURCEIGNORE)
        keep = ManifestFilter(
            self.read_text(SOURCEIGNORE) if has_sourceignore else None, git_ignored(self.root)
        )
        found: list[str] = []
        for folder, dirs, files in os.walk(self.root):
            rel = os.path.relpath(folder, self.root)
            rel = "" if rel == "." else Path(rel).as_posix()
            if rel and keep.is_virtualenv(files):
                dirs[:] = []
                continue
            # os.walk lists a symlink to a folder among the folders (and does not follow it).
            links = [d for d in dirs if os.path.islink(os.path.join(folder, d))]
            files = files + [
                d for d in links if resolve(self._tree, posixpath.join(rel, d)).refusal is not None
            ]
            dirs[:] = sorted(
                d for d in dirs if d not in links and not keep.skips_folder(posixpath.join(rel, d))
            )
            for name in files:
                path = posixpath.join(rel, name)
                if name.endswith(YAML_SUFFIXES) and not keep.skips_file(path):
                    found.append(path)
        yield from sorted(found)

    def read_text(self, path: str) -> str:
        # As reading the file in text mode does: universal newlines.
        text = self.read_bytes(path).decode("utf-8", errors="replace")
        return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text

    def read_bytes(self, path: str) -> bytes:
        if not path.endswith(YAML_SUFFIXES):
            return self._read(path)
        data = self._manifests.get(path)
        if data is None:
            data = self._manifests[path] = self._read(path)
        return data

    def _read(self, path: str) -> bytes:
        resolved = resolve(self._tree, path)
        if resolved.refusal is not None:
            raise RefusedFile(self.display(path), resolved.refusal)
        if resolved.path is None:
            raise FileNotFoundError(errno.ENOENT, "no such file", self.display(path))
        if resolved.kind is Kind.FOLDER:
            raise RefusedFile(self.display(path), "a folder, not a file")
        return _read_regular(self.root / resolved.path, lambda: self.display(path))

    def exists(self, path: str) -> bool:
        resolved = resolve(self._tree, path)
        return resolved.path is not None or resolved.refusal is not None

    def is_dir(self, path: str) -> bool:
        return resolve(self._tree, path).kind is Kind.FOLDER

    def size(self, path: str) -> int:
        return sum(os.lstat(self.root / real).st_size for _, real in walk(self._tree, path).files)

    def files_under(self, path: str) -> list[str]:
        found = (shown for shown, _ in walk(self._tree, path).files)
        return [f for f in found if "/.git/" not in f"/{f}"]

    def refusals(self, path: str) -> list[tuple[str, str]]:
        return walk(self._tree, path).refused

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


class _DiskTree:
    """A folder on disk as `resolve` asks about it: `os.lstat`, never following a symlink.

    What is a real folder is kept for the snapshot's life (each file's lookup passes the same
    folders: half the lstat calls of loading a repo); files and symlinks are asked each time."""

    def __init__(self, root: Path) -> None:
        self._root = os.fspath(root)
        self._folders: set[str] = set()

    def entry(self, path: str) -> Entry:
        if path in self._folders:
            return _FOLDER
        if not path:  # the root as the user named it: a symlink to a folder is that folder
            if os.path.isdir(self._root):
                self._folders.add(path)
                return _FOLDER
            return ABSENT
        place = os.path.join(self._root, path)
        try:
            mode = os.lstat(place).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return ABSENT
        except OSError as err:  # e.g. a name too long, a folder it may not search
            return Entry(Kind.OTHER, f"not readable ({err.strerror})")
        if stat.S_ISDIR(mode):
            self._folders.add(path)
            return _FOLDER
        if stat.S_ISREG(mode):
            return _FILE
        if stat.S_ISLNK(mode):
            try:
                return Entry(Kind.LINK, os.readlink(place))
            except OSError as err:
                return Entry(Kind.OTHER, f"not readable ({err.strerror})")
        return Entry(Kind.OTHER, _what(mode))

    def names(self, folder: str) -> list[str]:
        try:
            found = os.listdir(os.path.join(self._root, folder))
        except OSError:
            return []
        return [name for name in found if name != ".git"]  # git's own files are no repo files


_FOLDER = Entry(Kind.FOLDER)
_FILE = Entry(Kind.FILE)


def _what(mode: int) -> str:
    return next((what for test, what in _OTHER_KINDS if test(mode)), "not a regular file")


def _read_regular(file: Path, shown: Callable[[], str], limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of `file`, a path with no symlink in it, when it is still a regular file of at
    most `limit` bytes as it is opened (not following a symlink put there since, not waiting
    on a FIFO); else `RefusedFile` (naming it as `shown()` does)."""
    try:
        descriptor = os.open(file, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise RefusedFile(shown(), "became a symlink while it was read") from None
        raise
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise RefusedFile(shown(), f"{_what(status.st_mode)}: only regular files are read")
        if status.st_size > limit:
            raise RefusedFile(shown(), too_large(status.st_size, limit))
        # Sized by what fstat said, then on to the end (it may have grown since), up to the
        # limit: a read(limit + 1) allocates all of it, which dominates reading a small file.
        chunks = [os.read(descriptor, status.st_size + 1)]
        read = len(chunks[0])
        while chunks[-1] and read <= limit:
            chunks.append(os.read(descriptor, min(1 << 20, limit + 1 - read)))
            read += len(chunks[-1])
    finally:
        os.close(descriptor)
    if read > limit:
        raise RefusedFile(shown(), too_large(read, limit))
    return b"".join(chunks)


def too_large(size: int, limit: int = MAX_FILE_BYTES) -> str:
    """Why a file of `size` bytes is not read."""
    return f"{size:,} bytes or more: larger than the {limit:,} bytes a file of the repo may be"


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
