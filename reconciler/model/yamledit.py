"""Editing YAML text in place: one document of a multi-document file, the rest kept byte for byte.

The generic half of `extensionedit` (which holds what an edit of an Extension manifest means);
nothing here knows what a document declares. A file is cut into `Chunk`s, one per document, each
the `---` line that opens it and the text that follows (`split`, `join`, `add_document`). The one
document being edited is loaded by ruamel.yaml in round-trip mode (`load_for_edit`) and re-emitted
(`dump`) in the `Style` it was written in: its comments, key order, quoting, flow style, indents,
line endings and the spelling of booleans and nulls (`False`, `TRUE`, `~`) survive. Values written
into it go through `plain`, which quotes a string that a YAML 1.1 reader would take for something
else. `append`, `rename` and `delete` change the keys of a loaded mapping without losing the
comment lines that ruamel keeps on the key before them.

Pure: no file access, no clock.
"""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
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

_DOCUMENT_START = re.compile(r"---(?=[ \t\r\n]|$)")
_MARKER_ONLY = re.compile(r"---[ \t]*(#.*)?\r?\n?")


class NotEditable(Exception):
    """A document that cannot be re-emitted without losing part of it."""


# --- documents in a file -------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
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


def split(text: str) -> list[Chunk]:
    """The file cut before every `---` line. YAML forbids `---` at the start of a line inside
    any scalar, so such a line always starts a document."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if _DOCUMENT_START.match(line)]
    bounds = [0, *[s for s in starts if s > 0], len(lines)]
    chunks: list[Chunk] = []
    for start, end in itertools.pairwise(bounds):
        part = lines[start:end]
        marker = ""
        if part and _DOCUMENT_START.match(part[0]):
            marker = part[0]
            part = part[1:]
        chunks.append(Chunk(marker, "".join(part), start + 1 + (1 if marker else 0)))
    return chunks or [Chunk("", "", 1)]


def join(chunks: Sequence[Chunk], index: int, replacement: str) -> str:
    """The file again, with the text of `chunks[index]` replaced by `replacement`."""
    return "".join(replacement if i == index else c.text for i, c in enumerate(chunks))


def add_document(text: str, document: str) -> str:
    """`text` with `document` appended as its last document (after a `---` line)."""
    if not text.strip():
        return document
    newline = "\r\n" if "\r\n" in text else "\n"
    separator = "" if text.endswith(("\n", "\r")) else newline
    return f"{text}{separator}---{newline}{document.replace(chr(10), newline)}"


# --- round-trip YAML -------------------------------------------------------------------------


@dataclass(frozen=True)
class Style:
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


def python(value: Any) -> Any:
    """A loaded scalar as plain Python (a verbatim boolean / null as bool / None)."""
    return value.value if isinstance(value, _Verbatim) else value


def _yaml(style: Style) -> YAML:
    loader = YAML(typ="rt")
    loader.Constructor = _Constructor
    loader.Representer = _Representer
    loader.preserve_quotes = True
    loader.width = 4096  # never re-wrap a long value
    loader.indent(mapping=style.mapping, sequence=style.sequence, offset=style.offset)
    return loader


def load_quietly(chunk: Chunk) -> Any:
    """The chunk's document, or None when it does not parse."""
    try:
        return _yaml(Style()).load(chunk.body)
    except RuamelYAMLError:
        return None


def load_for_edit(chunk: Chunk) -> tuple[Any, Style]:
    """The chunk's document, ready to change and `dump` again, and the style it is written in.

    Raises NotEditable when content follows the `---` on its line (only the body is re-emitted).
    """
    if not _MARKER_ONLY.fullmatch(chunk.marker or "---\n"):
        raise NotEditable("cannot edit a document whose content starts on its '---' line")
    body = chunk.body.replace("\r\n", "\n")
    style = _guess_style(body, crlf="\r\n" in chunk.body)
    return _yaml(style).load(body), style


def _guess_style(body: str, crlf: bool) -> Style:
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
    return Style(mapping, max(mapping, offset + 2), offset, crlf)


def dump(document: Any, style: Style) -> str:
    """The text of `document` (one document, no `---`), in `style`."""
    out = io.StringIO()
    _yaml(style).dump(document, out)
    text = out.getvalue()
    return text.replace("\n", "\r\n") if style.crlf else text


def plain(value: str) -> str:
    """`value`, quoted when a YAML 1.1 reader (PyYAML, which `documents` uses) would not read
    it back as this same string: `yes`, `on`, `1.5`, `0777`, `2024-01-01`, `~`."""
    try:
        reads_back = yaml.safe_load(value) == value
    except yaml.YAMLError:
        reads_back = False
    return value if reads_back else SingleQuotedScalarString(value)


# --- keys and their comments ----------------------------------------------------------------
# ruamel keeps the comment lines that follow a key on that key. A key added after the last one
# would land below them (and below the commented-out block users keep at the end of a section),
# so those lines move to the new last key; a deleted key hands them to the key before it.


def append(container: MutableMapping[Any, Any], key: Any, value: Any) -> None:
    """Set `container[key]`: a new key goes last, above the comment lines that ended the map."""
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


def rename(container: MutableMapping[Any, Any], key: Any, new_key: Any, value: Any) -> None:
    """Replace `container[key]` with `new_key: value` where it stands, with its comments."""
    position = list(container).index(key)
    comments = container.ca.items.pop(key, None) if isinstance(container, CommentedMap) else None
    del container[key]
    if isinstance(container, CommentedMap):
        container.insert(position, new_key, value)
        if comments is not None:
            container.ca.items[new_key] = comments
    else:
        container[new_key] = value


def delete(
    container: MutableMapping[Any, Any],
    key: Any,
    parents: Sequence[tuple[MutableMapping[Any, Any], Any]] = (),
    outer: tuple[Any, Any] | None = None,
) -> None:
    """Remove `container[key]`, and each nested map it leaves empty (`parents` are the (map, key)
    pairs from the top map down to `container`). The comment lines that followed it stay, after
    the line that now comes before them (`outer` is the (map, key) of the line above the top
    map's first key)."""
    chain = list(parents)
    while chain and len(container) == 1:
        container, key = chain.pop()
    above = chain[-1] if chain else outer
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
