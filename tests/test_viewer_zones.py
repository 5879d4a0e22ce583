"""Zones and lines in the stream view, in a real headless Chromium against the real server.

Shapes are drawn, moved and deleted with the mouse or a finger, saved through the API in fractions
of the frame, shown with their live counts, a line with an arrow to its "in" side; a click picks the
shape meant. The event list shows zone and line events live and, with an event history, from before
the page was opened. The stream view stays on the WebSocket (``?transport=ws``). Every wait is on
something the page or the API shows, with a deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.analytics.events import AnalyticsEventKind
from server.config import StreamConfig
from server.events.config import EventsSettings, HistorySettings
from server.options import StreamOptions
from tests.support.browser import (
    CANVAS_STATS,
    PHONE,
    WAIT_MS,
    Console,
    hold_first_save,
    open_page,
    require_browser,
    wait_for_new_frame,
    wait_for_text,
)
from tests.support.zone_page import (
    CLICK_TOLERANCE,
    PRECONDITION_FAILED,
    STREAM_VIEW,
    Point,
    assert_points,
    click,
    screen_point,
    shape_names,
    stream_options,
)

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

#: Most of the frame: the scene's objects are inside it within moments.
YARD: list[Point] = [(0.05, 0.05), (0.95, 0.05), (0.95, 0.95), (0.05, 0.95)]
BAD_REQUEST = "Failed to load resource: the server responded with a status of 400 (Bad Request)"
CONFLICT = "Failed to load resource: the server responded with a status of 409 (Conflict)"
#: Counts, in the page, the PATCHes it has sent that are not answered yet, and the most of them at once.
COUNT_SAVES = """
window.saves = { open: 0, most: 0 };
const fetchOnce = window.fetch;
window.fetch = async (resource, options) => {
  if (options?.method !== "PATCH") return fetchOnce(resource, options);
  window.saves.most = Math.max(window.saves.most, ++window.saves.open);
  try {
    return await fetchOnce(resource, options);
  } finally {
    window.saves.open -= 1;
  }
};
"""
TOUCH_MOVES = 10
#: Keeps, in the page, the ends of the first strokes drawn on the stream's picture in a line's colour
#: (shape_drawing.js LINE_COLOR), in fractions of the frame: the lines and their arrows.
RECORD_LINE_ENDS = """
window.lineEnds = [];
const lineTo = CanvasRenderingContext2D.prototype.lineTo;
CanvasRenderingContext2D.prototype.lineTo = function (x, y) {
  if (this.canvas.id === "video" && this.strokeStyle === "#25e0ff" && window.lineEnds.length < 100) {
    window.lineEnds.push([x / this.canvas.width, y / this.canvas.height]);
  }
  return lineTo.call(this, x, y);
};
"""
#: How far from a line's middle its arrow reaches, in fractions of the frame, with room to spare.
ARROW_REACH = 0.1
#: Notes, in the page, every WebSocket it opens; while `blockSockets` is set, new ones go nowhere.
BLOCKABLE_SOCKETS = """
window.sockets = [];
window.blockSockets = false;
window.WebSocket = class extends WebSocket {
  constructor(url, protocols) {
    super(window.blockSockets ? "ws://127.0.0.1:9/" : url, protocols);
    window.sockets.push(this);
  }
};
"""


async def _touch_drag(page: Any, start: Point, end: Point) -> None:
    """A finger put down at ``start`` and lifted at ``end`` (screen points), with moves in between.

    Playwright taps only; the DevTools protocol moves a finger as a phone reports it."""
    cdp = await page.context.new_cdp_session(page)
    (x0, y0), (x1, y1) = start, end
    await cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x0, "y": y0}]})
    for step in range(1, TOUCH_MOVES + 1):
        x, y = x0 + (x1 - x0) * step / TOUCH_MOVES, y0 + (y1 - y0) * step / TOUCH_MOVES
        await cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
    await cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    await cdp.detach()


#: A zone the save tests start from, in fractions of the frame.
BAY = {"name": "bay", "points": [(0.2, 0.2), (0.6, 0.2), (0.6, 0.7)], "units": "fraction"}


class _Answers(list[int]):
    """The statuses the page's saves (PATCHes) were answered with, in order, as the page got them: the
    server's state can show a save before the page's answer to it has reached the test."""

    def __init__(self) -> None:
        super().__init__()
        self._grew = asyncio.Event()

    def add(self, status: int) -> None:
        self.append(status)
        self._grew.set()

    async def first(self, count: int) -> list[int]:
        """The first ``count`` statuses, once the page has had them."""
        async with asyncio.timeout(WAIT_MS / 1000):
            while len(self) < count:
                self._grew.clear()
                await self._grew.wait()
        return self[:count]


async def _open_with_bay(client: TestClient, browser: Any) -> tuple[Any, Console, _Answers]:
    """The stream view of a stream with `BAY`, once the editor shows it (and so has its ETag), and the
    statuses its saves will be answered with."""
    assert (await client.patch("/api/streams/cam", json={"zones": [BAY]})).status == 200
    page, console = await open_page(browser, client, STREAM_VIEW)
    statuses = _Answers()
    page.on("response", lambda response: response.request.method == "PATCH" and statuses.add(response.status))
    await wait_for_new_frame(page, "#video")
    await page.wait_for_selector('#shape-list li[data-shape="zone:bay"]', timeout=WAIT_MS)
    return page, console, statuses


async def test_a_zone_and_a_line_drawn_with_clicks_are_saved_and_shown_with_their_counts(
    start_server: Start, browser: Any, screenshots: Path
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console = await open_page(browser, client, STREAM_VIEW)
    await wait_for_new_frame(page, "#video")

    await page.click("#add-zone")
    await page.fill("#shape-name", "yard")
    for point in [*YARD, YARD[0]]:  # the first corner again closes it
        await click(page, point)
    options = await stream_options(client, lambda o: shape_names(o, "zones") == ["yard"])
    assert_points(options["zones"][0], YARD)

    await page.click("#add-line")
    await page.fill("#shape-name", "gate")
    await click(page, (0.1, 0.5))
    await page.mouse.dblclick(*await screen_point(page, (0.9, 0.6)))  # a double-click ends it
    options = await stream_options(client, lambda o: shape_names(o, "lines") == ["gate"])
    assert_points(options["lines"][0], [(0.1, 0.5), (0.9, 0.6)])
    assert shape_names(options, "zones") == ["yard"], "adding a line keeps the zone"

    await page.wait_for_function(  # counts only go up: an object may have crossed before this looks
        """() => /in \\d+ · out \\d+/
            .test(document.querySelector('#shape-list li[data-shape="line:gate"]').innerText)""",
        timeout=WAIT_MS,
    )
    await page.wait_for_function(
        """() => /\\d+ inside/.test(document.querySelector('#shape-list li[data-shape="zone:yard"]').innerText)""",
        timeout=WAIT_MS,
    )
    # Tracks inside the zone say so in the table (and are framed on the video).
    await page.wait_for_function(
        "() => [...document.querySelectorAll('#tracks tbody td:nth-child(5)')].some((c) => c.textContent === 'yard')",
        timeout=WAIT_MS,
    )
    await page.click("#pause")
    drawn = await page.evaluate(CANVAS_STATS, "#video")
    await page.screenshot(path=screenshots / "zone-and-line.png")
    await page.uncheck("#overlays input[name=zones]")
    hidden = await page.evaluate(CANVAS_STATS, "#video")
    assert hidden["seq"] == drawn["seq"], "paused: the same frame"
    assert hidden["hash"] != drawn["hash"], "the zone and the line are drawn over the picture"
    assert console.errors == []


async def test_dragging_a_corner_moves_it_and_shapes_are_renamed_and_deleted(
    start_server: Start, browser: Any, screenshots: Path
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    bay = [(0.2, 0.2), (0.6, 0.2), (0.6, 0.7), (0.2, 0.7)]
    body = {
        "zones": [{"name": "bay", "points": bay, "units": "fraction"}],
        "lines": [{"name": "gate", "points": [[0.1, 0.9], [0.9, 0.9]], "units": "fraction"}],
    }
    assert (await client.patch("/api/streams/cam", json=body)).status == 200
    page, console = await open_page(browser, client, STREAM_VIEW)
    await wait_for_new_frame(page, "#video")
    await page.wait_for_selector('#shape-list li[data-shape="zone:bay"]', timeout=WAIT_MS)

    await page.mouse.move(*await screen_point(page, bay[2]))
    await page.mouse.down()
    await page.mouse.move(*await screen_point(page, (0.75, 0.8)), steps=5)
    await page.mouse.up()
    moved = [*bay[:2], (0.75, 0.8), bay[3]]
    options = await stream_options(client, lambda o: abs(o["zones"][0]["points"][2][0] - 0.6) > CLICK_TOLERANCE)
    assert_points(options["zones"][0], moved)
    await page.screenshot(path=screenshots / "moved.png")

    await click(page, (0.35, 0.4))  # inside the zone, away from its corners: selects it
    await page.wait_for_selector('#shape-list li.selected[data-shape="zone:bay"]', timeout=WAIT_MS)
    await page.keyboard.press("Delete")
    options = await stream_options(client, lambda o: shape_names(o, "zones") == [])
    assert shape_names(options, "lines") == ["gate"], "deleting the zone keeps the line"

    # The shape list is reached and used with the keyboard too; the shape keeps the focus as it is selected.
    await page.focus("#shape-name")
    await page.keyboard.press("Tab")  # the Delete button is off while nothing is selected
    await page.keyboard.press("Enter")
    await page.wait_for_selector('#shape-list li.selected[data-shape="line:gate"]', timeout=WAIT_MS)
    assert await page.evaluate("() => document.activeElement.closest('li')?.dataset.shape") == "line:gate"
    await page.fill("#shape-name", "door")
    await page.press("#shape-name", "Enter")
    await stream_options(client, lambda o: shape_names(o, "lines") == ["door"])
    await page.focus('#shape-list li[data-shape="line:door"] button')  # selected already, as it was renamed
    await page.wait_for_selector('#shape-list li.selected[data-shape="line:door"]', timeout=WAIT_MS)
    await page.keyboard.press("Delete")
    await stream_options(client, lambda o: shape_names(o, "lines") == [])
    await page.wait_for_selector("#shape-empty:not([hidden])", timeout=WAIT_MS)
    # The keyboard's place is not lost with the shape it was on: it goes to the next thing to use.
    assert await page.evaluate("() => document.activeElement.id") == "add-zone"
    assert console.errors == []


async def test_a_click_picks_the_shape_meant_a_line_by_its_middle_the_selected_of_two_zones_never_a_right_click(
    start_server: Start, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    older = {"name": "older", "points": [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5], [0.1, 0.5]], "units": "fraction"}
    newer = {"name": "newer", "points": [[0.3, 0.3], [0.7, 0.3], [0.7, 0.7], [0.3, 0.7]], "units": "fraction"}
    gate = {"name": "gate", "points": [[0.1, 0.85], [0.9, 0.85]], "units": "fraction"}
    assert (await client.patch("/api/streams/cam", json={"zones": [older, newer], "lines": [gate]})).status == 200
    page, console = await open_page(browser, client, STREAM_VIEW)
    await wait_for_new_frame(page, "#video")
    await page.click('#shape-list li[data-shape="zone:older"] button')
    await page.wait_for_selector('#shape-list li.selected[data-shape="zone:older"]', timeout=WAIT_MS)

    await click(page, (0.4, 0.4))  # inside both zones, on no corner: the newer is drawn on top
    assert await page.get_attribute("#shape-list li.selected", "data-shape") == "zone:older", "the selected one kept"
    await click(page, (0.5, 0.85))  # the line's middle, far from its points
    await page.wait_for_selector('#shape-list li.selected[data-shape="line:gate"]', timeout=WAIT_MS)

    await page.click("#add-zone")
    await page.mouse.click(*await screen_point(page, (0.8, 0.2)), button="right")
    await click(page, (0.9, 0.2))
    said = await wait_for_text(page, "#shape-status", "added at")
    assert said.startswith("Point 1 added"), "the right click added no point"
    assert console.errors == []


async def test_a_lines_arrow_points_to_the_side_it_counts_as_in(start_server: Start, browser: Any) -> None:
    """docs/analytics.md: walking a line from its first point to its last, crossing it from its left-hand
    side to its right-hand one is in; the arrow drawn from its middle points there."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    across = {"name": "across", "points": [[0.1, 0.3], [0.5, 0.3]], "units": "fraction"}  # drawn left to right
    down = {"name": "down", "points": [[0.7, 0.5], [0.7, 0.9]], "units": "fraction"}  # drawn top to bottom
    assert (await client.patch("/api/streams/cam", json={"lines": [across, down]})).status == 200
    page = await browser.new_page()
    console = Console(page)
    await page.add_init_script(RECORD_LINE_ENDS)
    await page.goto(str(client.make_url(STREAM_VIEW)))
    await wait_for_new_frame(page, "#video")
    await page.wait_for_selector('#shape-list li[data-shape="line:down"]', timeout=WAIT_MS)
    await page.wait_for_function("() => window.lineEnds.length >= 100", timeout=WAIT_MS)
    ends = await page.evaluate("() => window.lineEnds")

    def arrow(middle: Point) -> list[Point]:
        """The ends of the strokes drawn near ``middle`` of a line: its arrow's (the line's own are far)."""
        return [(x, y) for x, y in ends if 0 < abs(x - middle[0]) + abs(y - middle[1]) < ARROW_REACH]

    across_arrow, down_arrow = arrow((0.3, 0.3)), arrow((0.7, 0.7))
    assert across_arrow and all(y > 0.3 for _, y in across_arrow), f"in is below: {across_arrow}"
    assert down_arrow and all(x < 0.7 for x, _ in down_arrow), f"in is to the left: {down_arrow}"
    assert console.errors == []


