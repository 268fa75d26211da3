"""Which backend a request goes to: per-deployment pools, fewest in flight, a bounded FIFO queue.

The router's scheduling core, with no I/O: `dispatch` asks a `Pool` for a backend, forwards, and
hands the backend back; the autoscaler reads `Pool.load()`; discovery (static config or the
deployment's Service) calls `Pool.set_backends`. Everything runs on the event loop thread, so
the counts need no locks; the only asyncio used is a future per queued request. A caller on
another thread (a watch thread) must hop onto the loop first: `loop.call_soon_threadsafe`.

A backend is free while `in_flight < max_concurrent`. A request takes the free backend with the
fewest in flight, ties going to the one that has waited longest at that count, so equal backends
take turns. When none is free the request waits in a FIFO queue of bounded length (full -> 429)
for at most `max_queue_wait` (-> 503), as the original product (azureml-fe) answers. A released
slot goes straight to the head of the queue, so queued requests are never overtaken by new ones.

Free backends sit in one insertion-ordered bucket per in-flight count, which makes picking and
releasing O(max_concurrent) instead of a scan over every backend.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass


class QueueFull(Exception):
    """Every backend is busy and the queue is at its length limit (HTTP 429)."""


class QueueTimeout(Exception):
    """The request waited `max_queue_wait` without a backend freeing up (HTTP 503)."""


@dataclass(frozen=True)
class Load:
    """A pool's load at one instant, for the autoscaler.

    busy: request slots in use divided by max_concurrent, i.e. busy replicas (fractional when a
    replica takes several requests). queued: requests waiting for a slot. backends: backends in
    the pool that are up.
    """

    busy: float
    queued: int
    backends: int


class Backend:
    """One model replica, by URL, with its exact count of requests in flight."""

    __slots__ = ("host", "in_flight", "in_pool", "port", "prefix", "up", "url")

    def __init__(self, url: str, host: str, port: int, prefix: str) -> None:
        self.url = url
        self.host = host
        self.port = port
        self.prefix = prefix  # path prefix before /score, "" usually
        self.in_flight = 0
        self.up = True  # false after a connection failure, until a probe succeeds
        self.in_pool = True  # false once discovery removed it; in-flight requests still finish

    def __repr__(self) -> str:
        state = "up" if self.up else "down"
        return f"Backend({self.url!r}, in_flight={self.in_flight}, {state})"


def parse_backend(url: str) -> Backend:
    """A Backend for an http:// URL (`config.backend_url_problem` has vetted it)."""
    rest = url.split("://", 1)[1]
    authority, slash, path = rest.partition("/")
    prefix = (slash + path).rstrip("/")
    if authority.startswith("["):  # IPv6 literal
        host, _, port = authority[1:].partition("]")
        port = port.lstrip(":")
    else:
        host, _, port = authority.partition(":")
    return Backend(url, host, int(port) if port else 80, prefix)


