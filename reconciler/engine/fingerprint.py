"""The desired-state fingerprint: when planning may skip the server's dry run of an object.

Every object the reconciler applies carries, in the annotation `ANNOTATION`, a hash of exactly
what was sent (without the source-revision annotation, which moves with every commit and never
makes an object differ, and without the fingerprint itself). An object is `in_sync` - unchanged
since our last apply, and no one else has changed our fields - when its live copy:

- carries the same fingerprint as the object we would send now, and
- has a managedFields entry of our field manager (operation Apply, the main resource) that still
  owns every field we send: whoever writes one of our fields (`kubectl edit`, another applier
  forcing) takes it over, and a field someone removed is no longer in anyone's set.

Only objects that are not in sync are dry-run and applied; a server-side dry run stays the source
of truth for *what* changes, the fingerprint only says when it can be skipped. Pure: works on
the desired object and the live object's metadata.

The GitOps loop asks both questions for every object on every tick, and nearly all objects are
as they were: so the answers are remembered (`_Known`, a bounded table in this process) under the
exact content they were computed from (`memo.content_digest`, the memo's hash of the `marshal`
bytes, which tell `1`, `1.0` and `True` apart and keep key order; a live object from the server
by its uid and resourceVersion, a desired one's fields by its fingerprint), and walking or
JSON-encoding an object happens once per content, not once per tick. A remembered answer is the
computed one, by construction. A one-shot command starts with the answers the last one of the
same repo kept on disk (`remembered` / `learn`, through `cli/rendercache.py`): at 10,000
objects, walking every object's fields against its managedFields is most of a no-op `apply`'s
planning.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

from reconciler import objects
from reconciler.model import memo

ANNOTATION = "gitops.mlext.io/applied-fingerprint"
_UNHASHED = (objects.SOURCE_REVISION_ANNOTATION, ANNOTATION)
# Identity, not fields: managedFields never list these.
_IDENTITY = {("apiVersion",), ("kind",), ("metadata", "name"), ("metadata", "namespace")}

Path = tuple[str, ...]


T = TypeVar("T")


class _Known:
    """Answers by the digest of what they were computed from; the oldest go first once the
    table is full (it holds a few times the objects one tick asks about)."""

    LIMIT = 1 << 16

    def __init__(self) -> None:
        self._answers: dict[Hashable, Any] = {}
        self.computed = 0
        self._lock = threading.Lock()  # the loop's threads (a tick, the record writes) share it

    def get(self, digest: Hashable | None, compute: Callable[[], T]) -> T:
        if digest is None:
            return compute()
        with self._lock:
            if digest in self._answers:
                found: T = self._answers[digest]
                return found
        answer = compute()
        with self._lock:
            self._answers[digest] = answer
            self.computed += 1
            self._trim()
        return answer

    def _trim(self) -> None:
        """Drop the oldest answers past LIMIT (the caller holds the lock)."""
        while len(self._answers) > self.LIMIT:
            del self._answers[next(iter(self._answers))]

    def items(self) -> list[tuple[Hashable, Any]]:
        with self._lock:
            return list(self._answers.items())

    def learn(self, answers: Iterable[tuple[Hashable, Any]]) -> None:
        """Take answers computed elsewhere (by this code: the caller checks)."""
        with self._lock:
            self._answers.update(answers)
            self._trim()


_FINGERPRINTS = _Known()
_COVERED = _Known()


def remembered() -> dict[str, list[tuple[Hashable, Any]]]:
    """The answers this process holds (digests, fingerprints, booleans: `marshal` can keep
    them), for `learn` in the next command."""
    return {"fingerprints": _FINGERPRINTS.items(), "covered": _COVERED.items()}


def learn(answers: Mapping[str, Iterable[tuple[Hashable, Any]]]) -> None:
    """Take the answers another process of the same code `remembered`."""
    _FINGERPRINTS.learn(answers.get("fingerprints", ()))
    _COVERED.learn(answers.get("covered", ()))


def computed() -> int:
    """How many answers this process computed (not learned): whether there is news to keep."""
    return _FINGERPRINTS.computed + _COVERED.computed


def _hashed(obj: Mapping[str, Any]) -> dict[str, Any]:
    """`obj` without the annotations the fingerprint leaves out (top level and metadata new)."""
    clean = dict(obj)
    metadata = dict(clean.get("metadata") or {})
    annotations = {
        k: v for k, v in (metadata.get("annotations") or {}).items() if k not in _UNHASHED
    }
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)
    clean["metadata"] = metadata
    return clean


def of(obj: Mapping[str, Any], content_id: Hashable | None = None) -> str:
    """The fingerprint of what would be sent for `obj` (a hex digest, 32 characters), looked
    up by `content_id` when the caller has one (a digest naming all of `obj` but its source
    revision: `render.Rendered.content_id`), else by a digest of all of it."""
    if content_id is None:
        clean = _hashed(obj)
        return _FINGERPRINTS.get(memo.content_digest(clean), lambda: _of_clean(clean))
    return _FINGERPRINTS.get(content_id, lambda: _of_clean(_hashed(obj)))


def _of_clean(clean: Mapping[str, Any]) -> str:
    text = json.dumps(clean, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def stamp(obj: objects.Object, content_id: Hashable | None = None) -> objects.Object:
    """`obj` carrying its fingerprint annotation (a new top level and metadata; the rest is
    shared with `obj`, which is left as it was). `content_id`: as for `of`."""
    metadata = obj["metadata"]
    annotations = {**(metadata.get("annotations") or {}), ANNOTATION: of(obj, content_id)}
    return {**obj, "metadata": {**metadata, "annotations": annotations}}


def recorded(live: Mapping[str, Any] | None) -> str:
    """The fingerprint the live object carries ("" when none)."""
    annotations = ((live or {}).get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(ANNOTATION) or "")


def our_entry(live: Mapping[str, Any], field_manager: str) -> Mapping[str, Any] | None:
    """Our manager's managedFields entry for applies to the main resource, if any."""
    for entry in (live.get("metadata") or {}).get("managedFields") or []:
        if (
            entry.get("manager") == field_manager
            and entry.get("operation") == "Apply"
            and not entry.get("subresource")
        ):
            found: Mapping[str, Any] = entry
            return found
    return None


