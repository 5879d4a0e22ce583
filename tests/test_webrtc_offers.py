"""Offers that parse but could never connect are refused at once, naming what is wrong, with no peer
or stream left behind: aiortc would answer them, and the stream would sit ``starting`` (or the player
hold a peer slot) until a time-out, while the real error went to an unread task."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from server.webrtc.routes import peers_key
from tests.test_webrtc import lan_peer

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(60)


async def offer_sdp(role: str) -> str:
    """A well-formed offer as a publisher (video out) or a player (video in, and its data channel) sends it."""
    pc = lan_peer()
    pc.addTransceiver("video", direction="sendonly" if role == "publish" else "recvonly")
    if role == "play":
        pc.createDataChannel("meta")
    await pc.setLocalDescription(await pc.createOffer())
    await pc.close()
    return pc.localDescription.sdp


def without_fingerprint(sdp: str) -> str:
    return re.sub(r"a=fingerprint:[^\r\n]*\r\n", "", sdp)


def video_at_port_0(sdp: str) -> str:
    return re.sub(r"m=video \d+", "m=video 0", sdp)


def video_listing_only_an_unknown_codec(sdp: str) -> str:
    """The ``m=`` line lists payload type 127, which has no ``a=rtpmap``; the codecs' lines stay."""
    return re.sub(r"(m=video \d+ \S+) [\d ]+", r"\1 127", sdp)


@pytest.mark.parametrize(
    ("role", "craft", "named"),
    [
        ("publish", without_fingerprint, "fingerprint"),
        ("publish", video_at_port_0, "port 0"),
        ("play", without_fingerprint, "fingerprint"),
        ("play", video_listing_only_an_unknown_codec, "no codec"),
    ],
)
async def test_an_offer_that_could_never_connect_is_refused_and_starts_nothing(
    start_server: Start, role: str, craft: Callable[[str], str], named: str
) -> None:
    client = await start_server(StreamConfig("live", "scene:?seed=1"))
    sdp = craft(await offer_sdp(role))
    path = "/api/webrtc/publish" if role == "publish" else "/api/webrtc/play/live"
    extra = {"stream": "crafted"} if role == "publish" else {}
    response = await client.post(path, json={"type": "offer", "sdp": sdp, **extra})
    assert response.status == 400
    error = (await response.json())["error"]
    assert named in error and "video" in error, error
    streams = (await (await client.get("/api/streams")).json())["streams"]
    assert [s["id"] for s in streams] == ["live"], "no stream was started"
    assert not client.app[peers_key]._peers, "no peer holds a slot"
