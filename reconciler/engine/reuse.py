"""What a revision's stages may take from earlier work: one handle, given to them or not.

Load, render and plan each reuse a result whose inputs are unchanged since an earlier revision,
and give the same answer either way; a `Reuse` is what a command or the loop hands to each
`revision.Revision` it makes (None: every stage computes everything):

- `memo` (`model.memo`): each file's parse and each render unit, kept by what it is made from.
  `reconciler diff` shares one between its two revisions, `plan` and `apply` start from the one
  `cli/rendercache.py` kept on disk, the loop keeps one across ticks;
- `plans` (`planmemo`): the loop's last in-sync plan of each extension, handed out again while
  nothing it was made from changed (looked up by `render.Rendered.content_id`).

The parts stay where the layers put them: `memo` in `model`, which loads through it and sits
below the engine; `planmemo` and `fingerprint` (planning's answers, kept for the process) here;
the on-disk copy in `cli`; the loop's garbage collection policy (`gitops/heap.py`) in the loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from reconciler.engine import planmemo
from reconciler.model import memo

if TYPE_CHECKING:
    from reconciler.engine import reconcile


@dataclass
class Reuse:
    memo: memo.Memo = field(default_factory=memo.Memo)
    plans: planmemo.Plans[reconcile.ExtensionPlan] | None = None  # the loop's only

    def forget_unused(self) -> None:
        """Keep only what the latest revision used: a loop reuses from the last tick alone."""
        self.memo.forget_unused()
