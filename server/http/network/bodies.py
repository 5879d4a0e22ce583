"""Request bodies, read within one bound for every route that takes one.

aiohttp buffers up to its ``client_max_size`` (1 MiB) before a handler sees a byte; segcast's bodies
(a stream definition, a token request, a WebRTC offer) are a few KiB at most, so each is read here,
chunk by chunk, and refused as soon as it passes its limit, whether or not it announced its length.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from server.http.errors import error

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024


class _BodyTooLarge(web.HTTPClientError):
    """413 with our own message (aiohttp's own class wants the sizes instead of a text)."""

    status_code = 413


async def read_body(request: web.Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request's body, or a JSON error a client can act on: 413 once it is longer than ``limit``
    bytes (a chunked one too), 400 if it does not decode as its ``Content-Encoding`` says.

    A client that hangs up before its body is complete gets a 400 it will never read: the request
    ends with a DEBUG line, as a viewer that leaves does, not an ERROR traceback and a 500.
    """
    too_large = error(_BodyTooLarge, f"the body must be at most {_size(limit)}")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    raw = bytearray()
    try:
        while chunk := await request.content.read(limit + 1 - len(raw)):
            raw += chunk
            if len(raw) > limit:
                raise too_large
    except web.RequestPayloadError as exc:
        raise _undecodable(request, exc) from None
    except ConnectionError:
        log.debug("a client hung up while sending the body of %s %s", request.method, request.path)
        raise error(web.HTTPBadRequest, "the connection closed before the body was complete") from None
    return bytes(raw)


def _size(limit: int) -> str:
    """``limit`` for a person: in KiB where it is whole KiB, and in bytes as well, as a client counts."""
    return f"{limit // 1024} KiB ({limit} bytes)" if limit % 1024 == 0 else f"{limit} bytes"


def _undecodable(request: web.Request, exc: web.RequestPayloadError) -> web.HTTPException:
    """The 400 for a body aiohttp could not decode, with the connection closed after it.

    aiohttp keeps the decoding error on the request's stream, and after the answer it reads on from
    that stream to drain the connection for the next request: the same error again, logged as an
    ERROR "Unhandled exception". Marking the stream ended skips that drain; the answer closes the
    connection, whose parser stopped at the bad bytes and cannot find where a next request begins.
    """
    cause = exc.__cause__
    reason = cause.message if isinstance(cause, HttpProcessingError) else str(exc)
    request.content.feed_eof()
    fix = "send it as its Content-Encoding says, or plain without that header"
    refused = error(web.HTTPBadRequest, f"the body could not be decoded: {reason}; {fix}")
    refused.force_close()
    return refused
