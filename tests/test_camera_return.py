"""A camera coming back: how soon the reader reconnects, what rate it reports at first, what it says of slow cameras.

Driven by scripted sources and a local TCP port the test opens and closes (no video, no real camera).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from server.http.access.policy import SourcePolicy
from server.sources import backoff
from server.sources.backoff import RETURN_CHECK_INTERVAL_S, Backoff
from server.sources.base import Decoded, SlowRetryError, StreamState
from server.sources.network import NetworkSource
from server.sources.reader import REPEATED_ENDS_TOLD
from tests.support.reader_probe import ReaderProbe

IMAGE = np.zeros((16, 16, 3), np.uint8)
#: Far longer than any test waits: a reconnect that comes did not wait it out.
LONG_BACKOFF = Backoff(initial_s=300.0, max_s=300.0)
CAMERA_FPS = 15.0


class ReturningCamera:
    """A camera at ``address`` that refuses every attempt until ``back`` is set, then sends frames."""

    live = True
    fps = CAMERA_FPS

    def __init__(self, address: tuple[str, int], failure: Exception | None = None) -> None:
        self.address = address
        self.failure = failure or ConnectionRefusedError("nothing answers (connection refused)")
        self.back = threading.Event()
        self.opened = 0
        self.reopened = threading.Event()

    def describe(self) -> str:
        return "returning camera"

    def open(self, stop: threading.Event) -> Iterator[Decoded]:
        self.opened += 1
        if self.opened > 1:
            self.reopened.set()
        if not self.back.is_set():
            raise self.failure
        index = 0
        while not stop.wait(1 / self.fps):
            yield Decoded(IMAGE, index / self.fps)
            index += 1


class RecordedChecks:
    """`backoff.accepts`, noting what each check of a camera's address found."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.found: list[bool] = []
        self.refused = threading.Event()
        self.accepted = threading.Event()
        self._accepts: Callable[..., bool] = backoff.accepts
        monkeypatch.setattr(backoff, "accepts", self)

    def __call__(self, *args: object) -> bool:
        found = self._accepts(*args)
        self.found.append(found)
        (self.accepted if found else self.refused).set()
        return found


def closed_port() -> int:
    """A port of 127.0.0.1 that nothing listens on (it was free a moment ago)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        return int(listener.getsockname()[1])


def test_a_camera_whose_port_opens_again_is_reconnected_without_waiting_out_its_backoff(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A rebooted camera came back 10-25 s after its port did: the wait had doubled while it refused."""
    checks = RecordedChecks(monkeypatch)
    port = closed_port()
    camera = ReturningCamera(("127.0.0.1", port))
    with ReaderProbe(camera, backoff=LONG_BACKOFF) as probe:
        # given: the reader waits its backoff, having found the camera's port closed
        probe.wait_state(StreamState.RECONNECTING, 10)
        assert checks.refused.wait(10), "the reader never checked whether the camera's port accepts"
        # when: the camera's port accepts again
        with socket.create_server(("127.0.0.1", port)):
            camera.back.set()
            # then: the reader reconnects, though its backoff had most of 300 s to go
            probe.wait_state(StreamState.LIVE, 30)
    assert camera.opened == 2
    assert checks.found[-1] is True


