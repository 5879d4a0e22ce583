"""HTTP sources against a camera served by the test: slow MJPEG, stalls, 401, a video URL and HLS."""

from __future__ import annotations

import base64
import contextlib
import logging
import threading
from collections.abc import Generator, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from server.scene import Scene
from server.sources import StreamState
from server.sources.base import SlowRetryError
from server.sources.network import NetworkSource
from tests.support.fake_rtsp import FakeRtspCamera
from tests.support.http_stand_in import serving
from tests.support.mjpeg_server import MjpegServer
from tests.support.reader_probe import FAST_BACKOFF, ReaderProbe
from tests.support.rtsp_camera import write_camera_video

CLIP_FPS = 10
CLIP_S = 1.5


@pytest.fixture
def slow_camera() -> Iterator[MjpegServer]:
    with MjpegServer(fps=4) as server:
        yield server


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short MP4 and the same video as an HLS recording (playlist + segments)."""
    folder = tmp_path_factory.mktemp("http-clips")
    clip = write_camera_video(folder / "clip.mp4", CLIP_S, CLIP_FPS)
    with av.open(str(clip)) as source, av.open(str(folder / "clip.m3u8"), "w", format="hls") as hls:
        hls.options.update({"hls_time": "0.5", "hls_playlist_type": "vod"})
        template = source.streams.video[0]
        output = hls.add_stream_from_template(template)
        for packet in source.demux(template):
            if packet.dts is None:
                continue
            packet.stream = output
            hls.mux(packet)
    return folder


def test_slow_mjpeg_camera_is_live_at_its_own_rate(slow_camera: MjpegServer) -> None:
    with ReaderProbe(slow_camera.url()) as probe:
        first = probe.next_frame(10)
        status = probe.wait_until("measuring ~4 fps", lambda s: 3 <= s.input_fps <= 5 and s.frames_read >= 6, 10)
        second = probe.next_frame(5)

    assert status.state is StreamState.LIVE
    assert first.image.shape == (192, 320, 3)
    # MJPEG has no clock of its own: frames carry their arrival time (FFmpeg's would count 25 fps).
    arrived = second.capture_time - first.capture_time
    assert 0.5 <= (second.media_time - first.media_time) / arrived <= 2.0, "media time follows arrival"


def test_a_stalled_camera_counts_as_a_drop_and_comes_back(slow_camera: MjpegServer) -> None:
    with ReaderProbe(slow_camera.url() + "#timeout=1") as probe:
        probe.wait_state(StreamState.LIVE, 10)

        slow_camera.stall.set()  # connection stays open, nothing more arrives
        stalled = probe.wait_state(StreamState.RECONNECTING, 5)
        slow_camera.stall.clear()
        back = probe.wait_state(StreamState.LIVE, 10)

    assert stalled.error == "stalled: nothing received for 1 s"
    assert back.reconnects >= 1 and slow_camera.connections >= 2


def test_a_damaged_picture_from_an_mjpeg_camera_costs_that_picture_not_the_connection() -> None:
    """Cheap and Wi-Fi cameras send a garbled part now and then: dropping the connection for each left
    such a stream reconnecting most of the time, its backoff doubling as no connection lasted."""
    with MjpegServer(fps=10, width=160) as camera:
        camera.jpegs[3] = b"\x00" * 500  # one part in 8 is no JPEG at all
        with ReaderProbe(camera.url()) as probe:
            status = probe.wait_until("20 pictures read", lambda s: s.frames_read >= 20, 20)
    assert status.state is StreamState.LIVE and status.reconnects == 0 and camera.connections == 1


def test_http_401_is_retried_slowly_with_the_reason_and_the_password_masked(caplog: pytest.LogCaptureFixture) -> None:
    """A camera still booting may refuse credentials it will accept a minute later."""
    caplog.set_level(logging.DEBUG)
    with MjpegServer(user="viewer", password="hunter2") as server:
        probe = ReaderProbe(server.url(credentials="viewer:nope-nope"), slow_backoff=FAST_BACKOFF)
        with probe:
            refused = probe.wait_state(StreamState.RECONNECTING, 10)
            server.expected_auth = "Basic " + base64.b64encode(b"viewer:nope-nope").decode()  # booted: accepts it
            probe.next_frame(10)

    assert refused.error is not None and "refused the credentials" in refused.error and "slowly" in refused.error
    assert [state for state, _ in probe.announced] == [StreamState.RECONNECTING, StreamState.LIVE]
    assert probe.source.describe() == f"http://viewer:***@127.0.0.1:{server.port}/video.mjpg"
    assert "nope-nope" not in caplog.text + repr(probe.announced) and "hunter2" not in caplog.text


def test_a_camera_describing_no_video_is_retried_not_failed() -> None:
    """One garbage stream description (a camera starting up) used to fail the stream for good."""
    with FakeRtspCamera() as camera, ReaderProbe(camera.url, slow_backoff=FAST_BACKOFF) as probe:
        status = probe.wait_until("asked twice", lambda s: s.reconnects >= 2, 20)
    assert status.state is StreamState.RECONNECTING
    assert status.error is not None and "no video stream" in status.error and "slowly" in status.error
    assert camera.described >= 2


def test_a_camera_switching_to_frames_above_the_limit_fails_and_says_why() -> None:
    """The decoder refuses the large picture (no memory spent on it), which costs the connection, and the
    reconnect's first picture, which fails the stream: each says what limits them (the first was
    "invalid argument"). Refused unread, their size is not known."""
    with MjpegServer(fps=10, width=160) as camera, ReaderProbe(camera.url(), max_frame_side=256) as probe:
        probe.wait_state(StreamState.LIVE, 10)
        camera.jpegs = [cv2.imencode(".jpg", np.full((240, 400, 3), 90, np.uint8))[1].tobytes()]
        failed = probe.wait_state(StreamState.FAILED, 20)
        newest = probe.slot.take()

    too_large = "frames of more than 256x256 pixels are larger than 256 pixels a side ([server] max_frame_side)"
    reconnecting = [error for state, error in probe.announced if state is StreamState.RECONNECTING]
    assert reconnecting == [
        f"a picture above the limit came: {too_large}; lower the camera's resolution, or raise the limit; reconnecting"
    ]
    assert failed.error == f"{too_large}; lower the camera's resolution, or raise the limit"
    assert newest is None or newest.image.shape == (96, 160, 3), "no large frame was handed on"


def test_the_decoder_refuses_a_picture_above_the_limit_instead_of_decoding_it() -> None:
    """Told the limit (``max_pixels``), the decoder fails on the large picture before it spends its
    memory: without it, the picture was decoded, and only the reader's check of its size refused it."""
    with MjpegServer(fps=10, width=160) as camera:
        source = NetworkSource(camera.url() + "#timeout=1", max_frame_side=256)
        frames = source.open(threading.Event())
        assert isinstance(frames, Generator)
        with contextlib.closing(frames):
            assert next(frames).image.shape == (96, 160, 3)
            camera.jpegs = [cv2.imencode(".jpg", np.full((240, 400, 3), 90, np.uint8))[1].tobytes()]
            with pytest.raises(ConnectionError):
                for decoded in frames:
                    assert decoded.image.shape == (96, 160, 3), "a picture above the limit was decoded"


