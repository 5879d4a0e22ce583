"""The grid's tiles, in a real headless Chromium against the real app: what a tile says of a camera
that stopped sending, where the keyboard focus goes when its tile is removed, and which of the
page's elements a screen reader speaks from.

Every wait is on something the page shows, with a deadline; none is a fixed sleep.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from tests.support.browser import WAIT_MS, open_page, require_browser, wait_for_new_frame, wait_for_text
from tests.support.mjpeg_server import MjpegServer

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

CARD = '.card[data-stream="{}"]'
TILE_PANEL = CARD + " .status-panel"
STALE_SECONDS = re.compile(r"No new picture for (\d+) s")
#: Whether the tile's panel is hidden and its picture not dimmed.
TILE_CLEAR = """(card) => { const tile = document.querySelector(card);
  return tile.querySelector('.status-panel').hidden
    && !tile.querySelector('.card-picture').classList.contains('has-status'); }"""
#: The stream id of the card that has the keyboard focus, or the focused element's tag.
FOCUSED = "() => document.activeElement?.dataset.stream ?? document.activeElement?.tagName"


async def test_a_camera_that_stops_sending_is_shown_stale_until_its_pictures_come_again(
    start_server: Start, browser: Any
) -> None:
    # The read time-out outlasts the test: segcast keeps the stalled camera "live", as it did the real one.
    with MjpegServer(fps=4, width=320) as camera:
        client = await start_server(StreamConfig("door", camera.url() + "#timeout=60"))
        page, console = await open_page(browser, client, "/")
        card, canvas = CARD.format("door"), CARD.format("door") + " canvas"
        await wait_for_new_frame(page, canvas)
        await wait_for_text(page, card + " small", "fps")  # the stream's rate is known to the tile
        assert await page.evaluate(TILE_CLEAR, card), "a camera sending pictures is not covered"

        camera.stall.set()
        text = await wait_for_text(page, TILE_PANEL.format("door"), "No new picture for")
        assert await page.inner_text(card + " .badge") == "live", "the server still has the source as live"
        assert await page.evaluate(
            "(card) => document.querySelector(card + ' .card-picture').classList.contains('has-status')", card
        ), "the frozen picture is dimmed"
        first = int(STALE_SECONDS.search(text)[1])  # type: ignore[index]
        await page.wait_for_function(
            """([panel, first]) => Number(/No new picture for (\\d+) s/.exec(
                 document.querySelector(panel).innerText)?.[1]) > first""",
            arg=[TILE_PANEL.format("door"), first],
            timeout=WAIT_MS,
        )  # the note counts the seconds
        await page.wait_for_function(  # the API's rate fell to nothing: said, not left out (nor "4.0 fps" kept)
            "(small) => /^0 fps\\b/.test(document.querySelector(small).innerText)", arg=card + " small", timeout=WAIT_MS
        )

        seen = await page.evaluate("(canvas) => document.querySelector(canvas).dataset.seq", canvas)
        camera.stall.clear()
        await wait_for_new_frame(page, canvas, seen)
        await page.wait_for_function(TILE_CLEAR, arg=card, timeout=WAIT_MS)
        assert console.errors == []


async def test_removing_the_focused_tile_hands_the_focus_on_and_says_so(start_server: Start, browser: Any) -> None:
    ids = ("a", "b", "c")
    client = await start_server(*(StreamConfig(id, f"scene:?seed={seed}") for seed, id in enumerate(ids, start=3)))
    page, console = await open_page(browser, client, "/")
    await page.wait_for_selector(CARD.format("c"), timeout=WAIT_MS)
    await page.focus(CARD.format("b"))

    assert (await client.delete("/api/streams/b")).status == 204
    await page.wait_for_selector(CARD.format("b"), state="detached", timeout=WAIT_MS)
    assert await page.evaluate(FOCUSED) == "c", "the focus goes to the next tile, not to the page's top"
    assert "“b” was removed" in await wait_for_text(page, "#grid-note", "was removed")

    assert (await client.delete("/api/streams/c")).status == 204  # the last tile: the one before it
    await page.wait_for_selector(CARD.format("c"), state="detached", timeout=WAIT_MS)
    assert await page.evaluate(FOCUSED) == "a"
    assert "“c” was removed" in await wait_for_text(page, "#grid-note", "“c”")
    assert console.errors == []


async def test_only_the_connection_badge_speaks_for_an_outage_not_every_tile(start_server: Start, browser: Any) -> None:
    client = await start_server(StreamConfig("lobby", "/no/such/file.mp4"), StreamConfig("cam", "scene:?seed=3"))
    page, console = await open_page(browser, client, "/")
    await wait_for_text(page, TILE_PANEL.format("lobby"), "Failed")
    await page.wait_for_selector(CARD.format("cam") + " .status-panel", state="attached", timeout=WAIT_MS)
    speaking = await page.evaluate(
        "() => document.querySelectorAll('#grid [role=status], #grid [role=alert], #grid [aria-live]').length"
    )
    assert speaking == 0, "a tile's notice is not a live region: in an outage they would all speak at once"
    assert await page.get_attribute("#connection", "role") == "status", "the page's badge says it once"

    await page.click(CARD.format("lobby"))
    await wait_for_text(page, "#stream-view .status-panel", "Failed")
    view_role = await page.get_attribute("#stream-view .status-panel .status-says", "role")
    assert view_role == "status", "the stream view's one panel still speaks"
    assert console.errors == []
