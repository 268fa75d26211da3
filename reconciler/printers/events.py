"""The engine's `events` as lines: text for a terminal and the loop's log, JSON for tooling.

`text` is the wording `apply`, `extension delete` and the loop show while a revision is carried
out (the lines per extension, the apply's and the health wait's progress indented below them);
`as_json` is one JSON object per event, `{"event": "applied", "extension": ..., ...}` (what
`apply -o json` prints, ending with each extension's `outcome_as_json`); `logged` is the `Emit`
the loop passes the engine, logging each event's text line with its fields (which a JSON log,
`logformat`, writes out).
"""

from __future__ import annotations

import json
import logging
import re
from typing import assert_never

from reconciler.engine import events, owners, plans, record
from reconciler.printers import logformat
from reconciler.printers import plans as plantext


def text(event: events.Event) -> str:
    match event:
        case events.Planned(extension, plan):
            return f"extension {extension}: {plantext.summary(plan)}"
        case events.Suspended(extension):
            return f"extension {extension}: suspended, nothing applied or pruned"
        case events.Adopted(extension, claim):
            return f"extension {extension}: {claim.message()}"
        case events.Applied(_, kinds):
            return f"  applied {_kinds(kinds)}"
        case events.ApplyFailed(_, failed, of, kinds):
            return f"  failed: {failed} of {of} ({_kinds(kinds)})"
        case events.Pruned(_, deleted, failed):
            return f"  pruned {deleted} objects" + (f", {failed} failed" if failed else "")
        case events.Waiting(extension, timeout):
            return f"{extension}: waiting up to {timeout:g}s for every component to be healthy"
        case events.Progressing(_, pending):
            return f"  waiting: {'; '.join(pending)}"
        case events.Removed(extension):
            return f"extension {extension}: removed from the cluster"
        case _:
            assert_never(event)


def as_json(event: events.Event) -> str:
    """One line: the event's `fields`."""
    return json.dumps(fields(event))


def fields(event: events.Event) -> dict[str, object]:
    """The event's name (`apply-failed` for `ApplyFailed`), its extension and its fields; a
    plan as its counts, a claim as the two sources."""
    name = re.sub(r"(?<!^)(?=[A-Z])", "-", type(event).__name__).lower()
    document: dict[str, object] = {"event": name, "extension": event.extension}
    match event:
        case events.Planned(_, plan):
            document.update({action.value: plan.count(action) for action in plans.Action})
        case events.Adopted(_, claim):
            # As the claim's message shows them: never a URL's credentials.
            owner, ours = owners.shown(claim.owner_shown), owners.shown(claim.origin)
            document.update(owner=owner, source=ours)
        case events.Applied(_, kinds):
            document.update(kinds=dict(kinds))
        case events.ApplyFailed(_, failed, of, kinds):
            document.update(failed=failed, of=of, kinds=dict(kinds))
        case events.Pruned(_, deleted, failed):
            document.update(deleted=deleted, failed=failed)
        case events.Waiting(_, timeout):
            document.update(timeout=timeout)
        case events.Progressing(_, pending):
            document.update(pending=list(pending))
    return document


def outcome_as_json(extension: str, outcome: record.Outcome) -> str:
    """The line after an extension's events: how its reconcile went."""
    document = {
        "event": "outcome",
        "extension": extension,
        "state": outcome.state,
        "reason": outcome.reason,
        "reasons": list(outcome.reasons),
    }
    return json.dumps(document)


def logged(log: logging.Logger) -> events.Emit:
    """An `Emit` that logs each event's text line at INFO (the loop's), its `fields` beside it
    for a structured log (`logformat`)."""
    return lambda event: log.info("%s", text(event), extra={logformat.FIELDS: fields(event)})


def _kinds(kinds: events.Kinds) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in kinds)
