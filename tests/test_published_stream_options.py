"""A stream's viewers counted once per person whatever the transport, and a published camera's
detection options changed while it plays; with aiortc peers over loopback, as in tests/test_webrtc.py."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient
from aiortc import RTCPeerConnection

from server.config import StreamConfig
from server.delivery.viewer import ViewerLimits
from server.scene import Scene
from tests.support.polling import eventually
from tests.test_webrtc import SceneTrack, lan_peer, offer_to, wait_state

Start = Callable[..., Awaitable[TestClient]]

#: Frames 260 on of this scene hold two or three objects of more than one class (tests/test_webrtc.py).
SCENE_SEED = 3
SCENE_START = 260
CHANGED_CONF = 0.5
KEPT_CLASS = "square"  # in every frame of the scene from SCENE_START on, beside triangles at first
FRAMES_AFTER_CHANGE = 10  # frames captured after the change whose tracks are checked
MAX_FRAMES = 150  # ten seconds of the scene: by then it has shown the tracks each step waits for
RECEIVE_S = 30.0

pytestmark = pytest.mark.timeout(90)


async def frame_of(ws: aiohttp.ClientWebSocketResponse, stream_id: str) -> dict[str, Any]:
    """The next ``frame`` message of ``stream_id`` (other messages and JPEGs are skipped)."""
    while True:
        message = await ws.receive(timeout=RECEIVE_S)
        assert message.type in (WSMsgType.TEXT, WSMsgType.BINARY), message
        if message.type is WSMsgType.TEXT:
            data = json.loads(message.data)
            if data["type"] == "frame" and data["stream"] == stream_id:
                return data


@asynccontextmanager
async def status_socket(client: TestClient, stream_id: str) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """A WebSocket subscribed to ``stream_id`` for metadata only, as the viewer page beside WebRTC;
    subscribed once its first frame's metadata is back."""
    async with client.ws_connect("/ws") as ws:
        assert (await ws.receive_json(timeout=RECEIVE_S))["type"] == "hello"
        await ws.send_json({"type": "subscribe", "streams": [{"id": stream_id, "image": "none"}]})
        await frame_of(ws, stream_id)
        yield ws


async def play(client: TestClient, stream_id: str) -> RTCPeerConnection:
    """A WebRTC player of ``stream_id``'s clean frames, as the viewer page; in its feed once this returns."""
    player = lan_peer()
    player.addTransceiver("video", direction="recvonly")
    player.createDataChannel("meta")
    await offer_to(client, f"/api/webrtc/play/{stream_id}", player, image="clean")
    return player


async def connected(player: RTCPeerConnection) -> None:
    """Wait until ``player`` is connected: one closed while ICE still runs leaves the server no close
    to hear (no DTLS yet), so the server lets it go only at its connect timeout or consent checks."""
    if player.connectionState != "connected":
        up = asyncio.Event()
        player.on("connectionstatechange", lambda: player.connectionState == "connected" and up.set())
        await asyncio.wait_for(up.wait(), RECEIVE_S)


async def counts(client: TestClient, stream_id: str) -> tuple[int, float, float]:
    """``viewers`` of ``stream_id`` in /api/streams, its ``segcast_viewers`` and ``segcast_clients``."""
    stream = await (await client.get(f"/api/streams/{stream_id}")).json()
    metrics = (await (await client.get("/metrics")).text()).splitlines()
    [viewers] = [line.split()[-1] for line in metrics if line.startswith(f'segcast_viewers{{stream="{stream_id}"}} ')]
    [clients] = [line.split()[-1] for line in metrics if line.startswith("segcast_clients ")]
    return stream["viewers"], float(viewers), float(clients)


async def test_a_webrtc_player_with_its_status_socket_is_one_viewer(start_server: Start) -> None:
    """The viewer page plays over WebRTC and hears of the stream's state on a metadata-only WebSocket:
    one person, one viewer and one client, not two."""
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    async with status_socket(client, "cam"):
        player = await play(client, "cam")
        try:
            assert await counts(client, "cam") == (1, 1.0, 1.0)
            async with client.ws_connect("/ws") as other:  # a second person, on the WebSocket only
                await other.send_json({"type": "subscribe", "streams": [{"id": "cam", "image": "clean"}]})
                await frame_of(other, "cam")
                assert await counts(client, "cam") == (2, 2.0, 2.0)
        finally:
            await player.close()


async def test_each_webrtc_player_of_a_stream_is_a_viewer(start_server: Start) -> None:
    """Players share one feed of the stream's frames, but each is somebody watching."""
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    first, second = await play(client, "cam"), await play(client, "cam")
    try:
        assert (await counts(client, "cam"))[:2] == (2, 2.0)
        await connected(first)  # a player that leaves, not one that never came
        await first.close()

        async def one_left() -> bool:
            return (await counts(client, "cam"))[:2] == (1, 1.0)

        await eventually(one_left, what="the player that left to be let go")
    finally:
        await first.close()
        await second.close()