async def test_a_zone_that_crosses_itself_shows_the_servers_refusal(start_server: Start, browser: Any) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console = await open_page(browser, client, STREAM_VIEW)
    await wait_for_new_frame(page, "#video")
    await page.click("#add-zone")
    bow_tie = [(0.2, 0.2), (0.8, 0.8), (0.8, 0.2), (0.2, 0.8)]
    for point in [*bow_tie, bow_tie[0]]:
        await click(page, point)
    error = await wait_for_text(page, "#shape-error", "crosses itself")
    assert error.startswith("Zone “zone-1” was not saved: "), "the server's reason, for the shape it names"
    await page.wait_for_selector("#shape-empty:not([hidden])", timeout=WAIT_MS)
    assert (await (await client.get("/api/streams/cam")).json())["options"].get("zones", []) == []
    assert console.errors == [BAD_REQUEST]


async def test_a_zone_beyond_the_frame_is_shown_as_left_out(start_server: Start, browser: Any) -> None:
    far = {"name": "far", "points": [[0, 0], [5000, 0], [0, 100]]}  # pixels, as a config file for another camera
    client = await start_server(
        StreamConfig("cam", "scene:?seed=3", options=StreamOptions.from_mapping({"zones": [far]}))
    )
    page, console = await open_page(browser, client, STREAM_VIEW)
    await wait_for_new_frame(page, "#video")
    problem = await wait_for_text(page, "#shape-problem", "left out")
    assert "zones[0].points: point (5000, 0) is outside the 640x384 frame; zone 'far' is left out" in problem
    response = await client.patch("/api/streams/cam", json={"zones": []})  # the problem goes with the zone
    assert response.status == 200
    await page.wait_for_selector("#shape-problem[hidden]", state="attached", timeout=WAIT_MS)
    assert console.errors == []


