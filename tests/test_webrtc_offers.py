"""Offers that parse but could never connect are refused at once, naming what is wrong, with no peer
or stream left behind: aiortc would answer them, and the stream would sit ``starting`` (or the player
hold a peer slot) until a time-out, while the real error went to an unread task."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from server.http.access.policy import SourcePolicy
from server.webrtc.offers import (
    MALFORMED,
    MAX_REMOTE_CANDIDATES,
    OfferError,
    connectable,
    refusal,
    without_denied_candidates,
)
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


def data_channel_bundle_only_at_port_0(sdp: str) -> str:
    """The data channel's section as a browser with ``bundlePolicy: "max-bundle"`` writes it: it rides on
    the first section's transport, so it has no port of its own."""
    sdp = re.sub(r"m=application \d+", "m=application 0", sdp)
    return sdp.replace("a=mid:1\r\n", "a=mid:1\r\na=bundle-only\r\n")


async def test_a_bundle_only_section_at_port_0_is_not_taken_for_a_disabled_one() -> None:
    _, data = connectable(data_channel_bundle_only_at_port_0(await offer_sdp("play"))).media
    assert (data.kind, data.port) == ("application", 0), "the offer is taken as the browser wrote it"


def with_candidates(sdp: str, candidates: list[str]) -> str:
    """``sdp`` with the candidates of its first media section (the video) replaced by ``candidates``."""
    sdp = re.sub(r"a=candidate:[^\r\n]*\r\n", "", sdp).replace("a=end-of-candidates\r\n", "")
    return sdp.replace("a=ice-ufrag", "".join(f"a=candidate:{c}\r\n" for c in candidates) + "a=ice-ufrag", 1)


#: Candidates in a crafted offer: far more than any browser lists, well within an offer's 64 KiB.
CRAFTED_CANDIDATES = 200
#: What a browser on a laptop with a VPN lists: host candidates over UDP and TCP per interface, a
#: server-reflexive and a relayed one.
BROWSER_CANDIDATES = [
    "1 1 udp 2122260223 127.0.0.1 50001 typ host generation 0",
    "2 1 udp 2122194687 127.0.0.1 50002 typ host generation 0",
    "3 1 tcp 1518280447 127.0.0.1 9 typ host tcptype active generation 0",
    "4 1 tcp 1518214911 127.0.0.1 9 typ host tcptype active generation 0",
    "5 1 udp 1686052607 192.0.2.10 50003 typ srflx raddr 127.0.0.1 rport 50001 generation 0",
    "6 1 udp 41885439 198.51.100.20 50004 typ relay raddr 192.0.2.10 rport 50003 generation 0",
]


async def test_an_offer_listing_more_candidates_than_a_browser_would_is_refused(start_server: Start) -> None:
    """Each candidate makes segcast send ICE checks to the address it names: hundreds in one offer
    would make it probe addresses of the client's choosing."""
    client = await start_server(StreamConfig("live", "scene:?seed=1"))
    many = [f"{i} 1 udp {2_000_000_000 - i} 127.0.0.1 {31_000 + i} typ host" for i in range(CRAFTED_CANDIDATES)]
    sdp = with_candidates(await offer_sdp("play"), many)
    response = await client.post("/api/webrtc/play/live", json={"type": "offer", "sdp": sdp})
    assert response.status == 400
    error = (await response.json())["error"]
    assert f"media section 0 (video) lists {CRAFTED_CANDIDATES} ICE candidates; at most " in error, error
    assert not client.app[peers_key]._peers, "no peer holds a slot, and none runs checks"


async def test_an_offer_may_list_up_to_the_candidate_limit_and_no_more() -> None:
    sdp = await offer_sdp("play")
    candidates = [
        f"{i} 1 udp {2_000_000_000 - i} 127.0.0.1 {31_000 + i} typ host" for i in range(MAX_REMOTE_CANDIDATES + 1)
    ]
    video, _ = connectable(with_candidates(sdp, candidates[:MAX_REMOTE_CANDIDATES])).media
    assert len(video.ice_candidates) == MAX_REMOTE_CANDIDATES
    with pytest.raises(
        OfferError, match=f"lists {MAX_REMOTE_CANDIDATES + 1} ICE candidates; at most {MAX_REMOTE_CANDIDATES} "
    ):
        connectable(with_candidates(sdp, candidates))


async def test_a_browsers_candidates_are_taken(start_server: Start) -> None:
    client = await start_server(StreamConfig("live", "scene:?seed=1"))
    sdp = with_candidates(await offer_sdp("play"), BROWSER_CANDIDATES)
    response = await client.post("/api/webrtc/play/live", json={"type": "offer", "sdp": sdp})
    assert response.status == 200, await response.text()


