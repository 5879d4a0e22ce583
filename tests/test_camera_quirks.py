"""What a user review with real cameras found: passwords typed raw, a stall noticed late, and errors
that did not name the fix.

A password holding a raw '@' and then a raw '?' or '#' was shown in part (``adm:***@ss?Zq7@cam``):
the masking took the user info to the last '@' before the first '?', as FFmpeg does, while the
person meant all of it. The masking now hides anything that could be a password, for every shape.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from server.sources import SourceError, StreamState, mask_uri, open_source
from server.sources.uri import mask_text
from tests.support.components import require_component
from tests.support.fake_rtsp import FakeRtspCamera
from tests.support.ports import held_closed_port
from tests.support.reader_probe import ReaderProbe
from tests.support.rtsp_camera import RtspCamera, system_rtsp_server_available
from tests.support.silent_proxy import SilentProxy

Start = Callable[..., Awaitable[TestClient]]

#: Each holds one of the characters a URI gives a meaning to, and spaces; letters no URI here holds.
PASSWORDS = ("Qx@WvJk", "Qx?WvJk", "Qx#WvJk", "Qx/WvJk", "Qx:WvJk", "Qx%WvJk", "Qx Wv Jk", "Qx@Wv?Jk#Yz/Gh:Bn%Fd")
#: Where a password goes in a camera's URI; ``{pw}`` is the password as typed, raw or percent-encoded.
SHAPES = (
    "rtsp://adm:{pw}@127.0.0.1:{port}/auth",
    "rtsp://adm:{pw}@127.0.0.1:{port}/auth?channel=1&subtype=0",
    "rtsp://adm:{pw}@127.0.0.1:{port}/auth#timeout=3",
    "rtsp://adm%3Ain:{pw}@127.0.0.1:{port}/auth?channel=1#transport=udp",
    "rtsp://{pw}@127.0.0.1:{port}/auth",  # a user name alone may be a token
    "http://127.0.0.1:{port}/v.cgi?user=adm&password={pw}&res=hd",
    "http://127.0.0.1:{port}/v.cgi?user=adm&password={pw}#timeout=3",
    "adm:{pw}@192.168.1.10/stream1",  # a camera's address typed without its scheme
)


def typed(password: str) -> list[str]:
    """The password as people write it in a URI: raw, and percent-encoded."""
    return [password, quote(password, safe="")]


def pieces(password: str) -> set[str]:
    """Every 3-character piece of the password, raw and percent-encoded (but an escape alone, ``%3F``, which
    the refusal names): any longer piece holds one."""
    found = {form[i : i + 3] for form in typed(password) for i in range(len(form) - 2)}
    return {piece for piece in found if not re.fullmatch(r"%[0-9A-F]{2}", piece)}


def assert_hidden(password: str, text: str) -> None:
    shown = sorted(piece for piece in pieces(password) if piece in text)
    assert not shown, f"pieces {shown} of {password!r} in {text!r}"


CASES = [
    (password, shape.format(pw=form, port=1))
    for password in PASSWORDS
    for form in typed(password)
    for shape in SHAPES
    # A user name alone holding a raw ':' is a user and a password; one holding a raw '/' is a path.
    if not (shape.startswith("rtsp://{pw}@") and (":" in form or "/" in form))
]


@pytest.mark.parametrize(("password", "uri"), CASES)
def test_no_piece_of_a_password_is_ever_shown(password: str, uri: str) -> None:
    assert_hidden(password, mask_uri(uri))
    assert_hidden(password, mask_text(f"{uri}: 401 Unauthorized; host {unquote(uri)}", uri))
    try:
        shown = open_source(uri).describe()
    except SourceError as refused:
        shown = str(refused)
    assert_hidden(password, shown)


@pytest.mark.parametrize(
    ("uri", "masked"),
    [
        # The review's two: a raw '@' and then a raw '?' or '#'.
        ("rtsp://adm:p@ss?Zq7@127.0.0.1:18559/auth", "rtsp://adm:***@127.0.0.1:18559/auth"),
        ("rtsp://adm%3Ain:p@ss:w%2Frd#1%3F@127.0.0.1:18559/auth", "rtsp://adm%3Ain:***@127.0.0.1:18559/auth"),
        # A query after the path may hold an '@' (not refused); with a user info only the password hides.
        ("rtsp://cam/live?mail=a@b.com", "rtsp://cam/live?mail=a@b.com"),
        ("rtsp://adm:pw@cam/live?mail=a@b.com", "rtsp://adm:***@cam/live?mail=a@b.com"),
        ("http://cam/v?user=a&password=p@ss#Zq7", "http://cam/v?user=a&password=***"),
        ("http://cam/v?token=abc#transport=udp", "http://cam/v?token=***#transport=udp"),
    ],
)
def test_a_password_typed_raw_is_hidden_whole(uri: str, masked: str) -> None:
    assert mask_uri(uri) == masked


@pytest.mark.parametrize(
    "uri",
    [
        "rtsp://adm:p@ss?Zq7@127.0.0.1:18559/auth",
        "rtsp://adm:p@ss#Zq7@127.0.0.1:18559/auth",
        "rtsp://adm%3Ain:p@ss:w%2Frd#1%3F@127.0.0.1:18559/auth",
        "rtsp://adm:Zq7?x=1@127.0.0.1:18559/auth",
    ],
)
def test_a_raw_question_mark_or_hash_in_a_password_is_refused_without_showing_it(uri: str) -> None:
    """As README says; it was taken, then connected to the host ``ss`` (a piece of the password)."""
    with pytest.raises(SourceError) as refused:
        open_source(uri)
    told = str(refused.value)
    assert "must be percent-encoded ('#' as %23, '?' as %3F)" in told
    assert "Zq7" not in told and "@ss" not in told and "'ss'" not in told, told


@pytest.mark.parametrize(
    ("uri", "host"),
    [
        ("rtsp://cam:554/live?mail=a@b.com", "cam"),
        ("rtsp://10.0.0.5:554/Streaming/Channels/101?user=x@y", "10.0.0.5"),
        ("http://cam.local/v?mail=a@b.com#timeout=3", "cam.local"),
    ],
)
def test_a_query_after_the_path_may_hold_an_at_sign(uri: str, host: str) -> None:
    """Read to its last '@', the port, path and query were masked as a password: ``rtsp://cam:***@b.com``,
    naming a host ``b.com``. With no password to hide, the camera is described as it was given."""
    described = open_source(uri).describe()
    assert described == mask_uri(uri) == uri
    assert URL(described).host == host


async def test_the_api_never_shows_a_piece_of_a_password(start_server: Start, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = await start_server()
    with held_closed_port() as port:  # refuses each camera's connection
        for number, password in enumerate(PASSWORDS):
            for form in typed(password):
                uri = f"rtsp://adm:{form}@127.0.0.1:{port}/auth"
                response = await client.post("/api/streams", json={"id": f"cam{number}-{len(form)}", "uri": uri})
                text = await response.text()
                assert response.status in (201, 400), text
                if "?" in form or "#" in form:
                    assert response.status == 400 and "must be percent-encoded" in text, text
                assert_hidden(password, text)
        listed = await (await client.get("/api/streams")).text()
        assert "adm:***@127.0.0.1" in listed
        for password in PASSWORDS:
            assert_hidden(password, listed)
            assert_hidden(password, caplog.text)


# -- a camera that stops sending ----------------------------------------------------------------------

CONNECT_S = 15.0
STALL_TIMEOUT_S = 3.0


@pytest.fixture
def camera(camera_video: Path) -> Iterator[RtspCamera]:
    require_component(system_rtsp_server_available(), "needs /usr/bin/python3 with GStreamer's RTSP server")
    with RtspCamera(camera_video) as running:
        yield running


async def test_a_camera_that_stops_sending_is_stalled_one_timeout_after_its_last_frame(camera: RtspCamera) -> None:
    """FFmpeg hands over the camera's last packet when its read times out; that frame restarted the
    stall clock, so the stall came after twice ``#timeout``."""
    proxy = SilentProxy(URL(f"http://127.0.0.1:{camera.port}"))
    proxied = await proxy.start()
    probe = ReaderProbe(f"rtsp://127.0.0.1:{proxied.port}/scene#timeout={STALL_TIMEOUT_S:g}")
    try:
        probe.reader.start()
        await asyncio.to_thread(probe.wait_state, StreamState.LIVE, CONNECT_S)
        await asyncio.to_thread(probe.next_frame, 5)
        proxy.go_silent()  # the camera's last byte reaches the reader no later than now
        went_silent = time.monotonic()
        stalled = await asyncio.to_thread(probe.wait_state, StreamState.RECONNECTING, 4 * STALL_TIMEOUT_S)
        noticed_s = time.monotonic() - went_silent
    finally:
        await asyncio.to_thread(probe.reader.stop)
        await proxy.close()
    assert stalled.error is not None and stalled.error.startswith("stalled"), stalled
    # One time-out after the last frame, where the late frame made it two: half a time-out of slack.
    assert noticed_s < 1.5 * STALL_TIMEOUT_S, f"stalled {noticed_s:.2f} s after the camera went silent"


