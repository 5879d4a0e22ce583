"""A WebRTC peer's life as the server tells it: answered, then connected (or closed for not connecting,
its stream's id free again), closed with a reason; the peer slots in ``/metrics``; refusals and camera
errors that say what the user can do."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import pytest
from aiohttp.test_utils import TestClient
from aiortc import RTCSessionDescription

from server.app import create_app
from server.config import Settings, StreamConfig
from server.delivery.hub import Hub
from server.http.keys import hub_key
from server.inference.models import BUNDLED_MODEL
from server.options import StreamOptions
from server.scene import Scene
from server.sources.base import StreamState
from server.streams import StreamManager
from server.webrtc import WebRTCConfig
from server.webrtc.peers import PeerRegistry
from server.webrtc.routes import peers_key, webrtc_config_key
from tests.support.browser import WAIT_MS
from tests.support.polling import eventually
from tests.test_webrtc import (
    END_WITHIN_S,
    LoggedEvent,
    SceneTrack,
    feed,
    lan_peer,
    offer_to,
    wait_removed,
    wait_state,
)
from tests.test_webrtc_slots import publish as offer_never_completed

ClientFactory = Callable[..., Awaitable[TestClient]]
Start = Callable[..., Awaitable[TestClient]]

PEERS_LOG = "server.webrtc.peers"
#: Far below the 20 s a publisher's first frame may take, far above a 0.5 s deadline on a busy machine.
ENDED_WITHIN_S = 12.0

pytestmark = pytest.mark.timeout(60)


@contextmanager
def logged(text: str) -> Iterator[asyncio.Event]:
    """An event set once the peers' log has a line containing ``text``."""
    handler = LoggedEvent(text)
    logger = logging.getLogger(PEERS_LOG)
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield handler.event
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def test_a_publisher_whose_tab_closed_during_its_offer_frees_its_id_within_the_connect_time(
    aiohttp_client: ClientFactory,
) -> None:
    """Given a page that sent its offer and was closed (or reloaded) before the answer came,
    when its connect time passes, then its ``starting`` stream ends saying why and the id is free.

    (A publisher that connects outlives that time: `test_a_publisher_that_goes_silent_is_ended_as_lost`.)"""
    app = create_app(Settings(model=str(BUNDLED_MODEL)))
    app[webrtc_config_key] = WebRTCConfig(publish_idle_timeout_s=0.5)
    client = await aiohttp_client(app)
    gone = lan_peer()
    gone.addTrack(SceneTrack(Scene(seed=1)))
    await gone.setLocalDescription(await gone.createOffer())
    sdp = gone.localDescription.sdp.replace("a=end-of-candidates\r\n", "")  # Chrome never writes it
    async with feed(client, "kitchen") as ws:
        response = await client.post("/api/webrtc/publish", json={"type": "offer", "sdp": sdp, "stream": "kitchen"})
        assert response.status == 200, await response.text()
        await gone.close()  # the tab: nothing more is heard from it
        async with asyncio.timeout(ENDED_WITHIN_S):
            ended = await wait_state(ws, "kitchen", "ended")
            await wait_removed(ws, "kitchen")
    assert "not connected within 0.5 s" in ended["error"]
    again = lan_peer()
    again.addTrack(SceneTrack(Scene(seed=1)))
    try:
        assert (await offer_to(client, "/api/webrtc/publish", again, stream="kitchen"))["stream"] == "kitchen"
    finally:
        await again.close()


async def test_a_peer_is_logged_answered_with_its_answer_and_connected_once_ice_connects(
    start_server: Start,
) -> None:
    client = await start_server(StreamConfig("live", "scene:?seed=1"))
    player = lan_peer()
    player.addTransceiver("video", direction="recvonly")
    with (
        logged("[live] WebRTC player 127.0.0.1 answered") as answered,
        logged("[live] WebRTC player 127.0.0.1 connected") as connected,
    ):
        try:
            await player.setLocalDescription(await player.createOffer())
            offer = {"type": "offer", "sdp": player.localDescription.sdp}
            response = await client.post("/api/webrtc/play/live", json=offer)
            body = await response.json()
            assert response.status == 200, body
            # The answer is not applied yet: the player cannot have connected.
            assert answered.is_set() and not connected.is_set()
            await player.setRemoteDescription(RTCSessionDescription(body["sdp"], body["type"]))
            await asyncio.wait_for(connected.wait(), END_WITHIN_S)
        finally:
            await player.close()