async def test_candidates_in_deny_networks_get_no_ice_checks(start_server: Start) -> None:
    """By default ``deny_networks`` holds the link-local addresses, where a cloud machine's credentials
    are served: an offer may not point segcast's checks there, any more than a camera's URI may."""
    client = await start_server(StreamConfig("live", "scene:?seed=1"))
    metadata = "9 1 udp 2122260223 169.254.169.254 80 typ host generation 0"
    sdp = with_candidates(await offer_sdp("play"), [*BROWSER_CANDIDATES, metadata])
    response = await client.post("/api/webrtc/play/live", json={"type": "offer", "sdp": sdp})
    assert response.status == 200, await response.text()
    (peer,) = client.app[peers_key]._peers
    (video,) = (t for t in peer.pc.getTransceivers() if t.kind == "video")
    checked = {candidate.ip for candidate in video.receiver.transport.transport.getRemoteCandidates()}
    assert "169.254.169.254" not in checked
    assert {"127.0.0.1", "192.0.2.10", "198.51.100.20"} <= checked, "the others are kept"


@pytest.mark.parametrize("name", ["localhost", "3f1c2a9e-7d4b-4c55-9a0e-5b8f2d6c1e47.local"])
async def test_a_candidate_naming_a_host_is_kept_without_looking_the_name_up(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """A lookup would hold up the event loop (and a ``.local`` name is the browser's own, which aioice
    resolves over mDNS): the name is kept even where it would resolve into ``deny_networks``."""
    looked_up: list[str] = []

    def resolve_to_loopback(host: str, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
        looked_up.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", 0))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve_to_loopback)
    policy = SourcePolicy(deny_networks=(ipaddress.ip_network("127.0.0.0/8"),))
    sdp = with_candidates(await offer_sdp("play"), [f"1 1 udp 2122260223 {name} 50001 typ host"])
    kept, dropped = without_denied_candidates(sdp, policy)
    assert (dropped, looked_up) == (0, [])
    assert f" {name} 50001 typ host" in kept


def setup_bogus(sdp: str) -> tuple[str, str]:
    return sdp.replace("a=setup:actpass", "a=setup:bogus"), MALFORMED


def rtpmap_without_clock_rate(sdp: str) -> tuple[str, str]:
    return re.sub(r"a=rtpmap:(\d+) VP8/90000", r"a=rtpmap:\1 VP8", sdp, count=1), MALFORMED


def fingerprint_of_one_word(sdp: str) -> tuple[str, str]:
    return re.sub(r"a=fingerprint:sha-256 \S+", "a=fingerprint:sha-256", sdp, count=1), MALFORMED


def video_section_twice(sdp: str) -> tuple[str, str]:
    return sdp + sdp[sdp.index("m=video") : sdp.index("m=application")], "has the a=mid:0 of section 0"


def without_rtcp_mux(sdp: str) -> tuple[str, str]:
    """aiortc's own refusal, which says what to change, is kept as it is."""
    return sdp.replace("a=rtcp-mux\r\n", ""), "the offer could not be used: RTCP mux is not enabled"


@pytest.mark.parametrize(
    "craft", [setup_bogus, rtpmap_without_clock_rate, fingerprint_of_one_word, video_section_twice, without_rtcp_mux]
)
async def test_a_malformed_offer_is_refused_in_words_not_python_internals(
    start_server: Start, craft: Callable[[str], tuple[str, str]]
) -> None:
    """aiortc's parser fails on such offers with KeyError, IndexError, AttributeError or an unpacking
    ValueError, whose text ("'bogus'", "list index out of range") tells the client nothing."""
    client = await start_server(StreamConfig("live", "scene:?seed=1"))
    sdp, named = craft(await offer_sdp("play"))
    response = await client.post("/api/webrtc/play/live", json={"type": "offer", "sdp": sdp})
    assert response.status == 400
    error = (await response.json())["error"]
    assert error == named if named == MALFORMED else named in error, error
    assert not client.app[peers_key]._peers, "no peer holds a slot"


def test_pythons_own_words_for_a_bad_value_never_reach_the_client() -> None:
    """aiortc passes on ``int()``'s ValueError as it is: the type aiortc words its own refusals in."""
    error = refusal(ValueError("invalid literal for int() with base 10: 'x'"), "the offer could not be used")
    assert str(error) == MALFORMED


def test_aiortcs_own_words_for_a_refusal_are_kept() -> None:
    error = refusal(ValueError("RTCP mux is not enabled"), "the offer could not be used")
    assert str(error) == "the offer could not be used: RTCP mux is not enabled"
