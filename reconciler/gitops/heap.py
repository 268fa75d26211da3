"""The loop's garbage collection: no tick waits for a walk of the whole heap.

A controller following 10,000 objects holds several hundred thousand long-lived containers (the
live-state cache, the memo's parsed files and models) and a tick allocates as many again
(rendered objects, plans), nearly all freed by reference counting: the loop's data holds no
reference cycles. CPython's cyclic collector, left alone, still walks the heap in full twice or
more per tick, finding next to nothing, and those walks were most of a large tick (figures in
benchmarks/README.md).

So `Heap.tick` turns automatic collection off while a tick runs and, after it, freezes what
survived (`gc.freeze`: the collector no longer looks at it), so collections between ticks see
only what came after. Every `full_every` seconds, after a tick, everything is thawed and collected
once in full: what a frozen object could hold in a cycle that died later is released then.
Nothing a tick computes depends on when memory is collected.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable, Iterator

FULL_EVERY = 600.0  # seconds


class Heap:
    """When the loop collects garbage (see the module docstring)."""

    def __init__(
        self, full_every: float = FULL_EVERY, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.full_every = full_every
        self._clock = clock
        self._last_full = clock()
        self.full_collections = 0

    @contextlib.contextmanager
    def tick(self) -> Iterator[None]:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            yield
        finally:
            if self._clock() - self._last_full >= self.full_every:
                gc.unfreeze()
                gc.collect()
                self._last_full = self._clock()
                self.full_collections += 1
            gc.freeze()
            if was_enabled:
                gc.enable()
