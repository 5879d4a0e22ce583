"""A published camera whose network drops for a few seconds and comes back goes on, as the same stream.

An aiortc publisher sends through a UDP relay (tests/support/udp_relay.py) that drops every packet,
both ways, for `OUTAGE_S`: longer than the sender's retransmission history covers, so the gap it leaves
in the video is never filled, and aiortc alone would decode nothing more for seconds after the network
came back (until 512 packets piled up behind the gap), by which time the stream was ended as lost.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription

from server.scene import Scene
from server.webrtc.source import WebRTCSource, pump
from tests.support.polling import eventually
from tests.support.udp_relay import UdpRelay, first_candidate, rewrite
from tests.test_webrtc import SceneTrack, lan_peer

#: Longer than an aiortc sender keeps packets to send again (128 of them) at this scene's rate.
OUTAGE_S = 3.5
#: The server's own: a publisher silent for this long is gone. The outage is shorter.
IDLE_S = 5.0
FIRST_FRAME_S = 20.0
#: Frames that must come after the network is back; at 15 fps, about a second of video.
FRAMES_AFTER = 15
#: aiortc's video jitter buffer, in packets: it lets frames past a gap once this many came behind it.
JITTER_PACKETS = 512
#: Generous bounds for what should take a second or two: they only stop a broken run.
WAIT_S = 15.0

pytestmark = pytest.mark.timeout(60)


class TakenFrames:
    """Takes a `WebRTCSource`'s frames as the stream's reader would, counting them; `wait_for` a count."""

    def __init__(self, source: WebRTCSource) -> None:
        self.source = source
        self.count = 0
        self._counted = asyncio.Condition()

    async def run(self) -> None:
        while not self.source.handover.ended:
            if await asyncio.to_thread(self.source.handover.take, 0.1) is not None:
                async with self._counted:
                    self.count += 1
                    self._counted.notify_all()

    async def wait_for(self, count: int) -> None:
        async with self._counted:
            await self._counted.wait_for(lambda: self.count >= count)


async def connect_through(relay: UdpRelay, publisher: RTCPeerConnection, receiving: RTCPeerConnection) -> None:
    """Connect ``publisher`` to ``receiving`` with all their packets passing through ``relay``."""
    await relay.start()
    await publisher.setLocalDescription(await publisher.createOffer())
    offer = publisher.localDescription.sdp
    relay.offerer = first_candidate(offer)
    await receiving.setRemoteDescription(RTCSessionDescription(rewrite(offer, relay.offerer_seen_at), "offer"))
    await receiving.setLocalDescription(await receiving.createAnswer())
    answer = receiving.localDescription.sdp
    relay.answerer = first_candidate(answer)
    await publisher.setRemoteDescription(RTCSessionDescription(rewrite(answer, relay.answerer_seen_at), "answer"))


@asynccontextmanager
async def pumped_through_relay(idle_s: float) -> AsyncIterator[tuple[UdpRelay, TakenFrames, asyncio.Task[str | None]]]:
    """A scene published through a relay to an aiortc receiver whose track `pump` moves into a source."""
    relay = UdpRelay()
    publisher, receiving = lan_peer(), lan_peer()
    publisher.addTrack(SceneTrack(Scene(seed=3), start=260))
    tracks: asyncio.Queue[Any] = asyncio.Queue()
    receiving.on("track", tracks.put_nowait)
    source = WebRTCSource("relay")
    taken = TakenFrames(source)
    tasks: list[asyncio.Task[Any]] = []
    try:
        await connect_through(relay, publisher, receiving)
        track = await tracks.get()
        receiver: RTCRtpReceiver = next(t.receiver for t in receiving.getTransceivers() if t.receiver.track is track)
        pumping = asyncio.create_task(pump(track, source, FIRST_FRAME_S, idle_s, receiver))
        tasks = [pumping, asyncio.create_task(taken.run())]
        yield relay, taken, pumping
    finally:
        source.end()
        for task in tasks:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        await publisher.close()
        await receiving.close()
        relay.close()


async def outage(relay: UdpRelay) -> None:
    """Drop everything for `OUTAGE_S`, then let it through again: the outage's length is the stimulus."""
    relay.blackout = True
    await asyncio.sleep(OUTAGE_S)
    relay.blackout = False


