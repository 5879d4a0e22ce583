"""Telling the log about something that can happen many times a second: one line per interval,
saying how many times it happened since the last.

A refused connection, a full event queue, a page asking for files that are gone: each can repeat
thousands of times a second under load or attack, and a line for each buries the log (one flood wrote
90 MB in half a minute). Silence would hide it; so the first is told at once and the rest are counted
into the next line.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

#: A camera that keeps failing the same way is logged at WARNING at most this often, with how many
#: attempts failed so since it was first logged: a dead camera retried every 30 s otherwise writes
#: some 2,900 lines a day. Each attempt is still logged, at DEBUG.
REPEATED_FAILURE_LOG_INTERVAL_S = 600.0


class ThrottledCount:
    """A count of something, told in at most one line per ``interval_s``.

    The first occurrence is told at once and opens a quiet window; those within it are only counted.
    Their number goes into the next line: at the first occurrence after the window, or when the
    caller asks (`due` once the window is over, `take` at any time), so no occurrence is in no line.
    Times are monotonic seconds, `time.monotonic` unless the caller brings its own clock.
    Not thread-safe: a caller that counts from several threads holds a lock around it.
    """

    def __init__(self, interval_s: float) -> None:
        self.untold = 0
        self._interval_s = interval_s
        self._quiet_until = -float("inf")

    def add(self, count: int = 1, now: float | None = None) -> int:
        """Count ``count`` more; how many to tell now (all since the last line), or 0 while quiet."""
        self.untold += count
        return self.due(now)

    def due(self, now: float | None = None) -> int:
        """How many to tell now, if the window is over (opening the next one); else 0."""
        now = time.monotonic() if now is None else now
        if not self.untold or now < self._quiet_until:
            return 0
        self._quiet_until = now + self._interval_s
        return self.take()

    def take(self) -> int:
        """How many are untold, window or not, counting them told: for a line the caller must write now."""
        count, self.untold = self.untold, 0
        return count

    def told(self, now: float | None = None) -> None:
        """A line that told of the first occurrence was written: the window opens."""
        self.untold = 0
        self._quiet_until = (time.monotonic() if now is None else now) + self._interval_s


@dataclass
class RepeatedFailureLog:
    """How loudly to log a reconnect: a new failure at WARNING, the same one again at WARNING at most
    every `REPEATED_FAILURE_LOG_INTERVAL_S` (saying how many attempts failed so meanwhile), else DEBUG."""

    error: str | None = None
    logged_at: float = -float("inf")  # monotonic
    unlogged: int = 0  # attempts that failed with ``error`` since it was last logged at WARNING

    def failed(self, error: str | None, now: float) -> tuple[int, str]:
        """The log level for an attempt that failed with ``error`` at ``now``, and what to add to its line."""
        if error == self.error and now - self.logged_at < REPEATED_FAILURE_LOG_INTERVAL_S:
            self.unlogged += 1
            return logging.DEBUG, ""
        again = error == self.error and self.unlogged > 0
        repeats = f" (failed so {self.unlogged} more times since this was last logged)" if again else ""
        self.error, self.logged_at, self.unlogged = error, now, 0
        return logging.WARNING, repeats
