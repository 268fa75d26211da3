"""Reusing pure work across the revisions one command loads: results kept by what they depend on.

`reconciler diff` loads and renders a repo twice (base and head), and most files are the same at
both. `repo.load` and `render.render_repo` accept a `Memo`: each file's parse + recognise + schema
check is kept by the file's path and content, each render unit (an extension's components, one
job's objects, one deployment's, one instance type's) by a `fingerprint` of the model values and
file contents it reads. A result is reused only when those inputs are equal, so the second
revision costs only what changed, and a run with a memo returns exactly what a run without one
does. Rendered objects are kept frozen and copied out afresh on every reuse (`Memo.copied`), so
two revisions never share a mutable object; load results are frozen dataclasses, relabelled by
`repo` for the revision that takes them.

Sits beside `source` and `gitsnapshot` (it asks a `GitSnapshot` for blob ids rather than reading
the blobs); pure apart from reading through the snapshot. A memo lives for one command; the
GitOps loop keeps one across ticks and calls `forget_unused` after each, so it holds one
revision's results; `plan` and `apply` start from the rendered units and file parses (both
`copied` results) the last one kept on disk (`cli/rendercache.py`: `frozen_units` /
`take_frozen_units`).
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import functools
import hashlib
import marshal
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple, TypeVar, cast

from reconciler import gitsnapshot, objects, source
from reconciler.model import decryption

T = TypeVar("T")
_ABSENT = object()  # one dict lookup per call: a key's hash walks all of its nested tuples


class Memo:
    """Results by key, with counts of reuses and computations (for tests and the benchmark;
    not of `built` models, which need no key)."""

    def __init__(self) -> None:
        # Results asked for since the last `forget_unused`, and the ones kept from before it
        # (moved over when asked for again): forgetting is then O(1), not a pass over every
        # result that hashes each key again (the keys are deep tuples).
        self._used: dict[Hashable, Any] = {}
        self._kept: dict[Hashable, Any] = {}
        self.hits = 0
        self.misses = 0
        self.copied_misses = 0  # of the misses, `copied` ones: what `frozen_units` may hand out

    def forget_unused(self) -> None:
        """Drop every result not asked for since the last call: a loop that loads one
        revision after another keeps only what the latest one used."""
        self._kept, self._used = self._used, {}

    def _kept_result(self, key: Hashable) -> Any:
        """What is kept under `key` (a digest), moved over to the results in use, or _ABSENT."""
        found = self._used.get(key, _ABSENT)
        if found is _ABSENT:
            found = self._kept.pop(key, _ABSENT)
            if found is not _ABSENT:
                self._used[key] = found
        return found

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The result kept under `key`, or `compute()`'s, kept for next time. The caller makes
        the key say everything `compute` depends on."""
        hashed = digest(key)
        found = self._kept_result(hashed)
        if found is not _ABSENT:
            self.hits += 1
            kept: T = found
            return kept
        self.misses += 1
        result = compute()
        self._used[hashed] = result
        return result

    def copied(self, key: Hashable, compute: Callable[[], T]) -> T:
        """As `get`, for results callers change (rendered objects get stamped): the memo keeps
        a frozen copy and every reuse gets a new deep copy of it, so no two callers ever hold
        the same dict, and nothing a caller does reaches what the memo keeps."""
        return self.copied_at(digest(key), compute)

    def copied_at(self, hashed: Hashable, compute: Callable[[], T]) -> T:
        """`copied`, for a key the caller has `digest`ed already."""
        kept = self._kept_result(hashed)
        if kept is not _ABSENT:
            self.hits += 1
            thawed: T = _thaw(kept)
            return thawed
        self.misses += 1
        self.copied_misses += 1
        result = compute()
        self._used[hashed] = _freeze(result)
        return result

    def built(
        self, given: object, snapshot: source.Snapshot, build: Callable[[source.Snapshot], T]
    ) -> T:
        """`build(snapshot)`, kept for as long as `given` (what it builds from: a manifest of a
        file this memo kept, the same object load after load) is the same object and
        `snapshot` answers every question `build` asked it as it did then (a code folder
        that exists, its size). A loop tick then builds again only the models of files that
        changed, and their fingerprints (`fingerprint_digest`) are computed once.
        `build` must read nothing but `given` and `snapshot`, through the `Snapshot` protocol.
        """
        kept = self._kept_result(("built", id(given)))
        if kept is not _ABSENT and kept.given is given and _answers_hold(kept.asked, snapshot):
            result: T = kept.result
            return result
        asking = _Asking(snapshot)
        result = build(asking)
        self._used["built", id(given)] = _Built(given, tuple(asking.asked.items()), result)
        return result

    def fingerprint_digest(self, value: object) -> Hashable:
        """`digest(fingerprint(value))`, computed once per object for as long as the object is
        in use: for values that never change (frozen models), such as those `built` hands out.
        A digest, not the fingerprint: it goes into render keys, which are marshalled whole."""
        kept = self._kept_result(("fingerprint", id(value)))
        if kept is _ABSENT or kept[0] is not value:
            kept = (value, digest(fingerprint(value)))  # the value is held: its id is its own
            self._used["fingerprint", id(value)] = kept
        found: Hashable = kept[1]
        return found

    def frozen_units(self) -> dict[bytes, bytes]:
        """The `copied` results (rendered units, parses) asked for since the last
        `forget_unused`, as marshal bytes by key digest, for a later command to start from
        (`take_frozen_units`).
        None that holds a Secret: what leaves the process holds no secret value."""
        return {
            key: kept.data
            for key, kept in self._used.items()
            if type(key) is bytes
            and isinstance(kept, _Frozen)
            and kept.marshalled
            and not kept.secret
        }

    def take_frozen_units(self, units: Mapping[bytes, bytes]) -> None:
        """Start from rendered units another command kept (`frozen_units`): the caller makes
        sure the same code rendered them, since a key names a unit's inputs, not the code."""
        for key, data in units.items():
            self._kept.setdefault(key, _Frozen(True, data, False))


