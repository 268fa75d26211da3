"""What changed between two revisions of a manifests repo, object by object, with no cluster.

Sits on `revision`: `between` loads and renders two snapshots (`gitsnapshot` for a commit,
`source.DirectorySnapshot` for the work tree), and `compare` turns the two object
lists into one `plans.Plan` per extension (grouped by the part-of label), built by `plans.build`
with the base objects standing in for the live ones, so `diff` shows exactly what `plan` shows.
The two revisions share a `reuse.Reuse`: files and render units unchanged between them are
parsed and rendered once.
An endpoint whose traffic split changed also gets one line of its own (`traffic_changes`: `mnist:
blue 100 -> 90, green 0 -> 10`), shown above the object diffs: the review of a rollout reads it
first. The renderers (`text`, `as_json`, `markdown`) are pure; Secret values never reach them
unmasked (every diff comes from `diffs.unified`). `reconciler.cli.diff` is the command on top.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from reconciler import objects, source
from reconciler.engine import plans, revision
from reconciler.engine import reuse as reusing
from reconciler.model import decryption, endpoints, problems

COMMENT_LIMIT = 65_536  # GitHub's limit on a PR comment body
NO_EXTENSION = "(no extension)"
# Hidden in the rendered comment; the PR workflow finds its own comment by it to update it.
COMMENT_MARKER = "<!-- mlext-reconciler-diff -->"
_VISIBLE = (plans.Action.CREATE, plans.Action.UPDATE, plans.Action.DELETE)
_SYMBOL = {plans.Action.CREATE: "+", plans.Action.UPDATE: "~", plans.Action.DELETE: "-"}


@dataclass(frozen=True)
class ExtensionDiff:
    """The changes to one extension's objects (`NO_EXTENSION` for unlabelled objects)."""

    name: str
    plan: plans.Plan

    def count(self, action: plans.Action) -> int:
        return len(self.plan.of(action))


@dataclass(frozen=True)
class RevisionDiff:
    """The outcome of comparing two revisions. `problems` are the head's validation errors:
    when there are any, nothing was compared."""

    base: str
    head: str
    extensions: tuple[ExtensionDiff, ...] = ()
    problems: tuple[problems.Problem, ...] = ()
    notes: tuple[str, ...] = ()
    traffic: tuple[str, ...] = ()  # one line per endpoint whose split changed

    @property
    def has_changes(self) -> bool:
        return any(e.plan.has_changes for e in self.extensions)

    @property
    def failed(self) -> bool:
        return bool(self.problems)

    @property
    def exit_code(self) -> int:
        """0 no changes, 1 changes, 2 the head is invalid."""
        return 2 if self.failed else 1 if self.has_changes else 0


def _extension(obj: objects.Object) -> str:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return str(labels.get(objects.PART_OF_LABEL) or NO_EXTENSION)


def compare(
    base: Iterable[objects.Object], head: Iterable[objects.Object]
) -> tuple[ExtensionDiff, ...]:
    """One plan per extension: head objects against the base ones (absent: created); base
    objects no longer rendered at all are deleted (in reverse apply order). An object that
    moved to another extension is an update there, not a delete plus a create."""
    base_list, head_list = list(base), list(head)
    base_by_key = {objects.key(o): o for o in base_list}
    head_keys = {objects.key(o) for o in head_list}
    names = sorted({_extension(o) for o in base_list + head_list})
    found = []
    for name in names:
        desired = [o for o in head_list if _extension(o) == name]
        gone = [o for o in base_list if _extension(o) == name and objects.key(o) not in head_keys]
        deleted = [objects.key(o) for o in reversed(objects.in_apply_order(gone))]
        live: dict[objects.Key, objects.Object | None] = dict(base_by_key)
        found.append(ExtensionDiff(name, plans.build(desired, {}, live, deleted)))
    return tuple(found)


def between(base: source.Snapshot, head: source.Snapshot, *, reuse: bool = True) -> RevisionDiff:
    """Load, validate and render both snapshots and compare them. An invalid head is reported
    (nothing compared); an invalid or missing base is a note, compared as an empty repo.

    The two revisions share a `reuse.Reuse`, so the second one parses and renders only what
    differs from the first (`reuse=False` renders both in full, for the benchmark; the result
    is the same)."""
    shared = reusing.Reuse() if reuse else None
    new = revision.Revision(head, shared)
    if not new.valid:
        return RevisionDiff(base.revision(), new.revision, problems=tuple(new.errors))
    notes: list[str] = []
    base_objects: list[objects.Object] = []
    base_endpoints: Mapping[str, endpoints.Endpoint] = {}
    if not base.exists(""):
        notes.append(f"{base.display('')} does not exist: every object is created")
    else:
        old = revision.Revision(base, shared)
        if old.valid:
            base_objects = old.rendered.objects
            base_endpoints = old.loaded.repo.endpoints
        else:
            count = len(old.errors)
            notes.append(
                f"the base {base.display('')} is invalid ({count} problem"
                f"{'s' if count != 1 else ''}): compared against nothing, every object is created"
            )
    head_objects = new.rendered.objects
    notes.extend(_not_decrypted(base, head))
    return RevisionDiff(
        base.revision(),
        new.revision,
        compare(base_objects, head_objects),
        (),
        tuple(notes),
        traffic_changes(base_endpoints, new.loaded.repo.endpoints),
    )


