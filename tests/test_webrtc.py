"""WebRTC both ways, with aiortc peers over loopback: a generated scene published as a camera, and
annotated video with its metadata played back; plus the offer checks, limits and clean endings."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcicetransport import connection_kwargs
from aiortc.sdp import SessionDescription

from server.app import create_app
from server.config import Settings, StreamConfig
from server.config_values import ConfigError
from server.delivery.encode import FramePacket, ImageKind
from server.delivery.viewer import ViewerLimits
from server.frames import Frame, FrameResult
from server.http.keys import hub_key
from server.inference.models import BUNDLED_MODEL
from server.scene import Scene, TrueObject
from server.sources.base import StreamState
from server.webrtc import IceServer, IceServerError, WebRTCConfig
from server.webrtc import peers as peers_module
from server.webrtc.config import ICE_SERVERS_ENV
from server.webrtc.peer import Peer, PeerLimitError
from server.webrtc.peers import PeerRegistry
from server.webrtc.playback import VIDEO_FORMAT, render
from server.webrtc.routes import peers_key, webrtc_config_key
from server.webrtc.source import FrameHandover
from tests.conftest import NUMBERED_FRAMES
from tests.support.numbered import colour_errors, number_of, numbered_image
from tools.track_report import box_iou, is_apart, match_boxes

Start = Callable[..., Awaitable[TestClient]]
ClientFactory = Callable[..., Awaitable[TestClient]]

#: Frames 260 to 370 of this scene hold two or three objects, never closer than 40 px to each other:
#: WebRTC is under test here, not how the tracker copes with crossings (tests/test_end_to_end.py).
SCENE_SEED = 3
SCENE_START = 260
VIDEO_CLOCK_HZ = 90_000
PUBLISHED_S = 6.0  # of the published scene to check identities on: 90 frames, inside the clean part
MIN_RESULTS = 20  # processed frames in that time, even on a slow machine
PUBLISHED_SLOWDOWN = 2.0  # sent at half speed, stamped at full: 3.3 processed frames a second are 1.7
PLAYED_FRAMES = 12
MAX_PLAYED_FRAMES = 150  # ten seconds of the scene at 15 fps
MAX_FRAMES_BEFORE_META = 5  # frames a player may get before its data channel is open
END_WITHIN_S = 5.0
MAX_OFFSET_FRAMES = 30  # how far the server's first frame may be from the publisher's first

pytestmark = pytest.mark.timeout(90)


class SceneTrack(MediaStreamTrack):
    """The generated scene as a camera: frame ``i`` at ``i / fps`` seconds, rendered off the loop.

    ``slowdown`` sends the frames that many times slower in wall time, stamped as before: a slow
    machine then need only keep up with a slower camera, and the media times are unchanged.
    """

    kind = "video"

    def __init__(self, scene: Scene, start: int = 0, frames: int | None = None, slowdown: float = 1.0) -> None:
        super().__init__()
        self.scene = scene
        self.start = start
        self.frames = frames
        self.slowdown = slowdown
        self.sent = 0
        self._started: float | None = None

    async def recv(self) -> av.VideoFrame:
        if self._started is None:
            self._started = time.monotonic()
        if self.frames is not None and self.sent >= self.frames:
            await asyncio.Event().wait()  # a camera that stopped sending but never said goodbye
        due = self._started + self.sent * self.slowdown / self.scene.fps
        await asyncio.sleep(max(0.0, due - time.monotonic()))  # pacing at the camera's rate, not a sync
        image, _ = await asyncio.to_thread(self.scene.render, self.start + self.sent)
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts, frame.time_base = self.sent * VIDEO_CLOCK_HZ // self.scene.fps, Fraction(1, VIDEO_CLOCK_HZ)
        self.sent += 1
        return frame


def lan_peer() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def offer_to(client: TestClient, path: str, pc: RTCPeerConnection, **extra: object) -> dict[str, Any]:
    """Send ``pc``'s offer, apply the answer, return the response body (which names the stream)."""
    await pc.setLocalDescription(await pc.createOffer())
    response = await client.post(path, json={"type": "offer", "sdp": pc.localDescription.sdp, **extra})
    body = await response.json()
    assert response.status == 200, body
    await pc.setRemoteDescription(RTCSessionDescription(body["sdp"], body["type"]))
    return body


def directions(sdp: str) -> list[tuple[str, str | None]]:
    """Each media section's kind and direction, in order."""
    return [(media.kind, media.direction) for media in SessionDescription.parse(sdp).media]


@asynccontextmanager
async def feed(client: TestClient, stream_id: str) -> AsyncIterator[Any]:
    async with client.ws_connect("/ws") as ws:
        assert (await ws.receive_json())["type"] == "hello"
        await ws.send_json({"type": "subscribe", "streams": [stream_id]})
        yield ws


async def next_event(ws: Any, *types: str) -> dict[str, Any]:
    """The next text message of one of ``types`` (JPEGs and other messages are skipped)."""
    async for message in ws:
        if message.type is WSMsgType.TEXT:
            event = json.loads(message.data)
            if event["type"] in types:
                return event  # type: ignore[no-any-return]
    raise AssertionError(f"socket closed before a {types} message")


async def wait_state(ws: Any, stream_id: str, state: str) -> dict[str, Any]:
    while True:
        event = await next_event(ws, "status")
        if event["stream"] == stream_id and event["state"] == state:
            return event


async def wait_removed(ws: Any, stream_id: str) -> None:
    while (await next_event(ws, "removed"))["stream"] != stream_id:
        pass