def test_a_video_url_played_with_loop_plays_again_from_its_start(clip_folder: Path) -> None:
    """README: a video URL "loops with --loop". Its second pass went on from where the first had
    stopped, its end: the stream stayed live with no frames."""
    frames = round(CLIP_S * CLIP_FPS)
    with (
        MjpegServer(files=clip_folder) as server,
        ReaderProbe(NetworkSource(server.url("/clip.mp4")), loop_file=True, record=True) as probe,
    ):
        probe.wait_until("a second pass", lambda _: sum(f.restarts == 1 for f in probe.published) >= frames, 20)
    second_pass = [frame for frame in probe.published if frame.restarts == 1]
    assert len(second_pass) == frames, "every frame again"


def test_video_url_plays_at_its_native_rate_then_ends(clip_folder: Path) -> None:
    with MjpegServer(files=clip_folder) as server:
        source = NetworkSource(server.url("/clip.mp4"))
        with ReaderProbe(source) as probe:
            ended = probe.wait_state(StreamState.ENDED, 15)

    assert source.live is False, "a video with a duration is a clip, not a camera"
    assert ended.frames_read == round(CLIP_S * CLIP_FPS)
    assert [state for state, _ in probe.announced] == [StreamState.LIVE, StreamState.ENDED]


@pytest.mark.parametrize("length", [False, True], ids=["no length", "a length"])
def test_a_live_mpeg_ts_feed_over_http_that_closes_is_reconnected(tmp_path: Path, length: bool) -> None:
    """A camera's MPEG-TS feed stays a camera, called back when it hangs up, also where its server
    gives a length (some cameras send one, made up): taken for a stored video by that length, it was
    resumed by seeking on a camera that ignores the range asked, and never came back."""
    feed = write_clip(tmp_path / "feed.ts", 6, CLIP_FPS, "mpegts")
    with PageServer(feed.read_bytes(), "video/mp2t", length=length) as camera:
        source = NetworkSource(camera.url("/live.ts"))
        with ReaderProbe(source) as probe:
            status = probe.wait_until("called back", lambda s: s.reconnects >= 1 and s.frames_read > 0, 15)

    assert source.live is True and status.error is not None, "a camera, not a video that ended"


