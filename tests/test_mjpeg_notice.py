"""An MJPEG ``<img>`` says why its stream has no picture, instead of staying blank or frozen.

While a stream has no current picture (it never had a frame, its camera is unreachable, its file
ended), its MJPEG response sends a notice part about once a second: a JPEG naming the stream and its
state, the size of the stream's last frame (else 640x360) scaled by ``max_width``, with the header
``X-Segcast-State`` where a frame has ``X-Segcast-Seq``. It goes back to frames as soon as they come.
A response that ends with its client still there (its stream removed, the server stopping, its token expired)
says why in one last notice before its closing boundary: an ``<img>`` never reconnects, and would otherwise
stay on its last frame as if the camera were live.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from server.delivery import notice
from server.delivery.notice import NOTICE_SIZE_PX, Notices, notice_lines, notice_size
from server.http import pictures
from server.http.access.auth import policy_key
from server.http.access.tokens import Role
from server.http.pictures import MJPEG_BOUNDARY
from server.inference.models import InferenceStatus
from server.sources.base import StreamState
from tests.support.numbered import HEIGHT, WIDTH, colour_errors, number_of

Start = Callable[..., Awaitable[TestClient]]
#: A camera nobody answers at: its stream reconnects for ever, and never has a frame.
UNREACHABLE = "rtsp://127.0.0.1:1/stream1"
NOTICE_SIZE = (360, 640)  # rows, columns: as documented for a stream that has had no frame
READ_S = 30.0
#: How long a test waits for what it looks for among the parts; only a hang guard.
WAIT_S = 60.0
LIVE_SCENE = "scene:?seed=1&width=320&height=192"
LIVE_SCENE_SIZE = (192, 320)  # rows, columns
VIEWER_TOKEN = "viewer-token-0123456789abcdef"
CLOSING_BOUNDARY = f"--{MJPEG_BOUNDARY}--\r\n".encode()

Part = tuple[dict[str, str], bytes]


class Parts:
    """The parts of an MJPEG response in order, each its headers and its JPEG."""

    def __init__(self, response: ClientResponse) -> None:
        assert response.status == 200
        self._response = response
        self._data = b""

    async def next(self) -> Part:
        while True:
            head, blank, rest = self._data.partition(b"\r\n\r\n")
            if blank:
                lines = head.decode().split("\r\n")[1:]  # after the boundary
                headers = dict(line.split(": ", 1) for line in lines)
                length = int(headers["Content-Length"])
                if len(rest) >= length + len(b"\r\n"):
                    self._data = rest[length + len(b"\r\n") :]
                    return headers, rest[:length]
            chunk = await asyncio.wait_for(self._response.content.readany(), timeout=READ_S)
            assert chunk, "the MJPEG response ended"
            self._data += chunk

    async def to_the_end(self) -> list[Part]:
        """The parts left until the response ends, which must be with the closing boundary and a clean end
        of its body (a body cut off raises `aiohttp.ClientPayloadError`)."""
        async with asyncio.timeout(WAIT_S), _naming("end of the MJPEG response"):
            self._data += await self._response.content.read()
        assert self._data.endswith(CLOSING_BOUNDARY), self._data[-64:]
        self._data = self._data.removesuffix(CLOSING_BOUNDARY)
        parts = []
        while self._data:
            parts.append(await self.next())
        return parts

    async def last_before_the_end(self) -> Part:
        """The last part before the closing boundary (`to_the_end`), after the one read last."""
        rest = await self.to_the_end()
        assert rest, "the closing boundary came straight after the part read last, saying nothing"
        return rest[-1]

    async def until(self, wanted: Callable[[Part], bool], what: str) -> Part:
        """The first part from now on that is ``wanted`` (``what``, named if none comes)."""
        async with asyncio.timeout(WAIT_S), _naming(what):
            while True:
                part = await self.next()
                if wanted(part):
                    return part


@contextlib.asynccontextmanager
async def _naming(what: str) -> AsyncIterator[None]:
    try:
        yield
    except TimeoutError:
        raise AssertionError(f"no {what} within {WAIT_S:.0f} s") from None


def image_of(part: Part) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(part[1], np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "the part is not a JPEG"
    return image


def is_frame(part: Part) -> bool:
    return "X-Segcast-Seq" in part[0]


def notice_of(state: str) -> Callable[[Part], bool]:
    return lambda part: part[0].get("X-Segcast-State") == state


def is_video_frame(image: np.ndarray) -> bool:
    """Whether ``image`` is a frame of the numbered video: its colour patches are there (none on a notice)."""
    return not colour_errors(image)


async def test_an_unreachable_cameras_mjpeg_shows_a_notice_of_the_documented_size(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam2", UNREACHABLE))
    full = Parts(await client.get("/api/streams/cam2/mjpeg"))
    notice = await full.until(notice_of("reconnecting"), "notice saying the camera is reconnecting")
    assert not is_frame(notice)
    assert image_of(notice).shape == (*NOTICE_SIZE, 3)
    again = await full.next()
    assert again[0]["X-Segcast-State"] == "reconnecting", "notices go on while the camera stays away"

    scaled = Parts(await client.get("/api/streams/cam2/mjpeg?max_width=320"))
    notice = await scaled.until(notice_of("reconnecting"), "scaled notice")
    assert image_of(notice).shape == (180, 320, 3)


class NoticeDeadlines:
    """Stands in for `server.http.pictures`' ``asyncio``, keeping each deadline at which an MJPEG handler stops
    waiting for a frame and sends a notice: when notices are due is read off these, not off a busy machine's clock.
    """

    def __init__(self, wanted: int) -> None:
        self.deadlines: list[float] = []
        self.all_set = asyncio.Event()
        self._wanted = wanted

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    def timeout_at(self, when: float) -> asyncio.Timeout:
        self.deadlines.append(when)
        if len(self.deadlines) == self._wanted:
            self.all_set.set()
        return asyncio.timeout_at(when)


async def test_notices_respect_a_max_fps_below_one_a_second(
    start_server: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At ``max_fps=0.2`` the next notice is due 5 s after the first, not a second later as by default."""
    recorder = NoticeDeadlines(wanted=2)
    monkeypatch.setattr(pictures, "asyncio", recorder)
    client = await start_server(StreamConfig("gone", "/no/such/file.mp4"))
    parts = Parts(await client.get("/api/streams/gone/mjpeg?max_fps=0.2"))
    first = await parts.next()
    assert not is_frame(first), first[0]
    async with asyncio.timeout(WAIT_S):  # only a hang guard: set once the first notice is sent
        await recorder.all_set.wait()
    first_due, next_due = recorder.deadlines[:2]
    # Due 5 s after the first was sent, however long that took: at the default rate it would be 1 s after.
    assert next_due - first_due > 4.0, recorder.deadlines