async def test_a_peer_closed_by_its_browser_is_logged_with_why(start_server: Start) -> None:
    client = await start_server(StreamConfig("live", "scene:?seed=1"))
    player = lan_peer()
    player.addTransceiver("video", direction="recvonly")
    tracks: list[Any] = []
    player.on("track", tracks.append)
    with logged("[live] WebRTC player 127.0.0.1 closed: closed by the browser") as closed:
        await offer_to(client, "/api/webrtc/play/live", player)
        await asyncio.wait_for(tracks[0].recv(), 3 * END_WITHIN_S)
        await player.close()
        await asyncio.wait_for(closed.wait(), END_WITHIN_S)


async def test_peer_slots_and_refusals_are_in_the_metrics_and_refusals_say_what_to_do(
    aiohttp_client: ClientFactory,
) -> None:
    """A refused player may fall back to the WebSocket; a refused camera cannot be sent over it."""
    app = create_app(Settings(model=str(BUNDLED_MODEL), streams=(StreamConfig("live", "scene:?seed=1"),)))
    app[webrtc_config_key] = WebRTCConfig(max_peers=1)
    client = await aiohttp_client(app)
    player, second, publisher = lan_peer(), lan_peer(), lan_peer()
    for pc in (player, second):
        pc.addTransceiver("video", direction="recvonly")
    publisher.addTrack(SceneTrack(Scene(seed=1)))
    try:
        await offer_to(client, "/api/webrtc/play/live", player)
        refusals = {}
        for path, pc in (("/api/webrtc/play/live", second), ("/api/webrtc/publish", publisher)):
            await pc.setLocalDescription(await pc.createOffer())
            response = await client.post(path, json={"type": "offer", "sdp": pc.localDescription.sdp})
            assert response.status == 503
            refusals[path] = (await response.json())["error"]
        assert "WebSocket viewer" in refusals["/api/webrtc/play/live"]
        assert "WebSocket" not in refusals["/api/webrtc/publish"]
        assert "stop another camera or WebRTC player" in refusals["/api/webrtc/publish"]

        text = await (await client.get("/metrics")).text()
        samples = dict(
            line.rsplit(" ", 1)
            for line in text.splitlines()
            if line.startswith(("segcast_webrtc_peers", "segcast_webrtc_refused"))
        )
        assert samples == {
            'segcast_webrtc_peers{role="publisher"}': "0",
            'segcast_webrtc_peers{role="player"}': "1",
            'segcast_webrtc_refused_total{reason="max_peers"}': "2",
            'segcast_webrtc_refused_total{reason="max_players"}': "0",
            'segcast_webrtc_refused_total{reason="max_connecting_players"}': "0",
            'segcast_webrtc_refused_total{reason="max_peers_per_address"}': "0",
        }
        assert "# TYPE segcast_webrtc_peers gauge" in text
        assert "# TYPE segcast_webrtc_refused_total counter" in text
    finally:
        for pc in (player, second, publisher):
            await pc.close()


GET_USER_MEDIA_FAILS = """
navigator.mediaDevices.getUserMedia = async () => {
  throw new DOMException(window.browserSays, window.cameraError);
};
"""


async def test_the_publish_page_says_why_the_camera_could_not_be_had(start_server: Start, browser: Any) -> None:
    client = await start_server()
    page = await browser.new_page()
    await page.add_init_script(GET_USER_MEDIA_FAILS)
    await page.goto(str(client.make_url("/static/publish.html")))
    for name, says, shown in (
        ("NotAllowedError", "Permission denied", "Camera access was refused: allow it in the site settings"),
        ("NotFoundError", "Requested device not found", "No camera found"),
        ("NotReadableError", "Could not start video source", "The camera is in use by another program"),
        ("AbortError", "Something else", "Something else"),  # one not mapped: the browser's words
    ):
        await page.evaluate("([name, says]) => { window.cameraError = name; window.browserSays = says; }", [name, says])
        await page.evaluate("document.getElementById('publish-error').textContent = ''")
        await page.click("#use-camera")
        await page.wait_for_function("document.getElementById('publish-error').textContent !== ''", timeout=WAIT_MS)
        assert shown in await page.text_content("#publish-error"), name
        assert await page.is_enabled("#use-camera")


