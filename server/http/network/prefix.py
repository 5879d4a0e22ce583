"""The path a reverse proxy serves this node under, so the links the API hands out work through it.

A node behind an entrance that serves it at ``/node-2/`` (stripping the prefix before it forwards)
sees ``/api/streams`` while its client asked for ``/node-2/api/streams``. Its links and ``Location``
headers are root paths of the node; given as they are, they would lead past the node at the
entrance. A proxy that sets ``X-Forwarded-Prefix`` (nginx ``proxy_set_header X-Forwarded-Prefix
/node-2;``, Traefik's ``stripPrefix``) says where the node's root is, and every link is put under it.

The value ends up in JSON bodies and in a header, from whoever sent the request: only a plain path
of unreserved characters is taken, anything else (a scheme or host, ``//`` that a browser reads as
another host, ``..``, spaces, control characters) is ignored whole, never cleaned up nor echoed.
"""

from __future__ import annotations

import re

from aiohttp import web

PREFIX_HEADER = "X-Forwarded-Prefix"
#: Longer than any sensible mount path; a longer value is ignored rather than copied into every link.
MAX_PREFIX_CHARS = 200
#: One or more ``/segment``, each of RFC 3986's unreserved characters only (no ``%``, no sub-delims).
_PREFIX = re.compile(r"(?:/[A-Za-z0-9._~-]+)+")


def forwarded_prefix(request: web.Request) -> str:
    """Where a proxy serves this node, as a path to put before a root path: ``"/node-2"``, or ``""``.

    ``""`` without the header, for ``/``, and for a value that is not a plain path (module docstring),
    so a response without a valid prefix is exactly what it would be without a proxy. One trailing
    ``/`` is dropped (``/node-2/`` is ``/node-2``); the header given more than once is ignored, as
    there is no telling which proxy meant which.
    """
    values = request.headers.getall(PREFIX_HEADER, [])
    if len(values) != 1:
        return ""
    value = values[0]
    if value.endswith("/"):
        value = value[:-1]
    if len(value) > MAX_PREFIX_CHARS or not _PREFIX.fullmatch(value):
        return ""
    if any(segment in (".", "..") for segment in value.split("/")):
        return ""
    return value