def match_same_class(truths: list[TrueObject], tracks: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """Pairs (truth index, track index) of the best one-to-one box match among tracks of the object's class.

    Matching within a class keeps a stray second detection of another class on the same object
    (which a small model makes now and then) from passing for an id switch.
    """
    pairs = []
    for name in {truth.class_name for truth in truths}:
        same = [i for i, truth in enumerate(truths) if truth.class_name == name]
        candidates = [j for j, track in enumerate(tracks) if track["class"] == name]
        boxes = [tracks[j]["box"] for j in candidates]
        pairs += [(same[a], candidates[b]) for a, b in match_boxes([truths[i] for i in same], boxes)]
    return pairs


def best_offset(scene: Scene, metas: list[dict[str, Any]]) -> int:
    """Which scene frame the server's media time 0 was: the one whose truth the boxes fit best.

    The server's clock starts at the first frame its reader took, which need not be the first sent.
    """

    def fit(first: int) -> float:
        total = 0.0
        for meta in metas[:8]:
            truths, tracks = scene.render(first + round(meta["media_time"] * scene.fps))[1], meta["tracks"]
            total += sum(box_iou(truths[i].box, tracks[j]["box"]) for i, j in match_same_class(truths, tracks))
        return total

    return max(range(SCENE_START, SCENE_START + MAX_OFFSET_FRAMES), key=fit)


async def test_published_scene_is_tracked_with_the_generators_identities(start_server: Start) -> None:
    # The model's first inference takes seconds; a tracker that waited that long between two frames
    # would rightly lose fast objects. Another stream pays for it before the scene is published.
    client = await start_server(StreamConfig("warm-up", "scene:?seed=1"))
    scene = Scene(seed=SCENE_SEED)
    publisher = lan_peer()
    publisher.addTrack(SceneTrack(scene, start=SCENE_START, slowdown=PUBLISHED_SLOWDOWN))
    metas: list[dict[str, Any]] = []
    try:
        async with feed(client, "*") as ws:
            await next_event(ws, "frame")
            assert (await client.delete("/api/streams/warm-up")).status == 204
            body = await offer_to(client, "/api/webrtc/publish", publisher, stream="cam", fps=scene.fps)
            assert body["stream"] == "cam"
            while not metas or metas[-1]["media_time"] < PUBLISHED_S:
                if (meta := await next_event(ws, "frame"))["stream"] == "cam":
                    metas.append(meta)
        listed = {s["id"]: s for s in (await (await client.get("/api/streams")).json())["streams"]}
        assert listed["cam"]["state"] == "live" and listed["cam"]["source"] == "webrtc:127.0.0.1"
    finally:
        await publisher.close()

    assert len(metas) >= MIN_RESULTS, f"only {len(metas)} frames processed in {PUBLISHED_S} s"
    first = best_offset(scene, [m for m in metas if m["tracks"]])
    ids_per_object: dict[int, set[int]] = defaultdict(set)
    objects_per_id: dict[int, set[int]] = defaultdict(set)
    matched = clear = 0
    for meta in metas:
        truths = scene.render(first + round(meta["media_time"] * scene.fps))[1]
        for i, j in match_same_class(truths, meta["tracks"]):
            truth, track = truths[i], meta["tracks"][j]
            if is_apart(truth, truths, scene.width, scene.height):
                ids_per_object[truth.object_id].add(track["id"])
                objects_per_id[track["id"]].add(truth.object_id)
                matched += 1
        clear += sum(is_apart(t, truths, scene.width, scene.height) for t in truths)
    assert clear > 0 and matched >= 0.9 * clear, f"only {matched} of {clear} clear objects were tracked"
    switches = {obj: ids for obj, ids in ids_per_object.items() if len(ids) > 1}
    assert not switches, f"objects that changed track id while apart from others: {switches}"
    shared = {tid: objs for tid, objs in objects_per_id.items() if len(objs) > 1}
    assert not shared, f"track ids given to more than one object: {shared}"


async def test_closing_the_publisher_ends_and_removes_its_stream(start_server: Start) -> None:
    client = await start_server()
    publisher = lan_peer()
    publisher.addTrack(SceneTrack(Scene(seed=1)))
    async with feed(client, "*") as ws:
        stream_id = (await offer_to(client, "/api/webrtc/publish", publisher))["stream"]
        assert stream_id.startswith("webcam-")
        await wait_state(ws, stream_id, "live")
        await publisher.close()
        async with asyncio.timeout(END_WITHIN_S):
            await wait_state(ws, stream_id, "ended")
            await wait_removed(ws, stream_id)
    streams = (await (await client.get("/api/streams")).json())["streams"]
    assert stream_id not in [s["id"] for s in streams]
    assert not [t.name for t in threading.enumerate() if t.name == f"reader-{stream_id}"]


async def test_a_publisher_that_took_a_just_freed_id_outlives_the_old_publishers_end(
    start_server: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A publisher that leaves frees its stream's id before its ``ended`` reaches the loop: a page
    reloaded and publishing again under that id in between was closed for the old page's end."""
    client = await start_server()
    registry, hub = client.app[peers_key], client.app[hub_key]
    ends: list[tuple[str, StreamState, str | None]] = []
    announce = hub.state_threadsafe

    def hold_the_ends(stream_id: str, state: StreamState, error: str | None) -> None:
        if state is StreamState.ENDED:
            ends.append((stream_id, state, error))
        else:
            announce(stream_id, state, error)

    monkeypatch.setattr(hub, "state_threadsafe", hold_the_ends)
    old, new = lan_peer(), lan_peer()
    old.addTrack(SceneTrack(Scene(seed=1)))
    new.addTrack(SceneTrack(Scene(seed=2)))
    try:
        async with feed(client, "cam") as ws:
            # Given a publisher of "cam" that left, its id free, its end not yet on the loop
            await offer_to(client, "/api/webrtc/publish", old, stream="cam")
            (leaving,) = registry._peers
            registry._close_soon(leaving, "connection lost")  # what its connection closing calls
            assert leaving.closing is not None
            await leaving.closing
            assert ends == [("cam", StreamState.ENDED, "connection lost")]
            # and a new publisher of "cam", live
            await offer_to(client, "/api/webrtc/publish", new, stream="cam")
            await wait_state(ws, "cam", "live")
        (taken,) = registry._peers
        # When the old publisher's end reaches the loop
        hub.announce_state(*ends[0])
        # Then the new publisher is not closed for it, and its stream stays
        assert taken.closing is None
        assert (await client.get("/api/streams/cam")).status == 200
        assert new.connectionState == "connected" and taken.pc.connectionState == "connected"
    finally:
        await old.close()
        await new.close()


async def test_a_published_stream_takes_new_zones_but_cannot_be_patched_into_a_broken_one(start_server: Start) -> None:
    client = await start_server()
    publisher = lan_peer()
    publisher.addTrack(SceneTrack(Scene(seed=1)))
    try:
        async with feed(client, "*") as ws:
            stream_id = (await offer_to(client, "/api/webrtc/publish", publisher))["stream"]
            await wait_state(ws, stream_id, "live")
        response = await client.patch(f"/api/streams/{stream_id}", json={"uri": "scene:?seed=2"})
        assert response.status == 409 and "not its uri" in (await response.json())["error"]
        after = await (await client.get(f"/api/streams/{stream_id}")).json()
        assert after["state"] == "live" and after["source"].startswith("webrtc:")
        # Zones and lines change in place (no reopening): a browser's webcam can have them too.
        zone = {"name": "all", "points": [[0, 0], [1, 0], [1, 1]], "units": "fraction"}
        response = await client.patch(f"/api/streams/{stream_id}", json={"zones": [zone]})
        assert response.status == 200, await response.text()
        after = await response.json()
        assert after["state"] == "live" and [z["name"] for z in after["options"]["zones"]] == ["all"]
    finally:
        await publisher.close()


async def test_a_published_stream_is_never_saved_to_the_config_file(start_server: Start, tmp_path: Path) -> None:
    """It says so (``persistable``), and ``?persist=1`` is refused before anything changes, not answered
    200 for a save that never happens."""
    path = tmp_path / "segcast.toml"
    path.write_text("[server]\nport = 8080\n")
    client = await start_server(config_path=path)
    publisher = lan_peer()
    publisher.addTrack(SceneTrack(Scene(seed=1)))
    zone = {"name": "all", "points": [[0, 0], [1, 0], [1, 1]], "units": "fraction"}
    try:
        async with feed(client, "*") as ws:
            stream_id = (await offer_to(client, "/api/webrtc/publish", publisher))["stream"]
            await wait_state(ws, stream_id, "live")
        assert (await (await client.get(f"/api/streams/{stream_id}")).json())["persistable"] is False
        response = await client.patch(f"/api/streams/{stream_id}?persist=1", json={"zones": [zone]})
        refusal = (await response.json())["error"]
        assert response.status == 409 and "nothing was changed" in refusal and "browser's camera" in refusal
        assert (await (await client.get(f"/api/streams/{stream_id}")).json())["options"]["zones"] == []
        response = await client.patch(f"/api/streams/{stream_id}", json={"zones": [zone]})
        assert response.status == 200, await response.text()
        assert path.read_text() == "[server]\nport = 8080\n"
    finally:
        await publisher.close()


async def test_a_publisher_that_goes_silent_is_ended_as_lost(aiohttp_client: ClientFactory) -> None:
    app = create_app(Settings(model=str(BUNDLED_MODEL)))
    app[webrtc_config_key] = WebRTCConfig(publish_idle_timeout_s=1.0)
    client = await aiohttp_client(app)
    publisher = lan_peer()
    publisher.addTrack(SceneTrack(Scene(seed=1), frames=5))
    try:
        async with feed(client, "quiet") as ws:
            await offer_to(client, "/api/webrtc/publish", publisher, stream="quiet")
            await wait_state(ws, "quiet", "live")
            async with asyncio.timeout(END_WITHIN_S):
                ended = await wait_state(ws, "quiet", "ended")
                await wait_removed(ws, "quiet")
        assert "connection lost" in ended["error"]
    finally:
        await publisher.close()


async def test_a_published_stream_that_fails_closes_its_publisher(start_server: Start) -> None:
    """Frames over ``max_frame_side`` fail the stream; the peer must not go on sending them for ever."""
    client = await start_server(max_frame_side=320)
    publisher = lan_peer()
    publisher.addTrack(SceneTrack(Scene(seed=1)))  # 640x384
    closed = asyncio.Event()
    publisher.on("connectionstatechange", lambda: publisher.connectionState == "closed" and closed.set())
    try:
        async with feed(client, "big") as ws:
            await offer_to(client, "/api/webrtc/publish", publisher, stream="big")
            failed = await wait_state(ws, "big", "failed")
            assert "max_frame_side" in failed["error"]
            async with asyncio.timeout(END_WITHIN_S):
                await wait_removed(ws, "big")
                await closed.wait()
    finally:
        await publisher.close()
    assert (await client.get("/api/streams/big")).status == 404


async def test_a_publisher_that_gives_its_cameras_size_is_processed_at_it_from_the_first_frame(
    start_server: Start,
) -> None:
    """A browser sends small first and steps up to its camera's size (each step would end every
    track); told that size in the offer, the stream processes the small start at it."""
    client = await start_server()
    publisher = lan_peer()
    publisher.addTrack(SceneTrack(Scene(seed=1)))  # 640x384: the small start of a 1280x768 camera
    try:
        async with feed(client, "cam") as ws:
            await offer_to(client, "/api/webrtc/publish", publisher, stream="cam", width=1280, height=768)
            frame = await next_event(ws, "frame")
    finally:
        await publisher.close()
    assert (frame["width"], frame["height"]) == (1280, 768)


async def test_a_publisher_offering_two_videos_and_audio_is_received_only_on_the_first_video(
    start_server: Start,
) -> None:
    """A second video is answered inactive, not received: aiortc would decode it into a queue no one reads."""
    client = await start_server()
    publisher = lan_peer()
    publisher.addTrack(SceneTrack(Scene(seed=1)))
    publisher.addTrack(SceneTrack(Scene(seed=2)))
    publisher.addTransceiver("audio", direction="sendrecv")
    try:
        body = await offer_to(client, "/api/webrtc/publish", publisher, stream="two")
        assert directions(body["sdp"]) == [("video", "recvonly"), ("video", "inactive"), ("audio", "inactive")]
    finally:
        await publisher.close()


async def test_a_publisher_whose_video_never_came_does_not_hold_up_shutdown(
    aiohttp_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiortc ends a closed connection's incoming track only once its transport had started: a
    publisher closed before its video came left its pump waiting for the first frame, and a server
    stopping waited 10 s for it (twice `CLOSE_TIMEOUT_S`), then cancelled it."""
    monkeypatch.setattr(peers_module, "FIRST_FRAME_TIMEOUT_S", 3600.0)
    monkeypatch.setattr(peers_module, "CLOSE_TIMEOUT_S", 3600.0)
    app = create_app(Settings(model=str(BUNDLED_MODEL)))
    await aiohttp_client(app)
    registry = app[peers_key]
    publisher = lan_peer()
    publisher.addTrack(SceneTrack(Scene(seed=1)))
    try:
        await publisher.setLocalDescription(await publisher.createOffer())
        await registry.publish(publisher.localDescription, "cam", 15.0, "192.0.2.7")  # its answer is never used
        await asyncio.wait_for(registry.close(), 60)  # without the fix: the pump's hour
    finally:
        await publisher.close()


@pytest.mark.parametrize("image", ["annotated", "clean"])
async def test_a_player_receives_frames_with_their_metadata(start_server: Start, image: str) -> None:
    client = await start_server(StreamConfig("live", "scene:?seed=1"))
    player = lan_peer()
    player.addTransceiver("video", direction="recvonly")
    channel = player.createDataChannel("meta")
    metas: list[dict[str, Any]] = []
    channel.on("message", lambda text: metas.append(json.loads(text)))
    tracks: asyncio.Queue[MediaStreamTrack] = asyncio.Queue()
    player.on("track", tracks.put_nowait)
    try:
        await offer_to(client, "/api/webrtc/play/live", player, image=image)
        track = await tracks.get()
        frames: list[av.VideoFrame] = []
        # The scene starts empty: play on until its first object is in the metadata too.
        while len(frames) < PLAYED_FRAMES or not any(m["tracks"] for m in metas):
            assert len(frames) < MAX_PLAYED_FRAMES, "no object ever appeared in the metadata"
            frames.append(await track.recv())
    finally:
        await player.close()
    for frame in frames:
        assert isinstance(frame, av.VideoFrame)
        assert frame.to_ndarray(format="bgr24").shape == (384, 640, 3)
    assert all(m["type"] == "frame" and m["stream"] == "live" for m in metas)
    paired = [meta is not None for meta in paired_metadata(frames, metas)]
    first = paired.index(True)
    assert first <= MAX_FRAMES_BEFORE_META, f"no metadata for the first {first} frames"
    assert all(paired[first:]), f"frames without their metadata: {[i for i, ok in enumerate(paired) if not ok]}"


def paired_metadata(frames: list[av.VideoFrame], metas: list[dict[str, Any]]) -> list[dict[str, Any] | None]:
    """Each frame's metadata (None before the data channel opened), by the one offset that pairs most.

    The receiver's pts count from its first frame, the metadata's from the feed's first: one constant
    offset (to within rounding) must pair every frame with its metadata, except the first few, sent
    while the data channel was still opening.
    """

    def pairing(offset: int) -> list[dict[str, Any] | None]:
        return [next((m for m in metas if abs(f.pts + offset - m["pts"]) <= 2), None) for f in frames]

    offsets = {m["pts"] - f.pts for f in frames[:PLAYED_FRAMES] for m in metas}
    return max((pairing(offset) for offset in offsets), key=lambda found: sum(m is not None for m in found))


async def test_a_player_gets_each_picture_with_its_own_metadata_in_its_colours(
    start_server: Start, numbered_video: Path
) -> None:
    """The pictures say which frame they are: metadata one frame out of step, or red turned blue, fails."""
    client = await start_server(StreamConfig("live", str(numbered_video), loop=True))
    player = lan_peer()
    player.addTransceiver("video", direction="recvonly")
    channel = player.createDataChannel("meta")
    metas: list[dict[str, Any]] = []
    channel.on("message", lambda text: metas.append(json.loads(text)))
    tracks: asyncio.Queue[MediaStreamTrack] = asyncio.Queue()
    player.on("track", tracks.put_nowait)
    try:
        await offer_to(client, "/api/webrtc/play/live", player, image="clean")
        track = await tracks.get()
        frames = [await track.recv() for _ in range(2 * PLAYED_FRAMES)]
    finally:
        await player.close()
    pairs = [(f, m) for f, m in zip(frames, paired_metadata(frames, metas), strict=True) if m is not None]
    assert len(pairs) >= PLAYED_FRAMES, f"only {len(pairs)} frames came with metadata"
    for frame, meta in pairs[-PLAYED_FRAMES:]:  # past the first, blurred, pictures of the video encoder
        image = frame.to_ndarray(format="bgr24")
        assert number_of(image) == meta["seq"] % NUMBERED_FRAMES, f"another frame's picture than {meta['seq']}"
        assert colour_errors(image) == []


async def test_a_player_that_offers_to_send_is_answered_sendonly_and_still_plays(start_server: Start) -> None:
    """A player's video is never received (aiortc would decode it into a queue no one reads), nor its audio."""
    client = await start_server(StreamConfig("live", "scene:?seed=1"))
    player = lan_peer()
    player.addTransceiver(SceneTrack(Scene(seed=2)), direction="sendrecv")
    player.addTransceiver("audio", direction="sendrecv")
    tracks: asyncio.Queue[MediaStreamTrack] = asyncio.Queue()
    player.on("track", tracks.put_nowait)
    try:
        body = await offer_to(client, "/api/webrtc/play/live", player)
        assert directions(body["sdp"]) == [("video", "sendonly"), ("audio", "inactive")]
        async with asyncio.timeout(3 * END_WITHIN_S):
            frame = await (await tracks.get()).recv()
        assert isinstance(frame, av.VideoFrame)
    finally:
        await player.close()


def test_frames_are_converted_for_the_encoders_once_per_feed_not_by_each_player() -> None:
    """Each player's encoder gets a frame of its own (tests/test_webrtc_playback.py), a copy of one
    picture converted once; aiortc's encoders take it as it is."""
    image = numbered_image(3)
    height, width = image.shape[:2]
    result = FrameResult(Frame("live", 3, time.time(), 0.2, image), (), 1.0)
    packet = FramePacket(result, result.metadata_json(), json.dumps(result.metadata_json()))
    rendered = render(packet, 90, ImageKind.CLEAN)
    assert not rendered.picture.flags.writeable, "every player reads the one picture"
    frame = rendered.video_frame()
    assert frame.format.name == VIDEO_FORMAT == "yuv420p"
    assert (frame.width, frame.height, frame.pts) == (width, height, 90)
    assert number_of(frame.to_ndarray(format="bgr24")) == 3


@pytest.mark.parametrize("codec", ["video/VP8", "video/H264"])
async def test_a_stream_of_odd_width_and_height_plays_in_either_codec(start_server: Start, codec: str) -> None:
    """4:2:0 video has even sides (H.264 refuses others): the last column and row are left out."""
    client = await start_server(StreamConfig("odd", "scene:?seed=1&width=321&height=241"))
    player = lan_peer()
    transceiver = player.addTransceiver("video", direction="recvonly")
    transceiver.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == codec])
    tracks: asyncio.Queue[MediaStreamTrack] = asyncio.Queue()
    player.on("track", tracks.put_nowait)
    try:
        body = await offer_to(client, "/api/webrtc/play/odd", player)
        assert codec.removeprefix("video/") in body["sdp"]
        async with asyncio.timeout(3 * END_WITHIN_S):
            frame = await (await tracks.get()).recv()
    finally:
        await player.close()
    assert isinstance(frame, av.VideoFrame) and (frame.width, frame.height) == (320, 240)


class NumberedPictures:
    """Stands in for a `Scene` in `SceneTrack`: pictures carrying their index and pure colour patches."""

    fps = 15

    def render(self, index: int) -> tuple[np.ndarray, list[TrueObject]]:
        return numbered_image(index), []


async def test_a_published_camera_keeps_its_colours(start_server: Start) -> None:
    client = await start_server()
    publisher = lan_peer()
    publisher.addTrack(SceneTrack(NumberedPictures()))  # type: ignore[arg-type]
    try:
        async with client.ws_connect("/ws") as ws:
            assert (await ws.receive_json())["type"] == "hello"
            await ws.send_json({"type": "subscribe", "streams": ["cam"], "image": "clean"})
            await offer_to(client, "/api/webrtc/publish", publisher, stream="cam", fps=NumberedPictures.fps)
            checked = 0
            async for message in ws:
                if message.type is WSMsgType.BINARY:
                    image = cv2.imdecode(np.frombuffer(message.data, np.uint8), cv2.IMREAD_COLOR)
                    checked += 1
                    if checked > 3:  # past the first, blurred, pictures of the video encoder
                        assert colour_errors(image) == []
                    if checked == 8:
                        break
    finally:
        await publisher.close()
    assert checked == 8


async def test_playing_an_unknown_stream_or_image_kind_is_refused(start_server: Start) -> None:
    client = await start_server(StreamConfig("live", "scene:?seed=1"))
    response = await client.post("/api/webrtc/play/nope", json={"type": "offer", "sdp": "v=0\r\n"})
    assert response.status == 404 and "nope" in (await response.json())["error"]
    offer = {"type": "offer", "sdp": "v=0\r\nm=video 9", "image": "sepia"}
    response = await client.post("/api/webrtc/play/live", json=offer)
    assert response.status == 400 and "clean" in (await response.json())["error"]


@pytest.mark.parametrize(
    ("path", "extra", "named"),
    [
        ("/api/webrtc/play/live", {"imgae": "clean"}, "'imgae'"),
        ("/api/webrtc/play/live", {"stream": "cam"}, "'stream'"),
        ("/api/webrtc/publish", {"image": "clean", "frame_rate": 30}, "'image', 'frame_rate'"),
    ],
)
async def test_an_offer_with_a_key_the_endpoint_does_not_know_is_refused_naming_it(
    start_server: Start, path: str, extra: dict[str, object], named: str
) -> None:
    """Silently ignored, ``"imgae": "clean"`` would play the annotated frames the client did not ask for."""
    client = await start_server(StreamConfig("live", "scene:?seed=1"))
    pc = lan_peer()
    pc.addTransceiver("video", direction="sendrecv")  # an offer either endpoint would answer
    await pc.setLocalDescription(await pc.createOffer())
    await pc.close()
    response = await client.post(path, json={"type": "offer", "sdp": pc.localDescription.sdp, **extra})
    error = (await response.json())["error"]
    assert response.status == 400 and named in error and "sdp" in error, error
    streams = (await (await client.get("/api/streams")).json())["streams"]
    assert [s["id"] for s in streams] == ["live"], "nothing was started"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"not json", "JSON"),
        (b"[1, 2]", "JSON"),
        (b"[" * 60_000, "JSON"),
        (json.dumps({"type": "offer", "sdp": "v=0\r\n" + "m=video 9\r\n" * 50}).encode(), "media sections"),
        (json.dumps({"type": "offer", "sdp": "v=0\r" + "m=video 9\r" * 50}).encode(), "media sections"),
        (json.dumps({"type": "offer", "sdp": "v=0\r\n" + "m=video 9\r\n" * 5}).encode(), "5 media sections; at most 4"),
        (json.dumps({"type": "offer", "sdp": "v=0\r\n" + "m=video 9\r\n" * 4}).encode(), "SDP is malformed"),
        (b'{"type": "answer", "sdp": "v=0"}', "offer"),
        (b'{"type": "offer"}', "sdp"),
        (b'{"type": "offer", "sdp": "v=0\\r\\nthis is not sdp"}', "media section"),
        (b'{"type": "offer", "sdp": "v=0\\r\\nm=video abc\\r\\n"}', "the offer's SDP is malformed: send the SDP text"),
        (b'{"type": "offer", "sdp": "v=0\\r\\nm=video 9", "stream": "no spaces"}', "stream"),
        (b'{"type": "offer", "sdp": "v=0\\r\\nm=video 9", "fps": 0}', "'fps' must be a number from 1 to 120"),
        (b'{"type": "offer", "sdp": "v=0\\r\\nm=video 9", "fps": 121}', "'fps' must be a number from 1 to 120"),
        (b'{"type": "offer", "sdp": "v=0\\r\\nm=video 9", "fps": true}', "'fps' must be a number from 1 to 120"),
        (b'{"type": "offer", "sdp": "v=0\\r\\nm=video 9", "fps": 120}', "SDP is malformed"),
        (b'{"type": "offer", "sdp": "v=0\\r\\nm=video 9", "width": 640}', "both 'width' and 'height'"),
        (b'{"type": "offer", "sdp": "v=0\\r\\nm=video 9", "width": 640, "height": 4.5}', "whole pixels"),
        (b'{"type": "offer", "sdp": "v=0\\r\\nm=video 9", "width": true, "height": 480}', "whole pixels"),
        (b'{"type": "offer", "sdp": "v=0\\r\\nm=video 9", "width": 8, "height": 480}', "at least 16"),
        (b'{"type": "offer", "sdp": "v=0\\r\\nm=video 9", "width": 8192, "height": 4320}', "max_frame_side"),
        (b'{"type": "offer", "sdp": "v=0\\r\\nm=video 9\\r\\na=mid:\\ud800"}', "lone surrogate"),
    ],
)
async def test_malformed_offers_get_400_with_a_message(start_server: Start, body: bytes, expected: str) -> None:
    client = await start_server()
    response = await client.post("/api/webrtc/publish", data=body, headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert expected in (await response.json())["error"]


async def test_an_offer_without_video_is_refused(start_server: Start) -> None:
    client = await start_server(StreamConfig("live", "scene:?seed=1"))
    for path in ("/api/webrtc/publish", "/api/webrtc/play/live"):
        pc = lan_peer()
        pc.createDataChannel("meta")
        await pc.setLocalDescription(await pc.createOffer())
        response = await client.post(path, json={"type": "offer", "sdp": pc.localDescription.sdp})
        await pc.close()
        assert response.status == 400 and "video" in (await response.json())["error"]


@pytest.mark.parametrize("direction", ["sendonly", "inactive"])
async def test_a_play_offer_that_cannot_receive_video_is_refused(start_server: Start, direction: str) -> None:
    client = await start_server(StreamConfig("live", "scene:?seed=1"))
    pc = lan_peer()
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp.replace("a=recvonly", f"a={direction}")
    await pc.close()
    response = await client.post("/api/webrtc/play/live", json={"type": "offer", "sdp": sdp})
    assert response.status == 400 and "recvonly" in (await response.json())["error"]


async def test_oversized_offers_and_taken_ids_are_refused(start_server: Start) -> None:
    client = await start_server(StreamConfig("live", "scene:?seed=1"))
    huge = json.dumps({"type": "offer", "sdp": "v=0\r\n" + "a=x\r\n" * 20_000})
    response = await client.post("/api/webrtc/publish", data=huge)
    assert response.status == 413 and "bytes" in (await response.json())["error"]

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length to refuse it by
        yield huge.encode()

    response = await client.post("/api/webrtc/publish", data=chunked())
    assert response.status == 413 and "bytes" in (await response.json())["error"]
    publisher = lan_peer()
    publisher.addTrack(SceneTrack(Scene(seed=1)))
    await publisher.setLocalDescription(await publisher.createOffer())
    offer = {"type": "offer", "sdp": publisher.localDescription.sdp, "stream": "live"}
    response = await client.post("/api/webrtc/publish", json=offer)
    await publisher.close()
    assert response.status == 409 and "already exists" in (await response.json())["error"]


async def test_peers_beyond_the_limit_are_refused(aiohttp_client: ClientFactory) -> None:
    app = create_app(Settings(model=str(BUNDLED_MODEL), streams=(StreamConfig("live", "scene:?seed=1"),)))
    app[webrtc_config_key] = WebRTCConfig(max_peers=1)
    client = await aiohttp_client(app)
    first, second = lan_peer(), lan_peer()
    for pc in (first, second):
        pc.addTransceiver("video", direction="recvonly")
    try:
        await offer_to(client, "/api/webrtc/play/live", first)
        await second.setLocalDescription(await second.createOffer())
        response = await client.post(
            "/api/webrtc/play/live", json={"type": "offer", "sdp": second.localDescription.sdp}
        )
        assert response.status == 503 and "too many" in (await response.json())["error"]
        # The registry checks again where it adds a peer, so offers read in parallel cannot overfill it.
        with pytest.raises(PeerLimitError, match="too many WebRTC peers"):
            await app[peers_key].play(second.localDescription, "live", ImageKind.ANNOTATED, "127.0.0.1")
    finally:
        await first.close()
        await second.close()


@pytest.mark.parametrize("proxy_elsewhere", [False, True])
async def test_one_client_address_cannot_take_every_player_slot(
    aiohttp_client: ClientFactory, proxy_elsewhere: bool
) -> None:
    """One client may not take all the slots with players (loopback is not counted per address: a proxy
    on this machine), unless ``max_viewers_per_address`` was raised (many clients behind one address);
    a site publishing its cameras from one address is limited only in all (a publisher has no
    WebSocket to fall back to), and fewer viewers in all change nothing."""
    limits = ViewerLimits(max_viewers_per_address=500) if proxy_elsewhere else ViewerLimits(max_viewers=20)
    streams = (StreamConfig("live", "scene:?seed=1"),)
    app = create_app(Settings(model=str(BUNDLED_MODEL), streams=streams, viewer_limits=limits))
    app[webrtc_config_key] = WebRTCConfig(max_peers=5, max_peers_per_address=1)
    await aiohttp_client(app)
    registry = app[peers_key]
    players = [lan_peer() for _ in range(4)]
    publisher = lan_peer()
    try:
        offers = []
        for pc in players:
            pc.addTransceiver("video", direction="recvonly")
            await pc.setLocalDescription(await pc.createOffer())
            offers.append(pc.localDescription)
        publisher.addTrack(SceneTrack(Scene(seed=1)))
        await publisher.setLocalDescription(await publisher.createOffer())
        await registry.publish(publisher.localDescription, "cam", 15.0, "192.0.2.7")
        await registry.play(offers[0], "live", ImageKind.ANNOTATED, "192.0.2.7")
        if proxy_elsewhere:
            await registry.play(offers[1], "live", ImageKind.ANNOTATED, "192.0.2.7")
        else:
            with pytest.raises(PeerLimitError, match=r"192\.0\.2\.7 has its limit of 1 WebRTC players"):
                await registry.play(offers[1], "live", ImageKind.ANNOTATED, "192.0.2.7")
            await registry.play(offers[1], "live", ImageKind.ANNOTATED, "127.0.0.1")
            await registry.play(offers[2], "live", ImageKind.ANNOTATED, "127.0.0.1")
            await registry.play(offers[3], "live", ImageKind.ANNOTATED, "192.0.2.8")
    finally:
        for pc in (*players, publisher):
            await pc.close()


async def vanishing_player_offer(client: TestClient, stream_id: str) -> None:
    """Offer to play, then go away before ICE connects, as Chrome does when the viewer falls back."""
    pc = lan_peer()
    pc.addTransceiver("video", direction="recvonly")
    pc.createDataChannel("meta")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp.replace("a=end-of-candidates\r\n", "")  # Chrome never writes it
    response = await client.post(f"/api/webrtc/play/{stream_id}", json={"type": "offer", "sdp": sdp})
    await pc.close()
    assert response.status == 200, await response.text()


class LoggedEvent(logging.Handler):
    """``event`` is set once a record containing ``text`` is logged (peers.py logs on the loop)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.event = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


async def test_a_player_that_never_connects_frees_its_slot(
    aiohttp_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(Settings(model=str(BUNDLED_MODEL), streams=(StreamConfig("live", "scene:?seed=1"),)))
    app[webrtc_config_key] = WebRTCConfig(max_peers=1, play_connect_timeout_s=0.5)
    client = await aiohttp_client(app)
    caplog.set_level(logging.INFO, logger="server.webrtc.peers")
    closed = LoggedEvent("WebRTC player 127.0.0.1 closed: not connected within 0.5 s")
    logging.getLogger("server.webrtc.peers").addHandler(closed)
    try:
        await vanishing_player_offer(client, "live")
        with pytest.raises(PeerLimitError):
            app[peers_key].check_room("127.0.0.1")
        await asyncio.wait_for(closed.event.wait(), END_WITHIN_S)
    finally:
        logging.getLogger("server.webrtc.peers").removeHandler(closed)
    await vanishing_player_offer(client, "live")  # into the slot it freed


async def test_a_connected_player_outlives_the_connect_timeout(aiohttp_client: ClientFactory) -> None:
    """Frames keep coming past the time a player must have connected by. That time is long enough for a
    loaded machine's ICE and DTLS to finish (half a second was not, under a full CI run)."""
    timeout_s = 2.0
    app = create_app(Settings(model=str(BUNDLED_MODEL), streams=(StreamConfig("live", "scene:?seed=1"),)))
    app[webrtc_config_key] = WebRTCConfig(play_connect_timeout_s=timeout_s)
    client = await aiohttp_client(app)
    player = lan_peer()
    player.addTransceiver("video", direction="recvonly")
    tracks: list[MediaStreamTrack] = []
    player.on("track", tracks.append)
    try:
        offered_at = time.monotonic()
        await offer_to(client, "/api/webrtc/play/live", player, image="clean")
        async with asyncio.timeout(3 * END_WITHIN_S):
            await tracks[0].recv()
            past_deadline = offered_at + timeout_s + 1.0
            while time.monotonic() < past_deadline:  # frames keep coming after the deadline has passed
                await tracks[0].recv()
        assert player.connectionState == "connected"
    finally:
        await player.close()


async def test_no_ice_servers_by_default_and_configured_ones_are_offered(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(create_app(Settings(model=str(BUNDLED_MODEL))))
    assert await (await client.get("/api/webrtc/config")).json() == {"ice_servers": []}
    app = create_app(Settings(model=str(BUNDLED_MODEL)))
    app[webrtc_config_key] = WebRTCConfig.from_urls(["stun:stun.example.org:3478", "turn:me:s%40cret@turn.example.org"])
    client = await aiohttp_client(app)
    assert (await (await client.get("/api/webrtc/config")).json())["ice_servers"] == [
        {"urls": ["stun:stun.example.org:3478"]},
        {"urls": ["turn:turn.example.org"], "username": "me", "credential": "s@cret"},
    ]


def test_ice_servers_come_from_the_environment() -> None:
    config = WebRTCConfig.from_env({ICE_SERVERS_ENV: " stun:a.example.org, turn:u:p@b.example.org:3478 "})
    assert [server.describe() for server in config.ice_servers] == [
        "stun:a.example.org",
        "turn:b.example.org:3478 (as u)",
    ]
    assert WebRTCConfig.from_env({}).ice_servers == ()
    with pytest.raises(ConfigError, match=ICE_SERVERS_ENV):
        WebRTCConfig.from_env({ICE_SERVERS_ENV: "https://a.example.org"})


@pytest.mark.parametrize(
    "url",
    [
        "stun:host:3478?transport=udp",
        "stun:[::1]:3478",
        "stun:host:notaport",
        "stun:host:0",
        "stun:host:65536",
        "stun://host",
        "turn:user:secret@",
        "turn:user:secret@host/path",
        "turns:user:secret@host?transport=udp",
        "turn:host",
    ],
)
def test_ice_server_urls_that_aiortc_cannot_use_are_refused_at_start(url: str) -> None:
    with pytest.raises(ConfigError, match=f"^{ICE_SERVERS_ENV}: ") as error:
        WebRTCConfig.from_env({ICE_SERVERS_ENV: url})
    assert "secret" not in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("url", "used_as"),
    [
        ("stun:stun.example.org", "stun:stun.example.org"),
        ("STUN:192.0.2.1:19302", "stun:192.0.2.1:19302"),
        ("stun:stun.example.org:65535", "stun:stun.example.org:65535"),
        ("turn:u:p@turn.example.org:3478?transport=tcp", "turn:turn.example.org:3478?transport=tcp"),
        ("turns:u:p@turn.example.org", "turns:turn.example.org"),
    ],
)
def test_ice_server_urls_that_aiortc_can_use_are_kept(url: str, used_as: str) -> None:
    (server,) = WebRTCConfig.from_env({ICE_SERVERS_ENV: url}).ice_servers
    assert server.url == used_as
    assert connection_kwargs([server.to_aiortc()]), "aiortc would silently skip it"


def test_ice_server_urls_are_checked_without_echoing_credentials() -> None:
    assert IceServer.parse("turn:u:p@host:3478?transport=tcp").describe() == "turn:host:3478?transport=tcp (as u)"
    for bad in ("http://host", "stun:", "turn:secretonly@host"):
        with pytest.raises(IceServerError) as error:
            IceServer.parse(bad)
        assert "secretonly" not in str(error.value)


async def test_shutdown_closes_every_peer(start_server: Start) -> None:
    client = await start_server(StreamConfig("live", "scene:?seed=1"))
    publisher, player = lan_peer(), lan_peer()
    publisher.addTrack(SceneTrack(Scene(seed=2)))
    player.addTransceiver("video", direction="recvonly")
    try:
        async with feed(client, "cam") as ws:
            await offer_to(client, "/api/webrtc/publish", publisher, stream="cam")
            await offer_to(client, "/api/webrtc/play/live", player)
            await wait_state(ws, "cam", "live")
        await asyncio.wait_for(client.close(), timeout=15)
    finally:
        await publisher.close()
        await player.close()
    alive = [t.name for t in threading.enumerate() if t.name.startswith(("reader-", "webrtc-render"))]
    assert alive == []


async def test_removing_a_stream_closes_its_webrtc_peers(start_server: Start) -> None:
    client = await start_server(StreamConfig("live", "scene:?seed=1"))
    publisher, player = lan_peer(), lan_peer()
    publisher.addTrack(SceneTrack(Scene(seed=2)))
    player.addTransceiver("video", direction="recvonly")
    closed = {publisher: asyncio.Event(), player: asyncio.Event()}
    for pc, event in closed.items():
        pc.on("connectionstatechange", lambda pc=pc, event=event: pc.connectionState == "closed" and event.set())
    try:
        async with feed(client, "cam") as ws:
            await offer_to(client, "/api/webrtc/publish", publisher, stream="cam")
            await offer_to(client, "/api/webrtc/play/live", player)
            await wait_state(ws, "cam", "live")
        for stream_id in ("cam", "live"):
            assert (await client.delete(f"/api/streams/{stream_id}")).status == 204
        async with asyncio.timeout(END_WITHIN_S):
            for event in closed.values():
                await event.wait()
    finally:
        await publisher.close()
        await player.close()


async def test_a_player_let_in_with_a_signed_token_is_closed_when_it_expires(start_server: Start) -> None:
    """A WebSocket or MJPEG stream ends with its token; a WebRTC player went on for good, so a
    leaked viewer URL kept showing the camera."""
    admin = "admin-token-0123456789abcdef"
    client = await start_server(StreamConfig("live", "scene:?seed=1"), admin_tokens=(admin,))
    minted = await client.post(
        "/api/tokens", json={"role": "viewer", "ttl_s": 2}, headers={"Authorization": f"Bearer {admin}"}
    )
    token = (await minted.json())["token"]
    player = lan_peer()
    player.addTransceiver("video", direction="recvonly")
    closed = asyncio.Event()
    player.on("connectionstatechange", lambda: player.connectionState == "closed" and closed.set())
    try:
        await offer_to(client, f"/api/webrtc/play/live?token={token}", player)
        async with asyncio.timeout(2 + END_WITHIN_S):  # the token's 2 s, then the close
            await closed.wait()
        assert time.time() >= int(token.split(".")[2]), "closed when its token expired, not before"
    finally:
        await player.close()


Disruption = Callable[[TestClient, PeerRegistry, Peer], Awaitable[None]]


async def remove_the_stream(client: TestClient, registry: PeerRegistry, peer: Peer) -> None:
    assert (await client.delete(f"/api/streams/{peer.stream_id}")).status == 204


async def remove_the_watched_stream(client: TestClient, registry: PeerRegistry, peer: Peer) -> None:
    """As `remove_the_stream`, until its feed has closed its players: the one being answered, too."""
    (watcher,) = (other for other in registry._peers if other is not peer)
    closed = asyncio.Event()
    watcher.pc.on("connectionstatechange", lambda: watcher.pc.connectionState == "closed" and closed.set())
    await remove_the_stream(client, registry, peer)
    async with asyncio.timeout(END_WITHIN_S):
        await closed.wait()
    assert peer.closing is not None


async def expire_the_token(client: TestClient, registry: PeerRegistry, peer: Peer) -> None:
    registry._close_soon(peer, "its access token expired")  # what the peer's expiry timer calls
    assert peer.closing is not None
    await peer.closing


@pytest.mark.parametrize(
    ("disruption", "watched", "status", "said"),
    [
        (remove_the_stream, False, 404, "was removed"),
        (remove_the_watched_stream, True, 404, "was removed"),
        (expire_the_token, False, 503, "its access token expired"),
    ],
    ids=["stream-removed", "watched-stream-removed", "token-expired"],
)
async def test_a_play_offer_disrupted_while_it_is_answered_is_refused_and_leaves_nothing_behind(
    aiohttp_client: ClientFactory,
    monkeypatch: pytest.MonkeyPatch,
    disruption: Disruption,
    watched: bool,
    status: int,
    said: str,
) -> None:
    """Answering can take seconds (ICE gathering waits ~5 s on a STUN server that does not answer): a
    stream removed meanwhile was played to a peer that never got a frame, and a peer closed meanwhile
    left its feed rendering overlays on the render thread for ever. ``watched``: another player already
    watches the stream, whose removal closes every player of it, the one being answered too: that is
    still the stream removed (404), not the peer closed (503)."""
    app = create_app(Settings(model=str(BUNDLED_MODEL), streams=(StreamConfig("live", "scene:?seed=1"),)))
    app[webrtc_config_key] = WebRTCConfig(max_peers=2 if watched else 1)
    client = await aiohttp_client(app)
    watcher = lan_peer()
    if watched:
        watcher.addTransceiver("video", direction="recvonly")
        await offer_to(client, "/api/webrtc/play/live", watcher)
    watchers = list(app[peers_key]._peers)
    answer = PeerRegistry._answer

    async def disrupted_answer(registry: PeerRegistry, peer: Peer) -> RTCSessionDescription:
        description = await answer(registry, peer)
        await disruption(client, registry, peer)
        return description

    monkeypatch.setattr(PeerRegistry, "_answer", disrupted_answer)
    player = lan_peer()
    player.addTransceiver("video", direction="recvonly")
    await player.setLocalDescription(await player.createOffer())
    response = await client.post("/api/webrtc/play/live", json={"type": "offer", "sdp": player.localDescription.sdp})
    await player.close()
    await watcher.close()
    assert response.status == status and said in (await response.json())["error"]
    for closing in [peer.closing for peer in watchers if peer.closing is not None]:
        await closing  # the watcher's own close, begun by the stream's removal
    assert not app[peers_key]._peers, "every peer's place is free again"
    assert not app[peers_key]._feeds, "no playback feed is left watching the stream"


def test_the_handover_keeps_only_the_newest_frame_and_counts_the_rest() -> None:
    handover = FrameHandover()
    frames = [av.VideoFrame(16, 16, "yuv420p") for _ in range(3)]
    for frame in frames:
        handover.put(frame)
    assert handover.take(0.0) is frames[-1] and handover.dropped == 2
    assert handover.take(0.0) is None


def test_ending_the_handover_wakes_a_waiting_reader_at_once() -> None:
    handover = FrameHandover()
    taken: list[object] = []
    reader = threading.Thread(target=lambda: taken.append(handover.take(60.0)))
    reader.start()
    handover.end()
    reader.join(5.0)
    assert not reader.is_alive() and taken == [None] and handover.ended
    handover.put(av.VideoFrame(16, 16, "yuv420p"))
    assert handover.take(0.0) is None, "nothing is handed over after the end"