def traffic_changes(
    base: Mapping[str, endpoints.Endpoint], head: Mapping[str, endpoints.Endpoint]
) -> tuple[str, ...]:
    """One line per declared endpoint whose split or mirror changed, naming only the
    deployments whose percent changed (absent = 0): `mnist: blue 100 -> 90, green 0 -> 10`.
    A new endpoint is `(new)`, one gone is `(removed)`."""
    lines = []
    for name in sorted(base.keys() | head.keys()):
        before, after = base.get(name), head.get(name)
        parts = []
        for prefix, field in (("", "traffic"), ("mirror ", "mirror_traffic")):
            old: Mapping[str, int] = getattr(before, field) if before is not None else {}
            new: Mapping[str, int] = getattr(after, field) if after is not None else {}
            for deployment in sorted(old.keys() | new.keys()):
                was, now = old.get(deployment, 0), new.get(deployment, 0)
                if was != now:
                    parts.append(f"{prefix}{deployment} {was} -> {now}")
        status = " (new)" if before is None else " (removed)" if after is None else ""
        if parts or status:
            lines.append(f"{name}{status}: {', '.join(parts) or 'no traffic'}")
    return tuple(lines)


def _not_decrypted(*snapshots: source.Snapshot) -> list[str]:
    """A note per SOPS-encrypted file read without a key: compared by its ciphertext."""
    opaque = sorted(
        {
            snapshot.display(path)
            for snapshot in snapshots
            if isinstance(snapshot, decryption.DecryptingSnapshot)
            for path in snapshot.opaque
        }
    )
    return [
        f"{shown} is SOPS-encrypted and no decryption key was given: its values were not "
        "compared, only its encrypted content (any change, a re-encryption too, shows as "
        "changed)"
        for shown in opaque
    ]


# --- text -------------------------------------------------------------------------------------

_LINE_COLOURS = (
    ("+ ", "green"),
    ("~ ", "yellow"),
    ("- ", "red"),
    ("    +", "green"),
    ("    -", "red"),
    ("    @@", "cyan"),
)


def text(result: RevisionDiff, style: Callable[[str, str], str] | None = None) -> str:
    """For a terminal: each extension's `Plan.text`, problems and notes. `style(line, colour)`
    colours a line (the CLI passes `click.style` only when stdout is a terminal)."""
    if result.failed:
        lines = [str(p) for p in result.problems]
        count = len(result.problems)
        lines.append(f"the head is invalid ({count} problem{'s' if count != 1 else ''})")
        return "\n".join(lines) + "\n"
    out = [f"note: {note}" for note in result.notes]
    out.extend(f"traffic: {line}" for line in result.traffic)
    for extension in result.extensions:
        out.append(f"# extension {extension.name}")
        out.extend(extension.plan.text().rstrip("\n").splitlines())
    if not result.extensions:
        out.append("no objects at either revision")
    if style is not None:
        out = [_coloured(line, style) for line in out]
    return "\n".join(out) + "\n"


def _coloured(line: str, style: Callable[[str, str], str]) -> str:
    for prefix, colour in _LINE_COLOURS:
        if line.startswith(prefix) and not line.startswith(("    +++", "    ---")):
            return style(line, colour)
    return line


# --- json -------------------------------------------------------------------------------------


def as_json(result: RevisionDiff) -> str:
    """`{"changes": [...], "problems": [...], "notes": [...]}`; unchanged objects left out."""
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
    document = {
        "changes": changes,
        "problems": [p.as_json() for p in result.problems],
        "notes": list(result.notes),
        "traffic": list(result.traffic),
    }
    return json.dumps(document, indent=2) + "\n"


# --- markdown ---------------------------------------------------------------------------------


def markdown(result: RevisionDiff, limit: int = COMMENT_LIMIT) -> str:
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
        counts = [extension.count(a) for a in _VISIBLE]
        parts.append(f"| `{_inline(extension.name)}` | {' | '.join(map(str, counts))} |\n")
    blocks: list[str] = []
    for extension in changed:
        title = f"\n### `{_inline(extension.name)}`\n"
        for step in extension.plan.steps:
            if step.action not in _VISIBLE:
                continue
            fence = _fence(step.diff)
            summary = html.escape(f"{_SYMBOL[step.action]} {step.action.value} {step.key}")
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