async def test_a_zone_in_pixels_follows_a_new_resolution_and_stays_in_pixels(start_server: Start, browser: Any) -> None:
    px = {"name": "px", "points": [[100, 100], [300, 100], [300, 300]]}  # pixels, as a config file has them
    client = await start_server(
        StreamConfig("cam", "scene:?seed=3", options=StreamOptions.from_mapping({"zones": [px]}))
    )
    page, console = await open_page(browser, client, STREAM_VIEW)
    await wait_for_new_frame(page, "#video")
    await page.wait_for_selector('#shape-list li[data-shape="zone:px"]', timeout=WAIT_MS)
    zones = (await (await client.get("/api/streams/cam")).json())["options"]["zones"]
    assert (await client.patch("/api/streams/cam", json={"uri": "scene:?seed=3&width=1280&height=768"})).status == 200
    await page.wait_for_function("() => document.querySelector('#video').width === 1280", timeout=WAIT_MS)
    await wait_for_text(page, "[data-stat=source]", "width=1280")  # the stream list, with the new ETag

    # (250, 120) is inside the zone on the new frame, and above where it was on the old one.
    await click(page, (250 / 1280, 120 / 768))
    await page.wait_for_selector('#shape-list li.selected[data-shape="zone:px"]', timeout=WAIT_MS)
    # A change to another shape sends this one back as the server gave it.
    await page.click("#add-line")
    await click(page, (0.1, 0.9))
    await page.mouse.dblclick(*await screen_point(page, (0.9, 0.9)))
    options = await stream_options(client, lambda o: shape_names(o, "lines") == ["line-1"])
    assert options["zones"] == zones
    assert console.errors == []


