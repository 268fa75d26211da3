"""A `source.Snapshot` of one git commit, read from its tree objects (no checkout).

The other file-system edge next to `source.DirectorySnapshot`: `reconciler diff` validates and
renders the manifests repo at two revisions through the same `Snapshot` protocol, so `repo.load`
and `render` never know whether the files came from a work tree or from git. The snapshot can be
of a folder inside the repository (paths are then relative to that folder); a commit where the
folder does not exist is an empty snapshot (`exists("")` is False). Its YAML files are chosen as a
work tree's are (`source.ManifestFilter`).

A symlink in a commit is a blob of mode 120000 holding its target: it is followed inside the same
commit's tree, as `source.resolve` follows one in a work tree (never out of the snapshot's folder,
never in a loop), so a commit reads the same files its checkout would, or refuses the same ones.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Iterator
from pathlib import Path

import git

from reconciler import source

_BLOB = "blob"
# A symlink's target is a path: a longer "target" is no symlink a checkout could make.
_MAX_LINK_TARGET = 4096


class GitSnapshotError(Exception):
    """PATH is not in a git work tree, or REF names no commit."""


class GitSnapshot:
    """The files of `folder` (repository-relative, POSIX; "" = the root) at one commit."""

    def __init__(
        self,
        repository: git.Repo,
        commit: git.Commit,
        folder: str,
        ref: str,
        *,
        origin: str | None = None,
    ) -> None:
        """`origin` names the repo when the local repository is not it (the bare mirror
        `gitsource` fetches into knows the remote's URL better than its own remotes do)."""
        self._repository = repository
        self._origin = origin
        self._commit = commit
        self._folder = folder
        self._ref = ref
        self._files: dict[str, git.Blob] = {}
        self._dirs: set[str] = set()
        self._names: dict[str, list[str]] = {}
        self._links: dict[str, source.Entry] = {}
        tree = commit.tree
        try:
            sub = tree / folder if folder else tree
        except KeyError:
            return
        if sub.type != "tree":  # a file where the folder should be: nothing to read
            return
        self._dirs.add("")
        for item in sub.traverse():
            if not isinstance(item, git.Blob | git.Tree):
                continue  # submodules (commits) hold no files of this repo
            item_path = str(item.path)
            relative = posixpath.relpath(item_path, folder) if folder else item_path
            self._names.setdefault(posixpath.dirname(relative), []).append(
                posixpath.basename(relative)
            )
            if isinstance(item, git.Tree):
                self._dirs.add(relative)
            else:
                self._files[relative] = item

    @classmethod
    def at(cls, path: str | os.PathLike[str], ref: str) -> GitSnapshot:
        """The folder `path` (in a git work tree) as it is at revision `ref`."""
        try:
            repository = git.Repo(path, search_parent_directories=True)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError) as err:
            raise GitSnapshotError(f"{os.fspath(path)} is not inside a git work tree") from err
        try:
            commit = repository.commit(ref)
        except (git.BadName, git.BadObject, ValueError) as err:
            raise GitSnapshotError(f"{ref!r} is not a commit in {repository.working_dir}") from err
        work_tree = Path(str(repository.working_dir)).resolve()
        below = os.path.relpath(Path(path).resolve(), work_tree)
        folder = "" if below == "." else Path(below).as_posix()
        if folder == ".." or folder.startswith("../"):
            raise GitSnapshotError(f"{os.fspath(path)} is outside the work tree {work_tree}")
        return cls(repository, commit, folder, ref)

    def yaml_files(self) -> Iterator[str]:
        """As a work tree's: what `source.ManifestFilter` skips (with the folder's own
        `.sourceignore` at this commit) is left out; git ignores no file a commit holds. A
        symlink to a folder is not read, as a work tree's is not walked into."""
        sourceignore = self._files.get(source.SOURCEIGNORE)
        text = None if sourceignore is None else self.read_text(source.SOURCEIGNORE)
        for path in source.ManifestFilter(text).yaml_files(self._files):
            if not self._is_link(path) or not self.is_dir(path):
                yield path

    # --- the commit's tree as `source.resolve` asks about it

    def entry(self, path: str) -> source.Entry:
        if path in self._dirs:  # "" too, unless the folder is not in this commit
            return source.Entry(source.Kind.FOLDER)
        blob = self._files.get(path)
        if blob is None:
            return source.ABSENT
        if not stat.S_ISLNK(blob.mode):
            return source.Entry(source.Kind.FILE)
        if path not in self._links:
            self._links[path] = _link(blob)
        return self._links[path]

    def names(self, folder: str) -> list[str]:
        return self._names.get(folder, [])

    def _is_link(self, path: str) -> bool:
        blob = self._files.get(path)
        return blob is not None and stat.S_ISLNK(blob.mode)

    def _blob(self, path: str) -> git.Blob:
        """The blob of the file `path` leads to (through symlinks in the commit), or why not."""
        resolved = source.resolve(self, path)
        if resolved.refusal is not None:
            raise source.RefusedFile(self.display(path), resolved.refusal)
        if resolved.path is None:
            raise FileNotFoundError(f"{self.display(path)}: no such file")
        if resolved.kind is source.Kind.FOLDER:
            raise source.RefusedFile(self.display(path), "a folder, not a file")
        return self._files[resolved.path]

    def read_text(self, path: str) -> str:
        return self.read_bytes(path).decode("utf-8", errors="replace")

    def read_bytes(self, path: str) -> bytes:
        blob = self._blob(path)
        if blob.size > source.MAX_FILE_BYTES:  # from the object's header: nothing read
            raise source.RefusedFile(self.display(path), source.too_large(blob.size))
        data: bytes = blob.data_stream.read()
        return data

    def blob_id(self, path: str) -> str:
        """The git blob id of the file (the SHA-1 of its bytes as `git hash-object` computes
        it): known from the tree, so telling whether a file changed reads no content. Through
        a symlink, the id of the file it leads to."""
        return str(self._blob(path).hexsha)

    def exists(self, path: str) -> bool:
        resolved = source.resolve(self, path)
        return resolved.path is not None or resolved.refusal is not None

    def is_dir(self, path: str) -> bool:
        return source.resolve(self, path).kind is source.Kind.FOLDER

    def size(self, path: str) -> int:
        return sum(int(self._files[real].size) for _, real in source.walk(self, path).files)

    def files_under(self, path: str) -> list[str]:
        return [shown for shown, _ in source.walk(self, path).files]

    def refusals(self, path: str) -> list[tuple[str, str]]:
        return source.walk(self, path).refused

    def display(self, path: str) -> str:
        """`REF:folder/path`, as `git show` spells a file at a revision."""
        inside = posixpath.join(self._folder, path) if path else self._folder
        return f"{self._ref}:{inside or '.'}"

    def revision(self) -> str:
        return str(self._commit.hexsha)

    def origin(self) -> str:
        """As `DirectorySnapshot.origin`: the remote `origin` (without credentials) or the work
        tree's path, plus `//folder` when the repo is a folder inside it; or the `origin` given."""
        if self._origin is not None:
            return f"{self._origin}//{self._folder}" if self._folder else self._origin
        base = str(Path(str(self._repository.working_dir)).resolve())
        for remote in self._repository.remotes:
            if remote.name == "origin":
                base = source.without_credentials(next(iter(remote.urls), base))
        return f"{base}//{self._folder}" if self._folder else base


def _link(blob: git.Blob) -> source.Entry:
    """A symlink blob as `source.resolve` follows it: its target (the blob's content)."""
    if blob.size > _MAX_LINK_TARGET:
        return source.Entry(source.Kind.OTHER, "a symlink whose target is no path")
    target = blob.data_stream.read().decode("utf-8", errors="replace")
    return source.Entry(source.Kind.LINK, target)
