"""One HTTP(S) GET that ends by one deadline whatever the server does: segcast's own look-ups at a camera.

urllib's ``timeout`` bounds each read of the socket, not the request: a server that sent a byte of its
header or its body every half second held the reader thread that asked for ever, and a stream
removed meanwhile left that thread and its socket behind. Here every wait (connecting, the TLS
handshake, sending, each read of the header and the body) lasts at most the time left before the
request's `Deadline`, and where the reader's ``stop`` event is given, at most `STOP_POLL_S` at a
time, so stopping the reader ends the request within that.

The look-ups only classify what a camera's server answers, so a redirect is followed only where the
stream's ``check_host`` (the API's ``deny_networks``) allows its host, as the stream's own connections
are (`server.sources.redirects`, which asks each redirect's Location with `redirect_location`).

A TLS server's certificate is checked only where the stream asks FFmpeg to check it (``#tls_verify``,
``#ca_file``: `server.sources.network`), with the same trust: its reader hands its context (`trusting`)
to the look-ups of `server.sources.http_answers`, which pass it to `get`. Unchecked, a look-up would
hand the camera's password to a server FFmpeg had just refused.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import http.client
import io
import os
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote, urljoin, urlsplit

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

#: How often a wait checks the reader's ``stop``: what stopping a reader inside a look-up costs at most.
STOP_POLL_S = 0.1
#: Redirects followed before the look-up is given up, as FFmpeg's HTTP client counts them.
MAX_REDIRECTS = 8
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DEFAULT_PORTS = {"http": 80, "https": 443}


class RedirectRefused(OSError):
    """A redirect that is not followed: to a host ``check_host`` refused, another scheme, or one too many."""


@dataclass(frozen=True, slots=True)
class Deadline:
    """When a look-up must be over (monotonic), and the event that ends it sooner (a reader's stop)."""

    at: float
    stop: threading.Event | None = None

    @classmethod
    def after(cls, timeout_s: float, stop: threading.Event | None = None) -> Deadline:
        return cls(time.monotonic() + timeout_s, stop)

    def left(self) -> float:
        """The time left, above zero; `TimeoutError` once there is none, `InterruptedError` once stopped."""
        if self.stop is not None and self.stop.is_set():
            raise InterruptedError("the reader was stopped")
        left = self.at - time.monotonic()
        if left <= 0:
            raise TimeoutError("no answer within the time given")
        return left

    def next_wait(self) -> float:
        """How long the next wait may last: the time left, in slices of `STOP_POLL_S` where it may be stopped."""
        left = self.left()
        return left if self.stop is None else min(left, STOP_POLL_S)


def trusting(ca_file: str | None) -> ssl.SSLContext:
    """A context that checks a server's certificate and name: against ``ca_file`` (PEM) alone, or the
    system's CAs where it is None. Reads the file: call it in the reader's thread.

    Raises `OSError` where ``ca_file`` cannot be read, `ssl.SSLError` where it holds no certificate.
    """
    return ssl.create_default_context(cafile=ca_file)


def certificate_refusal(host: str, port: int, context: ssl.SSLContext, deadline: Deadline) -> str | None:
    """Why ``context`` refuses the certificate of the TLS server at ``host``:``port`` (the words of
    `ssl.SSLCertVerificationError`), or None where it trusts it or no handshake could be made by ``deadline``.

    Makes the handshake alone and sends nothing: FFmpeg says only "Input/output error" for a
    certificate it refused, and this tells it apart from a server that went away.
    """
    try:
        connection = connect(host, port, deadline)
        try:
            _handshake(connection, host, deadline, context).close()
        finally:
            connection.close()  # closes nothing once the handshake has taken it over
    except ssl.SSLCertVerificationError as exc:
        return str(exc.verify_message or exc.reason or exc)
    except (OSError, ValueError):
        return None
    return None


@contextlib.contextmanager
def get(
    url: str,
    deadline: Deadline,
    check_host: Callable[[str], None] | None = None,
    trust: ssl.SSLContext | None = None,
) -> Iterator[http.client.HTTPResponse]:
    """The answer to a GET of the HTTP(S) ``url`` as FFmpeg asks: the URL's credentials as Basic
    authorisation (not sent on to where a redirect leads), redirects followed (each host passed to
    ``check_host``, which may refuse it by raising anything), the certificate checked with ``trust`` as
    FFmpeg's was (`trusting`; None: not at all, FFmpeg's default). Every status is an answer; its body's reads end
    by ``deadline`` too.

    Raises `OSError` (`TimeoutError` past the deadline, `InterruptedError` once stopped,
    `RedirectRefused`), `ValueError` for a URL that cannot be asked, `http.client.HTTPException`
    for an answer that is no HTTP.
    """
    authorised = True
    for _ in range(MAX_REDIRECTS + 1):
        with _request(url, deadline, authorised, trust) as response:
            location = response.getheader("Location") if response.status in REDIRECT_STATUSES else None
            if location is None:
                yield response
                return
        url, authorised = _redirect_target(url, location, check_host), False
    raise RedirectRefused(f"more than {MAX_REDIRECTS} redirects")


def redirect_location(url: str, deadline: Deadline, trust: ssl.SSLContext | None = None) -> str | None:
    """Where the answer to a GET of the HTTP(S) ``url`` redirects (its Location, as sent), None where it is
    no redirect: one request, the URL's credentials sent as Basic authorisation, nothing followed; the
    answer's body is never read. Raises as `get` does.

    For `server.sources.redirects`, which follows a camera's redirects one at a time, checking each.
    """
    with _request(url, deadline, True, trust) as response:
        return response.getheader("Location") if response.status in REDIRECT_STATUSES else None


def _redirect_target(url: str, location: str, check_host: Callable[[str], None] | None) -> str:
    target = urljoin(url, location)
    parts = urlsplit(target)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise RedirectRefused("a redirect to no HTTP(S) URL")
    if check_host is not None:
        try:
            check_host(parts.hostname)
        except Exception:  # what it says is the stream's connection's to say: this look-up just ends
            raise RedirectRefused("a redirect to a host this stream may not reach") from None
    return target


@contextlib.contextmanager
def _request(
    url: str, deadline: Deadline, authorised: bool, trust: ssl.SSLContext | None
) -> Iterator[http.client.HTTPResponse]:
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError("not an HTTP(S) URL")
    userinfo, at, host = parts.netloc.rpartition("@")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}", "User-Agent: segcast", "Accept: */*", "Connection: close"]
    if at and authorised:
        credentials = ":".join(unquote(part) for part in userinfo.split(":", 1)).encode()
        lines.append("Authorization: Basic " + base64.b64encode(credentials).decode())
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in host + target):  # no header of one's own
        raise ValueError("a URL with spaces or control characters")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
    connection = connect(parts.hostname, parts.port or DEFAULT_PORTS[parts.scheme], deadline)
    try:
        if parts.scheme == "https":
            connection = _handshake(connection, parts.hostname, deadline, trust)
        connection.settimeout(deadline.left())
        connection.sendall(request)
        reads = io.BufferedReader(_TimedReads(connection, deadline))
        # `HTTPResponse` reads its answer from what its socket's ``makefile`` gives: here, the timed reads.
        response = http.client.HTTPResponse(cast(socket.socket, _ReadsFrom(reads)), method="GET")
        try:
            response.begin()
            yield response
        finally:
            response.close()
    finally:
        connection.close()


def connect(host: str, port: int, deadline: Deadline) -> socket.socket:
    """A connection to ``host``, each of its addresses tried within the time left (its look-up is the
    resolver's: FFmpeg resolved the same name a moment before)."""
    error: OSError = OSError(f"{host} has no address")
    for family, kind, protocol, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        connection = socket.socket(family, kind, protocol)
        try:
            _connect_within(connection, address, deadline)
        except OSError as exc:
            connection.close()
            if isinstance(exc, TimeoutError | InterruptedError):
                raise
            error = exc
        else:
            return connection
    raise error


def _connect_within(connection: socket.socket, address: tuple[Any, ...], deadline: Deadline) -> None:
    """Connect ``connection`` to ``address``, waiting `Deadline.next_wait` at a time.

    A blocking ``connect`` with a time-out cannot be resumed after one: a host that drops the SYN
    (a camera whose listen queue is full, a firewall) held the reader until the deadline, stopped or not.
    """
    connection.setblocking(False)
    code = connection.connect_ex(address)
    if code == errno.EINPROGRESS:
        with selectors.DefaultSelector() as selector:
            selector.register(connection, selectors.EVENT_WRITE)
            while not selector.select(deadline.next_wait()):
                pass  # `next_wait` raises once the deadline passed or the reader stopped
        code = connection.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if code != 0:
        raise OSError(code, os.strerror(code))


def _handshake(
    connection: socket.socket, host: str, deadline: Deadline, context: ssl.SSLContext | None
) -> ssl.SSLSocket:
    """``connection`` secured, its server's certificate checked with ``context`` (None: not checked);
    `ssl.SSLCertVerificationError` before anything is sent where it is refused."""
    if context is None:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    secured = context.wrap_socket(connection, server_hostname=host, do_handshake_on_connect=False)
    try:  # ``secured`` owns the connection now: closing ``connection`` would close nothing
        while True:
            secured.settimeout(deadline.next_wait())
            try:
                secured.do_handshake()
                return secured
            except TimeoutError:
                continue  # `next_wait` raises once the deadline passed or the reader stopped
    except BaseException:
        secured.close()
        raise


class _TimedReads(io.RawIOBase):
    """A connection's bytes, each read waiting at most for what is left before the deadline."""

    def __init__(self, connection: socket.socket, deadline: Deadline) -> None:
        self._connection = connection
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        while True:
            self._connection.settimeout(self._deadline.next_wait())
            try:
                return self._connection.recv_into(buffer)
            except TimeoutError:
                continue  # `next_wait` raises once the deadline passed or the reader stopped


@dataclass(frozen=True, slots=True)
class _ReadsFrom:
    """The one thing `http.client.HTTPResponse` asks of its socket: a file to read the answer from."""

    reads: io.BufferedIOBase

    def makefile(self, mode: str) -> io.BufferedIOBase:
        return self.reads
