"""One edit of the manifests repo, applied to its working tree: validate, write, commit.

The repo step of `reconciler extension create|update|delete` (`reconciler.cli.extension` finds the
file and makes the edit with the pure `extensionedit`; this module takes it from there). A
`Change` is one file as the edit leaves it. `apply_change` loads and validates the repo as it
would be after the change (`repo.load` on an `Overlay`, a snapshot that sees the new text) and
only when that adds no error writes the one file atomically (`write_atomic`) and commits it, alone,
when the repo is in a git work tree (`commit_file`). `read` gives a manifest's exact text to edit.

This is the one place that writes manifests and makes commits, at the edge beside `source`.
Protected values are never printed: validation never quotes one (see `model.extensions`), and
git's own output, which this module cannot shape, is redacted by match. A refusal
prints its reasons and exits 1 (`fail`), with nothing written.
"""

from __future__ import annotations

import os
import posixpath
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import click
import git

from reconciler import source
from reconciler.model import problems, repo

REDACTED = "<redacted>"


@dataclass(frozen=True)
class Change:
    """One file of the repo as an edit leaves it: new text, or None to remove the file."""

    path: str  # snapshot path, relative to the repo root
    text: str | None
    verb: str  # create / update / delete
    name: str
    details: str = ""  # which settings changed (keys, never values)
    secrets: frozenset[str] = field(default=frozenset(), repr=False)

    @property
    def commit_message(self) -> str:
        subject = f"extension {self.verb} {self.name}"
        return f"{subject}\n\n{self.details}" if self.details else subject


@dataclass(frozen=True)
class Applied:
    """What the repo step did: the file written (or removed) and the commit made, if any."""

    change: Change
    file: Path
    commit: str | None


def apply_change(
    snapshot: source.DirectorySnapshot, change: Change, commit: bool = True
) -> Applied:
    """Validate the repo as `change` leaves it; write (and commit) only if that adds no error.

    Problems the repo already had do not block an edit (an update may be what fixes them); any
    new error exits 1 with nothing written.
    """
    before = repo.load(snapshot)
    after = repo.load(Overlay(snapshot, change.path, change.text))
    added = _added_errors(before.errors, after.errors)
    if added:
        lines = [str(problem) for problem in added]
        count = f"{len(added)} problem{'s' if len(added) != 1 else ''}"
        lines.append(f"{count}: extension {change.name} not {change.verb}d, nothing was written")
        fail(lines)
    shown = snapshot.display(change.path)
    for problem in after.problems:
        if not problem.is_error and problem.file == shown:
            click.echo(str(problem), err=True)
    if after.errors:
        earlier = len(after.errors)
        plural = "s" if earlier != 1 else ""
        click.echo(
            f"the repo still has {earlier} problem{plural} it had before (reconciler validate)",
            err=True,
        )
    file = snapshot.root / change.path
    if change.text is None:
        file.unlink()
    else:
        write_atomic(file, change.text)
    made = None
    if commit:
        try:
            made = commit_file(snapshot.root, file, change.commit_message)
        except git.GitCommandError as err:
            detail = _redactor(change.secrets)(str(err.stderr).strip() or str(err))
            fail([f"{shown} was written, but git commit failed: {detail}"])
    return Applied(change, file, made)


