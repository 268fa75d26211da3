"""Editing Extension manifests in a repo's YAML text: the pure half of `reconciler extension`.

`reconciler extension create|update|delete` mirror the cloud CLI's lifecycle verbs
(`k8s-extension create --name X --config key=value --config-protected key=value`) by editing the
manifests repo instead of calling a cloud API. This module holds the editing itself, as functions
from YAML text to YAML text: parsing `key=value` arguments, finding an Extension document by name
in a file that may hold several documents, writing a new manifest, changing or removing settings,
and removing a document. Reading and writing files, validating the result with `repo.load` and
committing are `reconciler.cli.extension`'s job.

Edits keep the user's file: only the document being edited is re-emitted (by ruamel.yaml in
round-trip mode, so its comments, key order, quoting and flow style survive); every other document
of the file, and its `---` line, are kept byte for byte. Values given on the command line follow
the cloud CLI: strings, except `true` / `false` in any case, which become YAML booleans (the
settings table accepts either). Numbers stay strings, since no setting is numeric and a node label
such as `1.10` must not turn into `1.1`. A string that a YAML 1.1 reader would take for something
else (`yes`, `1.5`, `2024-01-01`) is written quoted. Setting keys match as the settings table
matches them: case-insensitively, older names standing for their new one, `nodeSelector.LABEL`
reaching into a `nodeSelector` map when the document has one.

Protected values (`configProtected`) are secrets: no message raised here contains one.

Pure: no file access, no clock.
"""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import CommentMark
from ruamel.yaml.error import YAMLError as RuamelYAMLError
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.scalarstring import SingleQuotedScalarString
from ruamel.yaml.tokens import CommentToken

from reconciler.model import extensions, manifests, settings

CONFIG = "config"
PROTECTED = "configProtected"
_NODE_SELECTOR = "nodeselector"
_DOCUMENT_START = re.compile(r"---(?=[ \t\r\n]|$)")
_MARKER_ONLY = re.compile(r"---[ \t]*(#.*)?\r?\n?")
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
    for chunk in _split(text):
        if "Extension" not in chunk.text or (name is not None and name not in chunk.text):
            continue  # cheap: most documents of a big repo are not extensions
        document = _load_quietly(chunk)
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
    document["metadata"] = CommentedMap(name=_plain(name))
    document["spec"] = spec
    return _dump(document, _Style())


def add_document(text: str, document: str) -> str:
    """`text` with `document` appended as its last document (after a `---` line)."""
    if not text.strip():
        return document
    newline = "\r\n" if "\r\n" in text else "\n"
    separator = "" if text.endswith(("\n", "\r")) else newline
    return f"{text}{separator}---{newline}{document.replace(chr(10), newline)}"


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
    document, style = _load_for_edit(chunk)
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
        missing = _python(section) is None  # absent, or `config:` with nothing under it
        if missing:
            section = CommentedMap()
        if not isinstance(section, CommentedMap):
            raise EditError(f"spec.{section_name} of extension {name!r} is not a mapping")
        for assignment in assignments:
            if _assign(section, assignment, flatten, (spec, section_name)):
                changes.append(f"{section_name}.{assignment.key}")
        if missing:
            _append(spec, section_name, section)  # whole, so comments after it stay after it
    for key in remove:
        removed.extend(_remove(spec, key, name))
    secrets = before | _protected_values(spec)
    if not changes and not removed:
        return Edited(text, secrets=secrets)
    edited = chunk.marker + _dump(document, style)
    return Edited(
        _join(chunks, index, edited),
        tuple(dict.fromkeys(changes)),
        tuple(dict.fromkeys(removed)),
        secrets,
    )


