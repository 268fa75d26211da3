"""What the loop tells the outside world: its tick reports turned into events, and which of them
go out.

Pure, with the clock handed in. `Events` turns each `controller.TickReport` into `Event`s, one
per extension: a revision `applied` (new to the extension; its outcome's state), `refused`
(invalid, with its problems, one line each, capped), `drift` (objects put back, or found with
drift="report") and `health` transitions. Health is remembered per extension between ticks, and
only a change is an event: Succeeded -> Pending or Failed is health lost, anything -> Succeeded
health regained, Pending -> Failed lost too (a rollout that stops progressing); Failed ->
Pending is no news. The first tick of a process only learns the states, and a tick that applies a
revision says its state in the `applied` event. `Gate` decides per provider what is sent: the
same event for the same extension and revision at most once within the dedupe window (unless
another came in between), and no faster than a token bucket allows.

Below `notifydispatch` (which sends what the gate lets through) and beside `notifiers` (which
words an event for each provider type).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from reconciler.engine import record
from reconciler.gitops import controller

# A message stays readable and within every provider's size limits: at most this many detail
# lines, each at most this long (the record and `reconciler status` keep them all).
MAX_LINES = 10
MAX_LINE = 300
# Each provider: a burst of BURST messages, then one every REFILL seconds (Slack allows about
# one a second per webhook, GitHub's secondary limits about one a second too).
BURST = 10
REFILL = 1.0
INFO, ERROR = "info", "error"
# The outcomes of an extension whose revision could not be carried out (not merely unhealthy).
APPLY_FAILURES = frozenset({"ApplyFailed", "PruneFailed"})


@dataclass(frozen=True)
class Event:
    """One thing worth telling, about one extension and one revision."""

    kind: str  # applied | refused | drift | health
    reason: str  # Applied ApplyFailed Refused DriftReverted DriftFound HealthLost HealthRegained
    extension: str
    revision: str
    origin: str
    state: str  # the extension's: Succeeded | Pending | Failed
    summary: str  # one line
    details: tuple[str, ...] = ()  # capped: MAX_LINES of at most MAX_LINE characters

    @property
    def severity(self) -> str:
        return INFO if self.state == record.SUCCEEDED and self.reason != "DriftFound" else ERROR

    @property
    def short_revision(self) -> str:
        return self.revision[:12]


def capped(lines: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """At most MAX_LINES lines of at most MAX_LINE characters; the last says how many more."""
    cut = [line if len(line) <= MAX_LINE else line[: MAX_LINE - 3] + "..." for line in lines]
    if len(cut) <= MAX_LINES:
        return tuple(cut)
    return (*cut[: MAX_LINES - 1], f"... and {len(cut) - MAX_LINES + 1} more")


class Events:
    """Tick reports -> events; remembers each extension's health between ticks."""

    def __init__(self) -> None:
        self._health: dict[str, str] = {}

    def of(self, report: controller.TickReport) -> list[Event]:
        if report.problems:
            return list(_refused(report))
        return [e for ext in report.extensions for e in self._carried_out(report, ext)]

    def _carried_out(
        self, report: controller.TickReport, ext: controller.ExtensionReport
    ) -> Iterator[Event]:
        short = report.revision[:12]
        before = self._health.get(ext.name)
        self._health[ext.name] = ext.state
        if ext.applied_before != report.revision and not report.report_only:
            failed = ext.reason in APPLY_FAILURES
            words = "could not be applied" if failed else f"applied ({ext.state})"
            summary = f"{ext.name}: revision {short} {words}"
            reason = "ApplyFailed" if failed else "Applied"
            yield _event(report, ext, "applied", reason, summary, ext.reasons)
            return  # the applied event says its state: no health event beside it
        if ext.drifted:
            verb, reason = (
                ("found", "DriftFound") if report.report_only else ("reverted", "DriftReverted")
            )
            objects = f"{ext.drifted} object{'s' * (ext.drifted != 1)}"
            summary = f"{ext.name}: drift {verb}: {objects} differed from revision {short}"
            yield _event(report, ext, "drift", reason, summary)
        if before is None or before == ext.state:
            return
        if ext.state == record.SUCCEEDED:
            summary = f"{ext.name}: healthy at revision {short}"
            yield _event(report, ext, "health", "HealthRegained", summary)
        elif before == record.SUCCEEDED or ext.state == record.FAILED:
            summary = f"{ext.name}: not healthy ({ext.state}) at revision {short}"
            yield _event(report, ext, "health", "HealthLost", summary, ext.reasons)


def _refused(report: controller.TickReport) -> Iterator[Event]:
    """An invalid revision's event for each extension its problems were recorded in (or one
    naming none, when the repo declares no extension and none was recorded)."""
    count = len(report.problems)
    summary = f"revision {report.revision[:12]} refused: {count} problem{'s' * (count != 1)}, "
    summary += "nothing applied"
    nameless = controller.ExtensionReport("", record.FAILED, "ValidationFailed")
    for ext in report.extensions or (nameless,):
        named = f"{ext.name}: {summary}" if ext.name else summary
        yield _event(report, ext, "refused", "Refused", named, report.problems)


def _event(
    report: controller.TickReport,
    ext: controller.ExtensionReport,
    kind: str,
    reason: str,
    summary: str,
    details: tuple[str, ...] = (),
) -> Event:
    return Event(
        kind, reason, ext.name, report.revision, report.origin, ext.state, summary, capped(details)
    )


class Gate:
    """One provider's: whether an event is a duplicate (the same reason and state for the same
    extension and revision as the last one of its kind, within `window` seconds), and when the
    next message may go (a token bucket)."""

    def __init__(self, window: float, burst: int = BURST, refill: float = REFILL) -> None:
        self.window = window
        self.burst = burst
        self.refill = refill
        self._last: dict[tuple[str, str], tuple[tuple[str, str, str], float]] = {}
        self._tokens = float(burst)
        self._filled_at: float | None = None

    def duplicate(self, event: Event, now: float) -> bool:
        """True if `event` repeats the last one of its kind and extension within the window;
        else it becomes that last one."""
        key = (event.kind, event.extension)
        what = (event.reason, event.state, event.revision)
        last = self._last.get(key)
        if last is not None and last[0] == what and now - last[1] < self.window:
            return True
        self._last[key] = (what, now)
        return False

    def wait(self, now: float) -> float:
        """Seconds until the next message may go; 0 takes a token for it."""
        if self._filled_at is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._filled_at) / self.refill)
        self._filled_at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) * self.refill
