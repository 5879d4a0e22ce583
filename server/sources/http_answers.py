"""What segcast learns by asking a camera's server itself, beside FFmpeg, which keeps it to itself.

FFmpeg reads a network stream but tells little of what it met there: "Input/output error" for a host
name that does not resolve, "Invalid data found" for a web page given instead of a camera's stream,
"5XX Server Error" for every server error, and nothing of a live HLS playlist's target duration, which
bounds how long its reader may wait for the next segment. So after FFmpeg has failed, or has opened a
live playlist, the network source asks again here (`server.sources.network`), in its reader's thread:
these calls block for their time-out, each told by the caller.
"""

from __future__ import annotations

import base64
import http.client
import re
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

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


def ask_again(url: str, timeout_s: float) -> HttpAnswer | None:
    """How the HTTP(S) ``url`` answers (`_ask`), reading no more than `PAGE_SNIFF_BYTES` of it; None
    where it cannot be asked.

    Asked after FFmpeg failed on the URL, for what FFmpeg read and kept to itself (a web page given
    instead of a camera's stream, the commonest mistake with HTTP cameras). Blocks for up to
    ``timeout_s`` (the time left of the attempt's opening), in the reader's thread. A refusal is an
    answer too: its status and type, without its body.
    """
    if timeout_s <= 0:
        return None
    try:
        with _ask(url, timeout_s) as response:
            start = response.read1(PAGE_SNIFF_BYTES)  # what has come: a stream that trickles cannot hold it up
            return HttpAnswer(response.status, response.headers.get_content_type(), start)
    except urllib.error.HTTPError as refusal:
        refusal.close()
        return HttpAnswer(refusal.code, refusal.headers.get_content_type(), b"")
    except (OSError, ValueError, http.client.HTTPException):
        return None


def playlist_target_duration(url: str, timeout_s: float, host: str | None) -> float | None:
    """The target duration (``#EXT-X-TARGETDURATION``, the longest a segment may last) of the HLS
    playlist at the HTTP(S) ``url``, or of its first variant's on ``host`` for a master playlist; None
    where it cannot be read.

    FFmpeg read the playlist but keeps what it found to itself, so it is asked again, as
    `ask_again` asks, reading at most `PLAYLIST_MAX_BYTES`; blocks for up to ``timeout_s`` a
    request, in the reader's thread. A variant elsewhere is not asked: only FFmpeg follows a
    playlist's URLs (unchecked, as README says), this reads no further than the camera's host.
    """
    for _ in range(2):  # a master playlist, then its variant's
        try:
            with _ask(url, timeout_s) as response:
                text = response.read(PLAYLIST_MAX_BYTES).decode("utf-8", "replace")
        except (OSError, ValueError, http.client.HTTPException):
            return None
        if target := re.search(r"^#EXT-X-TARGETDURATION:\s*([0-9]+(?:\.[0-9]+)?)\s*$", text, re.MULTILINE):
            return float(target[1]) or None
        variant = first_variant_uri(text)
        if variant is None:
            return None
        url = urljoin(url, variant)
        if urlsplit(url).hostname != host:
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


def _ask(url: str, timeout_s: float) -> http.client.HTTPResponse:
    """The answer to a GET of the HTTP(S) ``url``, as FFmpeg asks: the URL's credentials as Basic
    authorisation (not sent on to where a redirect leads), redirects followed, the certificate not
    checked (FFmpeg does not check it either). Raises what `urllib` raises."""
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    request = urllib.request.Request(urlunsplit((parts.scheme, host, parts.path or "/", parts.query, "")))
    if at:
        credentials = ":".join(unquote(part) for part in userinfo.split(":", 1)).encode()
        request.add_unredirected_header("Authorization", "Basic " + base64.b64encode(credentials).decode())
    unchecked = ssl.create_default_context()
    unchecked.check_hostname, unchecked.verify_mode = False, ssl.CERT_NONE
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=unchecked))
    response: http.client.HTTPResponse = opener.open(request, timeout=timeout_s)
    return response
