"""What the engine reports while it carries out a revision: typed events, no sentences.

`reconcile` and `executor` hand each event to an `Emit` callback their caller gives them, as
kubernetes-sigs/cli-utils' applier sends its events down a channel: the engine says what
happened, and `reconciler.printers.events` decides how it reads (a line of text for a terminal
or the loop's log, a JSON line for tooling). One event per line the commands print, in the
order they happen for one extension: `Planned`, then `Suspended`, or `Adopted` and the
apply (`Applied` per kind rank, or `ApplyFailed`), `Pruned`, the wait for health
(`Waiting`, then `Progressing` each time what is pending changes) and `Removed` for an
extension that left the repo.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from reconciler.engine import owners, plans

# (kind, how many), sorted by kind: the objects one step of the apply covered.
Kinds = tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Planned:
    """The extension's plan, before anything of it is carried out."""

    extension: str
    plan: plans.Plan


@dataclass(frozen=True)
class Suspended:
    """Reconciliation is suspended: nothing is applied or pruned."""

    extension: str


@dataclass(frozen=True)
class Adopted:
    """Another source owned the extension; `--adopt` makes this one its owner."""

    extension: str
    claim: owners.Claim


@dataclass(frozen=True)
class Applied:
    """The objects of one kind rank of a wave were applied."""

    extension: str
    kinds: Kinds


@dataclass(frozen=True)
class ApplyFailed:
    """`failed` of the `of` objects of a wave were refused; the apply ends there."""

    extension: str
    failed: int
    of: int
    kinds: Kinds


@dataclass(frozen=True)
class Pruned:
    """Objects that left the repo were deleted (`deleted`, gone already included) or not."""

    extension: str
    deleted: int
    failed: int


@dataclass(frozen=True)
class Waiting:
    """The wait for every component to be healthy starts (`--wait`), for `timeout` seconds."""

    extension: str
    timeout: float


@dataclass(frozen=True)
class Progressing:
    """Still waiting: the first few objects not healthy yet, each with why."""

    extension: str
    pending: tuple[str, ...]


@dataclass(frozen=True)
class Removed:
    """An extension that left the repo is gone from the cluster, its record too."""

    extension: str


Event = (
    Planned | Suspended | Adopted | Applied | ApplyFailed | Pruned | Waiting | Progressing | Removed
)
Emit = Callable[[Event], None]
