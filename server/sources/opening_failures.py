"""Why a network camera's opening failed, in words its owner can act on.

FFmpeg's words for a failed opening name neither the address nor what to check: "Connection refused",
"Input/output error" (for a host that does not resolve, a certificate refused, redirects without end),
"Invalid data found" (for a web page, for MJPEG its demuxer cannot split, and for an RTSP time-out),
"5XX Server Error" for every server error. `opening_failure` tells them apart from what segcast can
find out beside FFmpeg, in the reader's thread: the clock, a look-up of the host, a connection to the
port, a handshake with the server's certificate, and the server's HTTP answer asked again
(`server.sources.http_answers`).

Kept apart from `server.sources.network`, which connects and reads: nothing here runs unless an opening
has failed, and each explanation needs only what that opening tried (`Opening`), never the source's
state.
"""

from __future__ import annotations

import errno
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import av

from server.sources.base import SlowRetryError
from server.sources.decoding import translate_error
from server.sources.http_answers import RedirectLoop, ask_again, unknown_host
from server.sources.http_get import Deadline, certificate_refusal

#: The content type of MJPEG as cameras send it: one JPEG after another, each a part of a multipart answer.
MULTIPART_MJPEG = "multipart/x-mixed-replace"
#: What an HTTP server's 5XX answers mean for a camera, where they say more than "an error on its side".
SERVER_ERRORS = {502: "its gateway got no answer", 503: "busy or starting", 504: "its gateway timed out"}
#: How long `_accepts` waits for a connection: a camera's own answer on a local network is far quicker.
ACCEPT_PROBE_S = 2.0


@dataclass(frozen=True, slots=True)
class Opening:
    """What a failed opening of a network stream tried: all its explanation may name, or ask again."""

    #: The URI FFmpeg was given, without segcast's options; never shown, as it may hold a password.
    url: str
    scheme: str
    host: str
    #: The port FFmpeg connected to: the URI's, else its scheme's.
    port: int
    #: The RTSP transport asked for (``#transport``); read for RTSP URLs only.
    transport: str
    #: The demuxer FFmpeg was told to use (``#format``), None where it chose its own.
    format: str | None
    #: The CA file the server's certificate is checked against, None for the system's CAs (or no check).
    ca_file: str | None
    #: How long the opening may take (``#open_timeout``).
    timeout_s: float
    #: Whether an opening of this URI ever succeeded: its port and path are then the stream's (`_no_answer`).
    opened_before: bool
    #: The stream's ``[server] deny_networks`` check, None where it is held to none.
    check_host: Callable[[str], None] | None


def opening_failure(
    exc: av.error.FFmpegError, opening: Opening, started: float, stop: threading.Event, trust: ssl.SSLContext | None
) -> Exception:
    """What FFmpeg's ``exc``, raised by an opening begun at ``started``, is for this stream: the exception
    that says so (`Source`), with what segcast can tell beside FFmpeg's words. ``trust`` is the context the
    server's certificate is checked with, None where it is not checked."""
    # FFmpeg's RTSP client reports its time-out as "invalid data": the clock tells them apart.
    if isinstance(exc, av.error.ExitError) or time.monotonic() - started >= opening.timeout_s:
        return ConnectionError(_no_answer(opening))
    if exc.errno == errno.EIO and opening.host and (unknown := unknown_host(opening.host)):
        return ConnectionError(unknown)
    if exc.errno == errno.ECONNREFUSED and opening.host:
        return ConnectionError(_refused(opening))
    left_s = opening.timeout_s - (time.monotonic() - started)
    if trust is not None and exc.errno == errno.EIO and opening.host and left_s > 0:
        refusal = certificate_refusal(opening.host, opening.port, trust, Deadline.after(left_s, stop))
        if refusal is not None:
            return ConnectionError(_untrusted(refusal, opening.ca_file))
    if (
        opening.scheme in ("http", "https")
        and (explained := _explain_http(exc, opening, left_s, stop, trust)) is not None
    ):
        return explained
    rtsp_transport = opening.transport if opening.scheme in ("rtsp", "rtsps") else None
    return translate_error(exc, opening.url, rtsp_transport)


