"""YAML text -> documents that remember where every field came from.

The first stage after `source`: one file's text becomes a list of `Document`s, each holding the
plain data (dicts, lists, scalars, as `yaml.safe_load` would give) and a map from field path to
line number, so any later stage can point a problem at `FILE:LINE: field.path`.

Two deliberate departures from PyYAML's defaults: timestamps stay strings (manifests are
JSON-shaped, like Kubernetes reads them) and a key repeated in one mapping is a problem instead of
silently keeping the last value.

Hostile input is bounded here, so every command and the loop share the limits: a file nested
deeper than MAX_DEPTH levels is a problem before the C composer sees it (tens of thousands of
`[` overflow its stack), and a document whose aliases expand to more than MAX_VALUES values (a
"billion laughs" bomb) is a problem before anything walks its expansion.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from reconciler.model import problems

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# No manifest comes near these; a file past them is hostile or broken.
MAX_DEPTH = 100
MAX_VALUES = 200_000
_BRACKETS = re.compile(r"[\[\]{}]")
_INDENTS = re.compile(r"^[ \t]*", re.MULTILINE)
# Block openers at a line's start: `- `, `? ` and `: ` each may open a collection on that line
# (counted by the space each is followed by).
_LINE_OPENERS = re.compile(r"^(?:[ \t]*[-?:] )*", re.MULTILINE)


class _ManifestLoader(_BaseLoader):  # type: ignore[valid-type,misc]
    """SafeLoader without the timestamp resolver: `2024-01-01` stays a string."""


_ManifestLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True)
class Document:
    """One YAML document of a file, with a line for every field path in it."""

    file: str
    line: int
    data: Any
    lines: dict[problems.FieldPath, int] = field(default_factory=dict, repr=False)
    index: int = 0

    def line_of(self, path: Sequence[problems.PathPart]) -> int:
        """The line of the deepest part of `path` that exists (the document start at worst)."""
        parts = tuple(path)
        while parts:
            if parts in self.lines:
                return self.lines[parts]
            parts = parts[:-1]
        return self.line

    def problem(
        self,
        path: Sequence[problems.PathPart],
        message: str,
        severity: problems.Severity = problems.Severity.ERROR,
    ) -> problems.Problem:
        return problems.Problem(
            file=self.file,
            line=self.line_of(path),
            field=problems.format_field_path(path),
            message=message,
            severity=severity,
        )


@dataclass
class ParsedFile:
    documents: list[Document]
    problems: list[problems.Problem]

    def plain(self) -> tuple[Any, ...]:
        """This parse as plain data (`marshal` can keep it) without the file's name, which
        `from_plain` gives back: a parse depends on the text alone."""
        return (
            tuple((d.line, d.data, d.lines, d.index) for d in self.documents),
            tuple((p.line, p.field, p.message, p.severity.value) for p in self.problems),
        )

    @classmethod
    def from_plain(cls, file: str, plain: tuple[Any, ...]) -> ParsedFile:
        """The parse `plain()` gave, for the file named `file`."""
        found, issues = plain
        return cls(
            [Document(file, line, data, lines, index) for line, data, lines, index in found],
            [
                problems.Problem(file, line, path, message, problems.Severity(severity))
                for line, path, message, severity in issues
            ],
        )


def parse(file: str, text: str) -> ParsedFile:
    """Parse every document of one file; a YAML error becomes a problem, never an exception.

    Documents before a syntax error are kept; empty documents are dropped.
    """
    documents: list[Document] = []
    found: list[problems.Problem] = []
    too_deep = _too_deep(file, text)
    if too_deep is not None:
        return ParsedFile([], [too_deep])
    loader = _ManifestLoader(text)
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            lines: dict[problems.FieldPath, int] = {}
            try:
                _LineRecorder(file, lines, found, node.start_mark.line + 1).walk(node, ())
            except _Unreadable as err:
                found.append(problems.Problem(file, err.line, "", err.message))
                break
            try:
                data = loader.construct_document(node)
            except yaml.MarkedYAMLError as err:  # e.g. a mapping as a key: one line, its line
                mark = err.problem_mark or node.start_mark
                reason = err.problem or "cannot be read"
                found.append(problems.Problem(file, mark.line + 1, "", f"invalid YAML: {reason}"))
                break
            except (yaml.YAMLError, ValueError, TypeError) as err:
                # Constructors raise plain ValueError/TypeError for odd scalars (`!!int x`).
                line = node.start_mark.line + 1
                found.append(problems.Problem(file, line, "", f"invalid YAML value: {err}"))
                break
            if data is not None:
                documents.append(Document(file, node.start_mark.line + 1, data, lines, index))
            index += 1
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else 0
        reason = err.problem or err.context or "invalid YAML"
        found.append(problems.Problem(file, line, "", f"invalid YAML: {reason}"))
    except (yaml.YAMLError, RecursionError) as err:
        # Pathological nesting exhausts the stack: still the user's input, still a problem.
        found.append(problems.Problem(file, 0, "", f"invalid YAML: {type(err).__name__}: {err}"))
    finally:
        loader.dispose()
    return ParsedFile(documents, found)


def _depth_bound(text: str) -> int:
    """At least as deep as the text nests. A block collection nests one level deeper than its
    parent only by indenting further or by opening on the parent's line (`- - x`, `? - x`), and
    flow collections nest by brackets, so the widest indentation plus the most such openers on
    one line plus the bracket depth bounds the depth. The common case (few openers and shallow
    indentation at all) is answered from counts alone."""
    indent = max(map(len, _INDENTS.findall(text)), default=0)
    openers = text.count("[") + text.count("{")
    block = text.count("-") + text.count("?")
    if openers + block + indent + 2 <= MAX_DEPTH:
        return openers + block + indent + 2
    flow = depth = 0
    for bracket in _BRACKETS.findall(text):
        depth += 1 if bracket in "[{" else -1
        flow = max(flow, depth)
    same_line = max((m.group().count(" ") for m in _LINE_OPENERS.finditer(text)), default=0)
    return flow + indent + same_line + 2


class _Unreadable(Exception):
    """The node tree cannot become data: an alias bomb or an alias cycle, and its line."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def _too_deep(file: str, text: str) -> problems.Problem | None:
    """A problem when the text nests collections deeper than MAX_DEPTH, None otherwise.

    An upper bound on the depth first, from what C counts fast; only text past it is parsed
    event by event, which keeps no stack, to find the exact line."""
    if _depth_bound(text) <= MAX_DEPTH:
        return None
    depth = 0
    try:
        for event in yaml.parse(text, Loader=_BaseLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    line = event.start_mark.line + 1 if event.start_mark else 0
                    message = f"nested deeper than {MAX_DEPTH} levels: not read"
                    return problems.Problem(file, line, "", message)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return None  # a syntax error: the loader reports it with its line
    return None


class _LineRecorder:
    """Walks a document's node tree beside the constructor, remembering the line of each key
    and item, and refusing what the constructor would choke on: more than MAX_VALUES values
    with aliases followed (a "billion laughs" bomb), and an alias to a collection it is inside
    (a cycle, which would be data no JSON or Kubernetes object can hold)."""

    def __init__(
        self,
        file: str,
        lines: dict[problems.FieldPath, int],
        found: list[problems.Problem],
        document_line: int,
    ) -> None:
        self.file = file
        self.document_line = document_line
        self.lines = lines
        self.found = found
        self.budget = MAX_VALUES
        self.open: set[int] = set()  # the collections the walk is inside, by identity

    def walk(self, node: yaml.Node, path: problems.FieldPath) -> None:
        self.budget -= 1
        if self.budget < 0:
            raise _Unreadable(
                self.document_line,
                f"this document expands to more than {MAX_VALUES:,} values through its "
                "aliases (a YAML alias bomb?): not read",
            )
        if id(node) in self.open:
            raise _Unreadable(
                self.lines.get(path, node.start_mark.line + 1),
                "an alias refers to a collection it is inside (a cycle): not read",
            )
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            self.open.add(id(node))
            try:
                self._children(node, path)
            finally:
                self.open.discard(id(node))

    def _children(self, node: yaml.Node, path: problems.FieldPath) -> None:
        if isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                child = (*path, i)
                self.lines.setdefault(child, item.start_mark.line + 1)
                self.walk(item, child)
            return
        seen: set[object] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key: problems.PathPart = key_node.value
            child = (*path, key)
            line = key_node.start_mark.line + 1
            if key == "<<":  # merge key: the merged fields keep the anchor's lines
                self.walk(value_node, path)
                continue
            if key in seen:
                field_path = problems.format_field_path(child)
                self.found.append(
                    problems.Problem(self.file, line, field_path, "key repeated in a mapping")
                )
            seen.add(key)
            self.lines.setdefault(child, line)
            self.walk(value_node, child)
