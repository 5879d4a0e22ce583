"""A stream's WebRTC playback feed and its players' tracks, without peers: aiortc's own VP8 and H.264
encoders take each player's frames, as its sender would, in an order the test chooses; each player's
"meta" data channel is a stand-in that keeps what was sent on it."""

from __future__ import annotations

import asyncio
import gc
import json
import threading
import weakref
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import av
import pytest
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.mediastreams import MediaStreamError

from server.delivery.encode import FramePacket, ImageKind, make_packet
from server.delivery.hub import Hub
from server.frames import Frame, FrameResult
from server.webrtc.playback import MAX_META_BUFFERED_BYTES, VIDEO_CLOCK_HZ, AnnotatedTrack, PlaybackFeed, render
from tests.support.numbered import numbered_image
from tests.support.polling import eventually

pytestmark = pytest.mark.timeout(60)

STREAM = "live"
FIRST_CAPTURE = 1_700_000_000.0
#: Capture times about 1/15 s apart, a few ms off, as a camera's are: pts on neither codec's own clock.
CAPTURE_OFFSETS_S = (0.0, 0.0646, 0.1308, 0.1976)
#: The most a player's RTP timestamp may trail its frame's pts: VP8's encoder goes through microseconds.
RTP_ROUNDING_TICKS = 1
ENCODERS = {"VP8": Vp8Encoder, "H264": H264Encoder}


class MetaChannel:
    """A player's open "meta" data channel: keeps the ``pts`` of each message sent on it."""

    readyState = "open"

    def __init__(self) -> None:
        self.bufferedAmount = 0
        self.pts: list[int] = []

    def send(self, text: str) -> None:
        self.pts.append(json.loads(text)["pts"])


def packet(seq: int, capture_time: float) -> FramePacket:
    frame = Frame(STREAM, seq, capture_time, seq / 15, numbered_image(seq))
    return make_packet(FrameResult(frame, (), 1.0), {})


def feed_pts(offset_s: float) -> int:
    """The pts a feed gives a frame captured ``offset_s`` after its first (computed as the feed does)."""
    return round((FIRST_CAPTURE + offset_s - FIRST_CAPTURE) * VIDEO_CLOCK_HZ)


@pytest.fixture
async def hub() -> Hub:
    return Hub(asyncio.get_running_loop())


@pytest.fixture
async def feed(hub: Hub) -> AsyncIterator[PlaybackFeed]:
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-render") as executor:
        playback = PlaybackFeed(STREAM, ImageKind.CLEAN, hub, executor, lambda stream_id: None)
        try:
            yield playback
        finally:
            await playback.close()


def add_player(feed: PlaybackFeed) -> tuple[AnnotatedTrack, MetaChannel]:
    track = AnnotatedTrack(STREAM)
    channel = MetaChannel()
    track.channel = channel  # type: ignore[assignment]
    feed.players.add(track)
    return track, channel


@pytest.mark.parametrize("codecs", [("H264", "VP8"), ("VP8", "H264"), ("VP8", "VP8")], ids="-then-".join)
async def test_each_player_sends_the_feeds_pts_in_its_metadata_and_rtp_time_whoever_encodes_first(
    hub: Hub, feed: PlaybackFeed, codecs: tuple[str, str]
) -> None:
    """Given two players of one stream, when the first player's encoder has encoded a frame before the
    second player takes it, then both players' metadata carry the feed's pts, and each player's RTP
    timestamp is that pts (before the sender's constant random offset), to within VP8's rounding.

    An encoder rewrites the frame it encodes to its codec's clock (H.264: 1/30 s; VP8: microseconds):
    a frame shared by the players gave the second one's metadata the first one's codec clock, and
    H.264's 1/30 s grid to a VP8 player's RTP timestamps."""
    (first, first_meta), (second, second_meta) = add_player(feed), add_player(feed)
    first_encoder, second_encoder = (ENCODERS[codec]() for codec in codecs)
    rtp_times: dict[AnnotatedTrack, list[int]] = {first: [], second: []}
    for seq, offset_s in enumerate(CAPTURE_OFFSETS_S):
        hub.publish_threadsafe(packet(seq, FIRST_CAPTURE + offset_s))
        for track, encoder in ((first, first_encoder), (second, second_encoder)):
            frame = await track.recv()
            _, rtp_time = await asyncio.to_thread(encoder.encode, frame)
            rtp_times[track].append(rtp_time)
    expected = [feed_pts(offset_s) for offset_s in CAPTURE_OFFSETS_S]
    assert first_meta.pts == expected
    assert second_meta.pts == expected, "the second player's metadata is on the first one's codec clock"
    for track in (first, second):
        behind = [pts - rtp_time for pts, rtp_time in zip(expected, rtp_times[track], strict=True)]
        assert all(0 <= ticks <= RTP_ROUNDING_TICKS for ticks in behind), f"RTP time - pts: {behind}"