def _no_answer(opening: Opening) -> str:
    """The stream's error for an opening that timed out, naming the address tried and what to check
    there: a bare "no answer within 10 s" left the owner of many cameras guessing which, and where.

    Where nothing accepts a connection there, the camera is off or out of reach. Where something does,
    what to check depends on whether this URI ever opened. If it did, its port and path are the
    stream's, and the camera hangs after accepting (a frozen camera, or one serving as many clients as
    it allows): telling its owner to check the URI sent them the wrong way. If it never did, the port
    may be another service's, waiting for a different protocol, or the path no stream's.
    """
    no_answer = f"no answer within {opening.timeout_s:g} s from {_shown_address(opening.host, opening.port)}"
    if not _accepts(opening.host, opening.port):
        return f"{no_answer}: check that the camera is on and reachable from this machine"
    if opening.opened_before:
        return (
            f"{no_answer}, which accepts the connection but no longer answers on it, as it did before: the "
            "camera may have hung (restart it), or be serving as many clients as it allows"
        )
    return (
        f"{no_answer}, which accepts the connection: check that the URI is the camera's stream URL (its port "
        "and path), and that the camera is not already serving as many clients as it allows"
    )


def _refused(opening: Opening) -> str:
    """The stream's error for a connection refused: FFmpeg's "connection refused" named neither the
    address nor what to check, where an unknown host and a wrong path say both. The host alone is named,
    never the URI's user or password. An HTTP camera that answers there sent FFmpeg elsewhere (a
    redirect), which refused: said so."""
    address = _shown_address(opening.host, opening.port)
    if opening.scheme in ("http", "https") and _accepts(opening.host, opening.port):
        # FFmpeg follows an HTTP camera's redirects: the address refusing is the one it was sent to.
        return (
            f"{address} answers, but the address it redirects to refuses the connection (connection "
            "refused): check the URL's path and where the camera sends it"
        )
    service = {"rtsps": "RTSP", "rtmps": "RTMP", "https": "HTTP"}.get(opening.scheme, opening.scheme.upper())
    return (
        f"nothing answers at {address} (connection refused): check the port in the URI and that the "
        f"camera's {service} service is on"
    )


def _untrusted(refusal: str, ca_file: str | None) -> str:
    """The stream's error for a certificate refused for ``refusal`` (`certificate_refusal`'s words), checked
    against ``ca_file`` (None: the system's CAs)."""
    if ca_file is None:
        fix = (
            "give #ca_file=/path/to/ca.pem holding the CA that signed it (for a camera that signed its own, "
            "that certificate), or leave out #tls_verify to connect without checking"
        )
    else:
        fix = f"check that {ca_file} holds the CA that signed it, or leave out #ca_file to connect without checking"
    return f"the camera's TLS certificate is not trusted ({refusal.rstrip('.')}); nothing was sent to it: {fix}"


def _explain_http(
    exc: av.error.FFmpegError, opening: Opening, timeout_s: float, stop: threading.Event, trust: ssl.SSLContext | None
) -> ConnectionError | None:
    """What the server's answer tells that FFmpeg's ``exc`` does not, found by asking again
    (`ask_again`), or None where it tells nothing more.

    FFmpeg says "Invalid data found" for a web page and for MJPEG its multipart demuxer cannot split,
    "5XX Server Error" for every server error, keeping the answer's content type and status to
    itself, and "Input/output error" for redirects that never end (retried fast for ever).
    """
    if not isinstance(exc, av.error.InvalidDataError | av.error.HTTPServerError) and exc.errno != errno.EIO:
        return None
    answer = ask_again(opening.url, timeout_s, stop, opening.check_host, trust)
    if isinstance(answer, RedirectLoop):
        return SlowRetryError(
            f"the server redirects in a loop (more than {answer.redirects} redirects): check the URL; retried slowly"
        )
    if answer is None or exc.errno == errno.EIO:
        return None
    if isinstance(exc, av.error.HTTPServerError):
        if answer.status < 500:  # answered again since: its error is not known
            return None
        meaning = SERVER_ERRORS.get(answer.status, "an error on its side")
        return ConnectionError(f"the server answered {answer.status} ({meaning}): retrying")
    if answer.is_web_page:
        return SlowRetryError(
            "the server sent a web page, not video: check the URL's path (a camera's web page is "
            "not its video stream); retried slowly"
        )
    if answer.content_type == MULTIPART_MJPEG and opening.format != "mjpeg":
        return SlowRetryError(
            f"the server sends MJPEG ({MULTIPART_MJPEG}) whose parts FFmpeg cannot find (some cameras "
            "write the boundary between them without its leading '--'): add #format=mjpeg to the URI, "
            "which finds each picture by its own markers; retried slowly"
        )
    return None


def _shown_address(host: str, port: int) -> str:
    """``host``:``port`` as a URI writes it (an IPv6 address in brackets), for an error to name."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _accepts(host: str, port: int) -> bool:
    """Whether something accepts a TCP connection at ``host``:``port`` now (connected and closed at once)."""
    try:
        socket.create_connection((host, port), timeout=ACCEPT_PROBE_S).close()
    except OSError:
        return False
    return True
