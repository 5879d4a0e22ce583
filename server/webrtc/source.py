"""A WebRTC peer's video track as a `Source`, so a browser's webcam is a stream like any other.

aiortc receives and decodes the peer's video on its own thread and hands `av.VideoFrame` values to
the event loop. `pump` takes them there and puts each into a `FrameHandover`, a latest-only slot
that never blocks the loop; the stream's reader thread takes the newest one, converts it to BGR
(the only pixel work, kept off the loop) and yields it like any camera would, at a steady size
(`steady_size`). When the peer goes
away, the peer registry stops the stream's reader first and then ends the handover, so that the
stream's end is announced once, by the registry, with the reason the peer went away.

A network outage of a few seconds leaves a gap in the video's packets that the sender can no longer
fill, and aiortc holds every later frame behind it until 512 more packets came (`skip_lost_packets`):
`pump` steps over such a gap and asks for a keyframe, and judges the peer lost by its packets, not
by decoded frames, so the stream goes on once the network is back.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import av
from aiortc import RTCRtpReceiver
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
#: How long `pump` waits for a frame before it looks at the publisher's packets: whether any still come,
#: and whether a gap holds their frames back. Longer than a lost packet's retransmission takes (a round
#: trip), shorter than the pause a person would call frozen.
STALL_S = 1.0


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
    track: MediaStreamTrack,
    source: WebRTCSource,
    first_timeout_s: float,
    idle_timeout_s: float,
    receiver: RTCRtpReceiver | None = None,
) -> str | None:
    """Move the track's frames into ``source`` until the track ends; return why it ended.

    None means the peer ended the track; a text means the stream's reader stopped reading (the
    stream was removed) or the connection was judged lost: no frame within ``first_timeout_s`` to
    connect, then nothing from the peer for ``idle_timeout_s`` (aiortc's own consent checks would take
    half a minute to notice a vanished peer). Given the track's ``receiver``, "nothing" means no
    packet, and while packets come without frames (`STALL_S`) a gap they wait behind is skipped
    (`skip_lost_packets`): after an outage frames come again a keyframe later, where aiortc alone
    would decode none for seconds more and the stream would be ended although its peer is back.
    """
    loop = asyncio.get_running_loop()
    timeout_s, heard_at = first_timeout_s, loop.time()  # of the last frame, or packet once frames came
    connected = False
    packets = _Packets(receiver) if receiver is not None else None
    while True:
        wait_s = min(STALL_S, heard_at + timeout_s - loop.time()) if packets is not None else timeout_s
        try:
            frame = await asyncio.wait_for(track.recv(), max(wait_s, 0.0))
        except MediaStreamError:
            return None
        except TimeoutError:
            if packets is not None and packets.arrived():
                skip_lost_packets(packets.receiver)
                if connected:
                    heard_at = loop.time()
            if loop.time() - heard_at < timeout_s:
                continue
            return f"connection lost: no video for {timeout_s:g} s"
        timeout_s, heard_at, connected = idle_timeout_s, loop.time(), True
        if source.handover.ended:
            return "the stream was removed"
        if isinstance(frame, av.VideoFrame):
            source.handover.put(frame)


class _Packets:
    """Whether a receiver got packets since the last look, by the time aiortc stamps each source with."""

    def __init__(self, receiver: RTCRtpReceiver) -> None:
        self.receiver = receiver
        self._latest: datetime | None = None

    def arrived(self) -> bool:
        latest = max((source.timestamp for source in self.receiver.getSynchronizationSources()), default=None)
        arrived = latest is not None and latest != self._latest
        self._latest = latest if latest is not None else self._latest
        return arrived


def skip_lost_packets(receiver: RTCRtpReceiver) -> bool:
    """Step over a gap that holds a video receiver's packets back from its decoder; True if there was one.

    aiortc's jitter buffer hands a frame on only once every packet before it has come. A gap the sender
    can no longer fill (an outage outlasts its retransmission history) holds every later frame until
    512 packets piled up behind it; aiortc then drops the gap and the unfinished frame before it and
    asks for a keyframe (a PLI), and video goes on (aiortc pull request #1418). This does the same as soon as
    it is called: `JitterBuffer.smart_remove` as aiortc calls it, and its decoder-error flag, which has
    the next packet send the PLI. A buffer whose packets are all in order is left alone. Both are
    private to aiortc 1.16.0: an aiortc without them is left to recover by itself, as before, and
    `tests/test_webrtc_outage.py` fails.
    """
    jitter: Any = getattr(receiver, "_RTCRtpReceiver__jitter_buffer", None)
    decoder_error = getattr(receiver, "_RTCRtpReceiver__decoder_error", None)
    slots, origin = getattr(jitter, "_packets", None), getattr(jitter, "_origin", None)
    if slots is None or origin is None or decoder_error is None:
        return False
    held = [slots[(origin + i) % jitter.capacity] is not None for i in range(jitter.capacity)]
    if False not in held or True not in held[held.index(False) :]:
        return False  # nothing waits behind a gap (or nothing came at all)
    jitter.smart_remove(1)
    decoder_error.set()
    return True