def delete(text: str, name: str) -> Deleted:
    """`text` without the Extension document named `name` (its `---` line goes with it)."""
    chunks, index = _find_one(text, name)
    document = _load_quietly(chunks[index])
    spec = document.get("spec") if isinstance(document, Mapping) else None
    secrets = _protected_values(spec) if isinstance(spec, Mapping) else frozenset()
    rest = [chunk for i, chunk in enumerate(chunks) if i != index]
    if not any(chunk.has_content for chunk in rest):
        return Deleted(None, secrets)
    return Deleted("".join(chunk.text for chunk in rest), secrets)


# --- documents in a file -------------------------------------------------------------------


@dataclass(frozen=True)
class _Chunk:
    """One document's text: the `---` line that opens it (if any) and what follows."""

    marker: str
    body: str
    first_line: int  # 1-based line of the body's first line in the file

    @property
    def text(self) -> str:
        return self.marker + self.body

    @property
    def has_content(self) -> bool:
        """More than comments and blank lines (a `---` line alone opens an empty document)."""
        return any(
            line.strip() and not line.lstrip().startswith("#") for line in self.body.splitlines()
        )


def _split(text: str) -> list[_Chunk]:
    """The file cut before every `---` line. YAML forbids `---` at the start of a line inside
    any scalar, so such a line always starts a document."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if _DOCUMENT_START.match(line)]
    bounds = [0, *[s for s in starts if s > 0], len(lines)]
    chunks: list[_Chunk] = []
    for start, end in itertools.pairwise(bounds):
        part = lines[start:end]
        marker = ""
        if part and _DOCUMENT_START.match(part[0]):
            marker = part[0]
            part = part[1:]
        chunks.append(_Chunk(marker, "".join(part), start + 1 + (1 if marker else 0)))
    return chunks or [_Chunk("", "", 1)]


def _join(chunks: Sequence[_Chunk], index: int, replacement: str) -> str:
    return "".join(replacement if i == index else c.text for i, c in enumerate(chunks))


def _find_one(text: str, name: str) -> tuple[list[_Chunk], int]:
    chunks = _split(text)
    matches = [
        i
        for i, chunk in enumerate(chunks)
        if "Extension" in chunk.text and name in chunk.text
        for document in [_load_quietly(chunk)]
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


def _name_line(chunk: _Chunk, document: Mapping[str, Any]) -> int:
    metadata = document.get("metadata")
    if isinstance(metadata, CommentedMap) and "name" in metadata:
        return chunk.first_line + int(metadata.lc.key("name")[0])
    return chunk.first_line


# --- round-trip YAML -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Style:
    """How the edited document is indented, so that re-emitting it keeps the user's layout."""

    mapping: int = 2
    sequence: int = 2
    offset: int = 0
    crlf: bool = False


class _Verbatim(str):
    """A boolean or null scalar exactly as the user wrote it (`False`, `TRUE`, `~`): ruamel
    would re-emit those as `false` / an empty value."""

    value: bool | None

    def __new__(cls, text: str, value: bool | None) -> _Verbatim:
        scalar = super().__new__(cls, text)
        scalar.value = value
        return scalar


class _Constructor(RoundTripConstructor):
    def construct_verbatim_bool(self, node: ScalarNode) -> _Verbatim:
        return _Verbatim(node.value, str(node.value).lower() == "true")

    def construct_verbatim_null(self, node: ScalarNode) -> _Verbatim:
        return _Verbatim(node.value, None)


_Constructor.add_constructor("tag:yaml.org,2002:bool", _Constructor.construct_verbatim_bool)
_Constructor.add_constructor("tag:yaml.org,2002:null", _Constructor.construct_verbatim_null)


class _Representer(RoundTripRepresenter):
    def represent_verbatim(self, data: _Verbatim) -> ScalarNode:
        tag = "tag:yaml.org,2002:null" if data.value is None else "tag:yaml.org,2002:bool"
        node: ScalarNode = self.represent_scalar(tag, str(data))
        return node


_Representer.add_representer(_Verbatim, _Representer.represent_verbatim)


def _python(value: Any) -> Any:
    """A loaded scalar as plain Python (a verbatim boolean / null as bool / None)."""
    return value.value if isinstance(value, _Verbatim) else value


