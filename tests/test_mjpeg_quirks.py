"""MJPEG cameras that send damaged pictures or multipart answers FFmpeg cannot split."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest

from server.sources import StreamState
from server.sources.base import SlowRetryError
from server.sources.network import NetworkSource
from tests.support.http_stand_in import serving
from tests.support.mjpeg_server import MjpegServer
from tests.support.reader_probe import ReaderProbe

WIDTH, HEIGHT = 320, 192
#: The rows compared in each picture: the same number of stripes in each (`striped_jpeg`).
TOP, BOTTOM = slice(0, 48), slice(HEIGHT - 48, HEIGHT)


def striped_jpeg(level: int) -> bytes:
    """A JPEG whose every part looks alike: gray ``level`` with a light stripe every 8 rows, so its
    top and bottom have the same brightness, and a picture made of two of them does not."""
    image = np.full((HEIGHT, WIDTH, 3), level, np.uint8)
    image[::8] = 255 - level
    return cv2.imencode(".jpg", image)[1].tobytes()


def damaged(jpeg: bytes) -> bytes:
    """``jpeg`` cut after its first third and followed by junk, as a garbled part of a camera's stream."""
    return jpeg[: len(jpeg) // 3] + b"\x00garbage" * 20


def is_one_picture(image: np.ndarray) -> bool:
    return abs(float(image[TOP].mean()) - float(image[BOTTOM].mean())) < 5


def test_a_damaged_mjpeg_picture_is_dropped_not_shown_over_an_older_one(caplog: pytest.LogCaptureFixture) -> None:
    """FFmpeg conceals the damage: the picture's top was its own, the rest an older picture, handed on as
    sound; objects jumped back for a frame and their trails jittered. Now it costs that picture alone:
    no reconnect, and the log tells of it once, then at most once a minute."""
    caplog.set_level(logging.WARNING, logger="server.sources.network")
    with MjpegServer(fps=20, width=WIDTH) as camera:
        camera.jpegs = [striped_jpeg(20 + 25 * index) for index in range(8)]
        camera.jpegs[5] = damaged(camera.jpegs[5])
        with ReaderProbe(camera.url(), stream_id="door", record=True) as probe:
            status = probe.wait_until("24 pictures read", lambda s: s.frames_read >= 24, 20)

    mixed = [frame.seq for frame in probe.published if not is_one_picture(frame.image)]
    assert mixed == [], "no picture is made of two"
    assert status.state is StreamState.LIVE and status.reconnects == 0 and camera.connections == 1
    told = [r.getMessage() for r in caplog.records if r.name == "server.sources.network"]
    assert told == ["[door] skipped 1 damaged picture (1 in all): each costs only itself, not the connection"]


class DashlessMjpegCamera:
    """An MJPEG camera that writes the boundary between its parts without the leading '--' that
    multipart requires, as some do: FFmpeg's multipart demuxer finds no part in it."""

    BOUNDARY = "myboundary"

    def __init__(self) -> None:
        jpeg = striped_jpeg(100)
        part = f"{self.BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
        closing = threading.Event()
        self._closing = closing

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the tests' output is about segcast."""

            def do_GET(self) -> None:
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", f"multipart/x-mixed-replace;boundary={DashlessMjpegCamera.BOUNDARY}")
                self.end_headers()
                try:
                    while not closing.is_set():
                        self.wfile.write(part + jpeg + b"\r\n")
                        self.wfile.flush()
                        closing.wait(0.1)
                except (BrokenPipeError, ConnectionResetError):
                    return

        self._handler = Handler
        self._serving = ExitStack()
        self._httpd: ThreadingHTTPServer  # set when it starts serving

    def url(self) -> str:
        """Valid once the camera is entered."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/video.mjpg"

    def __enter__(self) -> DashlessMjpegCamera:
        self._httpd = self._serving.enter_context(serving(self._handler, "dashless-camera"))
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self._serving.close()


@pytest.fixture
def dashless_camera() -> Iterator[DashlessMjpegCamera]:
    with DashlessMjpegCamera() as camera:
        yield camera


def test_mjpeg_whose_boundary_lacks_its_dashes_is_told_to_use_format_mjpeg(
    dashless_camera: DashlessMjpegCamera,
) -> None:
    """It was "not a video stream, or a damaged one: Invalid data found", retried fast for ever; the
    raw MJPEG demuxer reads it, finding each picture by its own markers."""
    with pytest.raises(SlowRetryError) as failure:
        next(NetworkSource(dashless_camera.url()).open(threading.Event()))
    with ReaderProbe(dashless_camera.url() + "#format=mjpeg") as probe:
        frame = probe.next_frame(10)

    assert "add #format=mjpeg to the URI" in str(failure.value) and "leading '--'" in str(failure.value)
    assert frame.image.shape == (HEIGHT, WIDTH, 3)


@pytest.mark.parametrize(
    "stated_length", [lambda length: length + 1000, lambda length: length // 2], ids=["too long", "half"]
)
def test_an_mjpeg_camera_stating_wrong_part_lengths_is_read_on_with_the_mjpeg_demuxer(
    stated_length: Callable[[int], int], caplog: pytest.LogCaptureFixture
) -> None:
    """FFmpeg's multipart demuxer lost its place at each such part: every connection lasted a second
    and ended "Invalid data found", and the camera was down 92% of the time, waiting up to 30 s between
    connections. One reconnect now, with the demuxer that finds each picture by its own markers."""
    caplog.set_level(logging.WARNING, logger="server.sources.network")
    with MjpegServer(fps=20, width=WIDTH) as camera:
        camera.stated_length = lambda index, length: stated_length(length) if index % 5 == 0 else length
        with ReaderProbe(camera.url(), stream_id="door") as probe:
            status = probe.wait_until("40 pictures read", lambda s: s.frames_read >= 40, 20)

    assert status.state is StreamState.LIVE and status.reconnects == 1 and camera.connections == 2
    told = [r.getMessage() for r in caplog.records if "#format=mjpeg" in r.getMessage()]
    assert len(told) == 1 and "Content-Length" in told[0] and "mjpeg demuxer from now on" in told[0]
    assert probe.announced[1][1] is not None and "format=mjpeg" in probe.announced[1][1]
