"""Open connections limited in all and per client address, where they are accepted: before any request.

A token is checked per request, so until a request comes a connection costs the server an open file
and some memory, whoever opened it. Two clients holding 10,000 keep-alive connections each (a request
every few seconds, so the header time limit never ended them) used up the process's open files: every
request hung, the admin's too, and asyncio logged a traceback for each accept that failed. Here a
connection over a limit is answered ``503`` and closed as soon as it is accepted:

- in all, `ConnectionLimits.for_open_files`: `OPEN_FILES_SHARE` of the process's open-files limit
  (raised to its hard limit at start, `raise_open_files_limit`), leaving the rest for cameras, files,
  the event history and Triton; at most `MAX_CONNECTIONS`, since each costs memory too;
- per client address, `MAX_CONNECTIONS_PER_ADDRESS`. Loopback addresses are not counted per address,
  as for viewers (`is_local_client`): behind a reverse proxy, the scale-out entrance included, every
  client comes from one.

aiohttp has no hook between its runner and ``loop.create_server``, so the limits are the event loop's
(`ConnectionLimitingLoop`, given to ``web.run_app``), not a copy of ``run_app`` with its own sites.
Connections still in their TLS handshake are not counted: the app's protocol sees them only after it.

If the open files run out all the same, asyncio's ERROR with a traceback per failed accept becomes one
WARNING line a minute (`AcceptFailuresAreOneWarning`).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from server.delivery.viewer import is_local_client
from server.log_throttle import ThrottledCount

#: More than a browser opens however many tabs it has (Chrome keeps at most 256 sockets in all).
MAX_CONNECTIONS_PER_ADDRESS = 256
#: Connections a browser opens beside its viewers (the page, its scripts, API calls): a browser keeps
#: six to a host over HTTP/1.1.
PAGE_CONNECTIONS = 8
#: Of the open-files limit, what connections may take; the rest is the server's own.
OPEN_FILES_SHARE = 0.75
#: However many files the process may open: each connection also holds aiohttp's handler and buffers.
MAX_CONNECTIONS = 65_536
#: Taken as the open-files limit where there is none to read (not Unix).
DEFAULT_OPEN_FILES = 1024
#: A flood of refusals or failed accepts is logged at most this often, with how many were not.
LOG_INTERVAL_S = 60.0
#: What a refused connection is told before it is closed; it may not have sent its request yet.
BUSY_ANSWER = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
#: How asyncio's message for an accept that failed for want of files (or memory) begins.
ACCEPT_FAILED = "socket.accept() out of system resource"

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """How many connections may be open at once, in all and from one (non-loopback) address."""

    total: int
    per_address: int = MAX_CONNECTIONS_PER_ADDRESS

    @classmethod
    def for_open_files(cls, open_files: int, viewers_per_address: int = 0) -> ConnectionLimits:
        """The limits for a process that may have ``open_files`` files open, letting one address hold
        ``viewers_per_address`` viewers (``max_viewers_per_address``) and the page's other requests
        beside them: a limit raised there is not undercut here."""
        total = max(1, min(MAX_CONNECTIONS, int(open_files * OPEN_FILES_SHARE)))
        return cls(total=total, per_address=max(MAX_CONNECTIONS_PER_ADDRESS, viewers_per_address + PAGE_CONNECTIONS))


def raise_open_files_limit() -> int:
    """Raise this process's open-files limit to the most it may; returns the limit now in force.

    Many systems start processes at 1024 with a hard limit far above: connections are then refused
    well before the server is busy. Where the limit cannot be raised, it is kept.
    """
    if sys.platform == "win32":
        return DEFAULT_OPEN_FILES
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as error:  # macOS refuses "unlimited", say
            log.debug("open files: keeping the limit of %d (%s)", soft, error)
        else:
            log.debug("open files: limit raised from %d to %d", soft, hard)
            soft = hard
    return MAX_CONNECTIONS if soft == resource.RLIM_INFINITY else soft


class ConnectionCounter:
    """The connections open now, in all and per address, admitted only while the limits leave room."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.total = 0
        #: Connections refused, by the limit that refused them (``segcast_connections_refused_total``).
        self.refused_by: dict[str, int] = {"total": 0, "per_address": 0}
        self._per_address: Counter[str] = Counter()
        self._refusals_logged = ThrottledCount(LOG_INTERVAL_S)

    def admit(self, address: str | None) -> bool:
        """Count one more connection from ``address`` (None: no network address) if the limits allow.

        Every admitted connection must be `release`d once it ends.
        """
        counted = _counted_address(address)
        if self.total >= self.limits.total:
            self._refuse("total", f"the server has its limit of {self.limits.total} open connections")
            return False
        if counted is not None and self._per_address[counted] >= self.limits.per_address:
            self._refuse("per_address", f"{counted} has its limit of {self.limits.per_address} open connections")
            return False
        self.total += 1
        if counted is not None:
            self._per_address[counted] += 1
        return True

    def release(self, address: str | None) -> None:
        """Count one connection `admit`ted for ``address`` as ended."""
        self.total -= 1
        counted = _counted_address(address)
        if counted is not None:
            self._per_address[counted] -= 1
            if not self._per_address[counted]:
                del self._per_address[counted]

    @property
    def refused(self) -> int:
        """Connections refused so far, by either limit."""
        return sum(self.refused_by.values())

    def _refuse(self, limit: str, why: str) -> None:
        self.refused_by[limit] += 1
        if self._refusals_logged.add():
            log.warning("refusing connections (%d so far): %s", self.refused, why)


