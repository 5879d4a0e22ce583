"""Request bodies, read within one bound for every route that takes one.

aiohttp buffers up to its ``client_max_size`` (1 MiB) before a handler sees a byte; segcast's bodies
(a stream definition, a token request) are a few hundred bytes, so each is read here, chunk by chunk,
and refused as soon as it passes `MAX_BODY_BYTES`, whether or not it announced its length.
"""

from __future__ import annotations

from aiohttp import web

from server.http.errors import error

MAX_BODY_BYTES = 64 * 1024


class _BodyTooLarge(web.HTTPClientError):
    """413 with our own message (aiohttp's own class wants the sizes instead of a text)."""

    status_code = 413


async def read_body(request: web.Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request's body, or a JSON 413 once it is longer than ``limit`` bytes (a chunked one too)."""
    too_large = error(_BodyTooLarge, f"the body must be at most {limit // 1024} KiB")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    raw = bytearray()
    while chunk := await request.content.read(limit + 1 - len(raw)):
        raw += chunk
        if len(raw) > limit:
            raise too_large
    return bytes(raw)
