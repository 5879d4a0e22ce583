"""A browser's camera published again under its id: the options it was given (zones, lines, conf) are
still its own; and a second tab publishing an id a moment after the first is told it is taken, not that
it frees itself. With aiortc peers over loopback, as in tests/test_webrtc.py."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.http.keys import manager_key
from server.options import StreamOptions
from server.scene import Scene
from server.webrtc import peers as peers_module
from server.webrtc import routes as routes_module
from server.webrtc.peers import FIRST_FRAME_TIMEOUT_S
from server.webrtc.routes import ID_FREED_AFTER_IDLE_S, peers_key
from tests.support.polling import eventually
from tests.test_webrtc import SceneTrack, feed, lan_peer, offer_to, wait_removed, wait_state
from tests.test_webrtc_slots import publish as offer_never_completed

Start = Callable[..., Awaitable[TestClient]]

ZONE = {"name": "door", "points": [[0, 0], [0.5, 0], [0.5, 0.5]], "units": "fraction"}
LINE = {"name": "gate", "points": [[0, 0.5], [1, 0.5]], "units": "fraction"}
DEFAULT_CONF = StreamOptions().conf
#: What a taken id's plain 409 says: nothing to wait for.
TAKEN = "stream 'race' already exists: pick another id or leave it out"

pytestmark = pytest.mark.timeout(90)


async def publish_and_end(client: TestClient, stream_id: str, change: dict[str, Any] | None = None) -> None:
    """Publish a camera as ``stream_id``, live, ``PATCH`` it with ``change`` if given, then close it as
    Stop or a closed tab does, and wait until its stream is removed."""
    publisher = lan_peer()
    publisher.addTrack(SceneTrack(Scene(seed=1)))
    try:
        async with feed(client, stream_id) as ws:
            await offer_to(client, "/api/webrtc/publish", publisher, stream=stream_id)
            await wait_state(ws, stream_id, "live")
            if change is not None:
                response = await client.patch(f"/api/streams/{stream_id}", json=change)
                assert response.status == 200, await response.text()
            await publisher.close()
            await wait_removed(ws, stream_id)
    finally:
        await publisher.close()


async def options_published_again(client: TestClient, stream_id: str) -> dict[str, Any]:
    """Publish ``stream_id`` again (closed once answered): the options its stream starts with."""
    publisher = lan_peer()
    publisher.addTrack(SceneTrack(Scene(seed=2)))
    try:
        await offer_to(client, "/api/webrtc/publish", publisher, stream=stream_id)
        stream = await (await client.get(f"/api/streams/{stream_id}")).json()
        options: dict[str, Any] = stream["options"]
        return options
    finally:
        await publisher.close()


async def test_a_camera_published_again_under_its_id_keeps_the_zones_lines_and_options_it_was_given(
    start_server: Start,
) -> None:
    """Stop then "Use my camera", or the page's own publish after a lost connection: they were
    [stream_defaults] again, the zones drawn on it gone."""
    client = await start_server()
    await publish_and_end(client, "cam", {"zones": [ZONE], "lines": [LINE], "conf": 0.5})
    options = await options_published_again(client, "cam")
    assert [zone["name"] for zone in options["zones"]] == ["door"], options
    assert [line["name"] for line in options["lines"]] == ["gate"], options
    assert options["conf"] == 0.5, options


async def test_only_the_last_ids_keep_their_options(start_server: Start, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kept in memory for a bounded number of ids, the oldest forgotten first."""
    monkeypatch.setattr(peers_module, "KEPT_OPTIONS_IDS", 1)
    client = await start_server()
    await publish_and_end(client, "first", {"conf": 0.5})
    await publish_and_end(client, "second", {"conf": 0.6})
    assert (await options_published_again(client, "first"))["conf"] == DEFAULT_CONF
    assert (await options_published_again(client, "second"))["conf"] == 0.6


async def test_kept_options_the_model_now_refuses_give_way_to_the_defaults(
    start_server: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A remote model described since the camera ended may refuse them: the camera is still published."""
    client = await start_server()
    await publish_and_end(client, "cam", {"classes": ["square"], "conf": 0.5})
    worker = client.app[manager_key].worker
    check = worker.check_options

    def refuse_classes(options: StreamOptions) -> None:
        if options.classes:
            raise ValueError("the model knows no class 'square'")
        check(options)

    monkeypatch.setattr(worker, "check_options", refuse_classes)
    options = await options_published_again(client, "cam")
    assert (options["classes"], options["conf"]) == ([], DEFAULT_CONF), options


async def publish_again(client: TestClient, stream_id: str) -> tuple[str, str | None]:
    """A second tab's offer for ``stream_id``, refused with 409: what it says, and its Retry-After."""
    again = lan_peer()
    again.addTrack(SceneTrack(Scene(seed=2)))
    try:
        await again.setLocalDescription(await again.createOffer())
        body = {"type": "offer", "sdp": again.localDescription.sdp, "stream": stream_id}
        response = await client.post("/api/webrtc/publish", json=body)
        assert response.status == 409, await response.text()
        return (await response.json())["error"], response.headers.get("Retry-After")
    finally:
        await again.close()


async def test_an_id_whose_first_publisher_is_still_connecting_is_refused_as_taken_with_no_wait(
    start_server: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two tabs publish "race" at once: the one answered second was told the id "frees itself within
    21 s" while the other tab's camera was coming up, live, its id never to be freed."""
    monkeypatch.setattr(routes_module, "HOLDER_CONNECTING_S", 3600.0)  # however slow this machine is
    client = await start_server()
    status, _ = await offer_never_completed(client, "race")  # its answer on its way back: still connecting
    assert status == 200
    assert client.app[peers_key].connecting("race", routes_module.HOLDER_CONNECTING_S)
    said, retry_after = await publish_again(client, "race")
    assert (said, retry_after) == (TAKEN, None)


async def test_an_id_whose_publisher_is_connecting_for_too_long_is_refused_saying_when_it_frees_itself(
    start_server: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page closed or reloaded while its camera connected: its id is held until its peer is let go."""
    monkeypatch.setattr(routes_module, "HOLDER_CONNECTING_S", 0.0)
    client = await start_server()
    status, _ = await offer_never_completed(client, "race")
    assert status == 200
    said, retry_after = await publish_again(client, "race")
    wait_s = math.ceil(FIRST_FRAME_TIMEOUT_S + ID_FREED_AFTER_IDLE_S)
    assert retry_after == str(wait_s)
    assert f"no video from it yet): its id frees itself within {wait_s} s" in said, said


async def test_an_id_whose_connected_publisher_sent_no_video_yet_is_refused_saying_when_it_frees_itself(
    start_server: Start,
) -> None:
    """Connected, and no frame: it may be lost already, and is ended `FIRST_FRAME_TIMEOUT_S` after its answer."""
    client = await start_server()
    camera = SceneTrack(Scene(seed=1))
    camera.frames = 0  # it connects, and never sends a frame
    holder = lan_peer()
    holder.addTrack(camera)
    registry = client.app[peers_key]
    try:
        await offer_to(client, "/api/webrtc/publish", holder, stream="race")

        async def connected() -> bool:
            return bool(registry._peers) and all(peer.connected for peer in registry._peers)

        await eventually(connected, what="the holder connected")
        said, retry_after = await publish_again(client, "race")
        wait_s = math.ceil(FIRST_FRAME_TIMEOUT_S + ID_FREED_AFTER_IDLE_S)
        assert retry_after == str(wait_s)
        assert f"no video from it yet): its id frees itself within {wait_s} s" in said, said
    finally:
        await holder.close()