class _Built(NamedTuple):
    """A built value as `Memo.built` keeps it, with what it was built from and of."""

    given: object  # held, so its id names no other object while this is kept
    asked: tuple[tuple[tuple[str, str], Hashable], ...]  # (question, path) -> the answer
    result: Any


def _answer(snapshot: source.Snapshot, question: str, path: str) -> Hashable:
    """What `snapshot` answers to a question a build may ask (file contents by their id)."""
    if question == "exists":
        return snapshot.exists(path)
    if question == "is_dir":
        return snapshot.is_dir(path)
    if question == "size":
        return snapshot.size(path)
    if question == "files_under":
        return tuple(snapshot.files_under(path))
    if question == "refusals":
        return tuple(snapshot.refusals(path))
    if question == "display":
        return snapshot.display(path)
    if question == "read_bytes":
        return blob_id(snapshot.read_bytes(path))
    assert question == "read_text", question
    return _text_digest(snapshot.read_text(path))


def _text_digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass"), usedforsecurity=False).hexdigest()


def _answers_hold(
    asked: Iterable[tuple[tuple[str, str], Hashable]], snapshot: source.Snapshot
) -> bool:
    return all(_answer(snapshot, *question) == answer for question, answer in asked)


class _Asking:
    """A snapshot that notes each question asked of it and the answer (see `Memo.built`)."""

    def __init__(self, inner: source.Snapshot) -> None:
        self._inner = inner
        self.asked: dict[tuple[str, str], Hashable] = {}

    def _noted(self, question: str, path: str, answer: T, noted: Hashable = _ABSENT) -> T:
        self.asked.setdefault((question, path), answer if noted is _ABSENT else noted)
        return answer

    def exists(self, path: str) -> bool:
        return self._noted("exists", path, self._inner.exists(path))

    def is_dir(self, path: str) -> bool:
        return self._noted("is_dir", path, self._inner.is_dir(path))

    def size(self, path: str) -> int:
        return self._noted("size", path, self._inner.size(path))

    def files_under(self, path: str) -> list[str]:
        found = self._inner.files_under(path)
        return self._noted("files_under", path, found, tuple(found))

    def refusals(self, path: str) -> list[tuple[str, str]]:
        found = self._inner.refusals(path)
        return self._noted("refusals", path, found, tuple(found))

    def display(self, path: str) -> str:
        return self._noted("display", path, self._inner.display(path))

    def read_bytes(self, path: str) -> bytes:
        data = self._inner.read_bytes(path)
        return self._noted("read_bytes", path, data, blob_id(data))

    def read_text(self, path: str) -> str:
        text = self._inner.read_text(path)
        return self._noted("read_text", path, text, _text_digest(text))

    def yaml_files(self) -> Iterator[str]:
        raise NotImplementedError("a build reads the files it names, not the file list")

    def revision(self) -> str:
        raise NotImplementedError("a build must not depend on the revision")

    def origin(self) -> str:
        raise NotImplementedError("a build must not depend on the origin")