def _yaml(style: _Style) -> YAML:
    loader = YAML(typ="rt")
    loader.Constructor = _Constructor
    loader.Representer = _Representer
    loader.preserve_quotes = True
    loader.width = 4096  # never re-wrap a long value
    loader.indent(mapping=style.mapping, sequence=style.sequence, offset=style.offset)
    return loader


def _load_quietly(chunk: _Chunk) -> Any:
    try:
        return _yaml(_Style()).load(chunk.body)
    except RuamelYAMLError:
        return None


def _load_for_edit(chunk: _Chunk) -> tuple[CommentedMap, _Style]:
    if not _MARKER_ONLY.fullmatch(chunk.marker or "---\n"):
        raise EditError("cannot edit a document whose content starts on its '---' line")
    body = chunk.body.replace("\r\n", "\n")
    style = _guess_style(body, crlf="\r\n" in chunk.body)
    document = _yaml(style).load(body)
    if not isinstance(document, CommentedMap):
        raise EditError("the extension's document is not a mapping")
    return document, style


def _guess_style(body: str, crlf: bool) -> _Style:
    """The mapping indent and the `- ` offset the document itself uses (2 and 0 by default)."""
    mapping: int | None = None
    sequence_offset: int | None = None
    previous_indent = 0
    previous_opens = False
    for line in body.splitlines():
        stripped = line.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(stripped)
        if previous_opens and indent > previous_indent:
            step = indent - previous_indent
            if stripped.startswith("- "):
                sequence_offset = step if sequence_offset is None else sequence_offset
            elif mapping is None:
                mapping = step
        previous_indent = indent
        previous_opens = stripped.rstrip().endswith(":")
    mapping = mapping or 2
    offset = sequence_offset or 0
    return _Style(mapping, max(mapping, offset + 2), offset, crlf)


def _dump(document: Any, style: _Style) -> str:
    out = io.StringIO()
    _yaml(style).dump(document, out)
    text = out.getvalue()
    return text.replace("\n", "\r\n") if style.crlf else text


def _plain(value: str) -> str:
    """`value`, quoted when a YAML 1.1 reader (PyYAML, which `documents` uses) would not read
    it back as this same string: `yes`, `on`, `1.5`, `0777`, `2024-01-01`, `~`."""
    try:
        reads_back = yaml.safe_load(value) == value
    except yaml.YAMLError:
        reads_back = False
    return value if reads_back else SingleQuotedScalarString(value)


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
        value = _plain(value)
    wanted = _canonical(assignment.key)
    matches = [e for e in _entries(section, flatten) if _canonical(e.flat_key) == wanted]
    if not matches:
        target: MutableMapping[Any, Any] = section
        key = assignment.key
        selector = _node_selector_map(section) if flatten else None
        if selector is not None and wanted.startswith(_NODE_SELECTOR + "."):
            target, key = selector, assignment.key.split(".", 1)[1]
        _append(target, key, value)
        return True
    first, *duplicates = matches
    changed = bool(duplicates)
    for duplicate in reversed(duplicates):
        _delete(duplicate, outer)
    if first.flat_key.lower() == assignment.key.lower():
        old = first.container[first.key]
        if _same(old, value):
            return changed
        first.container[first.key] = value
        return True
    # Written under another name (an older alias): the setting takes the name given now.
    if first.nested:
        _delete(first, outer)
        _append(section, assignment.key, value)
    else:
        position = list(section).index(first.key)
        comments = (
            section.ca.items.pop(first.key, None) if isinstance(section, CommentedMap) else None
        )
        del section[first.key]
        _insert(section, position, assignment.key, value, comments)
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
                _delete(entry, (spec, section_name))
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
        _delete(_Entry(section_name, spec, section_name, ()), None)
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
    old = _python(old)
    if isinstance(new, bool):
        return isinstance(old, bool) and old == new
    return isinstance(old, str) and old == new


