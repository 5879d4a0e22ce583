"""Against a real IP camera: GStreamer's RTSP server in its own process, serving the generated scene.

Each test gives its deadlines in seconds; they are generous for a loaded 2-core machine, and every
wait polls the reader's status rather than sleeping for a guessed time.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.sources import StreamState
from server.sources.reader import JOIN_TIMEOUT_S
from tests.support.components import require_component
from tests.support.reader_probe import ReaderProbe, SilentServer
from tests.support.rtsp_camera import RtspCamera, cached_camera_video, system_rtsp_server_available

#: Connecting includes reading a key frame to learn the stream's size: a second or two here.
CONNECT_S = 15.0
#: A "smart codec" camera's key frame interval, and how long its test video lasts (its first key frame only).
LONG_GOP_S = 30
LONG_GOP_VIDEO_S = 20
#: A read that outlasts a stop's join by far, so a stop that waited for it cannot pass for one that did not.
BLOCKED_READ_S = 10 * JOIN_TIMEOUT_S

require_component(system_rtsp_server_available(), "needs /usr/bin/python3 with GStreamer's RTSP server (see .ci/run)")


@pytest.fixture(scope="session")
def long_gop_video(video_cache: Path) -> Path:
    """A camera's video with a key frame at its start only: each client gets one as it joins, the next
    would come `LONG_GOP_S` later."""
    return cached_camera_video(video_cache, LONG_GOP_VIDEO_S, key_frame_s=LONG_GOP_S)


@pytest.fixture
def camera(camera_video: Path) -> Iterator[RtspCamera]:
    with RtspCamera(camera_video) as running:
        yield running


def test_frames_arrive_live_at_the_camera_rate(camera: RtspCamera) -> None:
    with ReaderProbe(camera.url) as probe:
        frame = probe.next_frame(CONNECT_S)
        status = probe.wait_until("measuring ~15 fps", lambda s: 12 <= s.input_fps <= 18, 10)

    assert frame.image.shape == (192, 320, 3)
    assert status.state is StreamState.LIVE
    assert probe.announced[0] == (StreamState.LIVE, None)


def test_a_camera_with_key_frames_far_apart_shows_the_one_it_sends_as_a_client_joins(long_gop_video: Path) -> None:
    """FFmpeg reads that key frame while it probes the stream; told not to buffer (``fflags nobuffer``)
    it dropped what it had read, so the first picture waited for the next key frame, 30 s later: the
    stream stalled after 5 s without a picture and reconnected, for ever."""
    with RtspCamera(long_gop_video) as camera, ReaderProbe(camera.url) as probe:
        status = probe.wait_until("past starting", lambda s: s.state is not StreamState.STARTING, CONNECT_S)
        assert status.state is StreamState.LIVE and status.reconnects == 0, status
        frame = probe.next_frame(5)

    assert probe.announced[0] == (StreamState.LIVE, None)
    assert frame.image.shape == (192, 320, 3)


def test_camera_that_dies_is_reconnecting_with_the_error_then_live_again_by_itself(camera: RtspCamera) -> None:
    with ReaderProbe(camera.url) as probe:
        probe.wait_state(StreamState.LIVE, CONNECT_S)
        before = probe.next_frame(5)

        camera.kill()
        lost = probe.wait_state(StreamState.RECONNECTING, 10)
        assert lost.error == "the camera closed the stream" or "(connection refused)" in (lost.error or "")
        assert lost.next_attempt_at is not None and lost.next_attempt_at > time.time() - 1.5
        refused = probe.wait_until("refused", lambda s: f":{camera.port} (connection refused)" in (s.error or ""), 10)
        assert refused.input_fps == 0

        camera.start()  # same port, like a camera that rebooted
        back = probe.wait_state(StreamState.LIVE, CONNECT_S)
        after = probe.next_frame(5)

    assert back.error is None and back.next_attempt_at is None and back.reconnects >= 1
    assert after.seq > before.seq
    assert after.media_time > before.media_time, "media time runs on across the reconnect"
    assert [state for state, _ in probe.announced] == [
        StreamState.LIVE,
        *([StreamState.RECONNECTING] * (len(probe.announced) - 2)),
        StreamState.LIVE,
    ]


def test_latency_stays_flat_when_the_consumer_is_slower_than_the_camera(camera: RtspCamera) -> None:
    consumer_interval_s = 0.35  # under 3 fps against a 15 fps camera
    lags: list[float] = []
    ages: list[float] = []
    with ReaderProbe(camera.url) as probe:
        first = probe.next_frame(CONNECT_S)
        started = time.monotonic()
        for _ in range(18):  # about 6 s
            time.sleep(consumer_interval_s)  # the slow consumer's work
            frame = probe.next_frame(5)
            ages.append(time.time() - frame.capture_time)
            # Wall time passed minus camera time passed: grows if frames queue up anywhere.
            lags.append((time.monotonic() - started) - (frame.media_time - first.media_time))
        dropped = probe.status().dropped

    # Queued frames would age and lag by seconds within these 6 s (4.8 s at 3 of 15 fps); the bounds
    # leave a busy machine room for scheduling delays without missing that.
    assert max(ages) < 1.5, f"the newest frame should be fresh when taken: {ages}"
    assert max(lags[-5:]) - min(lags[:5]) < 1.5, f"lag grew over time: {[round(lag, 3) for lag in lags]}"
    assert dropped > 40, "frames the consumer had no time for are dropped and counted"


def test_udp_transport_can_be_chosen(camera: RtspCamera) -> None:
    with ReaderProbe(camera.url + "#transport=udp") as probe:
        frame = probe.next_frame(CONNECT_S)
    assert frame.image.shape == (192, 320, 3)


def test_refused_credentials_are_retried_slowly_and_the_password_never_shows(
    camera_video: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with RtspCamera(camera_video, user="admin", password="right-one") as camera:
        with ReaderProbe(camera.url_with("admin", "wrong-one")) as refused:
            failed = refused.wait_state(StreamState.RECONNECTING, CONNECT_S)
        with ReaderProbe(camera.url_with("admin", "right-one")) as allowed:
            allowed.next_frame(CONNECT_S)

    assert failed.error is not None and "refused the credentials" in failed.error and "slowly" in failed.error
    assert refused.source.describe() == f"rtsp://admin:***@127.0.0.1:{camera.port}/scene"
    assert failed.next_attempt_at is not None and failed.next_attempt_at - time.time() > 5, "on the slow backoff"
    shown = caplog.text + repr(refused.announced) + repr(failed) + allowed.source.describe()
    assert "wrong-one" not in shown and "right-one" not in shown


def test_a_camera_that_never_answers_is_reconnecting_and_others_keep_streaming(camera: RtspCamera) -> None:
    with SilentServer() as silent, ReaderProbe(camera.url, stream_id="good") as good:
        good.wait_state(StreamState.LIVE, CONNECT_S)
        with ReaderProbe(f"rtsp://127.0.0.1:{silent.port}/cam#open_timeout=1", stream_id="dead") as dead:
            status = dead.wait_state(StreamState.RECONNECTING, 10)
            healthy = good.wait_until("still ~15 fps", lambda s: 12 <= s.input_fps <= 18, 5)

    assert status.error == (
        f"no answer within 1 s from 127.0.0.1:{silent.port}, which accepts the connection: check that the URI "
        "is the camera's stream URL (its port and path), and that the camera is not already serving as many "
        "clients as it allows"
    )
    assert healthy.state is StreamState.LIVE and healthy.reconnects == 0


class MuteCamera:
    """A camera that reads the first request of the one client it takes and never answers it: that
    client is left in a blocking read until its own time-out, or until the camera hangs up."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(CONNECT_S)
        self.port = int(self._listener.getsockname()[1])
        self.asked = threading.Event()
        self._connection: socket.socket | None = None
        self._thread = threading.Thread(target=self._take_one_request, name="mute-camera", daemon=True)

    def _take_one_request(self) -> None:
        try:
            self._connection, _ = self._listener.accept()
            self._connection.settimeout(CONNECT_S)
            if self._connection.recv(4096):
                self.asked.set()
        except OSError:  # no client came, or the camera hung up first: nothing was asked
            return

    def hang_up(self) -> None:
        self._thread.join()
        if self._connection is not None:
            self._connection.close()

    def __enter__(self) -> MuteCamera:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.close()
        self.hang_up()


def test_stopping_a_reader_blocked_in_a_network_read_returns_within_the_join_time() -> None:
    with MuteCamera() as camera:
        probe = ReaderProbe(f"rtsp://127.0.0.1:{camera.port}/cam#open_timeout={BLOCKED_READ_S:g}")
        probe.reader.start()
        assert camera.asked.wait(CONNECT_S), "the reader never asked the camera"

        started = time.monotonic()
        probe.reader.stop()
        stopped_in = time.monotonic() - started
        still_blocked = probe.reader.alive
        announced = list(probe.announced)
        camera.hang_up()
        probe.reader.stop(timeout_s=CONNECT_S)

    assert still_blocked, "stop() returned at its join's time-out, before the blocked read ended"
    assert stopped_in <= JOIN_TIMEOUT_S + 1.0, "the join's time-out, and a busy machine's delay at most"
    assert not probe.reader.alive, "the thread ends by itself once its read does"
    assert probe.announced == announced == [], "a stopped reader announces nothing more"
