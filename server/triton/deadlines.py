"""The deadline of each HTTP call to Triton, kept by one watcher thread per transport.

Triton's HTTP client bounds each read, not a whole call, so a server or proxy that trickles its answer
a byte at a time would hold a call for ever. `DeadlineWatcher` ends each call at its wall-clock
deadline (the transport shuts the call's connections). It is its own module because it is a small
concurrency primitive of its own, with its thread and condition, that the transport only uses.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

log = logging.getLogger(__name__)


class DeadlineWatcher:
    """Ends the calls of an HTTP transport (`server.triton.transport`) at their wall-clock deadlines, on one
    daemon thread of its own: a timer thread per call made a thread for every inference request.

    The thread is started by the first call and waits on a condition for the earliest deadline of the calls in
    progress (the requester thread makes one at a time, the /metrics question of the transport's
    `_serves_metrics` included), then runs that call's ``expire``. Once `close` was called it watches no new
    call, and its thread ends as soon as no call it watches is left: at once, unless `close` came from another
    thread in the middle of a call, which stays bounded by its deadline.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()  # guards the three below; notified on a new call and on `close`
        self._watched: set[Watched] = set()
        self._thread: threading.Thread | None = None
        self._closed = False

    @contextlib.contextmanager
    def watching(self, timeout_s: float, expire: Callable[[], None]) -> Iterator[None]:
        """Run the block, with ``expire`` called on the watcher's thread if it is still running
        ``timeout_s`` from now; ``expire`` must itself check that the block has not ended as it is called.
        Once closed, the block is not watched: the transport's connections, those opened after
        included, were shut."""
        watched = Watched(time.monotonic() + timeout_s, expire)
        with self._changed:
            if not self._closed:
                self._watched.add(watched)
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="triton-http-deadlines", daemon=True)
                    self._thread.start()
                self._changed.notify()
        try:
            yield
        finally:
            with self._changed:
                self._watched.discard(watched)
                if self._closed:  # the last call it watched may be over: its thread can end now
                    self._changed.notify()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify()

    def _run(self) -> None:
        while passed := self._wait_for_a_deadline():
            for watched in passed:
                try:
                    watched.expire()
                except Exception:  # the thread must go on watching the calls after it
                    log.exception("ending a Triton HTTP call at its deadline failed")

    def _wait_for_a_deadline(self) -> list[Watched]:
        """The calls whose deadline has passed, no longer watched, as soon as there are; none once closed
        and no call is left to watch."""
        with self._changed:
            while not (self._closed and not self._watched):
                now = time.monotonic()
                passed = [watched for watched in self._watched if watched.deadline <= now]
                if passed:
                    self._watched.difference_update(passed)
                    return passed
                earliest = min((watched.deadline for watched in self._watched), default=None)
                self._changed.wait(None if earliest is None else earliest - now)
            return []


@dataclass(eq=False, slots=True)
class Watched:
    """A call `DeadlineWatcher` watches: its deadline, by the monotonic clock, and what ends it."""

    deadline: float
    expire: Callable[[], None]