def _counted_address(address: str | None) -> str | None:
    """``address`` if its connections count against `ConnectionLimits.per_address`, else None."""
    return address if address is not None and not is_local_client(address) else None


class _CountedConnection(asyncio.Protocol):
    """One accepted connection: closed at once if `ConnectionCounter` refuses it, else handed to the
    protocol ``make`` builds (aiohttp's request handler), and counted until it ends."""

    __slots__ = ("_address", "_counter", "_inner", "_make")

    def __init__(self, make: Callable[[], asyncio.BaseProtocol], counter: ConnectionCounter) -> None:
        self._make = make
        self._counter = counter
        self._address: str | None = None
        self._inner: asyncio.Protocol | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) else None
        if not self._counter.admit(address):
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(BUSY_ANSWER)
            transport.close()  # sends what was written, then frees the file
            return
        inner = self._make()
        if not isinstance(inner, asyncio.Protocol):
            transport.close()
            self._counter.release(address)
            raise TypeError(f"connections are counted for stream protocols only, not {type(inner).__name__}")
        self._address, self._inner = address, inner
        inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is None:  # refused: never counted
            return
        self._counter.release(self._address)
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()


def running_counter() -> ConnectionCounter | None:
    """The counter of the running loop's connections; None where the loop limits none (tests' servers)."""
    loop = asyncio.get_running_loop()
    return loop.connections if isinstance(loop, ConnectionLimitingLoop) else None


class ConnectionLimitingLoop(asyncio.SelectorEventLoop):
    """An event loop whose servers admit connections only within ``limits`` (`ConnectionCounter`).

    One counter for every server the loop runs: the limits are the process's, whichever socket a
    connection came in on.
    """

    def __init__(self, limits: ConnectionLimits) -> None:
        super().__init__()
        self.connections = ConnectionCounter(limits)

    async def create_server(
        self, protocol_factory: Callable[[], asyncio.BaseProtocol], *args: Any, **kwargs: Any
    ) -> asyncio.Server:
        def counted() -> asyncio.BaseProtocol:
            return _CountedConnection(protocol_factory, self.connections)

        return await super().create_server(counted, *args, **kwargs)


class AcceptFailuresAreOneWarning(logging.Filter):
    """Turns asyncio's ERROR with a traceback, each time ``accept()`` fails for want of open files,
    into one WARNING line per `LOG_INTERVAL_S` that says how many there were.

    asyncio logs one per waiting connection and tries again a moment later, so a flood of
    connections wrote 200,000 of them (90 MB) in half a minute.
    """

    def __init__(self) -> None:
        super().__init__()
        self._throttle = ThrottledCount(LOG_INTERVAL_S)

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(ACCEPT_FAILED):
            return True
        failures = self._throttle.add()
        if not failures:
            return False
        exc = record.exc_info[1] if record.exc_info else None
        record.msg = "cannot accept connections (%d times since the last such line), they wait: %s"
        record.args = (failures, exc or "out of system resources")
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
        return True


logging.getLogger("asyncio").addFilter(AcceptFailuresAreOneWarning())