def write_atomic(file: Path, text: str) -> None:
    """Replace `file` with `text` in one step (a temporary file beside it, then a rename), so
    a reader never sees half a file; an existing file keeps its permissions."""
    file.parent.mkdir(parents=True, exist_ok=True)
    temporary = file.with_name(f".{file.name}.{uuid.uuid4().hex[:8]}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        if file.exists():
            os.chmod(temporary, file.stat().st_mode & 0o7777)
        os.replace(temporary, file)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def commit_file(root: Path, file: Path, message: str) -> str | None:
    """Commit `file` alone (`git commit --only`: other staged or modified files stay as they
    are) when `root` is in a git work tree; the new commit id, or None when nothing was made."""
    try:
        work_tree = git.Repo(root, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None
    if work_tree.bare or work_tree.working_tree_dir is None:
        return None
    top = Path(work_tree.working_tree_dir).resolve()
    relative = Path(os.path.relpath(file.parent.resolve() / file.name, top)).as_posix()
    if relative.startswith("../"):
        return None
    if file.exists():
        if work_tree.ignored(relative):
            return None
        work_tree.git.add("--", relative)
        if not work_tree.git.status("--porcelain", "--", relative):
            return None  # the edit gave back what HEAD has: nothing to commit
    elif not _in_head(work_tree, relative):
        # Never committed: forget it in the index too, and there is nothing to commit.
        work_tree.git.rm("--cached", "--quiet", "--ignore-unmatch", "--", relative)
        return None
    work_tree.git.commit("--only", "--quiet", "-m", message, "--", relative)
    return work_tree.head.commit.hexsha


class Overlay(source.DirectorySnapshot):
    """The repo as an edit would leave it: one file replaced, added or removed.

    Everything else (other files, revision, origin, how paths are shown) is the snapshot's
    underneath, so `repo.load` validates the edit before a byte is written.
    """

    def __init__(self, base: source.DirectorySnapshot, path: str, text: str | None) -> None:
        super().__init__(base.root)
        self._display_root = base._display_root
        self.path = path
        self.text = text

    def _folders(self) -> set[str]:
        folders: set[str] = set()
        folder = posixpath.dirname(self.path)
        while folder:
            folders.add(folder)
            folder = posixpath.dirname(folder)
        return folders if self.text is not None else set()

    def yaml_files(self) -> Iterator[str]:
        files = set(super().yaml_files()) - {self.path}
        if self.text is not None:
            files.add(self.path)
        yield from sorted(files)

    def read_text(self, path: str) -> str:
        if path == self.path and self.text is not None:
            return self.text
        return super().read_text(path)

    def read_bytes(self, path: str) -> bytes:
        if path == self.path and self.text is not None:
            return self.text.encode("utf-8")
        return super().read_bytes(path)

    def exists(self, path: str) -> bool:
        if path == self.path:
            return self.text is not None
        return path in self._folders() or super().exists(path)

    def is_dir(self, path: str) -> bool:
        if path == self.path:
            return False
        return path in self._folders() or super().is_dir(path)

    def size(self, path: str) -> int:
        if path == self.path:
            return len(self.read_bytes(path)) if self.text is not None else 0
        return super().size(path) if super().exists(path) else 0

    def files_under(self, path: str) -> list[str]:
        below = set(super().files_under(path)) if super().exists(path) else set()
        below.discard(self.path)
        inside = path in ("", self.path) or self.path.startswith(path.rstrip("/") + "/")
        if self.text is not None and inside:
            below.add(self.path)
        return sorted(below)


def read(snapshot: source.DirectorySnapshot, path: str) -> str:
    """A manifest's exact text (no newline translation); a file that is not UTF-8 is refused
    rather than rewritten with replacement characters."""
    try:
        # Through the snapshot: a symlink out of the repo, a FIFO or a device is not read.
        return snapshot.read_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        fail([f"{snapshot.display(path)}: not UTF-8 text, not editing it"])
    except source.RefusedFile as refused:
        fail([f"{refused}, not editing it"])


def fail(lines: Sequence[str]) -> NoReturn:
    """Print `lines` to stderr and exit 1: how every `reconciler extension` refusal ends."""
    for line in lines:
        click.echo(line, err=True)
    sys.exit(1)


# --- helpers --------------------------------------------------------------------------------


def _added_errors(
    before: Sequence[problems.Problem], after: Sequence[problems.Problem]
) -> list[problems.Problem]:
    """Errors `after` has that `before` did not (lines are ignored: an edit shifts them)."""
    earlier = Counter((p.file, p.field, p.message) for p in before)
    added: list[problems.Problem] = []
    for problem in after:
        key = (problem.file, problem.field, problem.message)
        if earlier[key]:
            earlier[key] -= 1
        else:
            added.append(problem)
    return added


def _redactor(secrets: frozenset[str]) -> Callable[[str], str]:
    """Replace every protected value in a message (longest first) with <redacted>."""
    ordered = sorted((s for s in secrets if s), key=len, reverse=True)

    def redact(text: str) -> str:
        for secret in ordered:
            text = text.replace(secret, REDACTED)
        return text

    return redact


def _in_head(work_tree: git.Repo, relative: str) -> bool:
    try:
        work_tree.head.commit.tree.join(relative)
    except (KeyError, ValueError):
        return False
    return True
