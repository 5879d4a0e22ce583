"""A stream id freed and taken again: the new stream is never ended for what happened to the old one,
and a file that played out counts its frames once."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from aiortc import RTCPeerConnection

from server.http.keys import manager_key
from server.scene import Scene
from server.webrtc.peer import Peer
from server.webrtc.routes import peers_key
from tests.support.numbered import write_numbered_video
from tests.test_webrtc import END_WITHIN_S, SceneTrack, feed, lan_peer, next_event, offer_to, wait_removed, wait_state

Start = Callable[..., Awaitable[TestClient]]

#: How long a publisher whose stream was removed may take to notice (its next frame) and close.
NOTICE_WITHIN_S = 30.0
#: How long the publisher's own removal is held back, at most, for the id to be taken again first.
HOLD_S = 60.0
SHORT_FILE_FRAMES = 15

pytestmark = pytest.mark.timeout(120)


def hold_later_removals(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Let the next removal (the API's) through, and hold every later one until the event returned is set.

    A publisher notices its stream's removal on its next frame, a fraction of a second later, and
    ends it then: holding that back makes sure the id is taken again first, as it would be on a
    machine where the publisher's frames came late, whatever the publisher does about it.
    """
    manager = client.app[manager_key]
    remove = manager.remove
    taken_again = threading.Event()
    removals = 0

    def held(*args: Any, **kwargs: Any) -> Any:
        nonlocal removals
        removals += 1
        if removals > 1:
            taken_again.wait(HOLD_S)
        return remove(*args, **kwargs)

    monkeypatch.setattr(manager, "remove", held)
    return taken_again


async def publish_cam(client: TestClient, publisher: RTCPeerConnection, ws: Any) -> Peer:
    """Publish ``publisher``'s scene as stream ``cam``, wait for it to be live, and return the server's peer."""
    registry = client.app[peers_key]
    before = set(registry._peers)
    await offer_to(client, "/api/webrtc/publish", publisher, stream="cam")
    await wait_state(ws, "cam", "live")
    (peer,) = registry._peers - before
    return peer


async def wait_closed(peer: Peer) -> None:
    """Until ``peer``, whose stream was removed, noticed it and was closed (its stream ended, if its own)."""
    assert peer.pump is not None
    async with asyncio.timeout(NOTICE_WITHIN_S):
        await asyncio.wait({peer.pump})
    assert peer.closing is not None, "the publisher's video ended but it was not closed"
    await peer.closing


async def stream(client: TestClient, stream_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/streams/{stream_id}")
    body: dict[str, Any] = await response.json()
    assert response.status == 200, f"stream {stream_id!r} is gone: {body}"
    return body


async def test_a_stream_added_under_a_removed_publishers_id_outlives_the_publishers_end(
    start_server: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await start_server()
    taken_again = hold_later_removals(client, monkeypatch)
    publisher = lan_peer()
    publisher.addTrack(SceneTrack(Scene(seed=1)))
    try:
        async with feed(client, "cam") as ws:
            # Given a browser publishing "cam", removed through the API
            old = await publish_cam(client, publisher, ws)
            assert (await client.delete("/api/streams/cam")).status == 204
            await wait_removed(ws, "cam")
            # and "cam" added again at once, from a URI
            response = await client.post("/api/streams", json={"id": "cam", "uri": "scene:?seed=2"})
            assert response.status == 201, await response.text()
            await wait_state(ws, "cam", "live")
            taken_again.set()
            # When the old publisher notices its stream is gone, and is closed
            await wait_closed(old)
            # Then the new stream is still there, listed and playing
            assert (await stream(client, "cam"))["source"] == "scene:?seed=2"
            listed = {s["id"]: s for s in (await (await client.get("/api/streams")).json())["streams"]}
            assert listed["cam"]["state"] == "live" and listed["cam"]["source"] == "scene:?seed=2"
            async with asyncio.timeout(END_WITHIN_S):
                while (event := await next_event(ws, "frame", "status", "removed"))["type"] != "frame":
                    assert event["stream"] != "cam", f"the new stream was ended: {event}"
    finally:
        taken_again.set()
        await publisher.close()


async def test_a_new_publisher_of_a_removed_publishers_id_outlives_the_old_publishers_end(
    start_server: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await start_server()
    registry = client.app[peers_key]
    taken_again = hold_later_removals(client, monkeypatch)
    first, second = lan_peer(), lan_peer()
    first.addTrack(SceneTrack(Scene(seed=1)))
    second.addTrack(SceneTrack(Scene(seed=2)))
    try:
        async with feed(client, "cam") as ws:
            # Given a browser publishing "cam", removed through the API
            old = await publish_cam(client, first, ws)
            assert (await client.delete("/api/streams/cam")).status == 204
            await wait_removed(ws, "cam")
            # and another browser publishing "cam" at once
            new = await publish_cam(client, second, ws)
            taken_again.set()
            # When the old publisher notices its stream is gone, and is closed
            await wait_closed(old)
            # Then the new publisher's stream is still there, live, and the new publisher still open
            assert (await stream(client, "cam"))["state"] == "live"
            assert registry._peers == {new} and new.closing is None
            assert second.connectionState == "connected"
            async with asyncio.timeout(END_WITHIN_S):
                while (event := await next_event(ws, "frame", "status", "removed"))["type"] != "frame":
                    assert event["stream"] != "cam", f"the new stream was ended: {event}"
    finally:
        taken_again.set()
        await first.close()
        await second.close()


async def test_a_file_that_played_out_counts_as_processed_only_the_frames_it_read(
    start_server: Start, tmp_path: Path
) -> None:
    """The end marker a file's reader publishes (its last image again, `Frame.ended`) is not a frame
    through the model: ``frames_processed`` of a file read whole, none dropped, is ``frames_read``."""
    path = await asyncio.to_thread(write_numbered_video, tmp_path / "short.mp4", SHORT_FILE_FRAMES)
    client = await start_server(media_dirs=(tmp_path,))
    async with feed(client, "short") as ws:
        # Given a short file read as fast as inference takes it (every frame processed), not looped
        body = {"id": "short", "uri": f"{path}#rate=max", "loop": False}
        response = await client.post("/api/streams", json=body)
        assert response.status == 201, await response.text()
        # When it has played out, and its end marker (seq = frames_read) has been through the pipeline
        read: int | None = None
        last_seq = -1
        while read is None or last_seq < read:
            event = await next_event(ws, "frame", "status")
            if event["stream"] != "short":
                continue
            if event["type"] == "frame":
                last_seq = max(last_seq, event["seq"])
            elif event["state"] == "ended":
                read = (await stream(client, "short"))["frames_read"]
                assert read == SHORT_FILE_FRAMES
    # Then every frame it read was processed once, and the marker was not counted
    after = await stream(client, "short")
    assert after["frames_dropped"] == 0
    assert after["frames_processed"] == after["frames_read"] == SHORT_FILE_FRAMES