async def test_what_players_skipped_is_in_the_metrics_closed_players_included(aiohttp_client: ClientFactory) -> None:
    """A player's encoder too slow for its frames, or its data channel too far behind for their
    metadata, skips them: counted per player, and still counted once that player has gone."""
    app = create_app(Settings(model=str(BUNDLED_MODEL), streams=(StreamConfig("live", "scene:?seed=1"),)))
    client = await aiohttp_client(app)
    player = lan_peer()
    player.addTransceiver("video", direction="recvonly")
    skipped = (
        'segcast_webrtc_frames_skipped_total{role="player"}',
        'segcast_webrtc_frames_skipped_total{role="publisher"}',
        "segcast_webrtc_metadata_skipped_total",
    )

    async def samples() -> dict[str, str]:
        text = await (await client.get("/metrics")).text()
        return {name: value for name, value in (line.rsplit(" ", 1) for line in text.splitlines()) if name in skipped}

    try:
        await offer_to(client, "/api/webrtc/play/live", player)
        registry = app[peers_key]
        (peer,) = registry._peers
        assert peer.player is not None
        peer.player.dropped_frames += 5  # as `offer` counts them, whatever the real ones were by now
        peer.player.dropped_meta += 2
        live = await samples()
        assert int(live[skipped[0]]) >= 5 and int(live[skipped[2]]) >= 2
        assert live[skipped[1]] == "0", "no publisher"
        await player.close()

        async def gone() -> bool:
            return not registry._peers

        await eventually(gone, what="the player's slot given back")
        closed = await samples()
        assert int(closed[skipped[0]]) >= int(live[skipped[0]]), "a closed player's skips are not forgotten"
        assert int(closed[skipped[2]]) >= int(live[skipped[2]])
    finally:
        await player.close()


async def test_a_closed_peer_registry_is_let_go_by_the_hub() -> None:
    """The hub outlives the registry (the pipeline's cleanup stops it later): a registry closed but
    still listening would be kept, and called, for every state the streams announce from then on."""
    hub = Hub(asyncio.get_running_loop())
    registry = PeerRegistry(WebRTCConfig(), hub, cast(StreamManager, None), StreamOptions())
    await registry.close()
    await registry.close()  # at shutdown, and again by a test or a second signal: once is enough
    left = weakref.ref(registry)
    del registry
    gc.collect()
    assert left() is None, "the hub still holds the closed registry"
    hub.announce_state("live", StreamState.FAILED, "its camera went")  # reaches no closed registry


async def test_a_failed_camera_keeps_its_players_but_a_failed_published_stream_closes_its_publisher(
    start_server: Start,
) -> None:
    """Given a player of a camera stream and a publisher of another, when each stream fails, then the
    player stays: a failed camera is opened again (`StreamManager.change`), and its players go on
    watching it. The publisher is closed: its reader takes no more frames, and nothing opens it again."""
    client = await start_server(StreamConfig("live", "scene:?seed=1"))
    registry, hub = client.app[peers_key], client.app[hub_key]
    player, publisher = lan_peer(), lan_peer()
    player.addTransceiver("video", direction="recvonly")
    publisher.addTrack(SceneTrack(Scene(seed=1)))
    try:
        await offer_to(client, "/api/webrtc/play/live", player)
        await offer_to(client, "/api/webrtc/publish", publisher, stream="cam")
        peers = {peer.role: peer for peer in registry._peers}
        hub.announce_state("live", StreamState.FAILED, "its camera went")  # the state listeners run now
        hub.announce_state("cam", StreamState.FAILED, "its frames are over max_frame_side")
        assert peers["play"].closing is None, "the failed camera's player was closed"
        assert peers["play"] in registry._peers
        assert peers["publish"].closing is not None, "the failed published stream's publisher was kept"
    finally:
        await player.close()
        await publisher.close()


async def test_a_publisher_being_closed_is_not_counted_as_still_connecting(start_server: Start) -> None:
    """A page publishing an id again while the last publisher of that id is being closed (its stream
    ending) is to be told when the id frees itself (409 with Retry-After), not that a camera coming up
    holds it for good."""
    client = await start_server()
    registry = client.app[peers_key]
    status, text = await offer_never_completed(client, "cam")  # answered: connecting until its deadline
    assert status == 200, text
    (publisher,) = registry._peers
    within_s = 3600.0  # of its answer, however slow this machine is
    assert registry.connecting("cam", within_s), "answered, not connected, and not yet being closed"
    registry._close_soon(publisher, "closed by the test")
    assert not registry.connecting("cam", within_s)