# -- errors that name the fix -------------------------------------------------------------------------


def test_a_camera_asking_for_credentials_the_uri_lacks_says_to_add_them(camera_video: Path) -> None:
    require_component(system_rtsp_server_available(), "needs /usr/bin/python3 with GStreamer's RTSP server")
    with RtspCamera(camera_video, user="admin", password="right-one") as camera, ReaderProbe(camera.url) as probe:
        asked = probe.wait_state(StreamState.RECONNECTING, CONNECT_S)
    assert asked.error is not None and "the camera asks for a user and password" in asked.error, asked
    assert "add user:password@ to the URI (percent-encode @ : / ? # in them)" in asked.error


class UdpOnlyCamera(FakeRtspCamera):
    """Describes an H.264 stream and answers a SETUP over TCP with 461 Unsupported transport."""

    SDP = (
        b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=cam\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n"
        b"m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:track1\r\n"
    )

    def __init__(self) -> None:
        super().__init__(self.SDP)

    def _reply(self, lines: list[str]) -> bytes:
        transports = [line for line in lines if line.lower().startswith("transport")]
        if lines[0].startswith("SETUP") and any("TCP" in line for line in transports):
            cseq = next((line.split(":", 1)[1].strip() for line in lines if line.lower().startswith("cseq")), "0")
            return f"RTSP/1.0 461 Unsupported transport\r\nCSeq: {cseq}\r\n\r\n".encode()
        return super()._reply(lines)


def test_a_camera_refusing_tcp_says_to_try_udp() -> None:
    with UdpOnlyCamera() as camera, ReaderProbe(camera.url) as probe:
        refused = probe.wait_state(StreamState.RECONNECTING, CONNECT_S)
    assert refused.error is not None and "the camera refused the transport" in refused.error, refused
    assert "try #transport=udp" in refused.error