def test_a_url_whose_scheme_is_in_capitals_plays(clip_folder: Path) -> None:
    """A scheme is case-insensitive, and ``HTTP://`` passed every check, but FFmpeg knows its protocols
    by their lower-case names only: the stream failed with "Protocol not found"."""
    with MjpegServer(files=clip_folder) as server:
        source = NetworkSource(server.url("/clip.mp4").replace("http://", "HTTP://", 1))
        with ReaderProbe(source) as probe:
            status = probe.wait_until("started", lambda s: s.state is not StreamState.STARTING, 10)

    assert status.error is None and status.frames_read > 0, status
    assert source.describe().startswith("HTTP://127.0.0.1:"), "shown as it was given"


def test_a_video_url_with_a_gap_longer_than_the_stall_timeout_plays_through_it(tmp_path: Path) -> None:
    """The reader's wait for the frame after the gap counted as a stall: it reconnected and replayed
    the clip from its start, again and again, never getting past the gap."""
    write_video_with_gap(tmp_path / "gap.mp4", frames=(5, 5), gap_s=1.5)
    with MjpegServer(files=tmp_path) as server:
        source = NetworkSource(server.url("/gap.mp4") + "#timeout=1")
        with ReaderProbe(source) as probe:
            ended = probe.wait_state(StreamState.ENDED, 15)

    assert ended.frames_read == 10 and ended.reconnects == 0
    assert [state for state, _ in probe.announced] == [StreamState.LIVE, StreamState.ENDED]


def test_a_video_url_whose_connection_drops_mid_file_goes_on_where_it_stopped(tmp_path: Path) -> None:
    """It played again from the start, counted as a restart (trackers started a new scene, and the
    first half's crossings counted twice): now it seeks back to its last frame and goes on."""
    name = "clip.mp4"
    clip = write_faststart(write_camera_video(tmp_path / "plain.mp4", 3.0, CLIP_FPS), tmp_path / name)
    with MjpegServer(files=tmp_path) as server:
        server.cut_file_at = clip.stat().st_size // 2
        source = NetworkSource(server.url(f"/{name}"))
        with ReaderProbe(source, record=True) as probe:
            ended = probe.wait_state(StreamState.ENDED, 20)

    assert server.cut_file_at is None, "the connection was cut"
    assert ended.reconnects == 1 and ended.frames_read == 3 * CLIP_FPS, "each frame once"
    played = [frame for frame in probe.published if not frame.ended]
    assert [frame.restarts for frame in played] == [0] * len(played)
    steps = np.diff([frame.media_time for frame in played])
    assert np.allclose(steps, 1 / CLIP_FPS), "one media clock, no frame skipped or repeated"
    assert [state for state, _ in probe.announced][-2:] == [StreamState.LIVE, StreamState.ENDED]