async def test_a_zone_is_added_by_taps_on_a_phone(start_server: Start, browser: Any, screenshots: Path) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page = await browser.new_page(viewport=PHONE, has_touch=True, is_mobile=True)
    console = Console(page)
    await page.goto(str(client.make_url(STREAM_VIEW)))
    await wait_for_new_frame(page, "#video")
    await page.tap("#add-zone")
    await page.locator("#video").scroll_into_view_if_needed()
    door = [(0.3, 0.3), (0.7, 0.3), (0.5, 0.8)]
    for point in [*door, door[0]]:
        await page.touchscreen.tap(*await screen_point(page, point))
    options = await stream_options(client, lambda o: shape_names(o, "zones") == ["zone-1"])
    # A finger is less exact than a mouse, and the phone's canvas is smaller: twice the tolerance.
    for (x, y), (ex, ey) in zip(options["zones"][0]["points"], door, strict=True):
        assert abs(x - ex) < 2 * CLICK_TOLERANCE and abs(y - ey) < 2 * CLICK_TOLERANCE
    await page.screenshot(path=screenshots / "phone-zone.png")
    assert console.errors == []


async def test_a_finger_drags_a_corner_of_a_zone_it_has_not_selected_first(start_server: Start, browser: Any) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    bay = [(0.2, 0.2), (0.6, 0.2), (0.6, 0.7), (0.2, 0.7)]
    body = {"zones": [{"name": "bay", "points": bay, "units": "fraction"}]}
    assert (await client.patch("/api/streams/cam", json=body)).status == 200
    page = await browser.new_page(viewport=PHONE, has_touch=True, is_mobile=True)
    console = Console(page)
    await page.goto(str(client.make_url(STREAM_VIEW)))
    await wait_for_new_frame(page, "#video")
    await page.wait_for_selector('#shape-list li[data-shape="zone:bay"]', timeout=WAIT_MS)
    assert await page.locator("#shape-list li.selected").count() == 0, "no shape is selected before the drag"

    # Up and to the left: a finger the page took for a scroll would move the page, not the corner.
    await _touch_drag(page, await screen_point(page, bay[2]), await screen_point(page, (0.45, 0.5)))
    options = await stream_options(client, lambda o: abs(o["zones"][0]["points"][2][0] - 0.6) > CLICK_TOLERANCE)
    for (x, y), (ex, ey) in zip(options["zones"][0]["points"], [*bay[:2], (0.45, 0.5), bay[3]], strict=True):
        assert abs(x - ex) < 2 * CLICK_TOLERANCE and abs(y - ey) < 2 * CLICK_TOLERANCE, options["zones"][0]
    assert await page.evaluate("() => scrollY") == 0, "the page did not scroll"
    assert console.errors == []


