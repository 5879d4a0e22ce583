"""Where the server listens, and taking that port before anything slow happens.

aiohttp binds its port only once the app has started, which here includes loading the model: seconds,
or minutes for a first download. A port in use would be reported only then. segcast binds first and
hands the bound sockets to aiohttp, which starts listening on them when the model is ready; until
then a browser's connection is refused at once rather than left waiting. Bound without listening,
a socket holds its port only if it does not let the address be reused (`bind`). Light to import: the
CLI reads its defaults before PyTorch is loaded.
"""

from __future__ import annotations

import socket

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


class ListenError(Exception):
    """The address cannot be listened on; the message names the flags to change.

    `named` names the config file's keys instead where they gave the host or port (``[server] host``):
    the command line knows that, `bind` does not.
    """

    def __init__(self, host: str, port: int, reason: str, *, unknown_host: bool) -> None:
        self.host, self.port, self.reason, self.unknown_host = host, port, reason, unknown_host
        super().__init__(self.named())

    def named(self, host_from: str = "--host", port_from: str = "--port") -> str:
        """The message, naming ``host_from`` and ``port_from`` (a flag, or a config key like ``[server] host``)."""
        if self.unknown_host:
            name, _, port = self.host.rpartition(":")
            hint = ""
            if name and ":" not in name and port.isdigit():  # "localhost:8080": not IPv6, a port
                beside = "--port" if host_from.startswith("--") else "[server] port"  # where the host is given
                hint = f"; give the port on its own: {_given(beside, int(port))}"
            return f"{_given(host_from, self.host)}: not an address of this machine ({self.reason}){hint}"
        return f"cannot listen on {self.host}:{self.port} ({self.reason}); choose another {port_from} or {host_from}"


def _given(key: str, value: str | int) -> str:
    """``--host x`` for a flag, ``[server] host = "x"`` for a config key."""
    if key.startswith("--"):
        return f"{key} {value}"
    return f'{key} = "{value}"' if isinstance(value, str) else f"{key} = {value}"


def bind(host: str, port: int) -> list[socket.socket]:
    """Sockets bound (not yet listening) to every address ``host`` names on ``port``, held: no other socket
    may bind the port until they are closed, or `ready_to_listen` lets the address be reused.

    ``""`` means every interface. Like asyncio's own servers, an IPv6 socket takes IPv6 only, so
    ``localhost`` gets one socket for 127.0.0.1 and one for ::1. Raises `ListenError`.

    They bind with ``SO_REUSEADDR``, or a restart would have to wait out the connections of the last
    run (TIME_WAIT, a minute), then take it back: on Linux, two sockets that both allow it may bind
    one port while neither listens, and a second segcast started meanwhile bound it too, loaded its
    model and only then failed to listen.
    """
    try:
        found = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(host, port, str(exc.strerror), unknown_host=True) from None
    addresses = list(dict.fromkeys((family, address) for family, _, _, _, address in found))
    sockets: list[socket.socket] = []
    try:
        for family, address in addresses:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart need not wait out TIME_WAIT
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise cannot_listen(host, port, exc) from None
    return sockets


def ready_to_listen(sockets: list[socket.socket]) -> None:
    """Let `bind`'s sockets reuse their address again, just before they listen: held so, their listen
    would fail while connections of the last run are in TIME_WAIT, as a bind without it does."""
    for sock in sockets:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)


def cannot_listen(host: str, port: int, exc: OSError) -> ListenError:
    """The `ListenError` for ``exc``, raised binding or listening on ``host`` and ``port``."""
    return ListenError(host, port, str(exc.strerror or exc), unknown_host=False)


#: Hosts that mean every interface of the machine, IPv4 or IPv6.
EVERY_INTERFACE = frozenset({"", "0.0.0.0", "::"})


def listening_message(host: str, port: int, tls: bool) -> str:
    """What segcast says once it accepts connections: an address to open the viewer at.

    Listening on every interface, this machine's loopback is shown (``0.0.0.0`` is no address a browser
    opens), and the line says so, or it would read as if only this machine could connect.
    """
    scheme = "https" if tls else "http"
    if host in EVERY_INTERFACE:
        here = f"{scheme}://127.0.0.1:{port}/"
        return f"listening on every interface, port {port}: open {here} here, or this machine's address"
    shown = f"[{host}]" if ":" in host else host
    return f"listening on {scheme}://{shown}:{port}/"
