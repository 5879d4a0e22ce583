"""A viewer page's WebRTC players end with its WebSocket: a closed page (or a browser that quit) says
nothing to its players, whose peers the server would otherwise keep, counted as viewers and holding
peer slots, until ~30 s of ICE consent checks went unanswered. Its WebSocket closes at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from server.app import create_app
from server.config import Settings, StreamConfig
from server.http import ws as ws_module
from server.inference.models import BUNDLED_MODEL
from server.webrtc import WebRTCConfig
from server.webrtc.peer import Peer
from server.webrtc.peers import PeerRegistry
from server.webrtc.routes import peers_key, webrtc_config_key
from tests.support.polling import eventually
from tests.test_webrtc import END_WITHIN_S, lan_peer, offer_to

ClientFactory = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(60)

#: Far below the ~30 s aioice takes to give up on a peer whose page went away.
CLOSED_WITHIN_S = END_WITHIN_S


async def start(aiohttp_client: ClientFactory, max_peers: int = 4) -> TestClient:
    app = create_app(Settings(model=str(BUNDLED_MODEL), streams=(StreamConfig("live", "scene:?seed=1"),)))
    app[webrtc_config_key] = WebRTCConfig(max_peers=max_peers)
    return await aiohttp_client(app)


@asynccontextmanager
async def page_socket(client: TestClient) -> AsyncIterator[tuple[Any, str]]:
    """A viewer page's WebSocket and the id its hello gave it."""
    async with client.ws_connect("/ws") as ws:
        hello = await ws.receive_json()
        assert hello["type"] == "hello"
        yield ws, hello["socket"]


def player() -> RTCPeerConnection:
    pc = lan_peer()
    pc.addTransceiver("video", direction="recvonly")
    return pc


async def viewers(client: TestClient) -> int:
    return int((await (await client.get("/api/streams/live")).json())["viewers"])


async def closed_on_server(client: TestClient, socket_id: str) -> None:
    """Until the server has handled the close of the socket ``socket_id``."""
    sockets = client.app[ws_module.page_sockets_key]

    async def closed() -> bool:
        return not sockets.is_open(socket_id)

    await eventually(closed, END_WITHIN_S, "the server to handle the socket's close")


def peer_of(client: TestClient, socket_id: str | None) -> Peer:
    (peer,) = (peer for peer in client.app[peers_key]._peers if peer.socket == socket_id)
    return peer


async def test_each_websocket_is_told_an_unguessable_id_of_its_own(aiohttp_client: ClientFactory) -> None:
    client = await start(aiohttp_client)
    async with page_socket(client) as (_, first), page_socket(client) as (_, second):
        assert first != second
        assert len(first) >= 20, "an id short enough to guess would let anyone bind to another's socket"


async def test_closing_a_pages_websocket_closes_its_connected_player_at_once(aiohttp_client: ClientFactory) -> None:
    """Given a page playing over WebRTC with its offer bound to its WebSocket, when the page closes
    (its WebSocket with it), then its player stops counting as a viewer and its peer slot is free."""
    client = await start(aiohttp_client, max_peers=1)
    pc = player()
    tracks: list[MediaStreamTrack] = []
    pc.on("track", tracks.append)
    try:
        async with page_socket(client) as (_, socket_id):
            await offer_to(client, "/api/webrtc/play/live", pc, image="clean", socket=socket_id)
            await asyncio.wait_for(tracks[0].recv(), 3 * END_WITHIN_S)  # connected and playing
            assert await viewers(client) == 1
            peer = peer_of(client, socket_id)

        async def no_viewers() -> bool:
            return await viewers(client) == 0

        await eventually(no_viewers, CLOSED_WITHIN_S, "the closed page's player to stop counting as a viewer")
        assert peer.closing is not None
        await asyncio.wait_for(peer.closing, CLOSED_WITHIN_S)
        assert peer.close_reason == "its page's WebSocket closed"
        assert client.app[peers_key].counts().players == 0
        again = player()
        try:
            await offer_to(client, "/api/webrtc/play/live", again)  # into the one slot it freed
        finally:
            await again.close()
    finally:
        await pc.close()


