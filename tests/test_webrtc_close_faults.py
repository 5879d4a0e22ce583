"""A WebRTC peer whose closing goes wrong still gives back all it held: its slot (16 in all), its
playback feed (rendering on for no one otherwise), its sender's wait for frames, its stream; and an
offer refused after its peer connection was made closes that connection (its UDP sockets)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamTrack

from server.config import StreamConfig
from server.http.keys import hub_key
from server.scene import Scene
from server.webrtc import peers as peers_module
from server.webrtc.peer import Peer
from server.webrtc.peers import PeerRegistry
from server.webrtc.playback import AnnotatedTrack
from server.webrtc.routes import peers_key
from tests.support.polling import eventually
from tests.test_webrtc import END_WITHIN_S, SceneTrack, lan_peer, offer_to

Start = Callable[..., Awaitable[TestClient]]

PEERS_LOG = "server.webrtc.peers"

pytestmark = pytest.mark.timeout(60)


@dataclass
class RecvCalls:
    """The tasks (aiortc's sender) that called a player's `AnnotatedTrack.recv`, and how many calls wait."""

    waiting: int = 0
    callers: set[asyncio.Task[Any]] = field(default_factory=set)  # the sender's RTP task

    def sender_stopped(self) -> bool:
        """Whether every task that called has ended and none is waiting: the sender takes no more.

        Its last call may well have given a frame: a sender stopped while it encoded one never calls
        again, so what its last call gave tells nothing.
        """
        return self.waiting == 0 and bool(self.callers) and all(task.done() for task in self.callers)


@pytest.fixture
def recv_calls(monkeypatch: pytest.MonkeyPatch) -> RecvCalls:
    calls = RecvCalls()
    recv = AnnotatedTrack.recv

    async def recorded(track: AnnotatedTrack) -> Any:
        caller = asyncio.current_task()
        assert caller is not None
        calls.callers.add(caller)
        calls.waiting += 1
        try:
            return await recv(track)
        finally:
            calls.waiting -= 1

    monkeypatch.setattr(AnnotatedTrack, "recv", recorded)
    return calls


@dataclass
class Playing:
    client: TestClient
    registry: PeerRegistry
    peer: Peer
    browser: RTCPeerConnection


@pytest.fixture
async def playing(recv_calls: RecvCalls, start_server: Start) -> AsyncIterator[Playing]:
    """A player connected and receiving frames: its sender is busy taking them from its track (every
    call of which ``recv_calls`` records)."""
    client = await start_server(StreamConfig("live", "scene:?seed=1"))
    browser = lan_peer()
    browser.addTransceiver("video", direction="recvonly")
    tracks: asyncio.Queue[MediaStreamTrack] = asyncio.Queue()
    browser.on("track", tracks.put_nowait)
    try:
        await offer_to(client, "/api/webrtc/play/live", browser)
        async with asyncio.timeout(3 * END_WITHIN_S):
            await (await tracks.get()).recv()
        registry = client.app[peers_key]
        (peer,) = registry._peers
        yield Playing(client, registry, peer, browser)
    finally:
        await browser.close()


async def raises_after_closing(playing: Playing, monkeypatch: pytest.MonkeyPatch) -> None:
    close = playing.peer.pc.close

    async def failing() -> None:
        await close()
        raise ConnectionError("injected: the connection broke as it closed")

    monkeypatch.setattr(playing.peer.pc, "close", failing)


async def raises_at_once(playing: Playing, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing of the connection closed: its sender is still there, waiting on the player."""

    async def failing() -> None:
        raise ConnectionError("injected: the connection could not be closed")

    monkeypatch.setattr(playing.peer.pc, "close", failing)


async def hangs(playing: Playing, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peers_module, "CLOSE_TIMEOUT_S", 0.1)

    async def hanging() -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(playing.peer.pc, "close", hanging)


async def feed_fails_to_leave_the_hub(playing: Playing, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(viewer: object) -> None:
        raise RuntimeError("injected: the hub could not remove the feed's viewer")

    monkeypatch.setattr(playing.client.app[hub_key], "remove_viewer", failing)


Fault = Callable[[Playing, pytest.MonkeyPatch], Awaitable[None]]


@pytest.mark.parametrize("fault", [raises_after_closing, raises_at_once, hangs, feed_fails_to_leave_the_hub])
async def test_a_player_whose_close_fails_still_frees_its_slot_feed_and_sender(
    playing: Playing,
    recv_calls: RecvCalls,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    fault: Fault,
) -> None:
    """Given a connected player, when a step of closing it fails, then its slot is free, its stream's
    playback feed has stopped rendering, and its sender takes no more frames; the failure is logged
    once. Only a time-out was caught: any other exception left the peer in the registry for good."""
    registry, peer = playing.registry, playing.peer
    (feed,) = registry._feeds.values()
    real_close = peer.pc.close
    await fault(playing, monkeypatch)
    caplog.set_level(logging.INFO, logger=PEERS_LOG)
    try:
        registry._close_soon(peer, "closed by the test")
        assert peer.closing is not None
        await peer.closing
        counts = registry.counts()
        assert (counts.publishers, counts.players) == (0, 0), "its slot is free again"
        assert registry._feeds == {} and feed._task.done(), "no feed renders on for no one"

        async def sender_stopped() -> bool:
            return recv_calls.sender_stopped()

        await eventually(sender_stopped, timeout_s=END_WITHIN_S, what="the sender to stop taking frames")
    finally:
        await real_close()  # what the fault kept closed
    failures = [r for r in caplog.records if r.name == PEERS_LOG and r.levelno >= logging.WARNING]
    assert len(failures) == 1, [r.getMessage() for r in failures]
    assert any("WebRTC player 127.0.0.1 closed: closed by the test" in r.getMessage() for r in caplog.records)


async def test_a_publisher_whose_stream_fails_to_end_still_closes_its_connection(
    start_server: Start, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    client = await start_server()
    registry = client.app[peers_key]
    publisher = lan_peer()
    publisher.addTrack(SceneTrack(Scene(seed=1)))

    async def failing_end(*args: object) -> None:
        raise RuntimeError("injected: the stream could not be removed")

    monkeypatch.setattr(registry, "_end_stream", failing_end)
    caplog.set_level(logging.INFO, logger=PEERS_LOG)
    try:
        await offer_to(client, "/api/webrtc/publish", publisher, stream="cam")
        (peer,) = registry._peers
        registry._close_soon(peer, "closed by the test")
        assert peer.closing is not None and peer.pump is not None
        await peer.closing
        assert peer.pc.connectionState == "closed"
        assert registry.counts().publishers == 0
        with pytest.raises(asyncio.CancelledError):
            await peer.pump
    finally:
        await publisher.close()
    errors = [r for r in caplog.records if r.name == PEERS_LOG and r.levelno >= logging.ERROR]
    assert [r.exc_info is not None for r in errors] == [True], "logged once, with its traceback"


@pytest.fixture
def peer_connections(monkeypatch: pytest.MonkeyPatch) -> list[RTCPeerConnection]:
    """Every peer connection the registry makes."""
    made: list[RTCPeerConnection] = []

    class Recorded(RTCPeerConnection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(peers_module, "RTCPeerConnection", Recorded)
    return made


def send_only_player(pc: RTCPeerConnection) -> None:
    pc.addTransceiver("video", direction="sendonly")


def audio_only_publisher(pc: RTCPeerConnection) -> None:
    pc.addTransceiver("audio", direction="sendonly")


@pytest.mark.parametrize(
    ("path", "make_offer"),
    [("/api/webrtc/play/live", send_only_player), ("/api/webrtc/publish", audio_only_publisher)],
    ids=["player-that-cannot-receive", "publisher-without-video"],
)
async def test_an_offer_refused_after_its_peer_was_made_closes_that_peer_connection(
    start_server: Start,
    peer_connections: list[RTCPeerConnection],
    path: str,
    make_offer: Callable[[RTCPeerConnection], None],
) -> None:
    """Such an offer's connection had gathered its candidates, each a UDP socket: left open, each
    refused offer kept them, and aiortc's tasks, for good."""
    client = await start_server(StreamConfig("live", "scene:?seed=1"))
    browser = lan_peer()
    make_offer(browser)
    try:
        await browser.setLocalDescription(await browser.createOffer())
        response = await client.post(path, json={"type": "offer", "sdp": browser.localDescription.sdp})
    finally:
        await browser.close()
    assert response.status == 400, await response.text()
    assert [pc.connectionState for pc in peer_connections] == ["closed"]
    assert not client.app[peers_key]._peers
