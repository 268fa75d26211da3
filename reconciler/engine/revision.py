"""One revision of a manifests repo through the pure stages: loaded and validated, then rendered.

Sits on `model` (`repo.load`) and `render`, under the planner: the commands and the loop make a
`Revision` from a snapshot, `reconcile` plans and carries it out against a cluster,
`revisiondiff` compares two. The one engine module that reads the model: what planning needs
of it comes rendered (`render.Rendered`: the objects, the key Secrets, the extensions). A
`reuse.Reuse` lets each stage reuse an earlier revision's work. Pure, like the stages it runs.
"""

from __future__ import annotations

import functools

from reconciler import source
from reconciler.engine import reuse as reusing
from reconciler.model import problems, repo
from reconciler.render import render


class Revision:
    """A snapshot of the repo, loaded when made and rendered when first asked (valid only)."""

    def __init__(self, snapshot: source.Snapshot, reuse: reusing.Reuse | None = None) -> None:
        self.snapshot = snapshot
        self.reuse = reuse
        self.revision = snapshot.revision()
        self.origin = snapshot.origin()
        self.loaded = repo.load(snapshot, None if reuse is None else reuse.memo)

    @property
    def valid(self) -> bool:
        return self.loaded.valid

    @property
    def errors(self) -> list[problems.Problem]:
        return self.loaded.errors

    def error_lines(self) -> list[str]:
        """The errors as `FILE:LINE: field.path: message`, sorted: what a rejected revision's
        records and log say."""
        return [str(p) for p in problems.sort_problems(self.errors)]

    @property
    def names(self) -> frozenset[str]:
        """The extensions the repo declares, an invalid repo's too (whose records its problems
        go to)."""
        return frozenset(self.loaded.repo.extensions)

    @functools.cached_property
    def rendered(self) -> render.Rendered:
        if not self.valid:
            raise ValueError(f"revision {self.revision} is invalid: it renders nothing")
        memo = None if self.reuse is None else self.reuse.memo
        return render.render_repo(self.loaded.repo, self.snapshot, self.revision, memo)
