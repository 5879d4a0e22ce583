"""Playing a stream over WebRTC: its annotated frames as a video track, its tracks on a data channel.

Players may ask for the clean frames instead, to draw overlays themselves from the metadata as the
viewer does with JPEGs. Each stream and image kind with WebRTC players has one `PlaybackFeed`: a
metadata-only hub viewer (so the encoder makes no JPEG for it) whose task turns each new result
into a picture once, drawing any overlay and converting it to the encoders' YUV 4:2:0 on a worker
thread and never on the loop, then offers that `Rendered` picture to every player's latest-only
slot. A player whose encoder falls behind skips frames and never delays the others. Encoding stays
per player, as WebRTC adapts each peer's bitrate on its own; so does the `av.VideoFrame` an encoder
takes, a copy of the shared picture (see `Rendered`), made in the player's own thread. The hub counts
each player as one of the stream's viewers, and the feed as none (`Hub.add_viewer` ``audience``).

Timing: a feed stamps its frames with ``pts`` on the 90 kHz video clock, from their capture times.
For each frame a player sends, the "meta" data channel carries the frame's metadata (the protocol's
``frame`` message) plus that ``pts``, just before the frame is encoded. The RTP timestamp a receiver
sees is that pts plus a per-sender random offset (VP8's encoder may make it one tick less: it passes
the time through a microsecond clock), so a client pairs metadata with pictures by pts differences,
allowing for that tick (see web/webrtc.js).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from aiortc import RTCDataChannel
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from server.delivery.annotate import annotated_picture
from server.delivery.encode import FramePacket, ImageKind
from server.delivery.hub import Hub
from server.delivery.viewer import Subscription, Viewer

log = logging.getLogger(__name__)

VIDEO_CLOCK_HZ = 90_000
VIDEO_TIME_BASE = Fraction(1, VIDEO_CLOCK_HZ)
#: Metadata not yet sent on a slow channel beyond this is skipped, so it never queues up unboundedly.
MAX_META_BUFFERED_BYTES = 256 * 1024

#: What aiortc's VP8 and H.264 encoders take; a frame in any other format is converted by each of them.
VIDEO_FORMAT = "yuv420p"


@dataclass(frozen=True, slots=True)
class Rendered:
    """One frame of a feed, for all its players: its picture, converted once, and its ``pts``.

    ``picture`` holds the `VIDEO_FORMAT` planes as PyAV lays them out (`av.VideoFrame.to_ndarray`),
    read-only, as every player reads it. Each player's encoder gets a `video_frame` of its own:
    aiortc's encoders rewrite the frame they are given, in their own threads (its pts and time base
    to their codec's clock, its picture type to I for a keyframe one player's browser asked for,
    which VP8 never resets), so a frame shared would give one player's metadata another's clock,
    and other players that keyframe's bytes.
    """

    picture: np.ndarray
    pts: int
    packet: FramePacket

    def video_frame(self) -> av.VideoFrame:
        """A frame of ``picture`` for one encoder: a copy of its planes, not another conversion. A
        fraction of a millisecond for 1080p, but per player and per frame: made off the event loop."""
        frame = av.VideoFrame.from_ndarray(self.picture, format=VIDEO_FORMAT)
        frame.pts, frame.time_base = self.pts, VIDEO_TIME_BASE
        return frame


def render(packet: FramePacket, pts: int, kind: ImageKind) -> Rendered:
    """The picture of ``packet`` in `VIDEO_FORMAT`, annotated or clean; runs on the feed's worker thread.

    Converted here, once for all players, rather than by each player's encoder. A picture with an odd
    width or height loses its last column or row: H.264 takes only even sizes in 4:2:0, and the
    metadata keeps the full size, which a client scales the picture to.
    """
    result = packet.result
    image = annotated_picture(result) if kind is ImageKind.ANNOTATED else result.frame.image
    height, width = image.shape[:2]
    frame = av.VideoFrame.from_ndarray(image[: height - height % 2, : width - width % 2], format="bgr24")
    picture = frame.reformat(format=VIDEO_FORMAT).to_ndarray()
    picture.flags.writeable = False
    return Rendered(picture, pts, packet)


def meta_message(packet: FramePacket, pts: int) -> str:
    """The ``frame`` metadata with the pts of the picture it describes (serialised once, by the encoder)."""
    return f'{packet.metadata_text[:-1]},"pts":{pts}}}'


class AnnotatedTrack(MediaStreamTrack):
    """One player's video track: hands aiortc's sender the newest rendered frame, and its metadata.

    Each frame's copy for its encoder (`Rendered.video_frame`) is made off the loop, in a thread of the
    player's own. aiortc's sender then encodes it in the loop's default executor (``run_in_executor(None,
    ...)``), where streams are also started and stopped and a publisher's removed (up to 2 s each), so a
    player's frame may wait behind those once, for its encoding, which segcast does not place; its copy
    does not queue there as well. One thread is enough: its sender takes a frame only once it has
    encoded the one before.
    """

    kind = "video"

    def __init__(self, stream_id: str) -> None:
        super().__init__()
        self.stream_id = stream_id
        self.channel: RTCDataChannel | None = None
        #: Frames its encoder was too slow to take, replaced in its slot by a newer one.
        self.dropped_frames = 0
        #: Metadata not sent: the channel was too far behind (`MAX_META_BUFFERED_BYTES`), or it was too large.
        self.dropped_meta = 0
        self._latest: Rendered | None = None
        self._wake = asyncio.Event()
        self._copies = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"webrtc-copy-{stream_id}")

    def offer(self, rendered: Rendered) -> None:
        if self._latest is not None:
            self.dropped_frames += 1
        self._latest = rendered
        self._wake.set()

    async def recv(self) -> av.VideoFrame:
        while self.readyState == "live" and self._latest is None:
            self._wake.clear()
            await self._wake.wait()
        if self.readyState != "live" or self._latest is None:  # stopped: its copying thread is let go
            raise MediaStreamError
        rendered, self._latest = self._latest, None
        self._send_meta(rendered.packet, rendered.pts)
        return await asyncio.get_running_loop().run_in_executor(self._copies, rendered.video_frame)

    def stop(self) -> None:
        super().stop()
        self._wake.set()  # a waiting recv must see the end, not wait for a frame that never comes
        self._copies.shutdown(wait=False)  # a copy under way ends in a fraction of a millisecond

    def _send_meta(self, packet: FramePacket, pts: int) -> None:
        channel = self.channel
        if channel is None or channel.readyState != "open":
            return
        if channel.bufferedAmount > MAX_META_BUFFERED_BYTES:
            self.dropped_meta += 1
            return
        try:
            channel.send(meta_message(packet, pts))
        except ValueError:  # over the peer's maximum message size: lose this one, never the video
            if not self.dropped_meta:
                log.warning("[%s] frame %d metadata too large for the WebRTC data channel", self.stream_id, packet.seq)
            self.dropped_meta += 1


class PlaybackFeed:
    """One stream's rendered frames for all its WebRTC players. Create it on the loop; `close` it there."""

    def __init__(
        self, stream_id: str, kind: ImageKind, hub: Hub, executor: Executor, on_removed: Callable[[str], None]
    ) -> None:
        self.stream_id = stream_id
        self.kind = kind
        self.players: set[AnnotatedTrack] = set()
        self._on_removed = on_removed
        self._hub = hub
        self._executor = executor
        self._viewer = Viewer(f"webrtc-{stream_id}-{kind.value}")
        self._first_capture: float | None = None
        self._last_pts = -1
        hub.add_viewer(self._viewer, audience=lambda: len(self.players))
        hub.subscribe(self._viewer, {stream_id: Subscription(image=None)})
        self._task = asyncio.create_task(self._run(), name=f"webrtc-feed-{stream_id}")

    async def close(self) -> None:
        """Stop rendering and leave the hub (whose viewer would otherwise hold this feed for good); the
        players left are stopped even if that fails."""
        self._task.cancel()
        try:
            self._hub.remove_viewer(self._viewer)
            with suppress(asyncio.CancelledError):
                await self._task
        finally:
            for player in self.players:
                player.stop()

    def _pts(self, capture_time: float) -> int:
        """Capture time on the video clock, strictly increasing even if the wall clock steps back."""
        if self._first_capture is None:
            self._first_capture = capture_time
        pts = max(self._last_pts + 1, round((capture_time - self._first_capture) * VIDEO_CLOCK_HZ))
        self._last_pts = pts
        return pts

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._viewer.closed:
            events, deliveries = await self._viewer.take()
            if any(event.removes(self.stream_id) for event in events):
                self._on_removed(self.stream_id)  # the players' peers are closed, not left frozen
            if not deliveries:
                continue
            packet = deliveries[-1].packet
            pts = self._pts(packet.result.frame.capture_time)
            try:
                rendered = await loop.run_in_executor(self._executor, render, packet, pts, self.kind)
            except Exception:
                log.exception("[%s] could not render frame %d for WebRTC", self.stream_id, packet.seq)
                continue
            for player in self.players:
                player.offer(rendered)
