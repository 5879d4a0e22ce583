"""What `pump` makes of a publisher whose packets come while no frame decodes.

Once a publisher's frames came, its packets alone keep it from being judged gone: after an outage aiortc
holds every frame behind the gap the outage left, and the packets are all that says the peer is back
(tests/test_webrtc_outage.py has the whole story over a real network). Each look that finds packets
without a frame steps over such a gap and asks for a keyframe; a buffer with no gap is left alone. Before
the first frame, packets are no proof of a working stream: the connect time-out holds.

The receiver is aiortc's own, with no network: the test puts packets into its jitter buffer and stamps its
source as having sent one, as aiortc does for each packet it receives. Every look `pump` takes at the
packets is counted, so "for many idle times" is a count of looks, not a wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import av
import pytest
from aiortc import RTCRtpReceiver, clock
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtp import RtpPacket

from server.webrtc import source as source_module
from server.webrtc.source import WebRTCSource, pump

pytestmark = pytest.mark.timeout(30)

#: How often `pump` looks at the packets here: short, so many looks take little time.
STALL_S = 0.01
#: The idle time here: a few looks. A publisher still there after `LOOKS` looks outlived it many times.
IDLE_S = 0.05
FIRST_FRAME_S = 0.05
LOOKS = 40
SSRC = 1234
#: RTP timestamps of three frames (90 kHz clock, 30 fps).
FRAME_1, FRAME_2, FRAME_3 = 3000, 6000, 9000


class OneFrameTrack(MediaStreamTrack):
    """A video track that gives ``frames`` frames, then none (its decoder waits behind a gap), never ending."""

    kind = "video"

    def __init__(self, frames: int = 1) -> None:
        super().__init__()
        self.frames = frames

    async def recv(self) -> Any:
        if self.frames > 0:
            self.frames -= 1
            return av.VideoFrame(16, 16, "yuv420p")
        await asyncio.Event().wait()  # `pump` gives up on it after STALL_S, and looks at the packets


class Receiving(RTCRtpReceiver):
    """aiortc's video receiver, its packets put in by the test: while ``arriving``, each look at its sources
    finds one stamped later than the last, as while packets keep coming."""

    def __init__(self) -> None:
        super().__init__("video", SimpleNamespace(state="new"))
        self.arriving = True
        self.looks = 0
        self._looked = asyncio.Event()

    @property
    def jitter(self) -> Any:
        return self._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]

    @property
    def decoder_error(self) -> Any:
        return self._RTCRtpReceiver__decoder_error  # type: ignore[attr-defined]

    def receive_packets(self, *packets: tuple[int, int]) -> None:
        """Put packets (sequence number, RTP timestamp) in the jitter buffer, as aiortc does as they come."""
        for sequence_number, timestamp in packets:
            self.jitter.add(RtpPacket(payload_type=96, sequence_number=sequence_number, timestamp=timestamp, ssrc=SSRC))

    def held(self) -> list[int]:
        """The sequence numbers the jitter buffer holds, oldest first."""
        return sorted(packet.sequence_number for packet in self.jitter._packets if packet is not None)

    def getSynchronizationSources(self) -> Any:
        self.looks += 1
        if self.arriving:
            stamped = clock.current_datetime() + timedelta(microseconds=self.looks)  # later at every look
            self._RTCRtpReceiver__active_ssrc[SSRC] = stamped  # type: ignore[attr-defined]
        self._looked.set()
        return super().getSynchronizationSources()

    async def looked(self, looks: int) -> None:
        while self.looks < looks:
            self._looked.clear()
            await self._looked.wait()


@asynccontextmanager
async def pumping(receiver: Receiving, track: OneFrameTrack) -> AsyncIterator[asyncio.Task[str | None]]:
    source = WebRTCSource("no-network")
    task = asyncio.create_task(pump(track, source, FIRST_FRAME_S, IDLE_S, receiver))
    try:
        yield task
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def ended_or_looked(pumped: asyncio.Task[str | None], receiver: Receiving, looks: int) -> bool:
    """Wait until ``pumped`` ended or took ``looks`` looks at the packets; True if it ended."""
    looked = asyncio.create_task(receiver.looked(looks))
    try:
        await asyncio.wait({looked, pumped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        looked.cancel()
    return pumped.done()


@pytest.fixture(autouse=True)
def _short_stalls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source_module, "STALL_S", STALL_S)


async def test_packets_without_frames_keep_a_connected_publisher_until_they_stop_then_the_idle_time_ends_it() -> None:
    """The idle time is refreshed by packets once frames came: a publisher whose frames are held behind a
    gap is not judged gone while its packets come, however long; once they stop, it is, after the idle time."""
    receiver = Receiving()
    async with pumping(receiver, OneFrameTrack(frames=1)) as pumped:
        # given a publisher whose first frame came, then only packets
        # when its packets keep coming without a frame, for many times the idle time
        # then it is not judged gone
        assert not await ended_or_looked(pumped, receiver, LOOKS), f"judged gone: {pumped.result()!r}"
        # when its packets stop, then it is judged gone by its idle time
        receiver.arriving = False
        assert await ended_or_looked(pumped, receiver, receiver.looks + LOOKS), "not judged gone without packets"
        assert pumped.result() == f"connection lost: no video for {IDLE_S:g} s"


async def test_packets_before_the_first_frame_do_not_hold_off_the_connect_time_out() -> None:
    """Until a frame came the time to connect holds, packets or not: packets that never make a frame are
    no working stream, and the peer is ended after ``first_timeout_s``."""
    receiver = Receiving()
    async with pumping(receiver, OneFrameTrack(frames=0)) as pumped:
        assert await ended_or_looked(pumped, receiver, LOOKS), "packets without a frame held off the connect time-out"
        assert pumped.result() == f"connection lost: no video for {FIRST_FRAME_S:g} s"


async def test_packets_held_behind_a_gap_are_stepped_over_and_a_keyframe_is_asked_for() -> None:
    """The PLI after a gap: a look that finds packets but no frame drops what waits before the gap (the
    frame it left unfinished) so that the frames after it can be decoded, and sets aiortc's decoder-error
    flag, on which the next packet asks the sender for a keyframe."""
    receiver = Receiving()
    # a frame whose third packet was lost in an outage, then two whole frames after it
    receiver.receive_packets((10, FRAME_1), (11, FRAME_1), (13, FRAME_2), (14, FRAME_2), (15, FRAME_3))
    assert receiver.held() == [10, 11, 13, 14, 15] and not receiver.decoder_error.is_set()
    async with pumping(receiver, OneFrameTrack(frames=1)) as pumped:
        assert not await ended_or_looked(pumped, receiver, 1)
        assert receiver.held() == [13, 14, 15], "the unfinished frame before the gap was not dropped"
        assert receiver.decoder_error.is_set(), "no keyframe asked for"


async def test_packets_in_order_are_left_alone_and_no_keyframe_is_asked_for() -> None:
    """Packets that wait for no gap (the frame is still coming) are not dropped, and no keyframe is asked for:
    a slow frame is no lost one."""
    receiver = Receiving()
    receiver.receive_packets((10, FRAME_1), (11, FRAME_1), (12, FRAME_1))
    async with pumping(receiver, OneFrameTrack(frames=1)) as pumped:
        assert not await ended_or_looked(pumped, receiver, LOOKS)
        assert receiver.held() == [10, 11, 12]
        assert not receiver.decoder_error.is_set()