class Pool:
    """The backends of one deployment and the queue of requests waiting for them."""

    def __init__(self, max_concurrent: int = 1, max_queue: int = 1000) -> None:
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self._backends: dict[str, Backend] = {}
        # _free[n]: the up, in-pool backends with n in flight (n < max_concurrent), in the order
        # they reached that count (a dict is an ordered set with O(1) removal).
        self._free: list[dict[Backend, None]] = [{} for _ in range(max_concurrent)]
        # No bucket below this one holds a backend: `_take` starts its scan here, so a pool whose
        # backends are all busy (overload, a deep queue) answers "none free" at once instead of
        # walking max_concurrent empty buckets on every request.
        self._lowest = 0
        # Requests waiting, oldest first. A future leaves the deque when it gets a backend or
        # expires; a cancelled one may linger until its task resumes, and is skipped.
        self._waiters: collections.deque[asyncio.Future[Backend]] = collections.deque()

    # -- membership ---------------------------------------------------------------------------

    @property
    def backends(self) -> list[Backend]:
        return list(self._backends.values())

    def set_backends(self, urls: Iterable[str]) -> None:
        """Make the pool exactly `urls`, keeping the Backend (and its counts) of each kept URL."""
        wanted = list(dict.fromkeys(urls))
        for url in list(self._backends):
            if url not in wanted:
                backend = self._backends.pop(url)
                backend.in_pool = False
                self._unfree(backend)
        for url in wanted:
            if url not in self._backends:
                backend = parse_backend(url)
                self._backends[url] = backend
                self._make_free(backend)
        self._serve_waiters()

    def configure(self, max_concurrent: int, max_queue: int) -> None:
        """Apply new limits (a config reload) without losing any count."""
        self.max_queue = max_queue
        if max_concurrent != self.max_concurrent:
            self.max_concurrent = max_concurrent
            self._free = [{} for _ in range(max_concurrent)]
            self._lowest = 0
            for backend in self._backends.values():
                self._make_free(backend)
        self._serve_waiters()

    def mark_down(self, backend: Backend) -> bool:
        """Take a backend out after a connection failure; its in-flight requests still count.

        True when it was up until now (so the caller logs the change once, not per request).
        """
        if not backend.up:
            return False
        backend.up = False
        self._unfree(backend)
        return True

    def mark_up(self, backend: Backend) -> bool:
        """Bring a backend back (a probe reached it) and give it to any queued request."""
        if backend.up:
            return False
        backend.up = True
        self._make_free(backend)
        self._serve_waiters()
        return True

    # -- requests -----------------------------------------------------------------------------

    def try_acquire(self) -> Backend | None:
        """The free backend with the fewest in flight, now taken; None when all are busy.

        Queued requests come first: while any wait, a new request does not jump ahead.
        """
        if self._waiters:
            return None
        return self._take()

    async def acquire(self, max_wait: float) -> Backend:
        """A backend for one request, waiting in the queue for at most `max_wait` seconds.

        Raises QueueFull or QueueTimeout. The caller must `release` the backend exactly once.
        """
        backend = self.try_acquire()
        if backend is not None:
            return backend
        if len(self._waiters) >= self.max_queue:
            raise QueueFull()
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Backend] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(max_wait, self._expire, waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            # Cancelled after a backend was handed over but before this task resumed: give it
            # back, or its slot would be lost for good.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.release(waiter.result())
            raise
        finally:
            timer.cancel()
            if waiter.cancelled():
                self._forget(waiter)

    def release(self, backend: Backend) -> None:
        """The request on `backend` is over (answered, failed or abandoned)."""
        count = backend.in_flight
        if count <= 0:
            raise RuntimeError(f"release without acquire on {backend!r}")
        eligible = backend.up and backend.in_pool
        if eligible and count < self.max_concurrent:
            self._free[count].pop(backend, None)
        backend.in_flight = count - 1
        if not eligible or count > self.max_concurrent:
            return  # out of the pool, or still full after a reload lowered max_concurrent
        # The slot goes straight to the oldest waiter (the count goes back up at once).
        while self._waiters:
            waiter = self._waiters.popleft()
            if waiter.done():
                continue
            backend.in_flight = count
            if count < self.max_concurrent:
                self._add_free(backend, count)
            waiter.set_result(backend)
            return
        self._add_free(backend, count - 1)

    def load(self) -> Load:
        in_use = sum(b.in_flight for b in self._backends.values())
        live = sum(1 for b in self._backends.values() if b.up)
        return Load(busy=in_use / self.max_concurrent, queued=self.queued, backends=live)

    @property
    def queued(self) -> int:
        return len(self._waiters)

    @property
    def in_flight(self) -> int:
        """Requests in flight on the pool's current backends."""
        return sum(b.in_flight for b in self._backends.values())

    @property
    def live(self) -> bool:
        """Whether any backend is up (the deployment's health answer)."""
        return any(b.up for b in self._backends.values())

    # -- internals ----------------------------------------------------------------------------

    def _take(self) -> Backend | None:
        free = self._free
        for count in range(self._lowest, len(free)):
            bucket = free[count]
            if bucket:
                self._lowest = count
                backend = next(iter(bucket))
                del bucket[backend]
                backend.in_flight = count + 1
                if count + 1 < self.max_concurrent:
                    free[count + 1][backend] = None
                return backend
        self._lowest = len(free)  # every bucket is empty
        return None

    def _add_free(self, backend: Backend, count: int) -> None:
        self._free[count][backend] = None
        if count < self._lowest:
            self._lowest = count

    def _make_free(self, backend: Backend) -> None:
        if backend.up and backend.in_pool and backend.in_flight < self.max_concurrent:
            self._add_free(backend, backend.in_flight)

    def _unfree(self, backend: Backend) -> None:
        if backend.in_flight < len(self._free):
            self._free[backend.in_flight].pop(backend, None)

    def _serve_waiters(self) -> None:
        while self._waiters:
            waiter = self._waiters[0]
            if waiter.done():
                self._waiters.popleft()
                continue
            backend = self._take()
            if backend is None:
                return
            self._waiters.popleft()
            waiter.set_result(backend)

    def _expire(self, waiter: asyncio.Future[Backend]) -> None:
        if not waiter.done():
            waiter.set_exception(QueueTimeout())
            self._forget(waiter)

    def _forget(self, waiter: asyncio.Future[Backend]) -> None:
        # Linear, but only on a timeout or a cancellation, never on the normal path.
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)
