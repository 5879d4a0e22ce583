"""segcast's own look-ups at a camera's HTTP server end by one deadline, however slowly the server answers.

urllib's time-out bounds each read, not the request: a server sending a byte of its header or its
body every fraction of a second held the reader's thread for ever, and a stream removed meanwhile
left that thread and its socket behind (one of each per add and remove through the API).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from server.sources import SourceError, StreamState
from server.sources.base import SlowRetryError
from server.sources.http_answers import ask_again, playlist_target_duration, unknown_host
from server.sources.http_get import MAX_REDIRECTS, Deadline, get
from server.sources.network import NetworkSource
from tests.support.reader_probe import FAST_BACKOFF, ReaderProbe

#: A bound only a look-up that never ends exceeds: each below is given a second or two.
FINISH_TIMEOUT_S = 20.0
#: How often a trickling server sends its next byte: far inside every time-out given below.
TRICKLE_S = 0.1

Handler = Callable[[socket.socket, bytes, threading.Event], None]


class RawHttpServer:
    """An HTTP server on 127.0.0.1 that answers each request with ``handler(connection, request, closing)``,
    in a thread of its own; `close` sets ``closing`` and hangs up every connection."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self.closing = threading.Event()
        self.requests: list[bytes] = []
        self._connections: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, name="raw-http-server", daemon=True)

    def url(self, path: str = "/live.m3u8") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _accept(self) -> None:
        while not self.closing.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            self._connections.append(connection)
            thread = threading.Thread(target=self._answer, args=(connection,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _answer(self, connection: socket.socket) -> None:
        try:
            request = connection.recv(65_536)
            self.requests.append(request)
            self._handler(connection, request, self.closing)
        except OSError:  # the client hung up, or `close` did
            pass

    def __enter__(self) -> RawHttpServer:
        self._accepting.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.closing.set()
        self._accepting.join(5)
        for connection in self._connections:
            connection.close()
        for thread in self._threads:
            thread.join(5)
        self._listener.close()


def trickle(connection: socket.socket, closing: threading.Event, byte: bytes) -> None:
    """Send ``byte`` every `TRICKLE_S` until the server closes: each read gets something well in time."""
    while not closing.wait(TRICKLE_S):
        connection.sendall(byte)


def header_trickling_in(connection: socket.socket, request: bytes, closing: threading.Event) -> None:
    connection.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")  # a header line that never ends
    trickle(connection, closing, b"x")


def playlist_trickling_in(connection: socket.socket, request: bytes, closing: threading.Event) -> None:
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.apple.mpegurl\r\n\r\n#EXTM3U\n")
    trickle(connection, closing, b"#")


@contextmanager
def called_in_a_thread(call: Callable[[], object]) -> Iterator[Callable[[], tuple[bool, object]]]:
    """Run ``call`` in a thread; yield what waits for it, up to `FINISH_TIMEOUT_S`: (whether it
    returned, what it returned)."""
    returned: list[object] = []
    thread = threading.Thread(target=lambda: returned.append(call()), daemon=True)
    thread.start()

    def finished() -> tuple[bool, object]:
        thread.join(FINISH_TIMEOUT_S)
        return not thread.is_alive(), returned[0] if returned else None

    yield finished


@pytest.mark.parametrize(
    ("handler", "look_up"),
    [
        (header_trickling_in, lambda url: ask_again(url, 1.0)),
        (playlist_trickling_in, lambda url: playlist_target_duration(url, 1.0, "127.0.0.1")),
        (header_trickling_in, lambda url: playlist_target_duration(url, 1.0, "127.0.0.1")),
    ],
    ids=["ask_again, its header trickling", "a playlist trickling", "a playlist's header trickling"],
)
def test_a_look_up_at_a_server_that_trickles_its_answer_ends_at_its_time_out(
    handler: Handler, look_up: Callable[[str], object]
) -> None:
    with RawHttpServer(handler) as server, called_in_a_thread(lambda: look_up(server.url())) as finished:
        ended, answer = finished()
    assert ended, "still reading the trickle"
    assert answer is None, "no answer within its time: cannot be asked"


def test_a_stopped_reader_inside_its_own_look_up_at_a_trickling_camera_ends() -> None:
    """FFmpeg is answered 503 at once; segcast's own second look at the answer (what kind of 5XX) is
    trickled its header: the reader could not be stopped, its thread outliving stop() for as long as
    the server went on, whatever ``open_timeout``."""
    asked = threading.Event()

    def busy(connection: socket.socket, request: bytes, closing: threading.Event) -> None:
        if b"User-Agent: Lavf" in request:  # FFmpeg's
            connection.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        asked.set()
        connection.sendall(b"HTTP/1.1 503 Busy\r\nX-Slow: ")
        trickle(connection, closing, b"x")

    with RawHttpServer(busy) as server:
        probe = ReaderProbe(server.url("/video.mjpg") + "#open_timeout=120")
        probe.reader.start()
        try:
            assert asked.wait(FINISH_TIMEOUT_S), f"segcast did not ask again: {probe.status()}"
        finally:
            probe.reader.stop(FINISH_TIMEOUT_S)
        assert not probe.reader.alive, "the reader's thread still reads the trickle"
        assert probe.announced == [], "nothing published after the stop"


def redirect_to(location: str) -> Handler:
    def answer(connection: socket.socket, request: bytes, closing: threading.Event) -> None:
        connection.sendall(f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode())

    return answer


def web_page(connection: socket.socket, request: bytes, closing: threading.Event) -> None:
    page = b"<!doctype html><title>camera</title>"
    connection.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s" % (len(page), page)
    )


def test_a_look_up_follows_a_redirect_only_to_a_host_the_stream_may_reach() -> None:
    """The look-up only classifies an answer: it must not be a way round ``deny_networks``, which the
    stream's connection is held to."""
    refused: list[str] = []

    def only_this_address(host: str) -> None:
        if host != "127.0.0.1":
            refused.append(host)
            raise SourceError(f"{host} is in [server] deny_networks")

    with RawHttpServer(web_page) as page:
        elsewhere = page.url("/camera.html").replace("127.0.0.1", "localhost")
        with RawHttpServer(redirect_to(elsewhere)) as camera:
            assert ask_again(camera.url("/video"), 5.0, check_host=only_this_address) is None
            assert refused == ["localhost"] and page.requests == [], "the page was asked for"

            followed = ask_again(camera.url("/video"), 5.0, check_host=lambda host: None)
            assert followed is not None and followed.is_web_page, followed
            assert len(page.requests) == 1


def test_a_host_name_no_name_server_could_be_asked_about_is_told_as_not_valid() -> None:
    """A label over 63 characters: the look-up raised UnicodeError past the reader's explanation."""
    told = unknown_host("a" * 64 + ".example")
    assert told is not None and "is not a valid host name" in told, told


def test_a_camera_whose_host_name_is_not_valid_says_so() -> None:
    with ReaderProbe("rtsp://" + "a" * 64 + ".example/live") as probe:
        status = probe.wait_state(StreamState.RECONNECTING, FINISH_TIMEOUT_S)
    assert status.error is not None and "is not a valid host name" in status.error, status


class StoppedAtSecondLook(threading.Event):
    """A reader's ``stop`` that is found set the second time it is looked at: the reader is stopped while
    the look-up waits, after it last looked (at least one wait of `STOP_POLL_S` later)."""

    def __init__(self) -> None:
        super().__init__()
        self.looks = 0

    def is_set(self) -> bool:
        self.looks += 1
        return self.looks >= 2


@contextmanager
def listen_queue_full() -> Iterator[int]:
    """A port on 127.0.0.1 whose listen queue is full: the kernel drops the SYN of each new connection, which
    then waits as one to a camera behind a dropping firewall does."""
    with socket.create_server(("127.0.0.1", 0), backlog=0) as listener:
        port = int(listener.getsockname()[1])
        waiting = [socket.socket() for _ in range(4)]
        try:
            for connection in waiting:
                connection.setblocking(False)
                connection.connect_ex(("127.0.0.1", port))
            yield port
        finally:
            for connection in waiting:
                connection.close()


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_look_up_whose_connection_is_not_answered_ends_once_the_reader_is_stopped(scheme: str) -> None:
    """Connecting waited the whole time-out, stopped or not: a reader stopped meanwhile outlived stop()."""
    stop = StoppedAtSecondLook()
    with (
        listen_queue_full() as port,
        pytest.raises(InterruptedError),
        get(f"{scheme}://127.0.0.1:{port}/", Deadline.after(FINISH_TIMEOUT_S, stop)),
    ):
        pass
    assert stop.looks == 2


def redirect_to_itself(connection: socket.socket, request: bytes, closing: threading.Event) -> None:
    path = request.split(b" ", 2)[1].decode()
    connection.sendall(f"HTTP/1.1 302 Found\r\nLocation: {path}\r\nContent-Length: 0\r\n\r\n".encode())


def test_a_url_redirected_to_itself_is_said_to_loop_and_retried_slowly() -> None:
    """FFmpeg gives up after 8 redirects with "Input/output error": the stream showed only that, asked
    again on the fast schedule for ever."""
    with RawHttpServer(redirect_to_itself) as camera:
        with pytest.raises(SlowRetryError) as failure:
            next(NetworkSource(camera.url("/video.mjpg")).open(threading.Event()))
        with ReaderProbe(camera.url("/video.mjpg"), slow_backoff=FAST_BACKOFF) as probe:
            status = probe.wait_until("asked twice", lambda s: s.reconnects >= 2, FINISH_TIMEOUT_S)

    told = "the server redirects in a loop (more than 8 redirects): check the URL; retried slowly"
    assert str(failure.value) == told
    assert status.state is StreamState.RECONNECTING and status.error == told


def test_a_url_redirected_to_itself_is_asked_by_segcast_no_more_often_than_ffmpeg_follows_redirects() -> None:
    """Each attempt at a looping server costs it FFmpeg's requests, then segcast's own look-up's: that
    look-up gives up where FFmpeg did, after `MAX_REDIRECTS` redirects."""
    with RawHttpServer(redirect_to_itself) as camera, pytest.raises(SlowRetryError):
        next(NetworkSource(camera.url("/video.mjpg")).open(threading.Event()))
    segcasts = [request for request in camera.requests if b"\r\nUser-Agent: segcast\r\n" in request]
    assert len(segcasts) == MAX_REDIRECTS + 1
