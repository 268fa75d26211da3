"""Problems a user can cause, collected rather than raised one at a time.

Every stage before `plan` reports what is wrong with the repo as `Problem` values that point at
the file, the line and the field path (`FILE:LINE: field.path: message`). A run gathers all of them
so the user fixes a repo in one pass; anything with an error-severity problem is never applied.
"""

from __future__ import annotations

import difflib
import enum
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PathPart = str | int
FieldPath = tuple[PathPart, ...]


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"  # informational: something accepted that the user may want to know


@dataclass(frozen=True)
class Problem:
    """One thing wrong (or worth a warning) in the repo, with where it is."""

    file: str
    line: int
    field: str
    message: str
    severity: Severity = Severity.ERROR

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        field = f" {self.field}:" if self.field else ""
        marker = "" if self.severity is Severity.ERROR else f" {self.severity.value}:"
        return f"{where}:{field}{marker} {self.message}"

    def as_json(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "field": self.field,
            "severity": self.severity.value,
            "message": self.message,
        }


def format_field_path(path: Sequence[PathPart]) -> str:
    """`("spec", "config", "x")` -> `spec.config.x`; list items as `items[2]`; a key with a
    space, control or non-ASCII character quoted and escaped (`nodeSelector."bad key\n"`), so a
    problem stays one line whatever the YAML holds."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
            continue
        shown = (
            part
            if part.isascii() and part.isprintable() and " " not in part
            else (json.dumps(part))
        )
        text += f".{shown}" if text else shown
    return text


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """A ` (did you mean X?)` suffix naming the nearest candidate, or "" when none is close.

    Matching ignores case because settings keys are case-insensitive.
    """
    by_lower = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean {by_lower[close[0]]}?)" if close else ""


def sort_problems(problems: Iterable[Problem]) -> list[Problem]:
    """Deterministic order: by file, then line, then field, then message."""
    return sorted(
        set(problems), key=lambda p: (p.file, p.line, p.field, p.message, p.severity.value)
    )