def _protected_values(spec: Mapping[str, Any]) -> frozenset[str]:
    section = spec.get(PROTECTED)
    if not isinstance(section, Mapping):
        return frozenset()
    values = (_python(v) for v in section.values())
    return frozenset(str(v) for v in values if isinstance(v, str | int | float) and v is not True)


# --- keys and their comments ----------------------------------------------------------------
# ruamel keeps the comment lines that follow a key on that key. A key added after the last one
# would land below them (and below the commented-out block users keep at the end of a section),
# so those lines move to the new last key; a deleted key hands them to the key before it.


def _append(container: MutableMapping[Any, Any], key: Any, value: Any) -> None:
    if key in container:  # a key with no value yet: it keeps its place
        container[key] = value
        return
    previous = _last_holder(container)
    container[key] = value
    if previous is None:
        return
    tail = _take_tail(*previous)
    if tail is not None:
        _give_tail(_last_holder(container) or (container, key), tail)


def _insert(
    container: MutableMapping[Any, Any], position: int, key: Any, value: Any, comments: Any
) -> None:
    if isinstance(container, CommentedMap):
        container.insert(position, key, value)
        if comments is not None:
            container.ca.items[key] = comments
    else:
        container[key] = value


def _delete(entry: _Entry, outer: tuple[Any, Any] | None) -> None:
    """Remove one entry, and a nested map it leaves empty. The comment lines that followed it
    stay, after the line that now comes before them (`outer` is the (spec, section) above the
    section, the line before the section's first key)."""
    container, key = entry.container, entry.key
    parents = list(entry.parents)
    while parents and len(container) == 1:
        container, key = parents.pop()
    above = parents[-1] if parents else outer
    tail = _take_tail(*(_last_holder(container[key]) or (container, key)))
    keys = list(container)
    position = keys.index(key)
    del container[key]
    if isinstance(container, CommentedMap):
        container.ca.items.pop(key, None)
    if tail is None:
        return
    if position > 0:
        previous = keys[position - 1]
        _give_tail(_last_holder(container[previous]) or (container, previous), tail)
    elif above is not None:
        _give_tail(above, tail)


def _last_holder(node: Any) -> tuple[Any, Any] | None:
    """The (container, key) of the deepest last item below `node`: where ruamel keeps the
    comment lines that follow the node."""
    holder: tuple[Any, Any] | None = None
    while isinstance(node, CommentedMap | CommentedSeq) and len(node):
        if getattr(node, "fa", None) is not None and node.fa.flow_style():
            break
        key = next(reversed(node)) if isinstance(node, CommentedMap) else len(node) - 1
        holder = (node, key)
        node = node[key]
    return holder


def _take_tail(container: Any, key: Any) -> str | None:
    """Detach the full comment / blank lines after `container[key]`'s line; its end-of-line
    comment stays."""
    if not isinstance(container, CommentedMap | CommentedSeq):
        return None
    slots = container.ca.items.get(key)
    if not slots:
        return None
    index = 2 if isinstance(container, CommentedMap) else 0
    token = slots[index] if len(slots) > index else None
    if not isinstance(token, CommentToken):
        return None
    head, newline, tail = str(token.value).partition("\n")
    if not tail:
        return None
    if head.strip():
        token.value = head + newline
    else:
        slots[index] = None
    return "\n" + tail


def _give_tail(holder: tuple[Any, Any], tail: str) -> None:
    """Attach comment lines `tail` (starting with a newline) after `container[key]`'s line."""
    container, key = holder
    index = 2 if isinstance(container, CommentedMap) else 0
    slots = container.ca.items.setdefault(key, [None, None, None, None])
    while len(slots) <= index:
        slots.append(None)
    token = slots[index]
    if isinstance(token, CommentToken):
        existing = str(token.value)
        token.value = (existing if existing.endswith("\n") else existing + "\n") + tail[1:]
    else:
        slots[index] = CommentToken(tail, CommentMark(0), None)