def digest(key: Hashable) -> Hashable:
    """A short stand-in for a key: Python does not cache a tuple's hash, so every lookup of a
    deep key walked all of it again, three times a unit, a visible share of a warm tick's
    render. marshal's format 2 writes equal values as equal
    bytes (no references by identity); a key it cannot write (one with an `unknown` value)
    stays itself and, as before, matches nothing."""
    found = content_digest(key)
    return key if found is None else found


def content_digest(value: Any) -> bytes | None:
    """A hash of `value`'s exact content: marshal's format 2 bytes, which tell `1`, `1.0` and
    `True` apart, keep key order and write equal values as equal bytes; None when marshal
    cannot write the value."""
    try:
        data = marshal.dumps(value, 2)
    except ValueError:
        return None
    return hashlib.blake2b(data, digest_size=20).digest()


def data_fingerprint(value: Any) -> Hashable:
    """`fingerprint` for plain data (dicts, lists, scalars, as templates read), in one step:
    its content digest, which tells the same apart as `fingerprint` does. Data marshal cannot
    write falls back to `fingerprint`."""
    found = content_digest(value)
    return fingerprint(value) if found is None else found


class _Frozen(NamedTuple):
    """A rendered unit as the memo keeps it (see `_freeze`)."""

    marshalled: bool  # `data` is marshal bytes (else a deep copy)
    data: Any
    secret: bool  # it holds a Secret: never handed out by `frozen_units`


def _freeze(value: Any) -> _Frozen:
    """Rendered data as `marshal` bytes: a copy that cannot change, cheap to keep (the garbage
    collector does not walk bytes) and fast to copy out again; `marshal` round-trips dicts,
    lists, tuples and scalars with their exact types and order. Anything else a template could
    produce (a date) is deep-copied instead."""
    secret = _holds_secret(value)
    try:
        return _Frozen(True, marshal.dumps(value), secret)
    except ValueError:
        return _Frozen(False, copy.deepcopy(value), secret)


def _thaw(kept: _Frozen) -> Any:
    return marshal.loads(kept.data) if kept.marshalled else copy.deepcopy(kept.data)


def _holds_secret(value: Any) -> bool:
    """Whether rendered data (a list of objects, or of (object, source) pairs) holds a Secret."""
    if isinstance(value, dict):
        return objects.is_secret(value)
    if isinstance(value, list | tuple):
        return any(_holds_secret(item) for item in value)
    return False


