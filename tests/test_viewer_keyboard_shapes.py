"""Zones drawn and moved from the keyboard in the stream view, in a real headless Chromium against the
real server (``?transport=ws``).

While a zone is drawn the picture has the focus and a crosshair that the arrow keys move by a step
of 1 % of the frame (Shift: 10 steps); Enter adds a corner there and, on the first corner, closes the
zone. With a shape selected, "[" and "]" pick its corner (around from the last to the first, and back;
each shape selected from its first) and the arrow keys move it, saved once per burst of presses like a
drag. A shape deleted from the list leaves the keyboard on its neighbour there. Every wait is on
something the page or the API shows, with a deadline.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from tests.support.browser import WAIT_MS, open_page, require_browser, wait_for_new_frame
from tests.support.polling import eventually
from tests.support.zone_page import STREAM_VIEW, assert_points, shape_names, stream_options

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

BAY = {"name": "bay", "points": [[0.2, 0.2], [0.6, 0.2], [0.6, 0.7]], "units": "fraction"}
CANVAS_FOCUSED = "() => document.activeElement?.id === 'video'"


async def _press(page: Any, key: str, times: int) -> None:
    for _ in range(times):
        await page.keyboard.press(key)


async def test_a_zone_drawn_from_the_keyboard_alone_is_saved_where_the_crosshair_was(
    start_server: Start, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console = await open_page(browser, client, STREAM_VIEW)
    await wait_for_new_frame(page, "#video")

    await page.focus("#overlays input[name=zones]")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "add-zone"
    await page.keyboard.press("Enter")
    await page.wait_for_function(CANVAS_FOCUSED, timeout=WAIT_MS)  # the crosshair starts at the centre

    await _press(page, "Shift+ArrowLeft", 3)
    await _press(page, "Shift+ArrowUp", 2)
    await page.keyboard.press("Enter")  # (0.2, 0.3)
    await _press(page, "Shift+ArrowRight", 4)
    await page.keyboard.press("Space")  # (0.6, 0.3)
    await _press(page, "Shift+ArrowDown", 4)
    await _press(page, "ArrowDown", 5)
    await page.keyboard.press("Enter")  # (0.6, 0.75)
    status = page.locator("#shape-status[role=status]")
    assert await status.text_content() == "Point 3 added at 60 %, 75 %."
    await _press(page, "Shift+ArrowLeft", 4)
    await _press(page, "Shift+ArrowUp", 4)
    await _press(page, "ArrowUp", 5)
    await page.keyboard.press("Enter")  # on the first corner again: closes the zone

    options = await stream_options(client, lambda o: shape_names(o, "zones") == ["zone-1"])
    assert_points(options["zones"][0], [(0.2, 0.3), (0.6, 0.3), (0.6, 0.75)])
    assert console.errors == []


async def test_a_selected_zones_corner_moved_with_arrow_keys_is_saved_once_per_burst(
    start_server: Start, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    assert (await client.patch("/api/streams/cam", json={"zones": [BAY]})).status == 200
    page, console = await open_page(browser, client, STREAM_VIEW)
    saves: list[str] = []
    page.on("request", lambda request: request.method == "PATCH" and saves.append(request.url))
    await wait_for_new_frame(page, "#video")
    await page.focus('#shape-list li[data-shape="zone:bay"] button')
    await page.keyboard.press("Enter")
    await page.wait_for_selector('#shape-list li.selected[data-shape="zone:bay"]', timeout=WAIT_MS)
    assert await page.eval_on_selector("#video", "canvas => canvas.tabIndex") == 0, "Tab reaches the picture"
    await page.focus("#video")

    await page.keyboard.press("]")  # the second corner, (0.6, 0.2)
    for _ in range(3):  # one key held down: a burst of presses
        await page.keyboard.down("ArrowRight")
    await page.keyboard.up("ArrowRight")
    await page.keyboard.press("Shift+ArrowDown")

    moved = [(0.2, 0.2), (0.63, 0.3), (0.6, 0.7)]

    def is_moved(options: dict[str, Any]) -> bool:
        points = options["zones"][0]["points"]
        return abs(points[1][0] - 0.63) < 0.005 and abs(points[1][1] - 0.3) < 0.005

    options = await stream_options(client, is_moved)
    assert_points(options["zones"][0], moved)

    async def both_seen() -> bool:
        # Playwright hands the page's requests to this process as events, which may come after the
        # server has answered them: wait for the second, then make sure there was no third.
        return len(saves) >= 2

    await eventually(both_seen, what="the second burst's save seen")
    assert len(saves) == 2, "each burst of arrow keys is saved once"
    assert console.errors == []


async def _select_from_the_list(page: Any, shape: str) -> None:
    """``shape`` (``zone:a``) selected as a keyboard does it, the focus left on its entry in the list."""
    await page.focus(f'#shape-list li[data-shape="{shape}"] button')
    await page.keyboard.press("Enter")
    await page.wait_for_selector(f'#shape-list li.selected[data-shape="{shape}"]', timeout=WAIT_MS)


async def test_the_corner_keys_wrap_around_and_start_again_on_each_shape_and_delete_leaves_the_focus_before(
    start_server: Start, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    a = {"name": "a", "points": [[0.1, 0.1], [0.3, 0.1], [0.3, 0.3]], "units": "fraction"}
    b = {"name": "b", "points": [[0.5, 0.5], [0.7, 0.5], [0.7, 0.7]], "units": "fraction"}
    assert (await client.patch("/api/streams/cam", json={"zones": [a, b]})).status == 200
    page, console = await open_page(browser, client, STREAM_VIEW)
    await wait_for_new_frame(page, "#video")
    status = page.locator("#shape-status")

    await _select_from_the_list(page, "zone:a")
    await page.focus("#video")
    await page.keyboard.press("[")  # back from the first corner: the last
    assert await status.text_content() == "Corner 3 of 3 at 30 %, 30 %."

    await _select_from_the_list(page, "zone:b")
    await page.focus("#video")
    await page.keyboard.press("ArrowRight")  # b's own first corner, not a's third
    assert await status.text_content() == "Corner 1 at 51 %, 50 %."
    options = await stream_options(client, lambda o: o["zones"][1]["points"][0] != b["points"][0])
    assert_points(options["zones"][1], [(0.51, 0.5), (0.7, 0.5), (0.7, 0.7)])
    assert options["zones"][0]["points"] == a["points"]

    # The last of the list deleted from the keyboard: its place goes to the entry before it.
    await page.focus('#shape-list li[data-shape="zone:b"] button')
    await page.keyboard.press("Delete")
    await stream_options(client, lambda o: shape_names(o, "zones") == ["a"])
    await page.wait_for_selector('#shape-list li[data-shape="zone:b"]', state="detached", timeout=WAIT_MS)
    assert await page.evaluate("() => document.activeElement.closest('li')?.dataset.shape") == "zone:a"
    assert console.errors == []
