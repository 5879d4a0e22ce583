"""What segcast learns by asking a camera's server itself, beside FFmpeg, which keeps it to itself.

FFmpeg reads a network stream but tells little of what it met there: "Input/output error" for a host
name that does not resolve, "Invalid data found" for a web page given instead of a camera's stream,
"5XX Server Error" for every server error, and nothing of a live HLS playlist's target duration, which
bounds how long its reader may wait for the next segment. So after FFmpeg has failed, or has opened a
live playlist, the network source asks again here (`server.sources.network`), in its reader's thread:
each call ends within the time-out its caller gives it, however slowly the server answers, and as
soon as the reader's ``stop`` is set (`server.sources.http_get`).
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from server.sources.http_get import MAX_REDIRECTS, Deadline, RedirectRefused, get

#: How much of a playlist is read for its target duration: a live one lists a few segments.
PLAYLIST_MAX_BYTES = 65_536
#: How much of an HTTP answer FFmpeg found no video in is read again to tell whether it was a web page.
PAGE_SNIFF_BYTES = 512
#: A web page's content types, and how its text starts where the server names no such type.
PAGE_TYPES = ("text/html", "application/xhtml+xml")
PAGE_STARTS = (b"<!doctype html", b"<html", b"<head", b"<body")
#: The tag a master playlist puts before each variant's URI (RFC 8216, 4.3.4.2).
VARIANT_TAG = "#EXT-X-STREAM-INF:"


def unknown_host(host: str) -> str | None:
    """Why ``host`` cannot be found, or None if it can: FFmpeg says only "Input/output error" for a
    host name that does not resolve, the commonest mistake in a camera's URI. Asked only after FFmpeg
    failed so, as a camera's host is resolved again at every connection anyway."""
    try:
        socket.getaddrinfo(host, None)
    except UnicodeError:  # a label longer than 63 characters, or an empty one: no name server is asked
        return f"the camera's host {host!r} is not a valid host name: check the host name in the URI"
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_AGAIN:  # the name may be right: the DNS server did not answer
            return f"could not look up the camera's host {host!r} ({exc.strerror}): is the DNS server reachable?"
        return f"cannot find the camera's host {host!r} ({exc.strerror}): check the host name in the URI"
    return None


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """How an HTTP(S) server answered a GET: its status, content type and the first bytes of its body."""

    status: int
    content_type: str
    start: bytes

    @property
    def is_web_page(self) -> bool:
        """A page by its content type, or by how its text starts where the server names no such type."""
        if not 200 <= self.status < 300:
            return False
        text = self.start.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
        return self.content_type in PAGE_TYPES or text.startswith(PAGE_STARTS)


@dataclass(frozen=True, slots=True)
class RedirectLoop:
    """A server whose redirects did not end within `http_get.MAX_REDIRECTS`, as FFmpeg counts them (a URL
    redirected to itself, or round a circle): FFmpeg's word for it is "Input/output error"."""

    redirects: int = MAX_REDIRECTS


def ask_again(
    url: str,
    timeout_s: float,
    stop: threading.Event | None = None,
    check_host: Callable[[str], None] | None = None,
    trust: ssl.SSLContext | None = None,
) -> HttpAnswer | RedirectLoop | None:
    """How the HTTP(S) ``url`` answers (`http_get.get`, redirects checked by ``check_host``, the certificate
    with ``trust``), reading no
    more than `PAGE_SNIFF_BYTES` of it; a `RedirectLoop` where its redirects never lead to an answer;
    None where it cannot be asked within ``timeout_s``, or ``stop`` is set first.

    Asked after FFmpeg failed on the URL, for what FFmpeg read and kept to itself (a web page given
    instead of a camera's stream, the commonest mistake with HTTP cameras), with the time left of the
    attempt's opening, in the reader's thread. A refusal is an answer too: its status and type,
    without its body.
    """
    if timeout_s <= 0:
        return None
    try:
        with get(url, Deadline.after(timeout_s, stop), check_host, trust) as response:
            succeeded = 200 <= response.status < 300
            start = response.read1(PAGE_SNIFF_BYTES) if succeeded else b""  # what has come: no waiting for more
            return HttpAnswer(response.status, response.headers.get_content_type(), start)
    except RedirectRefused as exc:  # `get` says so for one redirect too many, in these words
        return RedirectLoop() if exc.args == (f"more than {MAX_REDIRECTS} redirects",) else None
    except (OSError, ValueError, http.client.HTTPException):
        return None


def playlist_target_duration(
    url: str,
    timeout_s: float,
    host: str | None,
    stop: threading.Event | None = None,
    check_host: Callable[[str], None] | None = None,
    trust: ssl.SSLContext | None = None,
) -> float | None:
    """The target duration (``#EXT-X-TARGETDURATION``, the longest a segment may last) of the HLS
    playlist at the HTTP(S) ``url``, or of its first variant's on ``host`` for a master playlist; None
    where it cannot be read within ``timeout_s``, or ``stop`` is set first.

    FFmpeg read the playlist but keeps what it found to itself, so it is asked again, as
    `ask_again` asks, reading at most `PLAYLIST_MAX_BYTES`, in the reader's thread. A variant
    elsewhere is not asked: only FFmpeg follows a playlist's URLs (unchecked, as README says), this
    reads no further than the camera's host. A variant's URI that is no URL (``http://[bad/x.m3u8``)
    is one that cannot be read: FFmpeg may still play another.
    """
    deadline = Deadline.after(timeout_s, stop)
    try:
        for _ in range(2):  # a master playlist, then its variant's
            with get(url, deadline, check_host, trust) as response:
                if not 200 <= response.status < 300:
                    return None
                text = response.read(PLAYLIST_MAX_BYTES).decode("utf-8", "replace")
            if target := re.search(r"^#EXT-X-TARGETDURATION:\s*([0-9]+(?:\.[0-9]+)?)\s*$", text, re.MULTILINE):
                return float(target[1]) or None
            variant = first_variant_uri(text)
            if variant is None:
                return None
            url = urljoin(url, variant)
            if urlsplit(url).hostname != host:
                return None
    except (OSError, ValueError, http.client.HTTPException):
        return None
    return None


def first_variant_uri(playlist: str) -> str | None:
    """The URI of a master ``playlist``'s first variant: the first line after its first `VARIANT_TAG`
    that is neither blank nor a tag or comment; None where there is none (a media playlist).

    Read line by line, in time linear in the text: a regular expression that skipped the blank and
    comment lines took time doubling with each blank line, holding the GIL (7.7 s for 27 of them).
    """
    lines = iter(playlist.splitlines())
    if not any(line.startswith(VARIANT_TAG) for line in lines):  # stops at the tag: `lines` go on after it
        return None
    return next((uri for line in lines if (uri := line.strip()) and not uri.startswith("#")), None)
