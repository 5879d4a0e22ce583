"""The viewer in a real headless Chromium when things go wrong around it: a save or an add the network
swallows, a token the person declined, names and ids as long as they may be, a notice in a tiny frame.

The page says what happened in words a person can act on, and goes on working once the cause is gone:
a change lost to the network never leaves the editor stuck, and a declined token can still be given.
Every wait is on something the page or the API shows, with a deadline; none is a fixed sleep.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from tests.support.browser import DESKTOP, WAIT_MS, open_page, require_browser, wait_for_new_frame, wait_for_text
from tests.support.zone_page import STREAM_VIEW, click, shape_names, stream_options

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

#: What Chromium logs for a request Playwright aborted as a lost network.
DISCONNECTED = "Failed to load resource: net::ERR_INTERNET_DISCONNECTED"
NO_CONNECTION = "no connection to segcast"
VIEWER = "viewer-token-for-the-failures-test"
VIEW_PANEL = "#stream-view .status-panel"
SMALL_PHONE = {"width": 375, "height": 667}  # an iPhone SE, the narrowest phone still sold
SMALL_TILE = {"width": 240, "height": 135}  # a dashboard's smallest tile
#: Ids and names as long as the server takes them (64 characters), with nowhere to break a line.
LONG_ID = ("camera-" * 10)[:64]
LONG_ZONE = "zone" + "x" * 60
LONG_LINE = "line" + "y" * 60
#: Notes, in the page, every WebSocket it opens; while `blockSockets` is set, new ones go nowhere.
BLOCKED_SOCKETS = """
window.blockSockets = true;
window.WebSocket = class extends WebSocket {
  constructor(url, protocols) {
    super(window.blockSockets ? "ws://127.0.0.1:9/" : url, protocols);
  }
};
"""
#: Notes, in the page, where the name tags of the shapes "bay" and "gate" are drawn, in frame pixels.
NOTE_TAGS = """
window.tags = {};
const fillText = CanvasRenderingContext2D.prototype.fillText;
CanvasRenderingContext2D.prototype.fillText = function (text, x, y, ...rest) {
  const name = String(text).split("  ")[0];
  if (name === "bay" || name === "gate") window.tags[name] = { y, size: parseFloat(/([\\d.]+)px/.exec(this.font)[1]) };
  return fillText.call(this, text, x, y, ...rest);
};
"""


async def _abort(page: Any, pattern: str, method: str) -> None:
    """Requests of ``method`` to ``pattern`` fail as on a lost network; others go through."""

    async def lost(route: Any) -> None:
        if route.request.method == method:
            await route.abort("internetdisconnected")
        else:
            await route.continue_()

    await page.route(pattern, lost)


async def test_a_zone_saved_without_a_connection_says_so_and_the_next_change_is_saved(
    start_server: Start, browser: Any
) -> None:
    """The save's network error was read as a server's refusal: the page threw, said nothing, and
    stayed "saving" for good, so every later change was lost too until a reload."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console = await open_page(browser, client, STREAM_VIEW)
    await wait_for_new_frame(page, "#video")
    await _abort(page, "**/api/streams/cam*", "PATCH")

    await page.click("#add-zone")
    for point in [(0.1, 0.1), (0.4, 0.1), (0.4, 0.4)]:
        await click(page, point)
    await page.click("#finish-shape")
    error = await wait_for_text(page, "#shape-error", NO_CONNECTION)
    assert error.startswith("Not saved"), error
    await page.wait_for_selector("#shape-empty:not([hidden])", timeout=WAIT_MS)  # what the server has: nothing

    await page.unroute("**/api/streams/cam*")
    await page.click("#add-line")
    await click(page, (0.7, 0.2))
    await click(page, (0.7, 0.8))
    await page.click("#finish-shape")
    options = await stream_options(client, lambda o: shape_names(o, "lines") == ["line-1"])
    assert shape_names(options, "zones") == []
    await page.wait_for_selector('#shape-list li[data-shape="line:line-1"]', timeout=WAIT_MS)
    assert await page.inner_text("#shape-error") == ""
    assert console.errors == [DISCONNECTED]


async def test_a_camera_added_without_a_connection_says_so(start_server: Start, browser: Any) -> None:
    """The network error was taken for an added camera not saved: the page threw and said nothing."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console = await open_page(browser, client, "/")
    await page.wait_for_selector('.card[data-stream="cam"]', timeout=WAIT_MS)
    await _abort(page, "**/api/streams*", "POST")
    await page.fill("#add-form input[name=id]", "porch")
    await page.fill("#add-form input[name=uri]", "scene:?seed=9")
    await page.click("#add-form button[type=submit]")
    error = await wait_for_text(page, "#add-error", NO_CONNECTION)
    assert error.startswith("Not added"), error
    assert await page.input_value("#add-form input[name=id]") == "porch", "kept, to be sent again"
    assert console.errors == [DISCONNECTED]


async def test_a_declined_token_is_said_over_the_picture_and_can_be_given_later(
    start_server: Start, browser: Any, screenshots: Path
) -> None:
    """After "Not now" the view said the server could not be reached, with no way back to the dialog."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"), viewer_tokens=(VIEWER,))
    page, console = await open_page(browser, client, STREAM_VIEW)
    dialog = page.locator("#token-dialog[open]")
    await dialog.wait_for(timeout=WAIT_MS)
    await dialog.locator("button.quiet").click()  # Not now

    notice = await wait_for_text(page, VIEW_PANEL, "needs an access token")
    assert "No connection" not in notice
    assert await page.inner_text("#connection") == "needs a token"
    await page.screenshot(path=screenshots / "token-needed.png")
    await page.click("#give-token")
    await dialog.wait_for(timeout=WAIT_MS)
    await dialog.locator("input[name=token]").fill(VIEWER)
    await dialog.locator("button[type=submit]").click()
    await wait_for_new_frame(page, "#video")
    assert await page.is_hidden(VIEW_PANEL)
    assert await page.is_hidden("#give-token")
    # The browser reports the refused requests and sockets themselves; nothing else went wrong.
    assert [e for e in console.errors if "401" not in e and "WebSocket" not in e] == []