def test_a_video_url_cut_short_ends_saying_where_of_its_stated_length(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A recording cut off after its index ended without a reason over HTTP, where the same file on disk
    said where it stopped (`test_sources_file.py`)."""
    whole = write_faststart(write_camera_video(tmp_path / "plain.mp4", 4.0, CLIP_FPS), tmp_path / "whole.mp4")
    data = whole.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: round(len(data) * 0.35)])
    caplog.set_level(logging.WARNING, logger="server.sources.network")
    with MjpegServer(files=tmp_path) as server, ReaderProbe(server.url("/cut.mp4"), stream_id="yard") as probe:
        ended = probe.wait_state(StreamState.ENDED, 15)

    played_s = ended.frames_read / CLIP_FPS
    assert 0 < ended.frames_read < 0.6 * 4.0 * CLIP_FPS and ended.reconnects == 0
    reason = (
        f"the video ended early, at {played_s:.1f} s of the 4.0 s its header states: the file is cut short "
        "(a recording cut off, or a copy that did not finish)"
    )
    assert ended.error == reason and probe.announced[-1] == (StreamState.ENDED, reason)
    told = [r.getMessage() for r in caplog.records if r.name == "server.sources.network" and "early" in r.getMessage()]
    assert told == [f"[yard] {server.url('/cut.mp4')}: {reason}"]


def write_clip(path: Path, frames: int, fps: int, container_format: str) -> Path:
    """``frames`` of the scene as H.264 at ``fps``, in ``container_format`` (``h264``: raw, with no
    container and no timestamps)."""
    images = Scene(seed=7, width=320, height=192, fps=fps).frames(frames)
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 320, 192, "yuv420p"
        stream.options = {"tune": "zerolatency"}
        for image in images:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_faststart(video: Path, path: Path) -> Path:
    """``video`` with its index first, so FFmpeg reads it in one request from start to end, as a
    video made for the web is served; the cut then falls among its frames."""
    with av.open(str(video)) as source, av.open(str(path), "w", options={"movflags": "faststart"}) as out:
        template = source.streams.video[0]
        stream = out.add_stream_from_template(template)
        for packet in source.demux(template):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    return path


def write_video_with_gap(path: Path, frames: tuple[int, int], gap_s: float) -> Path:
    """Frames at `CLIP_FPS`, ``gap_s`` without any between the first ``frames[0]`` and the rest, as a
    camera's recording that paused while nothing moved."""
    images = Scene(seed=7, width=320, height=192, fps=CLIP_FPS).frames(sum(frames))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=CLIP_FPS)
        stream.width, stream.height, stream.pix_fmt = 320, 192, "yuv420p"
        stream.options = {"tune": "zerolatency"}
        for index, image in enumerate(images):
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts = index + (round(gap_s * CLIP_FPS) if index >= frames[0] else 0)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_hls_recording_plays_through(clip_folder: Path) -> None:
    with MjpegServer(files=clip_folder) as server, ReaderProbe(server.url("/clip.m3u8")) as probe:
        frame = probe.next_frame(10)
        ended = probe.wait_state(StreamState.ENDED, 15)

    assert frame.image.shape == (192, 320, 3)
    assert ended.frames_read >= round(CLIP_S * CLIP_FPS) - 1


def test_missing_stream_is_retried_slowly_and_told_to_check_the_path() -> None:
    """A 404 was "server returned 404 Not Found", asked again every few seconds: a path to fix, or a
    camera still starting its streams, as a 401 is a setting to fix or a camera still booting."""
    with MjpegServer() as server:
        failure = first_failure(NetworkSource(server.url("/no-such-stream")))
        with ReaderProbe(server.url("/no-such-stream"), slow_backoff=FAST_BACKOFF) as probe:
            status = probe.wait_state(StreamState.RECONNECTING, 10)

    assert isinstance(failure, SlowRetryError)
    assert status.error == "server returned 404 Not Found: check the URL's path; retried slowly"


def test_a_busy_server_is_said_to_be_busy_and_retried() -> None:
    """FFmpeg's word for every 5XX answer is "server returned 5XX Server Error reply"."""
    with PageServer(b"busy", "text/plain", status=HTTPStatus.SERVICE_UNAVAILABLE) as camera:
        failure = first_failure(NetworkSource(camera.url("/video.mjpg")))
    assert not isinstance(failure, SlowRetryError)
    assert str(failure) == "the server answered 503 (busy or starting): retrying"