async def test_a_stream_whose_source_ends_switches_from_frames_to_notices(
    start_server: Start, numbered_video: Path
) -> None:
    client = await start_server(StreamConfig("cam", str(numbered_video)))  # played once, not looped
    parts = Parts(await client.get("/api/streams/cam/mjpeg?image=clean"))
    frame = await parts.until(is_frame, "frame of the video")
    assert is_video_frame(image_of(frame))
    notice = await parts.until(notice_of("ended"), "notice saying the video ended")
    image = image_of(notice)
    assert image.shape == (HEIGHT, WIDTH, 3), "a notice is the size of the stream's last frame"
    assert not is_video_frame(image), "the notice is no frame of the video"


async def test_an_ended_streams_mjpeg_goes_back_to_frames_when_they_return(
    start_server: Start, numbered_video: Path
) -> None:
    client = await start_server(StreamConfig("cam", str(numbered_video)))
    parts = Parts(await client.get("/api/streams/cam/mjpeg?image=clean"))
    await parts.until(notice_of("ended"), "notice saying the video ended")
    assert (await client.patch("/api/streams/cam", json={"loop": True})).status == 200
    last = number_of(image_of(await parts.until(is_frame, "frame")))  # the end repeats the last frame
    frame = await parts.until(lambda part: is_frame(part) and number_of(image_of(part)) != last, "new frame")
    assert is_video_frame(image_of(frame))
    for _ in range(5):
        headers, _ = await parts.next()
        assert "X-Segcast-Seq" in headers, f"a notice among the returned frames: {headers}"


