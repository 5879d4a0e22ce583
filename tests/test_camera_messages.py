"""What a camera owner is told: a password copied back as segcast masks it, a camera that stops answering,
one sending fewer frames than one per stall time-out, and where the README sends them for a substream.

The cameras are GStreamer's RTSP server in its own process (tests/support/rtsp_camera.py); every wait
polls the reader's status with a deadline, as tests/test_sources_rtsp.py does.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import pytest

from server.sources import SourceError, StreamState, check_uri, network
from server.sources.decoding import MediaClock, translate_error
from tests.support.cached_videos import cached_video
from tests.support.cli_in_process import run_cli
from tests.support.components import require_component
from tests.support.ports import free_port
from tests.support.reader_probe import ReaderProbe
from tests.support.rtsp_camera import RtspCamera, system_rtsp_server_available

ROOT = Path(__file__).resolve().parents[1]
#: Connecting includes reading a key frame to learn the stream's size: a second or two here.
CONNECT_S = 15.0
#: A time-lapse camera's rate, scaled down with the stall time-out it outlasts (`SHORT_STALL_TIMEOUT_S`): the
#: reviewer's camera declared 1/7 (ffprobe's r_frame_rate), against the default 5 s, and three of its frames
#: took a test half a minute.
SLOW_RATE = Fraction(1, 2)
#: The default stall time-out (`network.STALL_TIMEOUT_S`, 5 s) in the slow camera's test: shorter than
#: `SLOW_RATE`'s frame interval, as 5 s is than 1/7's.
SHORT_STALL_TIMEOUT_S = 1.0
#: Long enough that the camera's video does not end while a test watches it.
SLOW_VIDEO_FRAMES = 10
#: Four frames of a `SLOW_RATE` camera, with its two openings and a loaded machine's delays.
FOUR_SLOW_FRAMES_S = 30.0
UNAUTHORIZED = "Server returned 401 Unauthorized (authorization failed)"


@pytest.fixture
def rtsp_server() -> None:
    require_component(system_rtsp_server_available(), "needs /usr/bin/python3 with GStreamer's RTSP server")


@pytest.fixture
def camera(rtsp_server: None, camera_video: Path) -> Iterator[RtspCamera]:
    with RtspCamera(camera_video) as running:
        yield running


@pytest.fixture(scope="session")
def slow_camera_video(video_cache: Path) -> Path:
    """A time-lapse camera's H.264 at `SLOW_RATE`, each picture a key frame, as its container declares it."""

    def write(path: Path) -> None:
        with av.open(str(path), mode="w") as container:
            stream = container.add_stream("libx264", rate=SLOW_RATE)
            stream.width, stream.height, stream.pix_fmt = 320, 192, "yuv420p"
            stream.options = {"preset": "veryfast", "tune": "zerolatency", "g": "1"}
            for index in range(SLOW_VIDEO_FRAMES):
                image = av.VideoFrame(320, 192, "yuv420p")
                for plane in image.planes:
                    plane.update(bytes([index * 20]) * plane.buffer_size)
                for packet in stream.encode(image):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)

    return cached_video(video_cache / f"slow-camera-{SLOW_RATE.denominator}s-{SLOW_VIDEO_FRAMES}.mp4", write)


def unauthorized() -> av.error.HTTPUnauthorizedError:
    """FFmpeg's error for a camera's 401, as its RTSP and HTTP clients raise it."""
    return av.error.HTTPUnauthorizedError(0, UNAUTHORIZED)


# A: a password copied back as segcast shows it


@pytest.mark.parametrize(
    "uri",
    ["rtsp://admin:***@10.0.0.7/stream1", "rtsp://10.0.0.7/cam/realmonitor?channel=1&password=***"],
    ids=["user-info", "query"],
)
def test_a_password_that_is_segcasts_own_mask_is_refused_asking_for_the_real_one(uri: str) -> None:
    with pytest.raises(SourceError) as refused:
        check_uri(uri)
    message = str(refused.value)
    assert "'***'" in message and "how segcast shows" in message and "give the real one" in message, message