async def frames_or_end(taken: TakenFrames, count: int, pumping: asyncio.Task[str | None]) -> None:
    """Wait until ``count`` frames were taken; fail at once, saying why, if the pump ended first."""
    counted = asyncio.create_task(taken.wait_for(count))
    try:
        done, _ = await asyncio.wait({counted, pumping}, timeout=WAIT_S, return_when=asyncio.FIRST_COMPLETED)
    finally:
        counted.cancel()
    assert not pumping.done(), f"the publisher was judged gone: {pumping.result()!r}"
    assert counted in done, f"{taken.count} frames, not {count}, within {WAIT_S:g} s"


async def test_frames_come_again_soon_after_a_network_outage_longer_than_the_senders_retransmissions() -> None:
    async with pumped_through_relay(IDLE_S) as (relay, taken, pumping):
        # given a publisher whose frames arrive
        await frames_or_end(taken, FRAMES_AFTER, pumping)
        # when its network is out for longer than any packet can be sent again, then back
        dropped = relay.from_offerer.dropped
        await outage(relay)
        lost, passed, before = relay.from_offerer.dropped - dropped, relay.from_offerer.passed, taken.count
        assert 0 < lost < JITTER_PACKETS, "the outage is to leave a gap that aiortc waits on"
        # then frames come again, before aiortc alone would have let any past the gap, and the
        # publisher was never judged gone
        await frames_or_end(taken, before + 1, pumping)
        assert relay.from_offerer.passed - passed < JITTER_PACKETS - lost
        await frames_or_end(taken, before + FRAMES_AFTER, pumping)


async def test_a_publisher_whose_packets_stop_is_still_judged_gone_after_the_idle_time() -> None:
    async with pumped_through_relay(idle_s=1.0) as (relay, taken, pumping):
        # given a publisher whose frames arrive
        await frames_or_end(taken, FRAMES_AFTER, pumping)
        # when nothing more gets through
        relay.blackout = True
        # then it is judged gone, by its idle time
        async with asyncio.timeout(WAIT_S):
            reason = await pumping
        assert reason == "connection lost: no video for 1 s"


async def stream_events(client: TestClient, stream_id: str, seen: list[dict[str, Any]], live: asyncio.Event) -> None:
    """Every ``status`` and ``removed`` event of ``stream_id`` into ``seen``; ``live`` once it is live."""
    async with client.ws_connect("/ws") as ws:
        assert (await ws.receive_json())["type"] == "hello"
        await ws.send_json({"type": "subscribe", "streams": [stream_id], "image": "none"})
        async for message in ws:
            if message.type is not WSMsgType.TEXT:
                continue
            event = json.loads(message.data)
            if event.get("stream") == stream_id and event["type"] in ("status", "removed"):
                seen.append(event)
                if event.get("state") == "live":
                    live.set()


async def frames_read(client: TestClient, stream_id: str) -> int:
    response = await client.get(f"/api/streams/{stream_id}")
    assert response.status == 200, f"the stream is gone: {await response.text()}"
    return int((await response.json())["frames_read"])


async def test_a_published_camera_whose_network_was_out_for_seconds_goes_on_as_the_same_stream(
    start_server: Any,
) -> None:
    client: TestClient = await start_server()
    relay = UdpRelay()
    publisher = lan_peer()
    publisher.addTrack(SceneTrack(Scene(seed=3), start=260))
    seen: list[dict[str, Any]] = []
    live = asyncio.Event()
    watching = asyncio.create_task(stream_events(client, "door", seen, live))
    try:
        await relay.start()
        await publisher.setLocalDescription(await publisher.createOffer())
        offer = publisher.localDescription.sdp
        relay.offerer = first_candidate(offer)
        body = {"type": "offer", "sdp": rewrite(offer, relay.offerer_seen_at), "stream": "door", "fps": 15}
        response = await client.post("/api/webrtc/publish", json=body)
        answer = await response.json()
        assert response.status == 200, answer
        relay.answerer = first_candidate(answer["sdp"])
        await publisher.setRemoteDescription(
            RTCSessionDescription(rewrite(answer["sdp"], relay.answerer_seen_at), "answer")
        )
        # given a published camera, live
        async with asyncio.timeout(WAIT_S):
            await live.wait()
        # when its network is out for a few seconds, less than the idle time, then back
        await outage(relay)
        before = await frames_read(client, "door")

        # then its frames are read again, by the same stream, which never ended
        async def read_again() -> bool:
            return await frames_read(client, "door") >= before + FRAMES_AFTER

        await eventually(read_again, WAIT_S, "frames read after the outage")
        assert [event for event in seen if event["type"] == "removed" or event.get("state") == "ended"] == []
    finally:
        watching.cancel()
        with suppress(asyncio.CancelledError):
            await watching
        await publisher.close()
        relay.close()
