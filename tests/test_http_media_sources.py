"""Video URLs whose media is not what a camera sends: audio only, an MP4 with its index at its end sent
with no length, a stored .ts sent as a feed that ends after every pass. Each is made at test time
(64x64, 1 s) and served by a small aiohttp app on 127.0.0.1: as a file (its length given, Range
answered) or chunked (no length, no Range)."""

from __future__ import annotations

import asyncio
import logging
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from aiohttp import web

from server.sources import StreamState, reader
from server.sources.network import NetworkSource
from server.sources.reader import REPEATED_ENDS_TOLD
from tests.support.reader_probe import FAST_BACKOFF, ReaderProbe

FPS = 10
SIDE_PX = 64
CHUNK_BYTES = 4096
#: What stands in for a real recording's pictures between its start and its index: FFmpeg seeks back
#: within what it still holds (some 32 KB), so a 1 s clip of 64x64 played even sent chunked.
PICTURES_BYTES = 1 << 20


def write_video(path: Path, container_format: str | None = None) -> Path:
    """1 s of H.264 at `FPS`, ``SIDE_PX`` a side; an MP4 as a recorder writes it, its index (moov) last."""
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width = stream.height = SIDE_PX
        stream.pix_fmt = "yuv420p"
        for index in range(FPS):
            image = np.full((SIDE_PX, SIDE_PX, 3), index * 20, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def with_bulk_before_index(path: Path) -> Path:
    """``path``, an MP4 whose index (moov) is last, with a `PICTURES_BYTES` ``free`` box put before its
    index: the index's offsets into the pictures stay as they were."""
    data = path.read_bytes()
    moov = 0
    while data[moov + 4 : moov + 8] != b"moov":  # the top-level boxes, each its 32-bit length first
        moov += struct.unpack(">I", data[moov : moov + 4])[0]
    path.write_bytes(
        data[:moov] + struct.pack(">I4s", PICTURES_BYTES, b"free") + bytes(PICTURES_BYTES - 8) + data[moov:]
    )
    return path


def write_audio(path: Path, container_format: str) -> Path:
    """1 s of silence as AAC, and nothing else."""
    rate, samples = 8000, 1024
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream("aac", rate=rate, layout="mono")
        for index in range(rate // samples + 1):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, samples), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, index * samples
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("http-media")
    write_audio(folder / "audio.m4a", "mp4")
    write_audio(folder / "audio.ts", "mpegts")
    with_bulk_before_index(write_video(folder / "moov-last.mp4"))
    write_video(folder / "recording.ts", "mpegts")
    return folder


class MediaServer:
    """``folder`` over HTTP on 127.0.0.1, from an event loop in a thread of its own (the reader under
    test blocks the test's): ``/files/NAME`` as a web server sends a file, its length given and Range
    answered; ``/chunked/NAME`` chunked, with neither, as a feed or a script sends it."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="media-server", daemon=True)
        app = web.Application()
        app.router.add_static("/files", folder)
        app.router.add_get("/chunked/{name}", self._chunked)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        self.port = 0

    async def _chunked(self, request: web.Request) -> web.StreamResponse:
        data = (self._folder / request.match_info["name"]).read_bytes()
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(data), CHUNK_BYTES):
            await response.write(data[start : start + CHUNK_BYTES])
        await response.write_eof()
        return response

    async def _start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def url(self, path: str, credentials: str = "") -> str:
        return f"http://{credentials + '@' if credentials else ''}127.0.0.1:{self.port}{path}"

    def __enter__(self) -> MediaServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture
def server(media: Path) -> Iterator[MediaServer]:
    with MediaServer(media) as serving:
        yield serving


def test_an_audio_only_file_by_url_fails_as_a_file_does_without_its_password(server: MediaServer) -> None:
    """It was taken for a camera still starting: "the camera describes no video stream ... retried
    slowly", for ever. A file with an end has no start-up to wait for."""
    url = server.url("/files/audio.m4a", credentials="viewer:hunter2")
    with ReaderProbe(url, slow_backoff=FAST_BACKOFF) as probe:
        failed = probe.wait_state(StreamState.FAILED, 15)

    told = f"{server.url('/files/audio.m4a', credentials='viewer:***')} has no video stream (audio only)"
    assert failed.error == told
    assert failed.reconnects == 0 and probe.announced == [(StreamState.FAILED, told)]


def test_a_live_http_feed_without_video_is_still_retried_slowly(server: MediaServer) -> None:
    """Sent with no length, an MPEG-TS tells no end: a feed, whose camera may be starting."""
    with ReaderProbe(server.url("/chunked/audio.ts"), slow_backoff=FAST_BACKOFF) as probe:
        status = probe.wait_until("asked twice", lambda s: s.reconnects >= 2, 15)

    assert status.state is StreamState.RECONNECTING
    assert status.error is not None and "no video stream" in status.error and "slowly" in status.error


def test_an_mp4_with_its_index_at_its_end_sent_without_seeking_fails_saying_how_to_fix_it(
    server: MediaServer,
) -> None:
    """FFmpeg reads to the index, then cannot seek back to the pictures: the stream failed with "has no
    frames to play", which named neither the cause nor the fix."""
    url = server.url("/chunked/moov-last.mp4")
    with ReaderProbe(url) as probe:
        failed = probe.wait_state(StreamState.FAILED, 15)

    assert failed.error == (
        f"{url}: the MP4's index (its moov box) is at its end, and the server does not allow seeking back to the "
        "pictures before it: rewrite it with the index first (`ffmpeg -i IN -c copy -movflags +faststart OUT`, "
        "which copies the video as it is), or serve it from a server that answers Range requests"
    )
    assert failed.reconnects == 0 and failed.frames_read == 0


def test_the_same_mp4_with_its_length_and_range_plays(server: MediaServer) -> None:
    with ReaderProbe(NetworkSource(server.url("/files/moov-last.mp4"))) as probe:
        ended = probe.wait_state(StreamState.ENDED, 15)
    assert ended.frames_read == FPS and ended.error is None


def test_a_url_that_ends_after_every_pass_is_told_once_then_its_ends_go_to_debug(
    server: MediaServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A stored .ts sent with no length is a feed to FFmpeg: reconnected after each pass, as before, but
    each pass's end was a WARNING ("the camera closed the stream"), some 40 a minute for good."""
    caplog.set_level(logging.DEBUG, logger="server.sources.reader")
    url = server.url("/chunked/recording.ts")
    with ReaderProbe(url, stream_id="yard") as probe:
        probe.wait_until("passes after it was told", lambda s: s.reconnects >= REPEATED_ENDS_TOLD + 2, 30)

    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "server.sources.reader"]
    closed = [level for level, line in lines if line.endswith(": the camera closed the stream")]
    went_live = [level for level, line in lines if line == "[yard] live"]
    told = [line for level, line in lines if level == logging.WARNING and "connections each brought" in line]
    assert closed[: REPEATED_ENDS_TOLD - 1] == [logging.WARNING] * (REPEATED_ENDS_TOLD - 1)
    assert set(closed[REPEATED_ENDS_TOLD - 1 :]) == {logging.DEBUG} and len(closed) >= REPEATED_ENDS_TOLD + 2
    assert went_live[:REPEATED_ENDS_TOLD] == [logging.INFO] * REPEATED_ENDS_TOLD
    assert set(went_live[REPEATED_ENDS_TOLD:]) == {logging.DEBUG}
    assert told == [
        f"[yard] {url}: its last {REPEATED_ENDS_TOLD} connections each brought frames, then ended the same way (the "
        "camera closed the stream), the last after 1.0 s of video; it is reconnected each time as before, and these "
        "ends are logged at DEBUG from now on. A URL that ends after every pass is a video file rather than a "
        "camera's feed: if it is one, download it and give its path (played at its own rate, again and again with "
        "loop)"
    ]


def test_a_feed_that_ends_after_longer_passes_is_told_at_every_end(
    server: MediaServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A camera that drops its connection after a while, again and again, is a fault worth a WARNING each
    time: only passes shorter than `REPEATED_ENDS_MAX_PASS_S` (none here, with it 0) make the pattern."""
    monkeypatch.setattr(reader, "REPEATED_ENDS_MAX_PASS_S", 0.0)
    caplog.set_level(logging.DEBUG, logger="server.sources.reader")
    with ReaderProbe(server.url("/chunked/recording.ts"), stream_id="yard") as probe:
        # One pass more than the lines counted: a pass's end is counted before its line is logged, and
        # logged before the next pass's end is counted.
        probe.wait_until("passes", lambda s: s.reconnects >= REPEATED_ENDS_TOLD + 3, 30)

    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "server.sources.reader"]
    closed = [level for level, line in lines if line.endswith(": the camera closed the stream")]
    assert len(closed) >= REPEATED_ENDS_TOLD + 2 and set(closed) == {logging.WARNING}
    assert not [line for _, line in lines if "connections each brought" in line]
