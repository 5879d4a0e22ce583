"""A WebRTC player that shows nothing, or fails once it played, gives way to the page's other transport.

The stream view gives up an attempt that shows no frame within 5 s of the server's answer: its frames come
over the WebSocket, and, as the attempt was never up (not lost), WebRTC is not tried again. One whose
frames come in time stays on WebRTC. The publish page's playback of its camera, once connected, falls
back to MJPEG when its connection fails later, its WebRTC player stopped.

A real app and a real headless Chromium. The stream view's tests run on Playwright's clock, paused: the
page's timers fire only as the test runs that clock on, so "not before 5 s", "at 5 s" and "none in the
130 s after" are exact. Nothing is shown of a player whose frame callbacks never call back
(`NO_FRAME_SHOWN`), its connection up all along; the browser's word that a connection failed is given by
the test (`FAILABLE_PEERS`: a real one says it only ~30 s after the network went).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from tests import test_webrtc_browser
from tests.support.browser import WAIT_MS, Console, require_browser, wait_for_new_frame
from tests.support.polling import eventually
from tests.test_viewer_background import paused_page
from tests.test_viewer_webrtc import FELL_BACK, assert_live_frames_with_tracks, fell_back_reasons, wait_for_transport
from tests.test_viewer_webrtc_hidden import RTC_VIDEOS, peers, publish_and_play_back, record_play_offers
from tests.test_viewer_webrtc_retry import FAILABLE_PEERS, attempts
from tests.test_viewer_webrtc_stall import COUNTED_SOCKETS
from tests.test_webrtc_browser import camera_browser

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

fake_camera = test_webrtc_browser.fake_camera  # the same generated camera file, a fixture here too

FIRST_FRAME_TIMEOUT_MS = 5000  # web/webrtc.js
NO_VIDEO = "no video within 5 s"
#: Longer than every retry of a lost connection would wait in all (10 + 20 + 40 + 60 s, web/webrtc.js).
NO_RETRY_FOR_MS = 130_000
#: The page's clock is run on this much at a time, a message waited for after each: within the 12.5 s of
#: silence after which the page would connect its WebSocket again (web/connection.js), and offer WebRTC anew.
CLOCK_STEP_MS = 10_000
#: The page's videos never call back for a frame shown: no WebRTC frame is paired with its metadata, so
#: none is drawn (web/webrtc_pairing.js watches frames through this callback alone, where it exists).
NO_FRAME_SHOWN = "HTMLVideoElement.prototype.requestVideoFrameCallback = function () { return 0; };"
PLAYER_CONNECTED = "() => window.peers.at(-1)?.connectionState === 'connected'"
CANVAS_SEQ = "() => document.querySelector('#video').dataset.seq ?? null"
CANVAS_TRANSPORT = "() => document.querySelector('#video').dataset.transport"
MJPEG_SHOWN = """() => document.getElementById('play-mode').textContent === '(MJPEG)'
  && !document.getElementById('annotated-fallback').hidden
  && document.getElementById('annotated-fallback').naturalWidth > 0"""
PLAYBACK_STOPPED = """() => { const video = document.getElementById('annotated');
  return video.hidden && video.srcObject === null; }"""


async def run_clock_keeping_the_socket(page: Any, ms: int) -> None:
    """Run the page's clock on by ``ms``, a step at a time, each followed by a frame message the page's
    WebSocket heard at the new time (`COUNTED_SOCKETS`): a picture drawn may be of a message heard before."""
    for _ in range(ms // CLOCK_STEP_MS):
        await page.clock.run_for(CLOCK_STEP_MS)
        told = await page.evaluate("() => window.wsFrames")
        await page.wait_for_function("(told) => window.wsFrames > told", arg=told, timeout=WAIT_MS)
    assert await page.evaluate("() => window.pageSockets.length") == 1, "a socket connected again offers anew"


async def no_player(client: TestClient) -> bool:
    """The server holds no WebRTC player (the MJPEG fallback's viewer is none)."""
    return (await peers(client))["player"] == 0


async def answered_stream_view(
    browser: Any, client: TestClient, *init_scripts: str
) -> tuple[Any, Console, list[str], list[str]]:
    """The stream view of "cam" on a paused clock (`FAILABLE_PEERS`, `COUNTED_SOCKETS` and ``init_scripts``
    in it), its WebRTC attempt answered and connected, a picture drawn: the page, its console, the reasons
    it fell back and the play offers it sent, as they come."""
    page = await paused_page(browser, FAILABLE_PEERS, COUNTED_SOCKETS, *init_scripts)
    console = Console(page)
    fell_back = fell_back_reasons(page)
    offers = record_play_offers(page)
    await page.goto(str(client.make_url("/#/stream/cam")))
    await page.wait_for_function(PLAYER_CONNECTED, timeout=WAIT_MS)  # answered: the 5 s count from then
    await wait_for_new_frame(page, "#video")
    return page, console, fell_back, offers


async def test_an_attempt_without_a_frame_in_5_s_falls_back_to_the_websocket_for_good(
    start_server: Start, browser: Any
) -> None:
    """Given a stream view whose WebRTC attempt connected but shows no frame, when 5 s pass after the
    answer, then its frames come over the WebSocket, its hidden video is gone, and no attempt follows."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console, fell_back, offers = await answered_stream_view(browser, client, NO_FRAME_SHOWN)

    await page.clock.run_for(FIRST_FRAME_TIMEOUT_MS - 1)
    assert await page.evaluate(RTC_VIDEOS) == 1, "still trying WebRTC before 5 s"
    assert await page.evaluate(CANVAS_TRANSPORT) == "websocket", "no WebRTC frame was drawn"

    async with page.expect_console_message(lambda message: message.text.startswith(FELL_BACK)):
        await page.clock.run_for(1)
    assert fell_back == [NO_VIDEO]
    assert await page.evaluate(RTC_VIDEOS) == 0, "its hidden video is gone"
    assert await page.text_content("#stream-transport") == "WebSocket"
    await assert_live_frames_with_tracks(page, client, "websocket")

    await run_clock_keeping_the_socket(page, NO_RETRY_FOR_MS)
    assert await attempts(page) == 1, "never up, so never tried again"
    assert len(offers) == 1
    assert await page.evaluate(RTC_VIDEOS) == 0
    assert fell_back == [NO_VIDEO]
    assert console.errors == []


async def test_an_attempt_whose_frames_come_in_time_stays_on_webrtc(start_server: Start, browser: Any) -> None:
    """The same view, its frames shown: past the 5 s, and well after, it plays on over WebRTC."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console, fell_back, offers = await answered_stream_view(browser, client)
    await wait_for_transport(page, "WebRTC")

    await run_clock_keeping_the_socket(page, 2 * FIRST_FRAME_TIMEOUT_MS)
    await wait_for_new_frame(page, "#video", await page.evaluate(CANVAS_SEQ))
    assert await page.evaluate(CANVAS_TRANSPORT) == "webrtc", "the new pictures come over WebRTC"
    assert await page.text_content("#stream-transport") == "WebRTC"
    assert await page.evaluate(RTC_VIDEOS) == 1
    assert fell_back == []
    assert await attempts(page) == 1
    assert len(offers) == 1
    assert console.errors == []


async def test_a_publish_page_playback_whose_connection_fails_later_falls_back_to_mjpeg(
    start_server: Start, fake_camera: Path
) -> None:
    """Given the publish page playing its camera back over WebRTC, when the player's connection fails,
    then the player is stopped (on the page and on the server) and the MJPEG fallback shows the stream;
    the camera is still published."""
    client = await start_server()
    async with camera_browser(fake_camera) as browser:
        page = await browser.new_page()
        await page.add_init_script(FAILABLE_PEERS)
        console = Console(page)
        await publish_and_play_back(page, client)
        assert await page.evaluate("() => window.peers.length") == 2, "the camera's peer, then the player's"

        await page.evaluate("() => window.failPeer()")  # the player's: the newest
        await page.wait_for_function(MJPEG_SHOWN, timeout=WAIT_MS)
        assert await page.evaluate(PLAYBACK_STOPPED), "the WebRTC player's video is stopped"
        await eventually(lambda: no_player(client), WAIT_MS / 1000, "the failed player to be closed on the server")
        assert await page.get_attribute("#publish-status", "data-state") == "connected", "still published"
        assert console.errors == []
