"""Editing Extension manifests in a repo's YAML text: the pure half of `reconciler extension`.

`reconciler extension create|update|delete` mirror the cloud CLI's lifecycle verbs
(`k8s-extension create --name X --config key=value --config-protected key=value`) by editing the
manifests repo instead of calling a cloud API. This module holds what those edits mean, as
functions from YAML text to YAML text: parsing `key=value` arguments, finding an Extension document
by name in a file that may hold several documents, writing a new manifest, changing or removing
settings, and removing a document. Reading and writing files, validating the result with
`repo.load` and committing are the command line's job (`reconciler.cli.extension`, which applies
the edit through `reconciler.cli.repochange`).

Edits keep the user's file: the style-preserving YAML round trip underneath is `yamledit`'s (only
the document being edited is re-emitted, with its comments, key order, quoting and flow style;
every other document of the file, and its `---` line, are kept byte for byte). Values given on the
command line follow the cloud CLI: strings, except `true` / `false` in any case, which become YAML
booleans (the settings table accepts either). Numbers stay strings, since no setting is numeric
and a node label such as `1.10` must not turn into `1.1`. A string that a YAML 1.1 reader would
take for something else (`yes`, `1.5`, `2024-01-01`) is written quoted. Setting keys match as the
settings table matches them: case-insensitively, older names standing for their new one,
`nodeSelector.LABEL` reaching into a `nodeSelector` map when the document has one.

Protected values (`configProtected`) are secrets: no message raised here contains one.

Pure: no file access, no clock.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml.comments import CommentedMap

from reconciler.model import extensions, manifests, settings, yamledit

CONFIG = "config"
PROTECTED = "configProtected"
_NODE_SELECTOR = "nodeselector"
_ALIASES = {alias.name.lower(): alias for alias in settings.ALIASES}

Value = str | bool


class EditError(Exception):
    """An edit that cannot be made (the message names keys, never a protected value)."""


@dataclass(frozen=True)
class Assignment:
    """One `--config key=value` (or `--config-protected`) argument, parsed."""

    key: str
    value: Value


@dataclass(frozen=True)
class Located:
    """An Extension document in a file: its name and the line of its `metadata.name`."""

    name: str
    line: int


@dataclass(frozen=True)
class Edited:
    """The text of a whole file after an edit, and what changed (setting keys, no values)."""

    text: str
    set: tuple[str, ...] = ()  # `config.key` / `configProtected.key`, as given
    removed: tuple[str, ...] = ()  # as they were written in the file
    # Every configProtected value the edited document held before or after: never to be shown.
    secrets: frozenset[str] = field(default=frozenset(), repr=False)

    @property
    def changed(self) -> bool:
        return bool(self.set or self.removed)

    @property
    def summary(self) -> str:
        """`set config.a, config.b; removed config.c` (keys only, never values)."""
        parts = [f"set {', '.join(self.set)}"] if self.set else []
        parts += [f"removed {', '.join(self.removed)}"] if self.removed else []
        return "; ".join(parts)


@dataclass(frozen=True)
class Deleted:
    """The text of the file once the document is gone; None when no other document is left."""

    text: str | None
    secrets: frozenset[str] = field(default=frozenset(), repr=False)


def parse_assignment(argument: str, protected: bool = False) -> Assignment:
    """`key=value` -> Assignment; `true` / `false` (any case) become booleans outside
    configProtected, everything else stays a string. The first `=` splits key from value."""
    key, equals, value = argument.partition("=")
    key = key.strip()
    if not equals or not key:
        shown = "" if protected else f" (got {argument!r})"
        raise EditError(f"expected KEY=VALUE{shown}")
    if not value:
        hint = "" if protected else f" (to remove it: --remove-config {key})"
        raise EditError(f"{key} has no value{hint}")
    if not protected and value.strip().lower() in ("true", "false"):
        return Assignment(key, value.strip().lower() == "true")
    return Assignment(key, value)


def locate(text: str, name: str | None = None) -> list[Located]:
    """Every Extension document in `text` (only those named `name` when given), in file order.

    A document that does not parse is skipped: reporting it is the validator's job.
    """
    found: list[Located] = []
    for chunk in yamledit.split(text):
        if "Extension" not in chunk.text or (name is not None and name not in chunk.text):
            continue  # cheap: most documents of a big repo are not extensions
        document = yamledit.load_quietly(chunk)
        if document is None or not _is_extension(document):
            continue
        document_name = _name_of(document)
        if name is None or document_name == name:
            found.append(Located(document_name, _name_line(chunk, document)))
    return found


def new_manifest(
    name: str,
    cluster_type: str = extensions.MANAGED,
    release_namespace: str = extensions.DEFAULT_NAMESPACE,
    config: Sequence[Assignment] = (),
    protected: Sequence[Assignment] = (),
) -> str:
    """The YAML text of a new Extension manifest (one document, no `---`)."""
    spec = CommentedMap()
    spec["extensionType"] = extensions.EXTENSION_TYPE
    spec["clusterType"] = cluster_type
    spec["releaseNamespace"] = release_namespace
    spec[CONFIG] = CommentedMap()
    for assignment in config:
        _assign(spec[CONFIG], assignment, flatten=True)
    if protected:
        spec[PROTECTED] = CommentedMap()
        for assignment in protected:
            _assign(spec[PROTECTED], assignment, flatten=False)
    document = CommentedMap()
    document["apiVersion"] = manifests.GITOPS_API_VERSION
    document["kind"] = manifests.EXTENSION
    document["metadata"] = CommentedMap(name=yamledit.plain(name))
    document["spec"] = spec
    return yamledit.dump(document, yamledit.Style())


def update(
    text: str,
    name: str,
    config: Sequence[Assignment] = (),
    protected: Sequence[Assignment] = (),
    remove: Sequence[str] = (),
) -> Edited:
    """Set `config` / `protected` settings and remove the settings named in `remove` (from
    either section) on the Extension named `name`, in place.

    Assignments apply in order (the last of the same setting wins). An unchanged document leaves
    the text exactly as it was.
    """
    removed_lower = {_canonical(key) for key in remove}
    for assignment in (*config, *protected):
        if _canonical(assignment.key) in removed_lower:
            raise EditError(f"{assignment.key} is both set and removed")
    chunks, index = _find_one(text, name)
    chunk = chunks[index]
    try:
        document, style = yamledit.load_for_edit(chunk)
    except yamledit.NotEditable as err:
        raise EditError(str(err)) from None
    if not isinstance(document, CommentedMap):
        raise EditError("the extension's document is not a mapping")
    spec = document.get("spec")
    if not isinstance(spec, MutableMapping):
        raise EditError(f"extension {name!r} has no spec mapping to edit")
    before = _protected_values(spec)
    changes: list[str] = []
    removed: list[str] = []
    for section_name, assignments, flatten in (
        (CONFIG, config, True),
        (PROTECTED, protected, False),
    ):
        if not assignments:
            continue
        section = spec.get(section_name)
        missing = yamledit.python(section) is None  # absent, or `config:` with nothing under it
        if missing:
            section = CommentedMap()
        if not isinstance(section, CommentedMap):
            raise EditError(f"spec.{section_name} of extension {name!r} is not a mapping")
        for assignment in assignments:
            if _assign(section, assignment, flatten, (spec, section_name)):
                changes.append(f"{section_name}.{assignment.key}")
        if missing:
            # whole, so comments after it stay after it
            yamledit.append(spec, section_name, section)
    for key in remove:
        removed.extend(_remove(spec, key, name))
    secrets = before | _protected_values(spec)
    if not changes and not removed:
        return Edited(text, secrets=secrets)
    edited = chunk.marker + yamledit.dump(document, style)
    return Edited(
        yamledit.join(chunks, index, edited),
        tuple(dict.fromkeys(changes)),
        tuple(dict.fromkeys(removed)),
        secrets,
    )


def delete(text: str, name: str) -> Deleted:
    """`text` without the Extension document named `name` (its `---` line goes with it)."""
    chunks, index = _find_one(text, name)
    document = yamledit.load_quietly(chunks[index])
    spec = document.get("spec") if isinstance(document, Mapping) else None
    secrets = _protected_values(spec) if isinstance(spec, Mapping) else frozenset()
    rest = [chunk for i, chunk in enumerate(chunks) if i != index]
    if not any(chunk.has_content for chunk in rest):
        return Deleted(None, secrets)
    return Deleted("".join(chunk.text for chunk in rest), secrets)


# --- the Extension in a file ---------------------------------------------------------------


def _find_one(text: str, name: str) -> tuple[list[yamledit.Chunk], int]:
    chunks = yamledit.split(text)
    matches = [
        i
        for i, chunk in enumerate(chunks)
        if "Extension" in chunk.text and name in chunk.text
        for document in [yamledit.load_quietly(chunk)]
        if document is not None and _is_extension(document) and _name_of(document) == name
    ]
    if not matches:
        raise EditError(f"no extension named {name!r} in this file")
    if len(matches) > 1:
        lines = ", ".join(str(chunks[i].first_line) for i in matches)
        raise EditError(f"extension {name!r} is declared more than once (lines {lines})")
    return chunks, matches[0]


def _is_extension(document: Any) -> bool:
    return isinstance(document, Mapping) and document.get("kind") == manifests.EXTENSION


def _name_of(document: Mapping[str, Any]) -> str:
    metadata = document.get("metadata")
    return str(metadata.get("name", "")) if isinstance(metadata, Mapping) else ""


def _name_line(chunk: yamledit.Chunk, document: Mapping[str, Any]) -> int:
    metadata = document.get("metadata")
    if isinstance(metadata, CommentedMap) and "name" in metadata:
        return chunk.first_line + int(metadata.lc.key("name")[0])
    return chunk.first_line


# --- settings in a section ------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    """A setting as written: its flat key (`nodeSelector.disk`) and where it sits."""

    flat_key: str
    container: MutableMapping[Any, Any]
    key: Any
    parents: tuple[tuple[MutableMapping[Any, Any], Any], ...]  # (map, key) down to container

    @property
    def nested(self) -> bool:
        return bool(self.parents)


def _canonical(key: str) -> str:
    """The setting a key stands for: case folded, older names mapped to their new one, a node
    selector label kept as written (labels are case-sensitive)."""
    lower = key.lower()
    if lower.startswith(_NODE_SELECTOR + "."):
        return f"{_NODE_SELECTOR}.{key[len(_NODE_SELECTOR) + 1 :]}"
    alias = _ALIASES.get(lower)
    return alias.target.lower() if alias is not None else lower


def _entries(
    section: MutableMapping[Any, Any],
    flatten: bool,
    prefix: str = "",
    parents: tuple[tuple[MutableMapping[Any, Any], Any], ...] = (),
) -> Iterator[_Entry]:
    """Every setting of a section, flat, as `settings` reads them (nested maps become dotted
    keys; the labels of a `nodeSelector` map become `nodeSelector.LABEL`)."""
    for key, value in list(section.items()):
        flat = f"{prefix}{key}"
        if flatten and isinstance(value, MutableMapping):
            inner = (*parents, (section, key))
            if flat.lower() == _NODE_SELECTOR:
                yield _Entry(flat, section, key, parents)
                for label in list(value):
                    yield _Entry(f"{flat}.{label}", value, label, inner)
            else:
                yield from _entries(value, flatten, f"{flat}.", inner)
        else:
            yield _Entry(flat, section, key, parents)


def _assign(
    section: MutableMapping[Any, Any],
    assignment: Assignment,
    flatten: bool,
    outer: tuple[Any, Any] | None = None,
) -> bool:
    """Set one setting; True when the document changed. `outer` is (spec, section name)."""
    value: Value = assignment.value
    if isinstance(value, str):
        value = yamledit.plain(value)
    wanted = _canonical(assignment.key)
    matches = [e for e in _entries(section, flatten) if _canonical(e.flat_key) == wanted]
    if not matches:
        target: MutableMapping[Any, Any] = section
        key = assignment.key
        selector = _node_selector_map(section) if flatten else None
        if selector is not None and wanted.startswith(_NODE_SELECTOR + "."):
            target, key = selector, assignment.key.split(".", 1)[1]
        yamledit.append(target, key, value)
        return True
    first, *duplicates = matches
    changed = bool(duplicates)
    for duplicate in reversed(duplicates):
        yamledit.delete(duplicate.container, duplicate.key, duplicate.parents, outer)
    if first.flat_key.lower() == assignment.key.lower():
        old = first.container[first.key]
        if _same(old, value):
            return changed
        first.container[first.key] = value
        return True
    # Written under another name (an older alias): the setting takes the name given now.
    if first.nested:
        yamledit.delete(first.container, first.key, first.parents, outer)
        yamledit.append(section, assignment.key, value)
    else:
        yamledit.rename(section, first.key, assignment.key, value)
    return True


def _remove(spec: MutableMapping[Any, Any], key: str, name: str) -> list[str]:
    """Remove setting `key` from whichever section holds it; the keys removed."""
    wanted = _canonical(key)
    removed: list[str] = []
    for section_name, flatten in ((CONFIG, True), (PROTECTED, False)):
        section = spec.get(section_name)
        if not isinstance(section, MutableMapping):
            continue
        here: list[str] = []
        for entry in reversed(list(_entries(section, flatten))):
            canonical = _canonical(entry.flat_key)
            whole_selector = wanted == _NODE_SELECTOR and canonical.startswith(_NODE_SELECTOR + ".")
            if (canonical == wanted or whole_selector) and entry.key in entry.container:
                yamledit.delete(entry.container, entry.key, entry.parents, (spec, section_name))
                here.append(f"{section_name}.{entry.flat_key}")
        if here and not section:
            _empty_section(spec, section_name)
        removed.extend(reversed(here))
    if not removed:
        raise EditError(f"extension {name!r} has no setting {key} to remove")
    return removed


def _empty_section(spec: MutableMapping[Any, Any], section_name: str) -> None:
    """An emptied configProtected goes; config (which the schema requires) becomes `{}`."""
    if section_name == PROTECTED:
        yamledit.delete(spec, section_name)
        return
    section = spec[section_name]
    if isinstance(section, CommentedMap):
        section.fa.set_flow_style()


def _node_selector_map(section: MutableMapping[Any, Any]) -> MutableMapping[Any, Any] | None:
    for key, value in section.items():
        if str(key).lower() == _NODE_SELECTOR and isinstance(value, MutableMapping):
            return value
    return None


def _same(old: Any, new: Value) -> bool:
    old = yamledit.python(old)
    if isinstance(new, bool):
        return isinstance(old, bool) and old == new
    return isinstance(old, str) and old == new


def _protected_values(spec: Mapping[str, Any]) -> frozenset[str]:
    section = spec.get(PROTECTED)
    if not isinstance(section, Mapping):
        return frozenset()
    values = (yamledit.python(v) for v in section.values())
    return frozenset(str(v) for v in values if isinstance(v, str | int | float) and v is not True)