def test_a_config_file_holding_a_masked_password_stops_the_start_naming_the_stream(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "cams.toml"
    config.write_text(
        '[model]\nname = "/nonexistent/model.pt"\n[[streams]]\nid = "gate"\nuri = "rtsp://admin:***@10.0.0.7/stream1"\n'
    )
    exited = run_cli(capfd, "serve", "--config", str(config), "--port", str(free_port()))
    line = exited.one_error_line
    where = "segcast: cams.toml: streams[0] (id 'gate').uri"
    assert line.startswith(f"{where}: 'rtsp://admin:***@10.0.0.7/stream1': its password or token is '***'"), line
    assert "how segcast shows" in line, line


def test_a_refused_password_of_three_stars_is_not_told_to_add_one() -> None:
    """A literal ``***`` is a password sent: the message said to add user:password@ to a URI that had one."""
    message = str(translate_error(unauthorized(), "rtsp://admin:***@10.0.0.7/stream1"))
    assert "add user:password@" not in message, message
    assert "check the user and password" in message, message


def test_refused_credentials_say_to_check_them_and_none_given_says_to_add_them() -> None:
    given = str(translate_error(unauthorized(), "rtsp://admin:pw@10.0.0.7/stream1"))
    in_query = str(translate_error(unauthorized(), "rtsp://10.0.0.7/cam?channel=1&password=pw"))
    none = str(translate_error(unauthorized(), "rtsp://10.0.0.7/stream1"))
    assert "check the user and password" in given and "check the user and password" in in_query, (given, in_query)
    assert "add user:password@ to the URI" in none, none


# B: a camera that stops answering


class UnreachableAddress:
    """A local port whose connection queue is full: a new connection there is never accepted nor refused,
    its handshake goes unanswered, as with a camera that is off behind a network that drops what it sends."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(0)  # one connection waiting fills the queue
        self.port = int(self._listener.getsockname()[1])
        self._queued = socket.create_connection(("127.0.0.1", self.port))

    def __enter__(self) -> UnreachableAddress:
        return self

    def __exit__(self, *exc: object) -> None:
        self._queued.close()
        self._listener.close()


def test_a_camera_that_nothing_answers_for_is_named_with_what_to_check() -> None:
    with UnreachableAddress() as address, ReaderProbe(f"rtsp://127.0.0.1:{address.port}/cam#open_timeout=1") as probe:
        status = probe.wait_until("no answer", lambda s: "no answer" in (s.error or ""), CONNECT_S)

    assert status.state is StreamState.RECONNECTING
    assert status.error == (
        f"no answer within 1 s from 127.0.0.1:{address.port}: check that the camera is on and reachable from "
        "this machine"
    )


def freeze(camera: RtspCamera) -> int:
    """Stop ``camera``'s process where it stands, as a camera's hung firmware: its port still takes connections
    (the system accepts them for it), nothing answers on them. Returns its process group, to thaw it with."""
    assert camera._process is not None, "the camera is running"
    group = os.getpgid(camera._process.pid)
    os.killpg(group, signal.SIGSTOP)
    return group


def test_a_camera_that_hangs_after_sending_video_is_not_told_to_check_its_url(camera: RtspCamera) -> None:
    """It was live a moment before, through this URI: its port and path are right, the camera is not."""
    with ReaderProbe(f"{camera.url}#timeout=1&open_timeout=1") as probe:
        probe.wait_state(StreamState.LIVE, CONNECT_S)
        group = freeze(camera)
        try:
            status = probe.wait_until("no answer", lambda s: "no answer" in (s.error or ""), CONNECT_S)
        finally:
            os.killpg(group, signal.SIGCONT)

    assert status.error is not None
    assert status.error.startswith(f"no answer within 1 s from 127.0.0.1:{camera.port}"), status.error
    assert "stream URL" not in status.error, status.error
    assert "restart it" in status.error, status.error


# C: a camera sending fewer frames than one per stall time-out


def test_a_camera_slower_than_a_frame_per_stall_timeout_stays_live_between_its_frames(
    rtsp_server: None, slow_camera_video: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A time-lapse camera at 1/7 fps reconnected every 5 s without a frame, for ever. Here one at 1/2 fps
    outlasts a stall time-out of 1 s as that one outlasted the default, in seconds rather than half a minute."""
    monkeypatch.setattr(network, "STALL_TIMEOUT_S", SHORT_STALL_TIMEOUT_S)
    with RtspCamera(slow_camera_video) as camera, ReaderProbe(f"{camera.url}#open_timeout=2", record=True) as probe:
        status = probe.wait_until("four frames", lambda s: s.frames_read >= 4, FOUR_SLOW_FRAMES_S)
        frames = probe.published

    assert status.reconnects == 0 and status.state is StreamState.LIVE, (status, probe.announced)
    times = [frame.media_time for frame in frames[:4]]
    # on the camera's clock, pictures FFmpeg hands over without a timestamp too (its first, often)
    assert times == pytest.approx([0.0, 2.0, 4.0, 6.0], abs=0.01), f"one connection's frames, 2 s apart: {times}"
    assert probe.source.fps == pytest.approx(float(SLOW_RATE))


def test_a_timeout_given_still_bounds_a_slow_camera(rtsp_server: None, slow_camera_video: Path) -> None:
    with RtspCamera(slow_camera_video) as camera, ReaderProbe(f"{camera.url}#timeout=1&open_timeout=2") as probe:
        status = probe.wait_until("stalled", lambda s: "stalled" in (s.error or ""), FOUR_SLOW_FRAMES_S)

    assert status.error == "stalled: nothing received for 1 s", status.error


# A camera's frames handed over without a timestamp (FFmpeg's RTSP demuxer does, now and then)

RTP_TIME_BASE = 1 / 90_000


def test_a_frame_without_a_timestamp_follows_the_one_before_by_the_streams_interval() -> None:
    """Its arrival time put it behind the frame before when the camera's frames came in a burst (ci4); a
    camera's first picture without one starts its clock at 0, where the stamped ones after it go on."""
    clock = MediaClock(RTP_TIME_BASE, live=True, fps=float(SLOW_RATE), stamped=True)
    times = [clock.time_of(pts) for pts in (None, 180_000, None, 540_000, None, None)]
    assert times == pytest.approx([0.0, 2.0, 4.0, 6.0, 8.0, 10.0])


def test_the_interval_is_the_one_the_stamped_frames_show_not_the_declared_rate() -> None:
    """A 30 fps camera declaring 10: frames after a guessed one at 0.1 s would lie behind it, and be held."""
    clock = MediaClock(RTP_TIME_BASE, live=True, fps=10.0, stamped=True)
    times = [clock.time_of(pts) for pts in (0, 3_000, None, 9_000, None, None, 18_000)]
    assert times == pytest.approx([0.0, 1 / 30, 2 / 30, 3 / 30, 4 / 30, 5 / 30, 6 / 30])


def test_a_live_stream_without_timestamps_keeps_its_arrival_times() -> None:
    """A raw H.264 or MJPEG camera's frames never carry one: their wall clock, not the nominal rate."""
    clock = MediaClock(RTP_TIME_BASE, live=True, fps=0.01, stamped=False)  # 100 s a frame, were the rate taken
    first, second = clock.time_of(None), clock.time_of(None)
    assert 0.0 <= first <= second < 50.0


def test_a_finite_video_without_timestamps_is_timed_by_its_frame_rate() -> None:
    clock = MediaClock(0.0, live=False, fps=4.0, stamped=False)
    assert [clock.time_of(pts) for pts in (None, 7, None)] == [0.0, 0.25, 0.5]


# D: the README's advice for cameras


def test_the_readme_sends_camera_owners_to_the_substream() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Point it at your video") : readme.index("### Options")]
    assert "substream" in section
    for example in ("subtype=1", "/Streaming/Channels/102", "stream2"):
        assert example in section, example
    assert "(`?channel=1&subtype=0`)" not in section, "Dahua's main stream, as the example of a camera's query"
