"""Flow control of one connection, the same on both of the router's sides.

Sits under `front` (a client's connection) and `upstream` (a backend's): each protocol is a
`flow.Protocol` with a `Flow` for its transport. Reading stops once more than READ_HIGH_WATER
bytes of body wait unread (a client sending faster than the backend takes, a backend answering
faster than the client reads) and resumes when the reader takes them; writing waits in `drain`
while the transport's buffer is over its own high-water mark (asyncio's `pause_writing` and
`resume_writing` callbacks, which `Protocol` passes on).
"""

from __future__ import annotations

import asyncio

# Past this much unread body a connection stops being read, so that neither side can make the
# router buffer a large body.
READ_HIGH_WATER = 256 * 1024


class Protocol(asyncio.Protocol):
    """An asyncio protocol whose transport's write pauses go to its `flow`."""

    flow: Flow

    def pause_writing(self) -> None:
        self.flow.pause_writing()

    def resume_writing(self) -> None:
        self.flow.resume_writing()


class Flow:
    """Whether a transport's reading and writing are paused, and the wait for writing."""

    __slots__ = ("_drain", "_loop", "_transport", "lost", "read_paused", "write_paused")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._drain: asyncio.Future[None] | None = None
        self.read_paused = False
        self.write_paused = False
        self.lost = False  # the connection is gone: nothing to wait for

    def attach(self, transport: asyncio.Transport) -> None:
        self._transport = transport

    def buffered(self, unread: int) -> None:
        """`unread` body bytes wait for the reader: stop reading past the high-water mark."""
        if unread > READ_HIGH_WATER and not self.read_paused and self._transport is not None:
            self.read_paused = True
            self._transport.pause_reading()

    def consumed(self) -> None:
        """The reader took what was buffered: read again."""
        if self.read_paused and self._transport is not None and not self.lost:
            self.read_paused = False
            self._transport.resume_reading()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake()

    def lose(self) -> None:
        """The connection closed (or is being cut): a writer waiting in `drain` goes on."""
        self.lost = True
        self._wake()

    async def drain(self) -> None:
        """Wait until the transport takes more writes or the connection is gone; the caller
        then checks which."""
        while self.write_paused and not self.lost:
            self._drain = self._loop.create_future()
            await self._drain

    def _wake(self) -> None:
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
