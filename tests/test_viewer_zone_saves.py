"""A zone editor's save outlives the view it was made in, in a real headless Chromium against the real
server: a person who looks at the grid and comes back while a save is unanswered sees the shapes it
saves, and a change made then waits for it, rather than going out beside it and being refused as
someone else's (the page said the shapes were changed elsewhere, and the new line was lost).

Every wait is on something the page or the API shows, with a deadline; none is a fixed sleep.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from tests.support.browser import DESKTOP, WAIT_MS, Console, hold_first_save, require_browser, wait_for_new_frame
from tests.support.zone_page import STREAM_VIEW, Point, click, shape_names, stream_options
from tests.test_viewer_zones import COUNT_SAVES

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

TRIANGLE: list[Point] = [(0.1, 0.1), (0.4, 0.1), (0.4, 0.4)]
LINE: list[Point] = [(0.6, 0.6), (0.9, 0.6)]


async def test_a_stream_left_and_opened_again_while_its_save_is_unanswered_keeps_both_changes(
    start_server: Start, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page = await browser.new_page(viewport=DESKTOP)  # Add zone and the whole picture both on screen
    console = Console(page)
    await page.add_init_script(COUNT_SAVES)
    held = await hold_first_save(page)
    await page.goto(str(client.make_url(STREAM_VIEW)))
    await wait_for_new_frame(page, "#video")

    await page.click("#add-zone")
    for point in [*TRIANGLE, TRIANGLE[0]]:  # the first corner again closes it
        await click(page, point)
    save = await asyncio.wait_for(held, WAIT_MS / 1000)

    # A look at the grid, and back, while the zone's save is on its way: the view shows the zone.
    await page.evaluate("() => { location.hash = '#/'; }")
    await page.wait_for_selector("#grid-view:not([hidden])", timeout=WAIT_MS)
    await page.evaluate("() => { location.hash = '#/stream/cam'; }")
    await wait_for_new_frame(page, "#video")
    await page.wait_for_selector('#shape-list li[data-shape="zone:zone-1"]', timeout=WAIT_MS)

    # A line drawn now waits for the zone's save, and is saved over its answer.
    await page.click("#add-line")
    for point in LINE:
        await click(page, point)
    await page.click("#finish-shape")
    await page.wait_for_selector('#shape-list li[data-shape="line:line-1"]', timeout=WAIT_MS)
    assert await page.evaluate("() => window.saves.most") == 1, "no second save beside the one on its way"
    await save.continue_()

    await stream_options(
        client, lambda o: shape_names(o, "zones") == ["zone-1"] and shape_names(o, "lines") == ["line-1"]
    )
    await page.wait_for_function("() => window.saves.open === 0", timeout=WAIT_MS)
    assert await page.evaluate("() => window.saves.most") == 1
    assert await page.text_content("#shape-error") == ""
    for shape in ("zone:zone-1", "line:line-1"):
        await page.wait_for_selector(f'#shape-list li[data-shape="{shape}"]', timeout=WAIT_MS)
    assert console.errors == []
