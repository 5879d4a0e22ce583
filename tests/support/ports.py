"""Ports on 127.0.0.1: free ones for servers a test starts itself, and closed ones that refuse connections.

Free ports are chosen below the kernel's ephemeral range (``net.ipv4.ip_local_port_range``), which it
never hands out by itself: a port 0 bind's port, released and bound again by the server once it has
started, could be taken meanwhile by any connection another test made (a node of a split exited on a
busy port so).
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: How many ports below the ephemeral range are drawn from.
_SPAN = 12000


def _below_ephemeral() -> range:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768  # Linux's default
    return range(max(1024, low - _SPAN), low)


#: Ports this process has handed out: a test may hold one unbound (a config's entrance port, written
#: but not listened on yet) while it asks for more, which must not be the same.
_handed_out: set[int] = set()


def consecutive_free_ports(count: int) -> int:
    """The first of ``count`` consecutive ports free on 127.0.0.1 just now."""
    ports = _below_ephemeral()
    for _ in range(200):
        first = random.randrange(ports.start, ports.stop - count)
        wanted = range(first, first + count)
        if any(port in _handed_out for port in wanted):
            continue
        try:
            for port in wanted:
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        _handed_out.update(wanted)
        return first
    raise AssertionError(f"no {count} consecutive free ports on 127.0.0.1")


def free_port() -> int:
    """A port free on 127.0.0.1 just now."""
    return consecutive_free_ports(1)


@contextmanager
def held_closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 where connecting is refused at once, for as long as the block runs.

    The port stays bound by a socket that never listens. One bound and released (a "closed" port that
    is merely free) is back in the ephemeral range, where the kernel may hand it to another test's
    server (the other xdist worker's) before this test's connection is refused.
    """
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield int(holder.getsockname()[1])
