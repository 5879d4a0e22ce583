"""A WebRTC player costs the server nothing while its page is hidden.

Hidden for a while (a tab left in the background), a page closes its WebRTC player, so the server
stops encoding and sending H.264 that no one sees; a glance at another tab keeps it. Shown again, the
page plays over WebRTC again at once. The publish page goes on publishing meanwhile: only its
playback of the segmented result stops.

A real app and a real headless Chromium on Playwright's clock: the page's timers fire only as the test
runs that clock on, so "kept until" and "closed then" are exact. Hidden is the page's own
``document.hidden``, overridden (HIDEABLE): headless Chromium never hides a page by itself. A page is
kept hidden for no more of its clock than its connection's 12.5 s of allowed silence (web/connection.js):
a hidden page hears little, and past that it would connect again, which closes its players too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from tests import test_webrtc_browser
from tests.support.browser import CANVAS_STATS, WAIT_MS, Console, require_browser, wait_for_new_frame
from tests.support.polling import eventually
from tests.test_viewer_background import HIDE, HIDEABLE, paused_page
from tests.test_viewer_webrtc import wait_for_transport
from tests.test_webrtc_browser import camera_browser

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

fake_camera = test_webrtc_browser.fake_camera  # the same generated camera file, a fixture here too

HIDDEN_PLAYER_CLOSE_MS = 10_000  # web/webrtc.js
RTC_VIDEOS = "() => document.querySelectorAll('video.rtc-source').length"
#: The publish page's playback plays: its video has frames of a stream (a stopped player leaves none).
PLAYING_BACK = """() => { const video = document.getElementById('annotated');
  return !video.hidden && video.srcObject !== null && video.readyState >= HTMLMediaElement.HAVE_CURRENT_DATA; }"""


async def peers(client: TestClient) -> dict[str, int]:
    """The WebRTC peers the server holds a slot for, by role ("player", "publisher")."""
    text = await (await client.get("/metrics")).text()
    prefix = 'segcast_webrtc_peers{role="'
    return {
        line[len(prefix) : line.index('"}')]: int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith(prefix)
    }


async def viewers(client: TestClient, stream: str) -> int:
    """Who watches `stream`: its WebRTC players count, a page's metadata-only socket beside one does not."""
    return int((await (await client.get(f"/api/streams/{stream}")).json())["viewers"])


async def wait_for_players(client: TestClient, stream: str, count: int, what: str) -> None:
    async def reached() -> bool:
        return (await peers(client))["player"] == count and await viewers(client, stream) == count

    await eventually(reached, WAIT_MS / 1000, what)


async def publish_and_play_back(page: Any, client: TestClient) -> None:
    """Publish ``page``'s camera as "phone" from the publish page, and wait until the page plays it back
    over WebRTC (a player of it on the server)."""
    await page.goto(str(client.make_url("/static/publish.html")))
    await page.fill("input[name=stream]", "phone")
    await page.click("#use-camera")
    await page.wait_for_function(PLAYING_BACK, timeout=WAIT_MS)
    await wait_for_players(client, "phone", 1, "the page's playback on the server")
    assert await page.text_content("#play-mode") == "(WebRTC)"


def record_play_offers(page: Any) -> list[str]:
    """Every WebRTC play offer the page sends from now on, by URL, as it sends it."""
    offers: list[str] = []

    def on_request(request: Any) -> None:
        if request.method == "POST" and "/api/webrtc/play/" in request.url:
            offers.append(request.url)

    page.on("request", on_request)
    return offers


