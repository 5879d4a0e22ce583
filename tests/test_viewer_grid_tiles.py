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
from tests.support.browser import WAIT_MS, Console, open_page, require_browser, wait_for_new_frame, wait_for_text
from tests.support.mjpeg_server import MjpegServer
from tests.support.polling import eventually
from tests.test_viewer_background import paused_page

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

CARD = '.card[data-stream="{}"]'
TILE_PANEL = CARD + " .status-panel"
STALE_SECONDS = re.compile(r"No new picture for (\d+) s")
#: web/grid.js: a tile sent 4 pictures a second is stale after this long without one, checked this often.
STALE_MIN_S = 3
STALE_TICK_MS = 1000
#: Whether the tile at the selector shows a rate above 0 fps (only such a rate makes a tile judged stale).
SHOWS_A_RATE = """(card) => {
  const rate = /([\\d.]+) fps/.exec(document.querySelector(card + ' small')?.textContent ?? '');
  return rate !== null && Number(rate[1]) > 0;
}"""
#: Whether the tile's panel is hidden and its picture not dimmed.
TILE_CLEAR = """(card) => { const tile = document.querySelector(card);
  return tile.querySelector('.status-panel').hidden
    && !tile.querySelector('.card-picture').classList.contains('has-status'); }"""
#: The stream id of the card that has the keyboard focus, or the focused element's tag.
FOCUSED = "() => document.activeElement?.dataset.stream ?? document.activeElement?.tagName"


async def processed_fps(client: TestClient, stream_id: str) -> float:
    """The stream's processed rate as segcast's API says it now (0: no picture for a while)."""
    stream = await (await client.get(f"/api/streams/{stream_id}")).json()
    return float(stream["processed_fps"] or 0.0)


async def has_a_rate(client: TestClient, stream_id: str) -> bool:
    return await processed_fps(client, stream_id) > 0.0


async def stopped(client: TestClient, stream_id: str) -> bool:
    """Whether segcast has processed no picture of the stream for a while: none is on its way to a page."""
    return await processed_fps(client, stream_id) == 0.0


async def stale_seconds_after_a_tick(page: Any) -> int | None:
    """Run the page's clock on by one tick of the tiles' stale check; the seconds the door's stale note
    then says, or None where the tile says nothing."""
    await page.clock.run_for(STALE_TICK_MS)
    panel = TILE_PANEL.format("door")
    text = await page.evaluate(
        "(panel) => { const e = document.querySelector(panel); return e.hidden ? null : e.innerText; }", panel
    )
    found = STALE_SECONDS.search(text) if text is not None else None
    return int(found[1]) if found else None


async def test_a_camera_that_stops_sending_is_shown_stale_until_its_pictures_come_again(
    start_server: Start, browser: Any
) -> None:
    """A tile sent 4 pictures a second is stale after `STALE_MIN_S` without one, and its note counts the
    seconds. On the page's clock, paused from before it loaded: every picture is drawn at one time, the
    tiles are checked once a second as the test runs the clock on, and the seconds said are exact."""
    # The read time-out outlasts the test: segcast keeps the stalled camera "live", as it did the real one.
    with MjpegServer(fps=4, width=320) as camera:
        client = await start_server(StreamConfig("door", camera.url() + "#timeout=60"))
        await eventually(lambda: has_a_rate(client, "door"), what="a rate for the page's first stats to show")
        page = await paused_page(browser)
        console = Console(page)
        await page.goto(str(client.make_url("/")))
        card, canvas = CARD.format("door"), CARD.format("door") + " canvas"
        await wait_for_new_frame(page, canvas)
        await page.wait_for_function(SHOWS_A_RATE, arg=card, timeout=WAIT_MS)  # the stream's rate is known to the tile
        assert await page.evaluate(TILE_CLEAR, card), "a camera sending pictures is not covered"

        camera.stall.set()
        await eventually(lambda: stopped(client, "door"), what="segcast's rate of the stalled camera to fall to 0")
        said = [await stale_seconds_after_a_tick(page) for _ in range(STALE_MIN_S)]  # no picture is on its way
        assert said == [None] * (STALE_MIN_S - 1) + [STALE_MIN_S], said
        assert await page.inner_text(card + " .badge") == "live", "the server still has the source as live"
        assert await page.evaluate(
            "(card) => document.querySelector(card + ' .card-picture').classList.contains('has-status')", card
        ), "the frozen picture is dimmed"
        assert await stale_seconds_after_a_tick(page) == STALE_MIN_S + 1, "the note counts the seconds"
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
