"""How the app meets the network: the time limits and logging that aiohttp leaves to whoever runs it.

`server_options` is passed to ``web.run_app`` by the CLI, and to a runner by tests that need the
server exactly as it runs:

- a connection must finish its request headers within `HEADER_TIMEOUT_S` of connecting (or of its
  previous answer, when kept alive), so half-sent requests cannot hold sockets open for ever;
- at shutdown, a request still being read or answered (a body trickling in) gets
  `SHUTDOWN_GRACE_S`, not aiohttp's default minute, before it is cancelled; WebSocket and MJPEG
  viewers are closed before that, by the app itself;
- a request aiohttp cannot parse (a request line over 8 KB, bytes that are not HTTP) is the
  client's mistake: one line at DEBUG, not an ERROR with a traceback per request, which anyone
  could otherwise flood the log with without a token;
- credentials are redacted from access logs: a signed token in a URL is a credential until it
  expires, and a long-lived token pasted there by mistake would be one for ever; so is any value whose
  parameter's name says it holds one (`SECRET_PARAMETER`: ``access_token``, ``api_key``, ``password``),
  which a client or a proxy's health check may send whatever segcast reads;
- a live viewer's connection keeps little unsent in the kernel (`keep_send_queue_short`), and one
  ended for not reading is cut off, not left to wait for a reader (`ViewerConnection.reset`).

How many connections may be open at all, before any request is read, is `server.http.network.connections`'
(`server.serve` gives ``run_app`` its event loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import struct
from typing import Any
from urllib.parse import unquote_plus

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

HEADER_TIMEOUT_S = 20.0
#: Bytes a live viewer's socket may hold not yet sent: a few packets, well under one picture.
UNSENT_LIMIT_BYTES = 16 * 1024
SHUTDOWN_GRACE_S = 3.0
REDACTED = "***"
#: A query string, whether the path's or a Referer's: up to a fragment or a space. Not up to a quote:
#: a Referer is written by the client, and ``?x="&token=...`` must not end before its token.
_QUERY = re.compile(r"\?([^#\s]*)")
_SEPARATORS = re.compile(r"([&;])")
#: A parameter whose name holds one of these words carries a credential in some client's convention (segcast's
#: ``token``, OAuth's ``access_token``, ``api_key``, ``password``, ``client_secret``, S3's ``X-Amz-Signature``):
#: its value is redacted. A name that holds one by chance (``keyframes``) loses its value in the log too, which
#: costs a reader less than a credential kept there.
SECRET_PARAMETER = re.compile(r"token|key|pass|pwd|secret|auth|sig|cred|session", re.IGNORECASE)

#: aiohttp's request handlers log through this logger instead of ``aiohttp.server``.
http_log = logging.getLogger("server.http")


def server_options(header_timeout_s: float = HEADER_TIMEOUT_S) -> dict[str, Any]:
    """Keyword arguments for ``web.run_app`` (or ``web.AppRunner``) that apply the limits above."""
    return {
        "keepalive_timeout": header_timeout_s,
        "shutdown_timeout": SHUTDOWN_GRACE_S,
        "access_log_class": RedactingAccessLogger,
        "logger": http_log,
    }


def keep_send_queue_short(request: web.Request) -> None:
    """Let the kernel hold at most `UNSENT_LIMIT_BYTES` not yet sent on this request's connection.

    For a WebSocket or MJPEG viewer. Its one-frame slot drops stale frames only while a write is
    waiting; but Linux grows a socket's send buffer to megabytes before a write waits, so a viewer on a
    slow link was sent old frames from there, its picture falling seconds further behind every second
    (2.8 MB of them queued for a viewer that stopped reading). With the limit its writes wait at once,
    and what it gets next is the newest frame. Where the option is missing (not Linux), as before.
    """
    option = getattr(socket, "TCP_NOTSENT_LOWAT", None)
    sock = request.transport.get_extra_info("socket") if request.transport is not None else None
    if option is None or sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    with contextlib.suppress(OSError):  # a socket that is closing already: nothing is sent on it any more
        sock.setsockopt(socket.IPPROTO_TCP, option, UNSENT_LIMIT_BYTES)


class ViewerConnection:
    """A viewer's connection, to cut off later: its socket is taken while it is open, since asyncio's
    transports stop answering once closed (a TLS one closed twice cannot even say its socket)."""

    def __init__(self, request: web.BaseRequest) -> None:
        self._request = request
        transport = request.transport
        self._socket = transport.get_extra_info("socket") if transport is not None else None

    @property
    def transport(self) -> asyncio.Transport | None:
        """The connection's transport; None once it is gone (aiohttp lets go of it then)."""
        return self._request.transport

    def reset(self) -> None:
        """Cut the connection off now, whatever is queued for it: in asyncio's buffer and the kernel's.

        For a viewer that stopped reading, aiohttp's polite close (of a WebSocket that misses its pings,
        or at shutdown) sends what is queued first, which is never: its socket and connection slot
        stayed taken for as long as the client stayed connected. Nothing queued for a connection being
        ended is worth sending, so it is reset (``SO_LINGER`` 0), and the kernel does not keep the socket
        either, retrying to send into a closed window. One already gone is left alone: asyncio's abort
        of a transport that has closed raises.
        """
        transport = self._request.transport
        if transport is None:
            return
        if self._socket is not None:
            with contextlib.suppress(OSError):  # closed meanwhile
                self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()


def redact_tokens(text: str) -> str:
    """``text`` with the value of every parameter named as a credential (`SECRET_PARAMETER`) replaced by ``***``.

    A parameter's name is read as the server reads it, percent-decoded: ``?%74oken=`` is a token too.
    """
    return _QUERY.sub(lambda found: "?" + _redact_query(found.group(1)), text)


def _redact_query(query: str) -> str:
    parts = _SEPARATORS.split(query)
    for i in range(0, len(parts), 2):  # the odd ones are the separators
        name, equals, _ = parts[i].partition("=")
        if equals and SECRET_PARAMETER.search(unquote_plus(name)):
            parts[i] = f"{name}={REDACTED}"
    return "".join(parts)


class RedactingAccessLogger(AbstractAccessLogger):
    """The combined log format aiohttp writes by default, with credentials redacted (`redact_tokens`).

    The format string given to aiohttp is not used: the line is always
    ``<remote> "<request line>" <status> <bytes> "<referer>" "<user agent>"``.
    """

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        line = f"{request.method} {request.path_qs} HTTP/{request.version.major}.{request.version.minor}"
        self.logger.info(
            '%s "%s" %s %s "%s" "%s" %.3fs',
            request.remote or "-",
            redact_tokens(line),
            response.status,
            response.body_length,
            redact_tokens(request.headers.get("Referer", "-")),
            request.headers.get("User-Agent", "-"),
            time,
        )


class _ClientErrorsAreNotServerErrors(logging.Filter):
    """Turns aiohttp's ERROR-with-traceback for a request it could not parse into one DEBUG line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        reason = redact_tokens(str(exc.message)[:200])
        record.msg, record.args = "refused a malformed request (%s): %s", (exc.code, reason)
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return http_log.isEnabledFor(logging.DEBUG)


http_log.addFilter(_ClientErrorsAreNotServerErrors())