async def test_a_keyframe_one_player_asked_for_is_not_forced_on_the_others(hub: Hub, feed: PlaybackFeed) -> None:
    """A browser asks its sender for a keyframe after a loss (PLI). VP8's encoder marks the frame it
    encodes as one (and never unmarks it): marked on a shared frame, every other player of the stream
    sent a keyframe too, many times the bytes of the frame it would have sent."""
    (asker, _), (other, _) = add_player(feed), add_player(feed)
    asker_encoder, other_encoder = Vp8Encoder(), Vp8Encoder()
    for seq, offset_s in enumerate(CAPTURE_OFFSETS_S):
        hub.publish_threadsafe(packet(seq, FIRST_CAPTURE + offset_s))
        asker_frame, other_frame = await asker.recv(), await other.recv()
        await asyncio.to_thread(asker_encoder.encode, asker_frame, seq == 2)
        assert other_frame.pict_type == av.video.frame.PictureType.NONE, f"frame {seq} forced to a keyframe"
        await asyncio.to_thread(other_encoder.encode, other_frame)


async def test_frame_times_only_go_forward_when_capture_times_repeat_or_step_back(hub: Hub, feed: PlaybackFeed) -> None:
    """Capture times are the wall clock's, which can step back (NTP) or repeat; the video clock and
    each metadata pts must not, or a receiver cannot tell frames apart or pair them."""
    track, channel = add_player(feed)
    sent: list[int | None] = []
    for seq, offset_s in enumerate((0.0, 0.0, -0.5, 0.1)):
        hub.publish_threadsafe(packet(seq, FIRST_CAPTURE + offset_s))
        sent.append((await track.recv()).pts)
    assert sent == channel.pts
    assert channel.pts == sorted(set(channel.pts)), "not strictly increasing"


async def test_metadata_is_skipped_while_the_data_channel_is_far_behind_but_the_video_goes_on(
    hub: Hub, feed: PlaybackFeed
) -> None:
    track, channel = add_player(feed)
    channel.bufferedAmount = MAX_META_BUFFERED_BYTES + 1
    hub.publish_threadsafe(packet(0, FIRST_CAPTURE))
    assert isinstance(await track.recv(), av.VideoFrame)
    assert channel.pts == [] and track.dropped_meta == 1
    channel.bufferedAmount = 0  # caught up
    hub.publish_threadsafe(packet(1, FIRST_CAPTURE + 0.1))
    frame = await track.recv()
    assert channel.pts == [frame.pts] and track.dropped_meta == 1


async def test_frames_a_player_had_no_time_for_are_counted_as_skipped_and_it_gets_the_newest() -> None:
    """Given three frames offered to a player whose encoder took none, then two were skipped (the
    ``/metrics`` count of what players skipped); the one it then takes is the newest, and is no skip."""
    track, channel = AnnotatedTrack(STREAM), MetaChannel()
    track.channel = channel  # type: ignore[assignment]
    offered = [
        render(packet(seq, FIRST_CAPTURE + offset_s), feed_pts(offset_s), ImageKind.CLEAN)
        for seq, offset_s in enumerate(CAPTURE_OFFSETS_S[:3])
    ]
    try:
        for rendered in offered:
            track.offer(rendered)
        assert track.dropped_frames == 2
        frame = await track.recv()
        newest = offered[-1].pts
        assert (frame.pts, channel.pts) == (newest, [newest]), "the newest frame, with its metadata only"
        assert track.dropped_frames == 2, "a frame taken is not a frame skipped"
    finally:
        track.stop()


async def test_stopping_a_track_ends_a_recv_waiting_for_a_frame() -> None:
    """A sender whose connection did not close cleanly may be waiting for a frame that no feed will give."""
    track = AnnotatedTrack(STREAM)
    waiting = asyncio.create_task(track.recv())
    await asyncio.sleep(0)  # one turn of the loop: the task runs up to its wait for a frame
    assert not waiting.done()
    track.stop()

    async def ended() -> bool:
        return waiting.done()

    await eventually(ended, what="the waiting recv to end")
    with pytest.raises(MediaStreamError):
        waiting.result()


async def test_a_closed_feed_leaves_the_hub(hub: Hub) -> None:
    """Its hub viewer, left behind, was offered every frame of the stream and held the feed for good:
    one more for each player that came and went."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-render") as executor:
        playback = PlaybackFeed(STREAM, ImageKind.CLEAN, hub, executor, lambda stream_id: None)
        track, _ = add_player(playback)
        assert hub.viewer_count(STREAM) == 1
        await playback.close()
    assert hub.viewer_count(STREAM) == 0
    assert track.readyState == "ended", "a player still in a closed feed is stopped"
    closed = weakref.ref(playback)
    del playback

    async def freed() -> bool:
        gc.collect()
        return closed() is None

    await eventually(freed, timeout_s=5.0, what="the closed feed to be freed")


async def test_a_players_frames_never_wait_behind_the_loops_default_executor(hub: Hub, feed: PlaybackFeed) -> None:
    """Each frame's copy for a player's encoder ran in the loop's default executor, which also starts and
    stops streams and removes publishers' (up to 2 s each): the player's video stalled behind them."""
    loop = asyncio.get_running_loop()
    released = threading.Event()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-default") as default:
        loop.set_default_executor(default)
        busy = loop.run_in_executor(None, released.wait, 60.0)  # a stream stopping, its camera stalled
        track, _ = add_player(feed)
        try:
            hub.publish_threadsafe(packet(0, FIRST_CAPTURE))
            receiving = asyncio.create_task(track.recv())

            async def received() -> bool:
                return receiving.done()

            await eventually(received, what="the player's frame while the default executor is busy")
            assert receiving.result().pts == feed_pts(0)
        finally:
            released.set()
            track.stop()
            await busy