def test_a_cameras_snapshot_url_fails_saying_it_is_one_picture() -> None:
    """A camera's snapshot URL (one JPEG) went live for one frame, then ended without a word."""
    jpeg = cv2.imencode(".jpg", np.full((192, 320, 3), 90, np.uint8))[1].tobytes()
    with PageServer(jpeg, "image/jpeg") as camera:
        for path in ("/snap.jpg", "/cgi-bin/snapshot.cgi"):  # FFmpeg's image2 by its name, jpeg_pipe by its bytes
            with ReaderProbe(camera.url(path)) as probe:
                failed = probe.wait_state(StreamState.FAILED, 10)
            assert failed.error is not None and failed.error.startswith(f"{camera.url(path)} is a single picture")
            assert "give the camera's MJPEG or RTSP URL instead" in failed.error
            assert probe.announced == [(StreamState.FAILED, failed.error)], "never live"


@pytest.mark.parametrize("scheme", ["http", "rtsp"])
def test_a_host_name_that_does_not_resolve_is_said_so(scheme: str) -> None:
    """FFmpeg's own word for a mistyped camera host is "Input/output error". (.invalid never resolves.)"""
    with ReaderProbe(f"{scheme}://no-such-camera.invalid/stream") as probe:
        status = probe.wait_state(StreamState.RECONNECTING, 30)
    assert status.error is not None and "the camera's host 'no-such-camera.invalid'" in status.error
    assert "Input/output" not in status.error


CAMERA_PAGE = b"<!DOCTYPE html>\n<html><head><title>IP Camera</title></head><body>Log in</body></html>\n"


class PageServer:
    """An HTTP server answering every GET with one body and content type, as a camera's web interface
    answers at the address people take for its stream; without its ``length``, as a camera's live
    feed that hangs up; with another ``status``, as a server refusing. Runs on 127.0.0.1 in a thread
    of the test."""

    def __init__(self, body: bytes, content_type: str, length: bool = True, status: HTTPStatus = HTTPStatus.OK) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the tests' output is about segcast."""

            def do_GET(self) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                if length:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._handler = Handler
        self._serving = contextlib.ExitStack()
        self._httpd: ThreadingHTTPServer  # set when it starts serving

    def url(self, path: str) -> str:
        """Valid once the server is entered."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}{path}"

    def __enter__(self) -> PageServer:
        self._httpd = self._serving.enter_context(serving(self._handler, "page-server"))
        return self

    def __exit__(self, *exc: object) -> None:
        self._serving.close()


def first_failure(source: NetworkSource) -> BaseException:
    with pytest.raises(ConnectionError) as failure:
        next(source.open(threading.Event()))
    return failure.value


@pytest.mark.parametrize("content_type", ["text/html; charset=utf-8", "application/octet-stream"])
def test_a_web_page_instead_of_a_stream_is_said_so_and_retried_slowly(content_type: str) -> None:
    """A camera's web interface given for its MJPEG stream, the commonest mistake, was "not a video
    stream, or a damaged one: Invalid data found when processing input", retried fast for ever. A
    page whose server calls it something else is told by its first bytes."""
    with PageServer(CAMERA_PAGE, content_type) as camera:
        failure = first_failure(NetworkSource(camera.url("/")))
        with ReaderProbe(camera.url("/index.html"), slow_backoff=FAST_BACKOFF) as probe:
            status = probe.wait_until("asked twice", lambda s: s.reconnects >= 2, 20)

    told = "the server sent a web page, not video: check the URL's path"
    assert isinstance(failure, SlowRetryError) and str(failure).startswith(told)
    assert status.state is StreamState.RECONNECTING and status.error is not None and status.error.startswith(told)


def test_a_web_page_behind_the_cameras_password_is_told_too(tmp_path: Path) -> None:
    """Asked with the URL's own credentials, as FFmpeg asked; the page is served as video/mp4 here."""
    (tmp_path / "index.html").write_bytes(CAMERA_PAGE)
    with MjpegServer(files=tmp_path, user="viewer", password="hunter2") as camera:
        failure = first_failure(NetworkSource(camera.url("/index.html", credentials="viewer:hunter2")))
    assert isinstance(failure, SlowRetryError) and "web page" in str(failure) and "hunter2" not in str(failure)


def test_data_that_is_no_video_and_no_web_page_is_still_a_damaged_stream() -> None:
    with PageServer(bytes(range(256)) * 8, "application/octet-stream") as camera:
        failure = first_failure(NetworkSource(camera.url("/video.bin")))
    assert not isinstance(failure, SlowRetryError)
    assert str(failure).startswith("not a video stream, or a damaged one: ")