def in_sync(stamped: Mapping[str, Any], live: Mapping[str, Any] | None, field_manager: str) -> bool:
    """Whether `stamped` (a desired object with its fingerprint) needs no dry run or apply:
    `live` carries the same fingerprint and our manager still owns every field we send."""
    if live is None:
        return False
    wanted = recorded(stamped)
    if not wanted or recorded(live) != wanted:
        return False
    entry = our_entry(live, field_manager)
    if entry is None:
        return False
    fields = entry.get("fieldsV1") or {}
    owned = _owned_id(live, fields)
    key = None if owned is None else (_sent_id(stamped, wanted), owned)
    return _COVERED.get(key, lambda: _owns_all(fields, stamped))


def _sent_id(stamped: Mapping[str, Any], wanted: str) -> Hashable:
    """What decides the fields an apply of `stamped` sets, with nothing walked or encoded: its
    fingerprint (a digest of all of it but the two annotations left out: the fingerprint, which
    it carries, and the source revision, whose value never changes which fields are sent) and
    whether it carries the source revision."""
    annotations = (stamped.get("metadata") or {}).get("annotations") or {}
    return (wanted, annotations.get(objects.SOURCE_REVISION_ANNOTATION) is not None)


def _owned_id(live: Mapping[str, Any], fields: Mapping[str, Any]) -> Hashable | None:
    """What names our managedFields set of `live`: the object's uid and resourceVersion when it
    has them (the server gives a new version to every change, managedFields too: nothing to
    encode), else a digest of the set."""
    metadata = live.get("metadata") or {}
    uid, version = metadata.get("uid"), metadata.get("resourceVersion")
    if isinstance(uid, str) and isinstance(version, str) and uid and version:
        return ("version", uid, version)
    return memo.content_digest(fields)


def _owns_all(fields: Mapping[str, Any], stamped: Mapping[str, Any]) -> bool:
    """Whether the managedFields set `fields` owns every field an apply of `stamped` sets."""
    owned, whole = set(), set()
    for path, atomic in owned_paths(fields):
        owned.add(path)
        if atomic:
            whole.add(path)
    return all(_covered(path, owned, whole) for path in sent_paths(stamped))


def _covered(path: Path, owned: set[Path], whole: set[Path]) -> bool:
    """Whether our entry owns `path`: named itself, or inside a map or struct it owns whole
    (an atomic one such as a Service's selector or a binding's roleRef)."""
    return path in owned or any(path[:n] in whole for n in range(1, len(path)))


def sent_paths(obj: Mapping[str, Any]) -> Iterator[Path]:
    """The field paths an apply of `obj` sets, as managedFields name them down to the first
    list (a list's items are keyed inside it; the list itself is the path we check)."""
    for path in _leaves(obj, ()):
        if path not in _IDENTITY:
            yield path


def _leaves(value: Any, path: Path) -> Iterator[Path]:
    if isinstance(value, dict) and value:
        for key, child in value.items():
            if child is None:
                continue  # a null in an apply sets nothing
            yield from _leaves(child, (*path, str(key)))
        return
    yield path


def owned_paths(fields: Mapping[str, Any], path: Path = ()) -> Iterator[tuple[Path, bool]]:
    """Every path a managedFields `fieldsV1` set names (each map field, down to lists), and
    whether it is owned whole (nothing named below it: an atomic value, map or list)."""
    for key, child in fields.items():
        if not key.startswith("f:"):
            continue  # ".", list items "k:"/"v:"/"i:": below the list's own path
        here = (*path, key[2:])
        below = isinstance(child, dict) and any(k != "." for k in child)
        yield here, not below
        if isinstance(child, dict):
            yield from owned_paths(child, here)