async def test_a_rename_and_a_delete_made_while_a_save_is_in_flight_are_saved_after_it(
    start_server: Start, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    bay = [(0.2, 0.2), (0.6, 0.2), (0.6, 0.7), (0.2, 0.7)]
    gate = {"name": "gate", "points": [[0.1, 0.9], [0.9, 0.9]], "units": "fraction"}
    body = {"zones": [{"name": "bay", "points": bay, "units": "fraction"}], "lines": [gate]}
    assert (await client.patch("/api/streams/cam", json=body)).status == 200
    page = await browser.new_page()
    console = Console(page)
    await page.add_init_script(COUNT_SAVES)
    await page.goto(str(client.make_url(STREAM_VIEW)))
    await wait_for_new_frame(page, "#video")
    await page.wait_for_selector('#shape-list li[data-shape="zone:bay"]', timeout=WAIT_MS)

    # The first save is held on its way to the server; any later one goes straight through.
    held = await hold_first_save(page)
    await page.mouse.move(*await screen_point(page, bay[2]))
    await page.mouse.down()
    await page.mouse.move(*await screen_point(page, (0.75, 0.8)), steps=5)
    await page.mouse.up()
    save = await asyncio.wait_for(held, WAIT_MS / 1000)
    await page.fill("#shape-name", "door")  # the dragged zone is the selected one
    await page.press("#shape-name", "Enter")
    await page.wait_for_selector('#shape-list li[data-shape="zone:door"]', timeout=WAIT_MS)
    await page.click('#shape-list li[data-shape="line:gate"]')
    await page.keyboard.press("Delete")
    await page.wait_for_selector('#shape-list li[data-shape="line:gate"]', state="detached", timeout=WAIT_MS)
    await save.continue_()

    moved = [*bay[:2], (0.75, 0.8), bay[3]]
    options = await stream_options(
        client, lambda o: shape_names(o, "zones") == ["door"] and shape_names(o, "lines") == []
    )
    assert_points(options["zones"][0], moved)
    assert await page.evaluate("() => window.saves.most") == 1, "the rename and delete waited for the save before"
    await page.wait_for_function("() => window.saves.open === 0", timeout=WAIT_MS)
    await page.wait_for_selector('#shape-list li[data-shape="zone:door"]', timeout=WAIT_MS)
    assert console.errors == []


async def test_a_save_is_made_only_over_the_shapes_it_was_drawn_on(start_server: Start, browser: Any) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console, statuses = await _open_with_bay(client, browser)
    mine = [(0.1, 0.1), (0.3, 0.1), (0.3, 0.3)]
    late = [(0.5, 0.5), (0.8, 0.5), (0.8, 0.8)]

    # Another of the stream's settings changed while a zone was drawn: the save is made again over it.
    await page.click("#add-zone")
    await page.fill("#shape-name", "mine")
    for point in mine:
        await click(page, point)
    assert (await client.patch("/api/streams/cam", json={"conf": 0.3})).status == 200
    await click(page, mine[0])
    options = await stream_options(client, lambda o: shape_names(o, "zones") == ["bay", "mine"])
    assert options["conf"] == 0.3
    assert await statuses.first(2) == [412, 200]

    # The zones themselves changed meanwhile (another tab): theirs are shown, not replaced unseen.
    await page.click("#add-zone")
    await page.fill("#shape-name", "late")
    for point in late:
        await click(page, point)
    theirs = {**BAY, "name": "theirs"}
    assert (await client.patch("/api/streams/cam", json={"zones": [theirs]})).status == 200
    await click(page, late[0])
    await wait_for_text(page, "#shape-error", "changed elsewhere")
    await page.wait_for_selector('#shape-list li[data-shape="zone:theirs"]', timeout=WAIT_MS)
    assert await page.locator('#shape-list li[data-shape="zone:late"]').count() == 0
    assert shape_names((await (await client.get("/api/streams/cam")).json())["options"], "zones") == ["theirs"]
    assert await statuses.first(3) == [412, 200, 412]
    assert console.errors == [PRECONDITION_FAILED, PRECONDITION_FAILED]


async def test_a_change_made_but_not_saved_is_shown_as_made_and_the_next_goes_over_it(
    start_server: Start, browser: Any, tmp_path: Path
) -> None:
    """The config file was edited by hand: saves are refused (409) while the changes are made. The
    editor must keep the stream's new settings, or its next change is refused as made elsewhere."""
    path = tmp_path / "segcast.toml"
    path.write_text('[server]\nsave_config = true\n\n[[streams]]\nid = "cam"\nuri = "scene:?seed=3"\n')
    client = await start_server(StreamConfig("cam", "scene:?seed=3"), config_path=path, save_config=True)
    page, console, statuses = await _open_with_bay(client, browser)
    edited = path.read_text() + "# the yard camera moves next week\n"
    path.write_text(edited)

    # The second zone's save is answered only once the third is being drawn: no poll can refresh
    # the editor's settings in between, only the answer itself.
    held = await hold_first_save(page)
    second = [(0.1, 0.1), (0.3, 0.1), (0.3, 0.3)]
    third = [(0.5, 0.5), (0.8, 0.5), (0.8, 0.8)]
    await page.click("#add-zone")
    await page.fill("#shape-name", "second")
    for point in [*second, second[0]]:
        await click(page, point)
    save = await asyncio.wait_for(held, WAIT_MS / 1000)
    await page.click("#add-zone")
    await page.fill("#shape-name", "third")
    for point in third:
        await click(page, point)
    await save.continue_()
    await wait_for_text(page, "#shape-error", "in effect, but not saved")
    await page.wait_for_selector('#shape-list li[data-shape="zone:second"]', timeout=WAIT_MS)
    await click(page, third[0])

    await stream_options(client, lambda o: shape_names(o, "zones") == ["bay", "second", "third"])
    await page.wait_for_selector('#shape-list li[data-shape="zone:third"]', timeout=WAIT_MS)
    await page.wait_for_function("() => document.querySelector('#shape-error').textContent !== ''")
    assert "changed elsewhere" not in await page.text_content("#shape-error")
    assert await statuses.first(2) == [409, 409]
    assert console.errors == [CONFLICT, CONFLICT]
    assert path.read_text() == edited


async def test_the_event_list_shows_zone_events_live_and_from_the_history(
    start_server: Start, browser: Any, tmp_path: Path
) -> None:
    history = EventsSettings(history=HistorySettings(tmp_path / "events.db"))
    client = await start_server(StreamConfig("cam", "scene:?seed=3"), events=history)
    live, console = await open_page(browser, client, STREAM_VIEW)
    await wait_for_new_frame(live, "#video")
    yard = {"zones": [{"name": "yard", "points": YARD, "units": "fraction"}]}
    assert (await client.patch("/api/streams/cam", json=yard)).status == 200
    text = await wait_for_text(live, "#events", "entered yard")
    assert await live.locator('#events li[data-type="zone_enter"]').count() >= 1, text
    # A new event is added to the list (a live region) alone: the items shown before stay as they are.
    await live.evaluate("() => { window.newest = document.querySelector('#events li'); }")
    await live.wait_for_function("() => document.querySelector('#events li') !== window.newest", timeout=WAIT_MS)
    assert await live.evaluate("() => window.newest.isConnected")

    # With the zone gone no new events come: a page opened now can only learn of them from the history.
    deadline = asyncio.get_running_loop().time() + WAIT_MS / 1000
    while not (await (await client.get("/api/events?stream=cam&type=zone_enter")).json())["events"]:
        assert asyncio.get_running_loop().time() < deadline, "the history never stored the zone_enter"
        await asyncio.sleep(0.1)
    assert (await client.patch("/api/streams/cam", json={"zones": []})).status == 200
    later = await browser.new_page()
    later_console = Console(later)
    pages_read: list[str] = []
    later.on("request", lambda request: "/api/events?" in request.url and pages_read.append(request.url))
    await later.goto(str(client.make_url(STREAM_VIEW)))
    await later.wait_for_selector("#connection.state-live", timeout=WAIT_MS)
    await wait_for_text(later, "#events", "entered yard")
    assert len(pages_read) == len(AnalyticsEventKind), "the history is read once as the page opens, a page a kind"
    assert console.errors == [] and later_console.errors == []


async def test_events_of_a_websocket_outage_are_shown_from_the_history_once_it_is_back(
    start_server: Start, browser: Any, tmp_path: Path
) -> None:
    """The first question whether the server keeps a history gets no answer (the server restarting):
    the page asks again, and on reconnecting it shows what happened while its WebSocket was down."""
    history = EventsSettings(history=HistorySettings(tmp_path / "events.db"))
    client = await start_server(StreamConfig("cam", "scene:?seed=3"), events=history)
    page = await browser.new_page()
    console = Console(page)
    await page.add_init_script(BLOCKABLE_SOCKETS)
    asked: list[str] = []

    async def fail_first(route: Any) -> None:
        asked.append(route.request.url)
        await (route.abort() if len(asked) == 1 else route.continue_())

    await page.route("**/api/events/outputs", fail_first)
    await page.goto(str(client.make_url(STREAM_VIEW)))
    await wait_for_new_frame(page, "#video")
    await page.evaluate("() => { window.blockSockets = true; window.sockets.at(-1).close(); }")
    await page.wait_for_selector("#connection.state-failed", timeout=WAIT_MS)

    yard = {"zones": [{"name": "yard", "points": YARD, "units": "fraction"}]}
    assert (await client.patch("/api/streams/cam", json=yard)).status == 200
    deadline = asyncio.get_running_loop().time() + WAIT_MS / 1000
    while not (await (await client.get("/api/events?stream=cam&type=zone_enter")).json())["events"]:
        assert asyncio.get_running_loop().time() < deadline, "the history never stored the zone_enter"
        await asyncio.sleep(0.1)
    assert (await client.patch("/api/streams/cam", json={"zones": []})).status == 200
    await page.evaluate("() => { window.blockSockets = false; }")
    await page.wait_for_selector("#connection.state-live", timeout=WAIT_MS)
    await wait_for_text(page, "#events", "entered yard")
    assert len(asked) >= 2, "asked again after the failed question"
    assert [e for e in console.errors if "WebSocket" not in e and "ERR_FAILED" not in e] == []
