"""Zones drawn and picked with a finger in the stream view, in a real headless Chromium with a touch
screen, against the real server (``?transport=ws``).

Only a tap adds a point or selects a zone: a swipe or a pinch on the picture adds no stray point
while a zone is drawn, and a swipe that scrolls the page from inside a zone selects nothing. A point
is taken back with *Undo point* (a phone has no Backspace), and on a phone held sideways *Add zone*
leaves *Done* on the screen. A corner dragged by a finger the browser takes over (a scroll, a system
gesture: ``pointercancel``) is not saved where the finger left it. Fingers move through the DevTools
protocol, as a phone reports them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from tests.support.browser import PHONE, WAIT_MS, Console, require_browser, wait_for_new_frame, wait_for_text
from tests.support.zone_page import STREAM_VIEW, Point, screen_point, shape_names, stream_options
from tests.test_viewer_zones import COUNT_SAVES

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

TOUCH_MOVES = 10
#: A phone held sideways (a Pixel 7 in landscape), in CSS pixels: the picture fills the screen's height.
LANDSCAPE_PHONE = {"width": 863, "height": 360}
#: Most of the frame, so that a finger lands inside it away from its corners.
BAY = {"name": "bay", "points": [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]], "units": "fraction"}
STATUS = "#shape-status"
#: Counts, in the page, the pointers the browser took over (``pointercancel``), as the picture hears of them.
NOTE_CANCELS = """
window.pointerCancels = 0;
addEventListener("pointercancel", () => (window.pointerCancels += 1));
"""
#: A finger is less exact than a mouse, and a phone's canvas is smaller: twice the mouse's tolerance.
FINGER_TOLERANCE = 0.02


async def _phone(client: TestClient, browser: Any, viewport: dict[str, int] = PHONE) -> tuple[Any, Console]:
    """The stream view on a touch screen, once it shows a frame."""
    page = await browser.new_page(viewport=viewport, has_touch=True, is_mobile=True)
    console = Console(page)
    await page.goto(str(client.make_url(STREAM_VIEW)))
    await wait_for_new_frame(page, "#video")
    return page, console


async def _touches(cdp: Any, kind: str, points: list[tuple[float, float]]) -> None:
    """Fingers ``points`` (screen px, one id each) put down, moved or, for ``touchEnd``, all lifted."""
    touch_points = [{"x": x, "y": y, "id": i} for i, (x, y) in enumerate(points)]
    await cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": touch_points})


async def _swipe(page: Any, start: Point, end: Point, ending: str = "touchEnd") -> None:
    """A finger put down at ``start`` and lifted at ``end`` (points of the frame), moving in between;
    ``ending`` ``touchCancel``: taken over by the browser there (a scroll, a system gesture) instead."""
    cdp = await page.context.new_cdp_session(page)
    (x0, y0), (x1, y1) = await screen_point(page, start), await screen_point(page, end)
    await _touches(cdp, "touchStart", [(x0, y0)])
    for step in range(1, TOUCH_MOVES + 1):
        await _touches(cdp, "touchMove", [(x0 + (x1 - x0) * step / TOUCH_MOVES, y0 + (y1 - y0) * step / TOUCH_MOVES)])
    await _touches(cdp, ending, [])
    await cdp.detach()


async def _pinch(page: Any, centre: Point) -> None:
    """Two fingers put down one after the other either side of ``centre`` and spread apart."""
    cdp = await page.context.new_cdp_session(page)
    x, y = await screen_point(page, centre)
    await _touches(cdp, "touchStart", [(x - 20, y)])
    await _touches(cdp, "touchStart", [(x - 20, y), (x + 20, y)])
    for step in range(1, TOUCH_MOVES + 1):
        spread = 20 + 60 * step / TOUCH_MOVES
        await _touches(cdp, "touchMove", [(x - spread, y), (x + spread, y)])
    await _touches(cdp, "touchEnd", [])
    await cdp.detach()


async def _tap(page: Any, point: Point) -> None:
    await page.touchscreen.tap(*await screen_point(page, point))


async def test_a_swipe_or_a_pinch_while_drawing_adds_no_point_and_a_tap_does(start_server: Start, browser: Any) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console = await _phone(client, browser)
    await page.tap("#add-zone")
    door = [(0.2, 0.2), (0.8, 0.2), (0.5, 0.8)]
    for point in door[:2]:
        await _tap(page, point)
    drawn = await wait_for_text(page, STATUS, "Point 2 added")

    await _swipe(page, (0.5, 0.6), (0.5, 0.1))
    await _pinch(page, (0.5, 0.5))
    assert await page.inner_text(STATUS) == drawn, "the swipe and the pinch added no point"

    await _tap(page, door[2])
    await wait_for_text(page, STATUS, "Point 3 added")
    await page.tap("#finish-shape")
    options = await stream_options(client, lambda o: shape_names(o, "zones") == ["zone-1"])
    for (x, y), (ex, ey) in zip(options["zones"][0]["points"], door, strict=True):
        assert abs(x - ex) < FINGER_TOLERANCE and abs(y - ey) < FINGER_TOLERANCE, options["zones"][0]
    assert console.errors == []


async def test_undo_point_takes_the_last_point_back(start_server: Start, browser: Any) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console = await _phone(client, browser)
    assert not await page.is_visible("#undo-point"), "no Undo point while no shape is drawn"
    await page.tap("#add-zone")
    assert await page.is_visible("#undo-point")
    assert await page.is_disabled("#undo-point"), "nothing to undo yet"

    for point in [(0.2, 0.2), (0.8, 0.2), (0.9, 0.9)]:
        await _tap(page, point)
    await wait_for_text(page, STATUS, "Point 3 added")
    await page.tap("#undo-point")
    await wait_for_text(page, STATUS, "Point 3 removed.")
    await _tap(page, (0.5, 0.8))
    await wait_for_text(page, STATUS, "Point 3 added")
    await page.tap("#finish-shape")

    options = await stream_options(client, lambda o: shape_names(o, "zones") == ["zone-1"])
    for (x, y), (ex, ey) in zip(options["zones"][0]["points"], [(0.2, 0.2), (0.8, 0.2), (0.5, 0.8)], strict=True):
        assert abs(x - ex) < FINGER_TOLERANCE and abs(y - ey) < FINGER_TOLERANCE, options["zones"][0]
    assert not await page.is_visible("#undo-point"), "gone with the shape drawn"
    assert console.errors == []


async def test_add_zone_on_a_phone_held_sideways_leaves_done_on_the_screen(start_server: Start, browser: Any) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console = await _phone(client, browser, LANDSCAPE_PHONE)
    await page.locator("#add-zone").scroll_into_view_if_needed()
    await page.tap("#add-zone")
    await wait_for_text(page, STATUS, "Drawing a zone")

    done = await page.evaluate(
        "() => { const r = document.querySelector('#finish-shape').getBoundingClientRect();"
        " return {top: r.top, bottom: r.bottom, height: innerHeight}; }"
    )
    assert done["top"] >= 0 and done["bottom"] <= done["height"], f"Done is off the screen: {done}"
    assert console.errors == []


async def test_a_swipe_starting_in_a_zone_selects_nothing_but_a_tap_does(start_server: Start, browser: Any) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    assert (await client.patch("/api/streams/cam", json={"zones": [BAY]})).status == 200
    page, console = await _phone(client, browser)
    await page.wait_for_selector('#shape-list li[data-shape="zone:bay"]', timeout=WAIT_MS)

    await _swipe(page, (0.5, 0.7), (0.5, 0.2))
    assert await page.locator("#shape-list li.selected").count() == 0, "the swipe selected the zone"
    assert not await page.locator("#video.editing").count(), "the next swipe on the picture may scroll the page"

    await _tap(page, (0.5, 0.5))
    await page.wait_for_selector('#shape-list li.selected[data-shape="zone:bay"]', timeout=WAIT_MS)
    assert console.errors == []


async def test_a_corner_drag_the_browser_cancels_is_not_saved_and_the_same_drag_lifted_is(
    start_server: Start, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    assert (await client.patch("/api/streams/cam", json={"zones": [BAY]})).status == 200
    page = await browser.new_page(viewport=PHONE, has_touch=True, is_mobile=True)
    console = Console(page)
    await page.add_init_script(COUNT_SAVES + NOTE_CANCELS)
    await page.goto(str(client.make_url(STREAM_VIEW)))
    await wait_for_new_frame(page, "#video")
    await page.wait_for_selector('#shape-list li[data-shape="zone:bay"]', timeout=WAIT_MS)
    corner: Point = (0.9, 0.9)  # BAY's third
    moved: Point = (0.7, 0.7)

    await _swipe(page, corner, moved, "touchCancel")
    await page.wait_for_function("() => window.pointerCancels > 0", timeout=WAIT_MS)
    assert await page.evaluate("() => window.saves.most") == 0, "the cancelled drag was sent"
    options = (await (await client.get("/api/streams/cam")).json())["options"]
    assert options["zones"][0]["points"] == BAY["points"]

    await _swipe(page, corner, moved)
    options = await stream_options(client, lambda o: o["zones"][0]["points"] != BAY["points"])
    x, y = options["zones"][0]["points"][2]
    assert abs(x - moved[0]) < FINGER_TOLERANCE and abs(y - moved[1]) < FINGER_TOLERANCE, options["zones"][0]
    assert console.errors == []