async def test_ids_and_names_of_64_characters_never_widen_the_page(
    start_server: Start, browser: Any, screenshots: Path
) -> None:
    """A 64-character id made the stream view 789 px wide on a 375 px phone (Pause and Remove off
    screen); zone and line names as long widened the desktop page (shape list, track table, events)."""
    client = await start_server(StreamConfig(LONG_ID, "scene:?seed=3"))
    shapes = {
        "zones": [{"name": LONG_ZONE, "points": [[0.05, 0.05], [0.95, 0.05], [0.95, 0.95], [0.05, 0.95]]}],
        "lines": [{"name": LONG_LINE, "points": [[0.5, 0.05], [0.5, 0.95]]}],
    }
    for shape in [*shapes["zones"], *shapes["lines"]]:
        shape["units"] = "fraction"
    assert (await client.patch(f"/api/streams/{LONG_ID}", json=shapes)).status == 200
    for viewport in (SMALL_PHONE, DESKTOP):
        page, console = await open_page(browser, client, f"/?transport=ws#/stream/{LONG_ID}", viewport)
        await wait_for_new_frame(page, "#video")
        # Every place a long name shows: the shape list, the track table's zones and the event list.
        await page.wait_for_function(
            """(zone) => document.querySelectorAll('#shape-list li').length === 2
                && [...document.querySelectorAll('#tracks tbody td')].some((cell) => cell.textContent === zone)
                && document.querySelector('#events li') !== null""",
            arg=LONG_ZONE,
            timeout=WAIT_MS,
        )
        width = await page.evaluate("() => [document.documentElement.scrollWidth, innerWidth]")
        await page.screenshot(path=screenshots / f"{viewport['width']}.png", full_page=True)
        assert width[0] <= width[1], f"the page is {width[0]} px wide in a {viewport['width']} px window"
        assert console.errors == []
        await page.close()


async def test_a_notice_in_a_small_embed_can_be_read_from_its_start_to_its_end(
    start_server: Start, browser: Any, screenshots: Path
) -> None:
    """In a dashboard's 240x135 tile the embed's notice was centred and cut off at both ends."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"), viewer_tokens=(VIEWER,))
    page, _ = await open_page(browser, client, f"/embed/cam?token={VIEWER}", SMALL_TILE)
    await wait_for_text(page, ".status-panel", "not a signed token")  # the longest notice an embed has
    seen = await page.evaluate(
        """() => { const panel = document.querySelector('.status-panel');
             const top = panel.querySelector('strong').getBoundingClientRect().top;
             panel.scrollTop = panel.scrollHeight;
             return {top, bottom: panel.querySelector('.status-reason').getBoundingClientRect().bottom}; }"""
    )
    await page.screenshot(path=screenshots / "tile.png")
    assert seen["top"] >= 0, "the title is not cut off"
    assert seen["bottom"] <= SMALL_TILE["height"], "the reason's end can be scrolled to"


async def test_the_note_to_wait_for_the_picture_goes_when_it_comes(start_server: Start, browser: Any) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page = await browser.new_page()
    await page.add_init_script(BLOCKED_SOCKETS)
    await page.goto(str(client.make_url(STREAM_VIEW)))
    await page.wait_for_selector("#connection.state-failed", timeout=WAIT_MS)
    await page.click("#add-zone")
    await wait_for_text(page, "#shape-error", "Wait for the first picture")
    await page.evaluate("() => { window.blockSockets = false; }")
    await wait_for_new_frame(page, "#video")
    await page.wait_for_function("() => document.querySelector('#shape-error').textContent === ''", timeout=WAIT_MS)


async def test_a_line_starting_where_a_zone_does_leaves_both_name_tags_readable(
    start_server: Start, browser: Any
) -> None:
    """The line's tag was drawn right over the zone's, hiding its name and count."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    shapes = {
        "zones": [{"name": "bay", "points": [[0.2, 0.3], [0.6, 0.3], [0.6, 0.7]], "units": "fraction"}],
        "lines": [{"name": "gate", "points": [[0.2, 0.3], [0.8, 0.3]], "units": "fraction"}],
    }
    assert (await client.patch("/api/streams/cam", json=shapes)).status == 200
    page = await browser.new_page()
    await page.add_init_script(NOTE_TAGS)
    await page.goto(str(client.make_url(STREAM_VIEW)))
    await page.wait_for_selector('#shape-list li[data-shape="line:gate"]', timeout=WAIT_MS)
    seq = (await wait_for_new_frame(page, "#video"))["seq"]
    await wait_for_new_frame(page, "#video", seq)  # drawn with both shapes
    tags = await page.evaluate("() => window.tags")
    tag_height = tags["bay"]["size"] + 6  # drawTag's: the font's size and a margin
    assert abs(tags["gate"]["y"] - tags["bay"]["y"]) >= tag_height, tags
