"""A page's newer play offer for a stream replaces the player it had of that stream: a page offers again
only after letting its player go, and a close that never reached the server (its network went for a
while, its WebSocket lived through it) would leave that player playing to no one, counted as a viewer
and holding one of its address's peer places, until ICE consent checks gave up ~30 s later."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from server.http import ws as ws_module
from server.webrtc.peers import REPLACED, SOCKET_CLOSED
from server.webrtc.routes import peers_key
from tests.test_published_stream_options import connected, counts
from tests.test_webrtc import END_WITHIN_S, offer_to
from tests.test_webrtc_page_close import closed_on_server, page_socket, peer_of, player

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(60)

#: The server's WebSocket heartbeat, shortened so that a silent socket is found out within `END_WITHIN_S`.
SHORT_HEARTBEAT_S = 1.0


async def test_a_pages_newer_offer_for_a_stream_closes_its_older_player_of_it(start_server: Start) -> None:
    """Given a page playing a stream over WebRTC, bound to its WebSocket, whose player the server never
    heard close, when the page offers again for that stream naming that socket, then the older player is
    closed as replaced, and the stream counts one viewer and the server one player."""
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    older, newer = player(), player()
    try:
        async with page_socket(client) as (_, socket_id):
            await offer_to(client, "/api/webrtc/play/cam", older, image="clean", socket=socket_id)
            await connected(older)  # up, and never closed here: as one whose close packets were lost
            replaced = peer_of(client, socket_id)
            await offer_to(client, "/api/webrtc/play/cam", newer, image="clean", socket=socket_id)
            assert replaced.closing is not None, "the older player of the same page and stream lives on"
            assert replaced.close_reason == REPLACED
            await asyncio.wait_for(replaced.closing, END_WITHIN_S)
            assert peer_of(client, socket_id).closing is None, "the newer player is closed too"
            assert (await counts(client, "cam"))[:2] == (1, 1.0)
            assert client.app[peers_key].counts().players == 1
    finally:
        await older.close()
        await newer.close()


async def test_a_pages_offer_that_is_refused_still_lets_its_older_player_of_the_stream_go(start_server: Start) -> None:
    """The older player is closed as the newer offer comes, not once that one plays: the page let it go
    before offering again, and kept for a refused offer it would linger as before."""
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    older, refused = player(), player()
    try:
        async with page_socket(client) as (_, socket_id):
            await offer_to(client, "/api/webrtc/play/cam", older, image="clean", socket=socket_id)
            replaced = peer_of(client, socket_id)
            await refused.setLocalDescription(await refused.createOffer())
            send_only = refused.localDescription.sdp.replace("a=recvonly", "a=sendonly")
            response = await client.post(
                "/api/webrtc/play/cam", json={"type": "offer", "sdp": send_only, "socket": socket_id}
            )
            assert response.status == 400, await response.text()
            assert replaced.closing is not None and replaced.close_reason == REPLACED
            await asyncio.wait_for(replaced.closing, END_WITHIN_S)
            assert not client.app[peers_key]._peers
    finally:
        await older.close()
        await refused.close()


async def test_a_pages_offer_for_another_stream_leaves_its_player_of_the_first(start_server: Start) -> None:
    """A page may play several streams over one WebSocket: only a player of the same stream is replaced,
    and only one bound to the same socket."""
    client = await start_server(StreamConfig("cam", "scene:?seed=1"), StreamConfig("yard", "scene:?seed=2"))
    first, other_stream, other_page = player(), player(), player()
    try:
        async with page_socket(client) as (_, mine), page_socket(client) as (_, theirs):
            await offer_to(client, "/api/webrtc/play/cam", first, image="clean", socket=mine)
            kept = peer_of(client, mine)
            await offer_to(client, "/api/webrtc/play/yard", other_stream, image="clean", socket=mine)
            await offer_to(client, "/api/webrtc/play/cam", other_page, image="clean", socket=theirs)
            assert kept.closing is None, f"closed by an offer of another stream or page: {kept.close_reason}"
            assert (await counts(client, "cam"))[:2] == (2, 2.0)
            assert (await counts(client, "yard"))[:2] == (1, 1.0)
    finally:
        await first.close()
        await other_stream.close()
        await other_page.close()


async def test_a_page_whose_websocket_went_silent_has_its_player_closed_by_the_heartbeat(
    start_server: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page that reconnected offers under its new socket's id, which replaces nothing: its old player
    goes with its old socket, which a network that went says nothing of. The server's WebSocket heartbeat
    closes a socket whose pings go unanswered (after ``HEARTBEAT_S``, its pong awaited half as long), and
    its players with it."""
    monkeypatch.setattr(ws_module, "HEARTBEAT_S", SHORT_HEARTBEAT_S)
    client = await start_server(StreamConfig("cam", "scene:?seed=1"))
    silent = await client.ws_connect("/ws", autoping=False)  # read no more: no pong is ever sent
    hello = await silent.receive_json()
    pc = player()
    try:
        await offer_to(client, "/api/webrtc/play/cam", pc, image="clean", socket=hello["socket"])
        peer = peer_of(client, hello["socket"])
        await closed_on_server(client, hello["socket"])
        assert peer.closing is not None and peer.close_reason == SOCKET_CLOSED
        await asyncio.wait_for(peer.closing, END_WITHIN_S)
        assert (await counts(client, "cam"))[:2] == (0, 0.0)
    finally:
        await pc.close()
        await silent.close()
