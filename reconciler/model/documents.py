"""YAML text -> documents that remember where every field came from.

The first stage after `source`: one file's text becomes a list of `Document`s, each holding the
plain data (dicts, lists, scalars, as `yaml.safe_load` would give) and a map from field path to
line number, so any later stage can point a problem at `FILE:LINE: field.path`.

Two deliberate departures from PyYAML's defaults: timestamps stay strings (manifests are
JSON-shaped, like Kubernetes reads them) and a key repeated in one mapping is a problem instead of
silently keeping the last value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from reconciler.model import problems

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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
    loader = _ManifestLoader(text)
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            lines: dict[problems.FieldPath, int] = {}
            _record_lines(node, (), lines, file, found)
            try:
                data = loader.construct_document(node)
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


def _record_lines(
    node: yaml.Node,
    path: problems.FieldPath,
    lines: dict[problems.FieldPath, int],
    file: str,
    found: list[problems.Problem],
) -> None:
    """Walk the node tree beside the constructor, remembering the line of each key and item."""
    if isinstance(node, yaml.MappingNode):
        seen: set[object] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key: problems.PathPart = key_node.value
            child = (*path, key)
            line = key_node.start_mark.line + 1
            if key == "<<":  # merge key: the merged fields keep the anchor's lines
                _record_lines(value_node, path, lines, file, found)
                continue
            if key in seen:
                found.append(
                    problems.Problem(
                        file, line, problems.format_field_path(child), "key repeated in a mapping"
                    )
                )
            seen.add(key)
            lines.setdefault(child, line)
            _record_lines(value_node, child, lines, file, found)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = (*path, i)
            lines.setdefault(child, item.start_mark.line + 1)
            _record_lines(item, child, lines, file, found)
