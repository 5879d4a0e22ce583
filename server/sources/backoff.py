"""The reconnect schedule: how long the reader waits before a source's next attempt after one failed.

Exponential from a first wait to a cap, with jitter that only ever shortens a wait, so the cap is a
true upper bound; the reader decides what counts as a failure and when the count starts over.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

RECONNECT_INITIAL_S = 0.5
RECONNECT_MAX_S = 30.0
#: Each delay is shortened by a random fraction of up to this, so cameras that dropped together (a
#: switch rebooting) do not all come back at the same instant. Only shortened: a wait never exceeds
#: its nominal value, so `RECONNECT_MAX_S` is a true upper bound.
RECONNECT_JITTER = 0.2
#: A connection that delivered frames this long resets the backoff to `RECONNECT_INITIAL_S`.
HEALTHY_RESET_S = 10.0


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