def fingerprint(value: object) -> Hashable:
    """A hashable stand-in for a model value: equal fingerprints mean values of the same types
    that are equal, so whatever is rendered from one is what is rendered from the other.

    Stricter than `==` on purpose: `1`, `1.0` and `True` differ (they render differently), and
    floats compare by `repr` (`-0.0` is not `0.0`). Mappings keep their order (it is the order
    fields are written in). Dataclass fields with `compare=False` (where a value came from: its
    manifest, its document) are left out; render reads from those only the source file it
    stamps, which callers stamp afresh. A value of any other type never matches anything.
    """
    # The exact types a model is made of first, by identity: a tick fingerprints every model
    # value of the repo, and an isinstance check against an ABC (Mapping) is a slow path.
    kind: Any = type(value)
    if value is None or kind in _SCALARS:
        return (kind.__name__, value)
    if kind is dict:
        mapping = cast(dict[Any, Any], value)
        return ("map", tuple((fingerprint(k), fingerprint(v)) for k, v in mapping.items()))
    if kind is tuple or kind is list:
        return (kind.__name__, tuple(fingerprint(v) for v in cast(list[Any], value)))
    if kind is float:
        return ("float", repr(value))
    names = _compared_fields(kind)
    if names is not None:
        return (kind.__qualname__, tuple((n, fingerprint(getattr(value, n))) for n in names))
    if isinstance(value, enum.Enum):
        return (kind.__qualname__, value.name)
    if isinstance(value, Mapping):
        return ("map", tuple((fingerprint(k), fingerprint(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return (type(value).__name__, tuple(fingerprint(v) for v in value))
    if isinstance(value, set | frozenset):
        return ("set", frozenset(fingerprint(v) for v in value))
    return ("unknown", object())  # a fresh object equals nothing: never reused, never wrong


_SCALARS = frozenset({str, int, bool, bytes})


@functools.cache
def _compared_fields(cls: type) -> tuple[str, ...] | None:
    """The fields that compare of a dataclass type (None: not a dataclass, or an enum)."""
    if not dataclasses.is_dataclass(cls) or issubclass(cls, enum.Enum):
        return None
    return tuple(f.name for f in dataclasses.fields(cls) if f.compare)


def blob_id(data: bytes) -> str:
    """The id git gives a file with these bytes (`git hash-object`), so a work-tree file and
    the same file in a commit get the same id."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def file_id(snapshot: source.Snapshot, path: str) -> str:
    """The id of the bytes at `path`: from the tree for a commit (nothing read), else hashed.
    For a decrypting snapshot, the id of the file as stored (the ciphertext of an encrypted one:
    one memo serves one set of keys)."""
    snapshot = _stored(snapshot)
    if isinstance(snapshot, gitsnapshot.GitSnapshot):
        return snapshot.blob_id(path)
    return blob_id(snapshot.read_bytes(path))


def text_id(snapshot: source.Snapshot, path: str) -> tuple[str, str]:
    """An id of what `snapshot.read_text(path)` returns, from the bytes when it can be.

    A commit's text is its bytes decoded as they are, so the blob id names it ("raw"). A work
    tree's text is read with universal newlines, the same as the bytes decoded as they are
    exactly when they hold no carriage return: then it is "raw" too and shares results with the
    commit; otherwise (or for any other snapshot) the text itself is hashed.
    """
    snapshot = _stored(snapshot)
    if isinstance(snapshot, gitsnapshot.GitSnapshot):
        return ("raw", snapshot.blob_id(path))
    if isinstance(snapshot, source.DirectorySnapshot):
        data = snapshot.read_bytes(path)
        if b"\r" not in data:
            return ("raw", blob_id(data))
    return ("text", _text_digest(snapshot.read_text(path)))


def _stored(snapshot: source.Snapshot) -> source.Snapshot:
    return snapshot.inner if isinstance(snapshot, decryption.DecryptingSnapshot) else snapshot


def files(snapshot: source.Snapshot, roots: Iterable[str]) -> Hashable:
    """What rendering reads below each root (a code folder, a model, a PEM file): whether it
    exists, and every file under it with the id of its bytes (never the bytes)."""
    return tuple(
        (
            root,
            tuple((path, file_id(snapshot, path)) for path in snapshot.files_under(root))
            if snapshot.exists(root)
            else None,
        )
        for root in roots
    )
