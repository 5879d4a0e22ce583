"""A WebRTC peer's video track as a `Source`, so a browser's webcam is a stream like any other.

aiortc receives and decodes the peer's video on its own thread and hands `av.VideoFrame` values to
the event loop. `pump` takes them there and puts each into a `FrameHandover`, a latest-only slot
that never blocks the loop; the stream's reader thread takes the newest one, converts it to BGR
(the only pixel work, kept off the loop) and yields it like any camera would, at a steady size
(`steady_size`). When the peer goes
away, the peer registry stops the stream's reader first and then ends the handover, so that the
stream's end is announced once, by the registry, with the reason the peer went away.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.video.reformatter import VideoReformatter

from server.sources.base import Decoded

#: Browsers capture at up to 30 fps; the tracker is sized by this until the peer says otherwise.
DEFAULT_FPS = 30.0
#: How often a waiting reader looks at its stop event.
TAKE_POLL_S = 0.1
#: Sizes whose width-to-height ratios differ by less than this share are the same picture scaled.
SAME_ASPECT = 0.02
#: How long a sender may go without stepping up while below the camera size its offer gave. One that
#: settles below it is taken at the most it sent: scaled up to the camera size for good, every frame
#: and every viewer's JPEG would cost that size's work and bytes for a picture no sharper.
RAMP_UP_S = 10.0


class FrameHandover:
    """The newest frame from the loop to one reader thread: `put` overwrites (and counts), `take` waits.

    `put` and `end` only hold a lock for an assignment, so the loop never waits on the reader.
    """

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._frame: av.VideoFrame | None = None
        self._ended = False
        self.dropped = 0

    def put(self, frame: av.VideoFrame) -> None:
        with self._ready:
            if self._ended:
                return
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
            self._ready.notify()

    def end(self) -> None:
        """No more frames will come; a waiting `take` returns at once."""
        with self._ready:
            self._ended = True
            self._frame = None
            self._ready.notify_all()

    @property
    def ended(self) -> bool:
        with self._ready:
            return self._ended

    def take(self, timeout_s: float) -> av.VideoFrame | None:
        """The newest frame, or None after ``timeout_s`` or once ended."""
        with self._ready:
            if self._frame is None and not self._ended:
                self._ready.wait(timeout_s)
            frame, self._frame = self._frame, None
            return frame


class WebRTCSource:
    """One published video track. It can be read once: a WebRTC peer cannot be reopened from here.

    ``media_time`` counts from the first frame the reader takes, by the frames' timestamps (aiortc
    has already unwrapped the 32-bit RTP clock), so the tracker sees the real time between frames
    even when the network or the reader skipped some. ``capture_size``, the size the publisher's
    camera captures at, is the steady size its frames start from (`steady_size`), so a sender
    ramping up from a small start keeps its tracks; one that stops stepping up below it for
    `RAMP_UP_S` is taken at the most it sent.
    """

    live = True

    def __init__(self, peer: str, fps: float = DEFAULT_FPS, capture_size: tuple[int, int] | None = None) -> None:
        self.fps = fps
        self._peer = peer
        self._capture_size = capture_size
        self.handover = FrameHandover()

    def describe(self) -> str:
        return f"webrtc:{self._peer}"

    def end(self) -> None:
        self.handover.end()

    def open(self, stop: threading.Event) -> Iterator[Decoded]:
        first_pts: int | None = None
        size = self._capture_size
        ramp = _RampUp() if size is not None else None  # towards the capture size, until reached or settled
        scaler = VideoReformatter()  # one for the stream: PyAV sets one up per frame otherwise (`UprightImages`)
        try:
            while not stop.is_set():
                frame = self.handover.take(TAKE_POLL_S)
                if frame is None:
                    if self.handover.ended:
                        return
                    continue
                pts = frame.pts or 0
                if first_pts is None:
                    first_pts = pts
                media_time = float((pts - first_pts) * frame.time_base) if frame.time_base else 0.0
                received = (frame.width, frame.height)
                if ramp is not None and (settled := ramp.settled(received, media_time if frame.time_base else None)):
                    size, ramp = settled, None  # tracks restart once, at the most it sent
                size = steady_size(size, received)
                if ramp is not None and size == received:  # the camera size reached, or a new shape
                    ramp = None
                image = scaler.reformat(frame, format="bgr24", width=size[0], height=size[1]).to_ndarray()
                yield Decoded(image, media_time)
        finally:
            if stop.is_set():  # the reader stopped for good (the stream was removed): tell the pump
                self.handover.end()


class _RampUp:
    """A publisher stepping up towards its camera's size: settled once it has not stepped up for `RAMP_UP_S`."""

    def __init__(self) -> None:
        self._largest: tuple[int, int] | None = None
        self._stepped_at = 0.0
        self._started = time.monotonic()

    def settled(self, received: tuple[int, int], media_time: float | None) -> tuple[int, int] | None:
        """The largest size it sent, if it has settled below the camera size; else None.

        Timed on the frames' own clock, or on this machine's where they carry none.
        """
        now = media_time if media_time is not None else time.monotonic() - self._started
        if self._largest is None or received[0] > self._largest[0]:
            self._largest, self._stepped_at = received, now
        return self._largest if now - self._stepped_at >= RAMP_UP_S else None


def steady_size(steady: tuple[int, int] | None, received: tuple[int, int]) -> tuple[int, int]:
    """The size to hand a published frame of size ``received`` on at, after frames at ``steady``.

    A browser lowers its sending resolution when the network or its CPU is short and raises it again
    later. A frame of another size ends every track (`server.tracking`: boxes on two scales cannot be
    one track), so a frame that is the same picture smaller is scaled back up to the steady size:
    ids, trails and zone visits go on. A larger one becomes the steady size, as does another shape
    (a phone turned on its side): detail is worth a restart. A sender ramping up from a small start
    (a low first bandwidth estimate) would restart tracks at each of its first steps; given the
    camera's capture size as the first steady size (`WebRTCSource`), it does not.
    """
    if steady is None:
        return received
    (width, height), (new_width, new_height) = steady, received
    same_shape = abs(width * new_height - new_width * height) <= SAME_ASPECT * width * new_height
    return steady if same_shape and new_width <= width else received


async def pump(
    track: MediaStreamTrack, source: WebRTCSource, first_timeout_s: float, idle_timeout_s: float
) -> str | None:
    """Move the track's frames into ``source`` until the track ends; return why it ended.

    None means the peer ended the track; a text means the stream's reader stopped reading (the
    stream was removed) or the connection was judged lost because no frame came in time:
    ``first_timeout_s`` to connect, then ``idle_timeout_s`` between frames
    (aiortc's own consent checks would take half a minute to notice a vanished peer).
    """
    timeout_s = first_timeout_s
    while True:
        try:
            frame = await asyncio.wait_for(track.recv(), timeout_s)
        except MediaStreamError:
            return None
        except TimeoutError:
            return f"connection lost: no video for {timeout_s:g} s"
        timeout_s = idle_timeout_s
        if source.handover.ended:
            return "the stream was removed"
        if isinstance(frame, av.VideoFrame):
            source.handover.put(frame)