async def test_a_live_streams_mjpeg_sends_only_frames(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=1&width=320&height=192"))
    parts = Parts(await client.get("/api/streams/cam/mjpeg"))
    await parts.until(is_frame, "first frame")  # a notice may come before: the stream is starting
    for _ in range(10):
        headers, _ = await parts.next()
        assert "X-Segcast-Seq" in headers, headers


async def test_viewers_of_one_notice_share_one_encoding() -> None:
    notices = Notices()
    lines = ("cam2: no picture", "reconnecting")
    jpegs = await asyncio.gather(*(notices.jpeg(lines, (640, 360), 80) for _ in range(20)))
    assert all(jpeg is jpegs[0] for jpeg in jpegs), "each viewer was given an encoding of its own"
    assert await notices.jpeg(lines, (640, 360), 80) is jpegs[0], "a notice is kept for the next viewer"
    assert await notices.jpeg(lines, (320, 180), 80) != jpegs[0], "another size is another notice"


async def test_the_notice_cache_keeps_the_most_recently_shown_and_draws_an_evicted_one_afresh(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Notices for many broken streams and sizes must not pile up; one still being shown stays kept."""
    drawn: list[tuple[str, ...]] = []
    render = notice.render_notice

    def drawing(lines: tuple[str, ...], size: tuple[int, int], jpeg_quality: int) -> bytes:
        drawn.append(lines)
        return render(lines, size, jpeg_quality)

    monkeypatch.setattr(notice, "render_notice", drawing)
    notices = Notices(max_cached=2)
    a, b, c = (("a: no picture", "offline"), ("b: no picture", "offline"), ("c: no picture", "offline"))
    for lines in (a, b, a, c, a, b):  # c evicts b, the least recently shown; a was shown after b
        await notices.jpeg(lines, (64, 36), 80)
    assert drawn == [a, b, c, b]


async def test_a_removed_streams_mjpeg_says_so_in_a_last_notice(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", LIVE_SCENE))
    parts = Parts(await client.get("/api/streams/cam/mjpeg"))
    await parts.until(is_frame, "first frame")
    assert (await client.delete("/api/streams/cam")).status == 204
    last = await parts.last_before_the_end()
    assert last[0].get("X-Segcast-State") == "removed", last[0]
    assert image_of(last).shape == (*LIVE_SCENE_SIZE, 3), "a notice the shape of the frames it follows"


async def test_a_stopping_servers_mjpeg_says_so_in_a_last_notice(start_server: Start) -> None:
    client = await start_server(StreamConfig("cam", LIVE_SCENE))
    parts = Parts(await client.get("/api/streams/cam/mjpeg"))
    await parts.until(is_frame, "first frame")
    stopping = asyncio.create_task(client.server.close())  # the runner's cleanup, as at SIGTERM
    try:
        last = await parts.last_before_the_end()
    finally:
        await stopping
    assert last[0].get("X-Segcast-State") == "stopped", last[0]
    assert image_of(last).shape == (*LIVE_SCENE_SIZE, 3)


async def test_an_mjpeg_whose_signed_token_expires_ends_cleanly_saying_so(start_server: Start) -> None:
    """Cut off, it was a broken image in Chromium (ERR_INCOMPLETE_CHUNKED_ENCODING), with no word of why."""
    client = await start_server(StreamConfig("cam", LIVE_SCENE), viewer_tokens=(VIEWER_TOKEN,))
    assert client.app is not None
    token = client.app[policy_key].sign_until(Role.VIEWER, int(time.time()) + 2)  # 1 to 2 s from now
    parts = Parts(await client.get("/api/streams/cam/mjpeg", params={"token": token}))
    last = await parts.last_before_the_end()
    assert last[0].get("X-Segcast-State") == "token-expired", last[0]
    assert image_of(last).shape == (*LIVE_SCENE_SIZE, 3)


def test_a_notice_names_the_stream_its_state_the_next_attempt_and_the_error() -> None:
    next_attempt = calendar.timegm((2024, 5, 1, 12, 30, 5))
    lines = notice_lines("cam2", StreamState.RECONNECTING, "connection refused", next_attempt, InferenceStatus(True))
    assert lines == ("cam2: no picture", "reconnecting", "next attempt at 12:30:05 UTC", "connection refused")


def test_a_live_stream_without_inference_says_so() -> None:
    down = InferenceStatus(False, "triton at 10.0.0.5:8001 does not answer", None)
    lines = notice_lines("cam", StreamState.LIVE, None, None, down)
    assert lines[1:] == ("inference unavailable", "triton at 10.0.0.5:8001 does not answer")


def test_a_notice_has_its_frames_shape_and_a_big_cameras_is_thinned() -> None:
    """A 4K camera's notice was drawn at 3840x2160: some 280 kB each second to each viewer for one line."""
    assert notice_size(None) == NOTICE_SIZE_PX
    assert notice_size((320, 192)) == (320, 192)
    assert notice_size((3840, 2160)) == (1280, 720)
    assert notice_size((7680, 1080)) == (1280, 180)