async def test_a_hidden_stream_view_closes_its_webrtc_player_and_plays_again_at_once_when_shown(
    start_server: Start, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    # Opened in a background tab: no offer until it is shown, whatever the view knows of the stream.
    page = await paused_page(browser, HIDEABLE, "window.pageHidden = true;")
    console = Console(page)
    offers = record_play_offers(page)
    await page.goto(str(client.make_url("/#/stream/cam")))
    await page.wait_for_selector("#stream-view [data-stat=viewers]", state="attached")  # the stream is known
    assert await page.evaluate(RTC_VIDEOS) == 0
    assert offers == []
    await page.evaluate(HIDE, False)
    await wait_for_transport(page, "WebRTC")
    await wait_for_new_frame(page, "#video")
    await wait_for_players(client, "cam", 1, "the page's player on the server")

    # Hidden for less than the delay (a glance at another tab): the player stays.
    await page.evaluate(HIDE, True)
    await page.clock.run_for(HIDDEN_PLAYER_CLOSE_MS - 1)
    assert await page.evaluate(RTC_VIDEOS) == 1
    assert await page.text_content("#stream-transport") == "WebRTC"
    assert (await peers(client))["player"] == 1
    kept = await page.evaluate(CANVAS_STATS, "#video")

    # Hidden for the whole delay: the player closes, on the page and on the server.
    await page.clock.run_for(1)
    assert await page.evaluate(RTC_VIDEOS) == 0
    await wait_for_players(client, "cam", 0, "the hidden page's player to be closed on the server")
    hidden = await page.evaluate(CANVAS_STATS, "#video")
    # A frame or two the player drew while the page was hidden may be newer than `kept`: a picture stays.
    assert hidden["seq"] >= kept["seq"] and hidden["std"] > 10, "the last picture stays"
    assert await page.locator("#stream-view .status-panel").is_hidden(), "no notice: nothing went wrong"
    assert len(offers) == 1, "no new offer while hidden"

    # Shown again: a new player at once (no timer of the page run), whose frames are drawn.
    await page.evaluate(HIDE, False)
    await wait_for_transport(page, "WebRTC")
    resumed = await page.evaluate(CANVAS_STATS, "#video")
    await wait_for_new_frame(page, "#video", resumed["seq"])
    await wait_for_players(client, "cam", 1, "a new player as the page is shown")
    assert len(offers) == 2
    assert console.errors == []


async def test_a_hidden_publish_page_goes_on_publishing_but_stops_playing_back_until_shown(
    start_server: Start, fake_camera: Path
) -> None:
    client = await start_server()
    async with camera_browser(fake_camera) as browser:
        page = await paused_page(browser, HIDEABLE)
        console = Console(page)
        offers = record_play_offers(page)
        await publish_and_play_back(page, client)

        await page.evaluate(HIDE, True)
        await page.clock.run_for(HIDDEN_PLAYER_CLOSE_MS - 1)
        assert (await peers(client))["player"] == 1, "a glance at another tab keeps the playback"
        await page.clock.run_for(1)
        await wait_for_players(client, "phone", 0, "the hidden page's playback to be closed on the server")
        assert await peers(client) == {"publisher": 1, "player": 0}, "the camera is still published"
        stream = await (await client.get("/api/streams/phone")).json()
        assert stream["state"] == "live"
        assert await page.get_attribute("#publish-status", "data-state") == "connected"
        assert len(offers) == 1

        await page.evaluate(HIDE, False)
        await wait_for_players(client, "phone", 1, "a new playback as the page is shown")
        await page.wait_for_function(PLAYING_BACK, timeout=WAIT_MS)
        assert await page.text_content("#play-mode") == "(WebRTC)"
        assert await page.is_hidden("#annotated-fallback")
        assert await peers(client) == {"publisher": 1, "player": 1}
        assert len(offers) == 2
        assert console.errors == []


async def test_a_publish_page_hidden_as_it_publishes_plays_back_nothing_until_shown(
    start_server: Start, fake_camera: Path
) -> None:
    client = await start_server()
    async with camera_browser(fake_camera) as browser:
        # A camera published again on a phone in the background: on air, but nothing to see.
        page = await paused_page(browser, HIDEABLE, "window.pageHidden = true;")
        console = Console(page)
        offers = record_play_offers(page)
        await page.goto(str(client.make_url("/static/publish.html")))
        await page.fill("input[name=stream]", "phone")
        await page.click("#use-camera")
        await page.wait_for_selector("#publish-status[data-state=connected]", timeout=WAIT_MS)
        await page.clock.run_for(HIDDEN_PLAYER_CLOSE_MS)
        assert offers == [], "no playback offered while hidden"
        assert await peers(client) == {"publisher": 1, "player": 0}
        assert not await page.evaluate(PLAYING_BACK)

        await page.evaluate(HIDE, False)
        await wait_for_players(client, "phone", 1, "the playback as the page is shown")
        await page.wait_for_function(PLAYING_BACK, timeout=WAIT_MS)
        assert await page.text_content("#play-mode") == "(WebRTC)"
        assert len(offers) == 1
        assert console.errors == []
