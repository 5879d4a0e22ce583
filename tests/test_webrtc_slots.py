"""Who may take the WebRTC peer slots: players only their share, of which only a few may be still
connecting, so that offers a client never completes (from loopback, where every client behind a local
reverse proxy comes from, with no share per address) cannot take every slot, and a camera, which has
no WebSocket to fall back to, can always be published."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient
from aiortc.mediastreams import MediaStreamTrack

from server.app import create_app
from server.config import Settings, StreamConfig
from server.inference.models import BUNDLED_MODEL
from server.scene import Scene
from server.webrtc import WebRTCConfig
from server.webrtc.routes import webrtc_config_key
from tests.test_webrtc import END_WITHIN_S, SceneTrack, lan_peer, offer_to
from tests.test_webrtc_offers import offer_sdp

ClientFactory = Callable[..., Awaitable[TestClient]]

#: Offers sent and never completed, as in the review that found every slot taken by them.
UNCOMPLETED_OFFERS = 30

pytestmark = pytest.mark.timeout(60)


async def start(aiohttp_client: ClientFactory, config: WebRTCConfig | None = None) -> TestClient:
    app = create_app(Settings(model=str(BUNDLED_MODEL), streams=(StreamConfig("live", "scene:?seed=1"),)))
    if config is not None:
        app[webrtc_config_key] = config
    return await aiohttp_client(app)


async def publish(client: TestClient, stream_id: str) -> tuple[int, str]:
    """Offer a camera as ``stream_id``; the answer is never applied (its slot is held all the same)."""
    publisher = lan_peer()
    publisher.addTrack(SceneTrack(Scene(seed=1)))
    try:
        await publisher.setLocalDescription(await publisher.createOffer())
        body = {"type": "offer", "sdp": publisher.localDescription.sdp, "stream": stream_id}
        response = await client.post("/api/webrtc/publish", json=body)
        return response.status, await response.text()
    finally:
        await publisher.close()


async def test_a_camera_can_be_published_while_player_offers_never_completed_fill_the_players_share(
    aiohttp_client: ClientFactory,
) -> None:
    client = await start(aiohttp_client)
    sdp = await offer_sdp("play")
    responses = await asyncio.gather(
        *(client.post("/api/webrtc/play/live", json={"type": "offer", "sdp": sdp}) for _ in range(UNCOMPLETED_OFFERS))
    )
    refusals = Counter([(await r.json())["error"] for r in responses if r.status != 200])
    assert {r.status for r in responses} == {200, 503}
    status, text = await publish(client, "cam")
    assert status == 200, text
    (refusal,) = refusals
    assert "too many WebRTC players still connecting" in refusal and "use the WebSocket viewer" in refusal, refusal


async def test_players_may_not_take_the_slots_kept_for_cameras(aiohttp_client: ClientFactory) -> None:
    client = await start(aiohttp_client, WebRTCConfig(max_peers=3, max_players=1))
    sdp = await offer_sdp("play")
    assert (await client.post("/api/webrtc/play/live", json={"type": "offer", "sdp": sdp})).status == 200
    response = await client.post("/api/webrtc/play/live", json={"type": "offer", "sdp": sdp})
    assert response.status == 503
    assert (await response.json())["error"] == (
        "too many WebRTC players (1): the other 2 of 3 WebRTC peers are kept for published cameras; "
        "close one or use the WebSocket viewer"
    )
    assert (await publish(client, "cam-1"))[0] == 200
    assert (await publish(client, "cam-2"))[0] == 200
    status, text = await publish(client, "cam-3")
    assert status == 503 and "too many WebRTC peers (3); stop another camera or WebRTC player" in text, text


async def test_a_connected_player_leaves_its_place_among_those_connecting(aiohttp_client: ClientFactory) -> None:
    client = await start(aiohttp_client, WebRTCConfig(max_connecting_players=1))
    player = lan_peer()
    player.addTransceiver("video", direction="recvonly")
    tracks: list[MediaStreamTrack] = []
    player.on("track", tracks.append)
    try:
        await offer_to(client, "/api/webrtc/play/live", player)
        await asyncio.wait_for(tracks[0].recv(), 3 * END_WITHIN_S)  # connected: it plays
        sdp = await offer_sdp("play")
        assert (await client.post("/api/webrtc/play/live", json={"type": "offer", "sdp": sdp})).status == 200
        response = await client.post("/api/webrtc/play/live", json={"type": "offer", "sdp": sdp})
        assert response.status == 503
        assert (await response.json())["error"] == (
            "too many WebRTC players still connecting (1); offer again in a few seconds or use the WebSocket viewer"
        )
    finally:
        await player.close()
