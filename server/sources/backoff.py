"""The reconnect schedule: how long the reader waits before a source's next attempt after one failed.

Exponential from a first wait to a cap, with jitter that only ever shortens a wait, so the cap is a
true upper bound; the reader decides what counts as a failure and when the count starts over.

A wait is cut short when a camera whose address accepted no connection accepts one again
(`wait_for_return`): after a reboot, a camera's doubled wait had segcast back 10-25 s after it.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from server.sources.http_get import STOP_POLL_S, Deadline, connect

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


def wait_for_return(
    address: tuple[str, int] | None,
    wait_s: float,
    stop: threading.Event,
    may_probe: Callable[[str], bool] | None = None,
) -> bool:
    """Wait ``wait_s`` before a reconnect, or until ``stop`` is set; whether the wait was cut short because
    the camera at ``address`` (host, port; None for a source that has none) accepts a connection again.

    The address is tried at once: if it accepts, the attempt failed after connecting (credentials refused,
    a wrong path, a damaged stream), which a camera accepting connections tells nothing of, and the wait
    is waited out, so a camera that accepts and then fails is not asked again and again. If it accepts
    none (refused, unreachable, no answer to connect: the camera is off or rebooting), it is tried every
    `RETURN_CHECK_INTERVAL_S` until it does, which ends the wait. A try costs a TCP connection opened and
    closed; it is made only where the wait is longer than that interval. ``stop`` ends a try within
    `server.sources.http_get.STOP_POLL_S`.

    The tries go to the addresses the host resolved to at the wait's start (`probe_targets`), each allowed
    by ``may_probe`` (the stream's ``check_host``, ``[server] deny_networks``, as its connections are):
    where it refuses one, or the name resolves to none in time, the wait is waited out without a try.
    """
    deadline = time.monotonic() + wait_s
    targets = (
        []
        if address is None or wait_s <= RETURN_CHECK_INTERVAL_S
        else probe_targets(address, may_probe, stop, deadline)
    )
    if not targets or accepts(targets, stop, deadline):
        stop.wait(max(0.0, deadline - time.monotonic()))
        return False
    while not stop.wait(min(RETURN_CHECK_INTERVAL_S, max(0.0, deadline - time.monotonic()))):
        if time.monotonic() >= deadline:
            return False
        if accepts(targets, stop, deadline):
            return True
    return False


def probe_targets(
    address: tuple[str, int], may_probe: Callable[[str], bool] | None, stop: threading.Event, deadline: float
) -> list[tuple[str, int]]:
    """Where a wait's tries may connect: the IP addresses ``address``'s host resolves to (`resolve`), with its
    port; none where ``may_probe`` refuses any of them, as the stream's own connection would be refused.

    Resolved once, and connected to by address: a name that starts pointing at a denied address mid-wait
    (DNS rebinding) is never tried there, and a wait looks the name up once, not once a try.
    """
    host, port = address
    found = resolve(host, stop, deadline)
    if may_probe is not None and not all(may_probe(ip) for ip in found):
        return []
    return [(ip, port) for ip in found]


def resolve(host: str, stop: threading.Event, deadline: float) -> list[str]:
    """The IP addresses ``host`` resolves to; none where it resolves to none, or has not by ``deadline``
    (monotonic) or once ``stop`` is set, which are checked every `STOP_POLL_S`.

    Looked up in a thread of its own, which is left to end at the resolver's own time-out: getaddrinfo
    cannot be cut short, and a resolver that did not answer held a 2 s wait, stopped at 0.5 s, for 4 s.
    """
    found: list[str] = []
    done = threading.Event()

    def look_up() -> None:
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
            found.extend(dict.fromkeys(str(info[4][0]) for info in infos))
        except (OSError, ValueError):  # no such name now; a host IDNA refuses
            pass
        finally:
            done.set()

    threading.Thread(target=look_up, name=f"resolve {host}", daemon=True).start()
    while not done.wait(STOP_POLL_S):
        if stop.is_set() or time.monotonic() >= deadline:
            return []
    return found


def accepts(targets: list[tuple[str, int]], stop: threading.Event, deadline: float) -> bool:
    """Whether something accepts a TCP connection at one of ``targets`` (IP address, port) now, all tried
    within `RETURN_CHECK_TIMEOUT_S` and not past ``deadline`` (monotonic); the connection is closed at once."""
    within = Deadline(min(deadline, time.monotonic() + RETURN_CHECK_TIMEOUT_S), stop)
    for ip, port in targets:
        try:
            connect(ip, port, within).close()
        except (TimeoutError, InterruptedError):  # no time left for the others, or stopped
            return False
        except OSError:
            continue
        return True
    return False
