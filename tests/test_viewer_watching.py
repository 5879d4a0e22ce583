"""The viewer as a person watching it all day uses it, in a real headless Chromium against the real app: a
tile whose camera saw something happen in a zone or on a line says so for a while, the keyboard goes
between the grid and one camera, the picture goes full screen, a tile that went down shows no old rate,
and the tab's title counts the cameras that are down.

Every wait is on something the page shows, with a deadline; none is a fixed sleep.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from server.frames import PROTOCOL_VERSION
from server.http.keys import hub_key
from tests.support.browser import WAIT_MS, Console, open_page, require_browser, wait_for_new_frame, wait_for_text
from tests.support.event_packets import with_events
from tests.support.mjpeg_server import MjpegServer
from tests.test_viewer_background import paused_page

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

CARD = '.card[data-stream="{}"]'
SCENE = "scene:?seed=3&fps=5&width=320&height=192"
DEAD_URI = "rtsp://127.0.0.1:1/x"  # nothing answers: reconnecting all along
YARD = [(0.05, 0.05), (0.95, 0.05), (0.95, 0.95), (0.05, 0.95)]  # all of the scene's picture
#: web/grid.js: how long a tile stays marked after its stream's last event.
EVENT_SHOWN_MS = 10_000
#: Whether the tile at the selector is marked for an event, and the event's words on it ("" for none).
TILE_EVENT = """(card) => { const tile = document.querySelector(card);
  const words = tile.querySelector('.card-event');
  return { marked: tile.classList.contains('has-event'), text: words && !words.hidden ? words.textContent : '',
           parts: tile.querySelectorAll('.card-event').length }; }"""


def zone_enter(track_id: int, zone: str, when: float) -> dict[str, Any]:
    """A zone entry of stream cam, as the WebSocket carries it."""
    return {
        **{"type": "zone_enter", "v": PROTOCOL_VERSION, "stream": "cam", "id": track_id, "class_id": 0},
        **{"class": "person", "time": when, "media_time": float(track_id), "zone": zone},
    }


async def test_a_tile_whose_camera_saw_someone_enter_a_zone_is_marked_with_the_event(
    start_server: Start, browser: Any
) -> None:
    """Given the grid and a camera whose whole picture is a zone; when people enter it; then its tile is
    marked and says who entered where, without opening the camera."""
    client = await start_server(StreamConfig("cam", SCENE), StreamConfig("door", DEAD_URI))
    page, console = await open_page(browser, client, "/")
    await wait_for_new_frame(page, CARD.format("cam") + " canvas")

    yard = {"zones": [{"name": "yard", "points": YARD, "units": "fraction"}]}
    assert (await client.patch("/api/streams/cam", json=yard)).status == 200

    await page.wait_for_function(
        f"(card) => {{ const e = ({TILE_EVENT})(card); return e.marked && e.text.includes('entered yard'); }}",
        arg=CARD.format("cam"),
        timeout=WAIT_MS,
    )
    assert (await page.evaluate(TILE_EVENT, CARD.format("door")))["marked"] is False, "only the camera that saw it"
    assert console.errors == []


async def test_a_tile_shows_its_newest_event_with_its_time_and_the_mark_clears_by_itself(
    start_server: Start, browser: Any
) -> None:
    """Given the grid on the page's clock, paused; when a burst of zone entries comes; then the tile shows
    the newest, with its time, in one place; and the mark goes `EVENT_SHOWN_MS` after the last event."""
    client = await start_server(StreamConfig("cam", SCENE))
    page = await paused_page(browser)
    console = Console(page)
    await page.goto(str(client.make_url("/")))
    await page.wait_for_selector(CARD.format("cam"), timeout=WAIT_MS)

    now = time.time()
    zones = ["gate", "dock", "porch"]
    for seq, zone in enumerate(zones, start=1_000_000):
        client.app[hub_key].publish_threadsafe(with_events(seq, [zone_enter(seq, zone, now)], stream_id="cam"))
    await page.wait_for_function(
        f"(card) => ({TILE_EVENT})(card).text.includes('entered porch')", arg=CARD.format("cam"), timeout=WAIT_MS
    )

    shown = await page.evaluate(TILE_EVENT, CARD.format("cam"))
    clock = await page.evaluate("(time) => new Date(time * 1000).toLocaleTimeString()", now)
    assert shown == {"marked": True, "text": f"{clock} · person entered porch", "parts": 1}, shown
    await page.clock.run_for(EVENT_SHOWN_MS - 1)
    assert (await page.evaluate(TILE_EVENT, CARD.format("cam")))["marked"], "still marked within its time"
    await page.clock.run_for(1)
    assert await page.evaluate(TILE_EVENT, CARD.format("cam")) == {"marked": False, "text": "", "parts": 1}
    assert console.errors == []


async def test_a_number_key_opens_that_tile_and_escape_goes_back_to_the_grid(start_server: Start, browser: Any) -> None:
    client = await start_server(*(StreamConfig(id, DEAD_URI) for id in ("a", "b", "c")))
    page, console = await open_page(browser, client, "/")
    await page.wait_for_selector(CARD.format("c"), timeout=WAIT_MS)

    await page.focus("#add-form input[name=id]")
    await page.keyboard.press("3")
    assert await page.evaluate("location.hash") in ("", "#/"), "a digit typed into a field stays there"
    await page.evaluate("document.activeElement.blur()")
    await page.keyboard.press("3")
    await page.wait_for_function("location.hash === '#/stream/c'", timeout=WAIT_MS)

    await page.focus("#shape-name")
    await page.keyboard.press("Escape")
    assert await page.evaluate("location.hash") == "#/stream/c", "Escape in a field is the field's"
    await page.evaluate("document.activeElement.blur()")
    await page.keyboard.press("Escape")
    await page.wait_for_function("location.hash === '#/'", timeout=WAIT_MS)
    await page.keyboard.press("9")  # no ninth tile
    assert await page.evaluate("location.hash") == "#/"
    assert console.errors == []


async def test_escape_while_drawing_a_zone_drops_the_zone_and_stays_on_the_camera(
    start_server: Start, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", SCENE))
    page, console = await open_page(browser, client, "/?transport=ws#/stream/cam")
    await wait_for_new_frame(page, "#video")
    await page.click("#add-zone")
    await page.wait_for_function("document.querySelector('#add-zone').ariaPressed === 'true'", timeout=WAIT_MS)

    await page.keyboard.press("Escape")
    await page.wait_for_function("document.querySelector('#add-zone').ariaPressed === 'false'", timeout=WAIT_MS)
    assert await page.evaluate("location.hash") == "#/stream/cam", "the first Escape is the drawing's"
    await page.keyboard.press("Escape")
    await page.wait_for_function("location.hash === '#/'", timeout=WAIT_MS)
    assert console.errors == []


#: The class list of the element shown full screen, or null for none.
FULLSCREEN = "() => document.fullscreenElement?.className ?? null"


async def test_the_picture_goes_full_screen_from_its_button_and_a_double_click(
    start_server: Start, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", SCENE))
    page, console = await open_page(browser, client, "/?transport=ws#/stream/cam")
    await wait_for_new_frame(page, "#video")

    await page.get_by_role("button", name="Full screen").click()
    await page.wait_for_function(f"() => ({FULLSCREEN})()?.includes('canvas-wrap')", timeout=WAIT_MS)
    await page.evaluate("document.exitFullscreen()")
    await page.wait_for_function(f"() => ({FULLSCREEN})() === null", timeout=WAIT_MS)

    await page.dblclick("#video")
    await page.wait_for_function(f"() => ({FULLSCREEN})()?.includes('canvas-wrap')", timeout=WAIT_MS)
    assert console.errors == []


async def test_a_tile_gone_reconnecting_says_0_fps_not_its_rate_from_before(start_server: Start, browser: Any) -> None:
    """Given a camera's tile showing its rate; when the camera goes away; then, as its badge says
    reconnecting, its caption says no picture comes, not the rate it had."""
    with MjpegServer(fps=4, width=320) as camera:
        client = await start_server(StreamConfig("yard", camera.url()))
        page, console = await open_page(browser, client, "/")
        await wait_for_text(page, CARD.format("yard") + " small", "fps")
        camera.close()
        caption = await page.wait_for_function(
            """(card) => { const tile = document.querySelector(card);
                 return tile.querySelector('.badge').textContent === 'reconnecting'
                   && [tile.querySelector('small').textContent]; }""",
            arg=CARD.format("yard"),
            timeout=WAIT_MS,
        )
        [text] = await caption.json_value()
        assert text.startswith("0 fps"), f"the rate of a camera that is gone: {text}"
        assert console.errors == []


async def test_the_tab_title_counts_the_cameras_that_are_down(start_server: Start, browser: Any) -> None:
    client = await start_server(StreamConfig("cam", SCENE), StreamConfig("door", DEAD_URI))
    page, console = await open_page(browser, client, "/")
    await page.wait_for_function("document.title === '(1 down) segcast'", timeout=WAIT_MS)

    await page.evaluate("location.hash = '#/stream/cam'")
    await page.wait_for_function("document.title === '(1 down) cam · segcast'", timeout=WAIT_MS)
    assert (await client.delete("/api/streams/door")).status == 204
    await page.wait_for_function("document.title === 'cam · segcast'", timeout=WAIT_MS)
    assert console.errors == []
