"""The reconnect schedule: how long the reader waits before a source's next attempt after one failed.

Exponential from a first wait to a cap, with jitter that only ever shortens a wait, so the cap is a
true upper bound; the reader decides what counts as a failure and when the count starts over.

A wait is cut short when a camera whose address accepted no connection accepts one again
(`wait_for_return`): after a reboot, a camera's doubled wait had segcast back 10-25 s after it.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass

from server.sources.http_get import Deadline, connect

RECONNECT_INITIAL_S = 0.5
RECONNECT_MAX_S = 30.0
#: Each delay is shortened by a random fraction of up to this, so cameras that dropped together (a
#: switch rebooting) do not all come back at the same instant. Only shortened: a wait never exceeds
#: its nominal value, so `RECONNECT_MAX_S` is a true upper bound.
RECONNECT_JITTER = 0.2
#: A connection that delivered frames this long resets the backoff to `RECONNECT_INITIAL_S`.
HEALTHY_RESET_S = 10.0
#: While the reader waits to reconnect to a camera whose address accepted no connection, the address is
#: tried this often, so the camera is asked again within about this long of accepting again...
RETURN_CHECK_INTERVAL_S = 1.0
#: ...each try given this long to be accepted: a camera's answer on its network takes milliseconds.
RETURN_CHECK_TIMEOUT_S = 1.0


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long to wait before reconnect attempt ``failures + 1``: doubling from ``initial_s`` to ``max_s``.

    Jitter takes up to ``jitter`` of the nominal wait off, never adds to it: the README promises at
    most ``max_s`` between attempts.
    """

    initial_s: float = RECONNECT_INITIAL_S
    max_s: float = RECONNECT_MAX_S
    jitter: float = RECONNECT_JITTER
    healthy_s: float = HEALTHY_RESET_S

    def delay(self, failures: int, rng: random.Random) -> float:
        base = self.initial_s * 2.0 ** min(failures, 32)
        return min(self.max_s, base) * (1.0 - rng.uniform(0.0, self.jitter))

    def failures_within(self, wait_s: float) -> int | None:
        """The most failures whose wait (before jitter) is at most ``wait_s``; None where even the first's is longer."""
        if wait_s < self.initial_s:
            return None
        failures = 0
        while failures < 32 and self.initial_s * 2.0 ** (failures + 1) <= min(wait_s, self.max_s):
            failures += 1
        return failures


def wait_for_return(address: tuple[str, int] | None, wait_s: float, stop: threading.Event) -> bool:
    """Wait ``wait_s`` before a reconnect, or until ``stop`` is set; whether the wait was cut short because
    the camera at ``address`` (host, port; None for a source that has none) accepts a connection again.

    The address is tried at once: if it accepts, the attempt failed after connecting (credentials refused,
    a wrong path, a damaged stream), which a camera accepting connections tells nothing of, and the wait
    is waited out, so a camera that accepts and then fails is not asked again and again. If it accepts
    none (refused, unreachable, no answer to connect: the camera is off or rebooting), it is tried every
    `RETURN_CHECK_INTERVAL_S` until it does, which ends the wait. A try costs a TCP connection opened and
    closed; it is made only where the wait is longer than that interval. ``stop`` ends a try within
    `server.sources.http_get.STOP_POLL_S`.
    """
    deadline = time.monotonic() + wait_s
    if address is None or wait_s <= RETURN_CHECK_INTERVAL_S or accepts(address, stop, deadline):
        stop.wait(max(0.0, deadline - time.monotonic()))
        return False
    while not stop.wait(min(RETURN_CHECK_INTERVAL_S, max(0.0, deadline - time.monotonic()))):
        if time.monotonic() >= deadline:
            return False
        if accepts(address, stop, deadline):
            return True
    return False


def accepts(address: tuple[str, int], stop: threading.Event, deadline: float) -> bool:
    """Whether something accepts a TCP connection at ``address`` now, tried for `RETURN_CHECK_TIMEOUT_S` at
    most and not past ``deadline`` (monotonic); the connection is closed at once."""
    host, port = address
    try:
        connect(host, port, Deadline(min(deadline, time.monotonic() + RETURN_CHECK_TIMEOUT_S), stop)).close()
    except (OSError, ValueError):  # `TimeoutError` and `InterruptedError` (stopped) too; a host IDNA refuses
        return False
    return True