def test_a_camera_that_accepts_then_fails_still_waits_out_its_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its port accepting tells nothing: a camera refusing the credentials is not asked again and again."""
    checks = RecordedChecks(monkeypatch)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        camera = ReturningCamera(listener.getsockname()[:2], SlowRetryError("the camera refused the credentials"))
        probe = ReaderProbe(camera, backoff=LONG_BACKOFF, slow_backoff=LONG_BACKOFF)
        with probe:
            assert checks.accepted.wait(10), "the address is checked once after a failure"
            reconnected = camera.reopened.wait(3 * RETURN_CHECK_INTERVAL_S)
    assert not reconnected, "reconnected before its backoff was over"
    assert checks.found == [True], "one check, then the plain wait"


def test_stop_ends_a_wait_that_checks_the_cameras_port_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    checks = RecordedChecks(monkeypatch)
    probe = ReaderProbe(ReturningCamera(("127.0.0.1", closed_port())), backoff=LONG_BACKOFF)
    with probe:
        assert checks.refused.wait(10)
    assert not probe.reader.alive


def connection_waiting(listener: socket.socket) -> bool:
    """Whether a connection to ``listener`` waits to be accepted: one a probe made, though it closed it since."""
    listener.setblocking(False)
    try:
        listener.accept()[0].close()
    except BlockingIOError:
        return False
    return True


def test_the_return_check_connects_to_no_address_the_streams_deny_networks_refuses() -> None:
    """A stream the API added is held to [server] deny_networks at each connection, its name resolved again
    each time (it may start pointing elsewhere: DNS rebinding); the return check connected to it about once
    a second all the same."""
    policy = SourcePolicy.of(["rtsp"], [], False, ["127.0.0.0/8", "::1/128"])
    with socket.create_server(("127.0.0.1", 0)) as listener:
        source = NetworkSource(
            f"rtsp://localhost:{listener.getsockname()[1]}/live", check_host=policy.check_stream_host
        )
        came_back = backoff.wait_for_return(
            source.address, 1.5 * RETURN_CHECK_INTERVAL_S, threading.Event(), source.may_probe
        )
        assert not connection_waiting(listener)
    assert came_back is False


class GuardedCamera(ReturningCamera):
    """A `ReturningCamera` whose stream may not connect to its own address (``may_probe`` refuses it)."""

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address)
        self.asked = threading.Event()

    def may_probe(self, ip: str) -> bool:
        self.asked.set()
        return False


def test_the_reader_asks_the_source_where_its_return_check_may_connect() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        camera = GuardedCamera(listener.getsockname()[:2])
        with ReaderProbe(camera, backoff=LONG_BACKOFF):
            assert camera.asked.wait(10), "the reader never asked the source"
        assert not connection_waiting(listener)


@pytest.mark.parametrize("stopped", [True, False], ids=["stopped", "wait over"])
def test_a_camera_name_whose_lookup_hangs_holds_the_wait_neither_past_stop_nor_past_its_length(
    monkeypatch: pytest.MonkeyPatch, stopped: bool
) -> None:
    """A resolver that did not answer for 4 s held a 2 s wait, stopped at 0.5 s, for 4 s: getaddrinfo cannot be
    cut short."""
    stop = threading.Event()
    looking_up, released = threading.Event(), threading.Event()

    def hanging(*args: object, **kwargs: object) -> list[object]:
        looking_up.set()
        if stopped:
            stop.set()  # the stream is removed while its camera's name is looked up
        released.wait(10)
        looking_up.clear()
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    try:
        came_back = backoff.wait_for_return(("camera.example", 554), 60.0 if stopped else 1.5, stop)
        still_looking_up = looking_up.is_set()
    finally:
        released.set()
    assert came_back is False
    assert still_looking_up, "the wait ended only when the lookup did"


class BacklogCamera:
    """A camera whose connection hands over ``backlog`` frames at once (those FFmpeg buffered while it read
    the stream's header), then sends one every 1/`CAMERA_FPS` s."""

    live = True
    fps = CAMERA_FPS

    def __init__(self, backlog: int) -> None:
        self.backlog = backlog

    def describe(self) -> str:
        return "camera with a backlog"

    def open(self, stop: threading.Event) -> Iterator[Decoded]:
        for index in range(self.backlog):
            yield Decoded(IMAGE, index / self.fps)
        index = self.backlog
        while not stop.wait(1 / self.fps):
            yield Decoded(IMAGE, index / self.fps)
            index += 1


def test_the_backlog_a_connection_hands_over_at_once_does_not_count_as_input_rate() -> None:
    """A camera at 15 fps read 54 fps for a second after each connect, then 24, then 15."""
    backlog = 30
    with ReaderProbe(BacklogCamera(backlog)) as probe:
        status = probe.wait_until("a second of frames after the backlog", lambda s: s.frames_read >= backlog + 15, 30)
    assert 0 < status.input_fps <= 20


class SlowCamera:
    """A camera that sends a frame less often than the stall bound: each connection brings the frame FFmpeg
    buffered while it opened, then stalls."""

    live = True
    fps = 1 / 7

    def describe(self) -> str:
        return "time-lapse camera"

    def open(self, stop: threading.Event) -> Iterator[Decoded]:
        yield Decoded(IMAGE, 0.0)
        raise ConnectionError("stalled: nothing received for 5 s")


def test_a_camera_that_stalls_after_each_frame_is_told_to_take_a_longer_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Told it was a video file to download, which a time-lapse camera is not."""
    caplog.set_level(logging.WARNING, logger="server.sources.reader")
    with ReaderProbe(SlowCamera(), backoff=Backoff(initial_s=0.01, max_s=0.02)) as probe:
        probe.wait_until("its ends told", lambda s: s.reconnects >= REPEATED_ENDS_TOLD, 30)
    [told] = [r.getMessage() for r in caplog.records if "connections each brought frames" in r.getMessage()]
    assert "#timeout=" in told
    assert "video file" not in told
