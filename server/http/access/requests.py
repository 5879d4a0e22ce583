"""What a request says of where it comes from and what it carries, read from its headers alone.

Whether a browser sent it from another site's page, whether it asks for a WebSocket, whether its
``Host`` names this machine, and the bearer token it presents. Apart because both the token policy
(`server.http.access.tokens`) and the middleware (`server.http.access.auth`) read them, and they hold
no policy of their own: each answers the same on any server, open or not.
"""

from __future__ import annotations

import ipaddress

from aiohttp import web
from yarl import URL


def is_cross_site(request: web.Request) -> bool:
    """Whether a browser says the request comes from a page of another origin than this server.

    Scheme is not compared: a proxy terminating TLS in front of segcast changes it, not the host.
    Clients that are not browsers send no ``Origin`` and are not cross-site.
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    try:
        return origin == "null" or URL(origin).authority != URL(f"http://{request.host}").authority
    except ValueError:  # a malformed Origin or Host: nothing proves the request is this site's own
        return True


def is_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def is_local_name(authority: str) -> bool:
    """Whether a ``Host`` header names this machine: a loopback address, ``localhost`` or ``*.localhost``
    (which browsers resolve to loopback themselves, so no DNS answer can redirect them)."""
    try:
        host = (URL(f"http://{authority}").host or "").rstrip(".").lower()
    except ValueError:  # not a host name at all
        return False
    return is_loopback(host) or host.endswith(".localhost")


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine (``localhost`` counts)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bearer_token(request: web.Request) -> str | None:
    """The token of the request's ``Authorization: Bearer <token>`` header, if it has one."""
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    return presented.strip() if scheme.lower() == "bearer" and presented else None