async def test_webrtc_players_take_no_websocket_slot_and_status_sockets_still_do(start_server: Start) -> None:
    """``max_viewers`` limits WebSocket and MJPEG clients (WebRTC peers have their own limits): a player
    leaves the one slot free, and a metadata-only WebSocket takes it like any other."""
    client = await start_server(StreamConfig("cam", "scene:?seed=1"), viewer_limits=ViewerLimits(max_viewers=1))
    player = await play(client, "cam")
    try:
        async with status_socket(client, "cam"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await client.ws_connect("/ws")
            assert refused.value.status == 503
    finally:
        await player.close()


@asynccontextmanager
async def published(client: TestClient) -> AsyncIterator[tuple[str, aiohttp.ClientWebSocketResponse]]:
    """A generated scene published as a camera, live, and a metadata-only socket on its stream."""
    publisher = lan_peer()
    publisher.addTrack(SceneTrack(Scene(seed=SCENE_SEED), start=SCENE_START))
    try:
        async with client.ws_connect("/ws") as ws:
            assert (await ws.receive_json(timeout=RECEIVE_S))["type"] == "hello"
            await ws.send_json({"type": "subscribe", "streams": ["*"], "image": "none"})
            stream_id = (await offer_to(client, "/api/webrtc/publish", publisher))["stream"]
            await wait_state(ws, stream_id, "live")
            yield stream_id, ws
    finally:
        await publisher.close()


async def test_a_published_cameras_detection_options_change_while_it_plays(start_server: Start) -> None:
    """conf and classes apply to the running camera (no source to reopen): tracks of other classes go,
    and a track is first reported on a detection at the new conf."""
    client = await start_server()
    async with published(client) as (stream_id, ws):
        for _ in range(MAX_FRAMES):  # until the scene shows a track the change will filter out
            if any(track["class"] != KEPT_CLASS for track in (await frame_of(ws, stream_id))["tracks"]):
                break
        else:
            raise AssertionError(f"no track of another class than {KEPT_CLASS!r} in {MAX_FRAMES} frames")
        before = await (await client.get(f"/api/streams/{stream_id}")).json()
        response = await client.patch(f"/api/streams/{stream_id}", json={"conf": CHANGED_CONF, "classes": [KEPT_CLASS]})
        changed_at = time.time()
        assert response.status == 200, await response.text()
        after = await response.json()
        assert after["options"]["conf"] == CHANGED_CONF and after["options"]["classes"] == [KEPT_CLASS]
        assert (after["state"], after["source"]) == ("live", before["source"])
        assert after["frames_read"] >= before["frames_read"], "the camera's reader goes on, not started anew"
        listed = await (await client.get("/api/streams")).json()
        assert [s["options"]["conf"] for s in listed["streams"] if s["id"] == stream_id] == [CHANGED_CONF]
        first_seen: dict[int, dict[str, Any]] = {}
        frames = 0
        for _ in range(MAX_FRAMES):
            if frames >= FRAMES_AFTER_CHANGE and first_seen:
                break
            frame = await frame_of(ws, stream_id)
            if frame["capture_time"] <= changed_at:
                continue  # captured before the change took effect
            frames += 1
            assert {track["class"] for track in frame["tracks"]} <= {KEPT_CLASS}, frame["tracks"]
            for track in frame["tracks"]:
                first_seen.setdefault(track["id"], track)
        assert first_seen, f"no {KEPT_CLASS!r} track in {MAX_FRAMES} frames after the change"
        assert all(track["conf"] >= CHANGED_CONF for track in first_seen.values()), first_seen


async def test_a_published_cameras_source_cannot_change_and_the_refusal_says_what_can(start_server: Start) -> None:
    """uri and loop name the peer's camera, which the server cannot reopen: a 409 naming them and what
    may change instead, with nothing changed, not one saying the stream's options are the publisher's."""
    client = await start_server()
    async with published(client) as (stream_id, _):
        for body in ({"uri": "scene:?seed=4"}, {"loop": True}, {"uri": "scene:?seed=4", "conf": CHANGED_CONF}):
            response = await client.patch(f"/api/streams/{stream_id}", json=body)
            error = (await response.json())["error"]
            assert response.status == 409, error
            assert "uri" in error and "loop" in error and "options" in error, error
            assert "cannot be restarted" not in error, error
        after = await (await client.get(f"/api/streams/{stream_id}")).json()
        assert (after["state"], after["loop"], after["options"]["conf"]) == ("live", False, 0.25)
        assert after["source"].startswith("webrtc:")
