"""Two revisions compared (`engine.revisiondiff.RevisionDiff`) as `diff` and `plan` print them.

`text` for a terminal (each extension's plan as `printers.plans` writes it, coloured when the
command asks; `traffic_lines`, which `plan` prints too), `as_data` / `as_json` for tooling and
`markdown` for the PR comment the workflow posts (capped to GitHub's limit on a comment's
length, `cap`, and marked so that the workflow finds its own comment to update). Pure; every
diff shown comes from `engine.diffs.unified`, Secret values masked.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from reconciler.engine import plans, revisiondiff
from reconciler.printers import plans as plantext

COMMENT_LIMIT = 65_536  # GitHub's limit on a PR comment body
# Hidden in the rendered comment; the PR workflow finds its own comment by it to update it.
COMMENT_MARKER = "<!-- mlext-reconciler-diff -->"
_VISIBLE = (plans.Action.CREATE, plans.Action.UPDATE, plans.Action.DELETE)


# --- text -------------------------------------------------------------------------------------

_LINE_COLOURS = (
    ("+ ", "green"),
    ("~ ", "yellow"),
    ("- ", "red"),
    ("    +", "green"),
    ("    -", "red"),
    ("    @@", "cyan"),
)


def text(result: revisiondiff.RevisionDiff, style: Callable[[str, str], str] | None = None) -> str:
    """For a terminal: each extension's plan (`printers.plans.text`), problems and notes.
    `style(line, colour)` colours a line (the CLI passes `click.style` only when stdout is a
    terminal)."""
    if result.failed:
        lines = [str(p) for p in result.problems]
        count = len(result.problems)
        lines.append(f"the head is invalid ({count} problem{'s' if count != 1 else ''})")
        return "\n".join(lines) + "\n"
    out = [f"note: {note}" for note in result.notes]
    out.extend(traffic_lines(result))
    for extension in result.extensions:
        out.append(f"# extension {extension.name}")
        out.extend(plantext.text(extension.plan).rstrip("\n").splitlines())
    if not result.extensions:
        out.append("no objects at either revision")
    if style is not None:
        out = [_coloured(line, style) for line in out]
    return "\n".join(out) + "\n"


def traffic_lines(result: revisiondiff.RevisionDiff) -> list[str]:
    """`traffic: mnist: blue 100 -> 90, green 0 -> 10`, one per endpoint whose split changed:
    what `diff` and `plan` print above the objects."""
    return [f"traffic: {line}" for line in result.traffic]


def _coloured(line: str, style: Callable[[str, str], str]) -> str:
    for prefix, colour in _LINE_COLOURS:
        if line.startswith(prefix) and not line.startswith(("    +++", "    ---")):
            return style(line, colour)
    return line


# --- json -------------------------------------------------------------------------------------


def as_json(result: revisiondiff.RevisionDiff) -> str:
    """`as_data` as indented JSON."""
    return json.dumps(as_data(result), indent=2) + "\n"


def as_data(result: revisiondiff.RevisionDiff) -> dict[str, Any]:
    """`{"changes": [...], "problems": [...], "notes": [...], "traffic": [...]}`, what `-o
    json` and `-o yaml` print; unchanged objects left out."""
    changes = [
        {
            "action": step.action.value,
            "extension": extension.name,
            "apiVersion": step.key.api_version,
            "kind": step.key.kind,
            "namespace": step.key.namespace,
            "name": step.key.name,
            "diff": step.diff,
        }
        for extension in result.extensions
        for step in extension.plan.steps
        if step.action in _VISIBLE
    ]
    return {
        "changes": changes,
        "problems": [p.as_json() for p in result.problems],
        "notes": list(result.notes),
        "traffic": list(result.traffic),
    }


# --- markdown ---------------------------------------------------------------------------------


def markdown(result: revisiondiff.RevisionDiff, limit: int = COMMENT_LIMIT) -> str:
    """A PR comment: heading, a summary table (one row per extension), then every changed
    object's diff in a collapsed block; capped to `limit` characters (see `cap`)."""
    heading = (
        f"{COMMENT_MARKER}\n## Manifests diff `{_short(result.base)}` → `{_short(result.head)}`\n"
    )
    if result.failed:
        listed = "\n".join(str(p) for p in result.problems)
        fence = _fence(listed)
        body = (
            f"{heading}\n### Validation failed\n\n"
            f"The head revision is invalid ({len(result.problems)} problems); "
            f"nothing was compared. Fix these:\n\n{fence}\n{listed}\n{fence}\n"
        )
        return cap(body, [], limit)
    parts = [heading]
    if result.traffic:
        listed = "".join(f"- `{_inline(line)}`\n" for line in result.traffic)
        parts.append(f"\n**Traffic**\n\n{listed}")
    parts.extend(f"\n> **Note:** {_inline(note)}\n" for note in result.notes)
    changed = [e for e in result.extensions if e.plan.has_changes]
    if not changed:
        parts.append("\nNo changes: both revisions render the same objects.\n")
        return cap("".join(parts), [], limit)
    parts.append("\n| Extension | + created | ~ updated | - deleted |\n|---|---:|---:|---:|\n")
    for extension in changed:
        counts = [extension.plan.count(a) for a in _VISIBLE]
        parts.append(f"| `{_inline(extension.name)}` | {' | '.join(map(str, counts))} |\n")
    blocks: list[str] = []
    for extension in changed:
        title = f"\n### `{_inline(extension.name)}`\n"
        for step in extension.plan.steps:
            if step.action not in _VISIBLE:
                continue
            fence = _fence(step.diff)
            summary = html.escape(plantext.headline(step))
            blocks.append(
                f"{title}\n<details><summary>{summary}</summary>\n\n"
                f"{fence}diff\n{step.diff.rstrip(chr(10))}\n{fence}\n\n</details>\n"
            )
            title = ""
    return cap("".join(parts), blocks, limit)


def cap(head: str, blocks: Sequence[str], limit: int = COMMENT_LIMIT) -> str:
    """`head` plus as many leading `blocks` (one object's diff each) as fit in `limit`
    characters, with a note saying how many objects' diffs were cut. Never longer than
    `limit`."""
    whole = head + "".join(blocks)
    if len(whole) <= limit:
        return whole
    kept = head
    for index, block in enumerate(blocks):
        note = _cut_note(len(blocks) - index, limit)
        if len(kept) + len(block) + len(_cut_note(len(blocks) - index - 1, limit)) > limit:
            return (kept + note)[:limit]
        kept += block
    return kept[:limit]  # only when `head` alone is too long


def _cut_note(cut: int, limit: int) -> str:
    if cut == 0:
        return ""
    objects_word = "object's diff was" if cut == 1 else "objects' diffs were"
    return (
        f"\n> **{cut} {objects_word} cut** to keep this comment under {limit:,} characters; "
        "run `reconciler diff` locally to see everything.\n"
    )


def _fence(content: str) -> str:
    """A backtick fence longer than any backtick run in `content`."""
    longest = max((len(run) for run in re.findall(r"`+", content)), default=0)
    return "`" * max(3, longest + 1)


def _inline(value: str) -> str:
    return value.replace("`", "'").replace("|", "\\|")


def _short(revision: str) -> str:
    commit, dash, rest = revision.partition("-")
    if len(commit) == 40 and all(c in "0123456789abcdef" for c in commit):
        return commit[:12] + dash + rest
    return revision
