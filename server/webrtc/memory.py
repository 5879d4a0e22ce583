"""Giving the memory closed WebRTC peers freed back to the operating system.

A memory review found the server's RSS grew ~150-170 KB with each player session (offer, a few
frames, close) and never shrank: the memory was freed, but glibc's allocator kept it in its arenas
for reuse. ``malloc_trim(0)`` called in the server gave back 22-45 MB each time and kept RSS flat
over 80 sessions; the image's ``MALLOC_ARENA_MAX=2`` (Dockerfile) only halved the slope. Adding and
removing streams showed no such slope, so the registry asks for a trim after each peer it closes
(`PeerRegistry._close`).

A trim walks the whole heap, so `Trimmer` runs one at most every `TRIM_INTERVAL_S`, in a worker
thread: a close within that time of the last trim gets one trim at its end, never none, as the
peers closed then would otherwise keep their memory until the next close.

``malloc_trim`` is glibc's: where the C library is another (musl, macOS) or cannot be loaded,
`trim` does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

#: The least time between two trims, in seconds.
TRIM_INTERVAL_S = 30.0


def _find_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS) or fails to load."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        function = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    return function


_MALLOC_TRIM = _find_malloc_trim()


def trim() -> None:
    """Give the heap's free memory back to the operating system; blocks while it walks the heap."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


class Trimmer:
    """Runs `trim` off the event loop when asked, at most once per `TRIM_INTERVAL_S`; owned by one
    `PeerRegistry`, which closes it (a scheduled trim is dropped, a running one awaited) at shutdown."""

    def __init__(self) -> None:
        self._last: float | None = None  # loop.time() when the last trim began
        self._scheduled: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Future[None]] = set()
        self._closed = False

    def request(self) -> None:
        """Trim now, or once at the end of the interval if a trim began within it. Only on the loop."""
        if self._closed or self._scheduled is not None:
            return
        loop = asyncio.get_running_loop()
        if self._last is None or loop.time() - self._last >= TRIM_INTERVAL_S:
            self._start(loop)
        else:
            self._scheduled = loop.call_at(self._last + TRIM_INTERVAL_S, self._start, loop)

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._scheduled = None
        self._last = loop.time()
        future = loop.run_in_executor(None, trim)
        self._running.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: asyncio.Future[None]) -> None:
        self._running.discard(future)
        if not future.cancelled() and future.exception() is not None:
            log.error("malloc_trim failed", exc_info=future.exception())

    async def close(self) -> None:
        """Drop a scheduled trim and wait for a running one; asks after this do nothing."""
        self._closed = True
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        if self._running:
            await asyncio.wait(list(self._running))