async def test_a_socket_closes_only_the_players_whose_own_offer_named_it(aiohttp_client: ClientFactory) -> None:
    """Knowing an id binds one's own player to that socket and nothing more: another socket closing
    leaves the player alone, and a player whose offer named no socket lives on as before."""
    client = await start(aiohttp_client)
    bound, unbound = player(), player()
    try:
        async with page_socket(client) as (_, mine):
            async with page_socket(client) as (_, other):
                await offer_to(client, "/api/webrtc/play/live", bound, socket=mine)
                await offer_to(client, "/api/webrtc/play/live", unbound)
            await closed_on_server(client, other)
            peer = peer_of(client, mine)
            assert peer.closing is None, "closed by a socket its offer did not name"
        await closed_on_server(client, mine)
        assert peer.closing is not None and peer.close_reason == "its page's WebSocket closed"
        await asyncio.wait_for(peer.closing, CLOSED_WITHIN_S)
        assert peer_of(client, None).closing is None, "a player that named no socket is closed as before"
        assert await viewers(client) == 1
    finally:
        await bound.close()
        await unbound.close()


@pytest.mark.parametrize(
    ("socket", "status", "said"),
    [
        ("no-such-socket", 409, "no open WebSocket has the offer's 'socket' id"),
        (None, 409, "no open WebSocket has the offer's 'socket' id"),  # a socket that closed: see below
        (12, 400, "'socket' must be the id"),
    ],
    ids=["unknown", "closed", "not-a-string"],
)
async def test_an_offer_naming_no_open_socket_is_refused_saying_so(
    aiohttp_client: ClientFactory, socket: object, status: int, said: str
) -> None:
    client = await start(aiohttp_client)
    if socket is None:
        async with page_socket(client) as (_, socket):
            pass
        await closed_on_server(client, str(socket))
    pc = player()
    try:
        await pc.setLocalDescription(await pc.createOffer())
        offer = {"type": "offer", "sdp": pc.localDescription.sdp, "socket": socket}
        response = await client.post("/api/webrtc/play/live", json=offer)
        assert response.status == status
        assert said in (await response.json())["error"]
        assert not client.app[peers_key]._peers, "no peer is made for a refused offer"
    finally:
        await pc.close()


async def test_a_socket_closed_while_its_players_offer_is_answered_refuses_it_and_leaves_nothing(
    aiohttp_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Answering takes seconds with a STUN server that does not answer: a page closed meanwhile must
    not leave a player behind that it can no longer close."""
    client = await start(aiohttp_client)
    answer = PeerRegistry._answer
    async with page_socket(client) as (ws, socket_id):

        async def answered_as_the_page_closes(registry: PeerRegistry, peer: Peer) -> RTCSessionDescription:
            description = await answer(registry, peer)
            await ws.close()
            await closed_on_server(client, socket_id)
            return description

        monkeypatch.setattr(PeerRegistry, "_answer", answered_as_the_page_closes)
        pc = player()
        try:
            await pc.setLocalDescription(await pc.createOffer())
            offer = {"type": "offer", "sdp": pc.localDescription.sdp, "socket": socket_id}
            response = await client.post("/api/webrtc/play/live", json=offer)
        finally:
            await pc.close()
    assert response.status == 503
    assert "its page's WebSocket closed" in (await response.json())["error"]
    registry = client.app[peers_key]

    async def no_peers() -> bool:
        return not registry._peers  # once the close it began is over

    await eventually(no_peers, END_WITHIN_S, "the refused player's peer to close")
    assert not registry._feeds


@pytest.mark.parametrize("step", ["setRemoteDescription", "setLocalDescription"])
async def test_an_offer_whose_player_closed_as_aiortc_used_it_is_refused_for_that_not_as_bad(
    aiohttp_client: ClientFactory, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    """aiortc fails a closed connection's next step ("RTCPeerConnection is closed"): that was a 400
    blaming the offer, which the viewer reported, for a page whose socket had only just closed."""
    client = await start(aiohttp_client)
    original = getattr(RTCPeerConnection, step)
    async with page_socket(client) as (_, socket_id):

        async def closed_meanwhile(pc: RTCPeerConnection, description: RTCSessionDescription) -> None:
            if any(peer.pc is pc for peer in client.app[peers_key]._peers):  # the server's, not the test's
                client.app[peers_key].socket_closed(socket_id)
                raise RuntimeError("RTCPeerConnection is closed")  # as aiortc's InvalidStateError says
            await original(pc, description)

        monkeypatch.setattr(RTCPeerConnection, step, closed_meanwhile)
        pc = player()
        try:
            await pc.setLocalDescription(await pc.createOffer())
            offer = {"type": "offer", "sdp": pc.localDescription.sdp, "socket": socket_id}
            response = await client.post("/api/webrtc/play/live", json=offer)
        finally:
            monkeypatch.undo()
            await pc.close()
    assert response.status == 503, await response.text()
    assert "its page's WebSocket closed" in (await response.json())["error"]
