"""Edits of zones and lines in the stream view that must not go astray, in a real headless Chromium
against the real server: a Backspace a moment after a zone is closed (it was taking corners back) does
not delete it, nor does one typed in a field, nor a Delete once the zones are hidden; a name or loiter
time typed and then left by a click on the picture is saved for the shape it was typed for, and a zone
drawn while someone else added a line is saved beside that line - but not over a zone they moved
meanwhile, nor beside one they added under the same name.

Every wait is on something the page or the API shows, with a deadline; none is a fixed sleep.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from tests.support.browser import DESKTOP, WAIT_MS, Console, open_page, require_browser, wait_for_new_frame
from tests.support.zone_page import (
    PRECONDITION_FAILED,
    STREAM_VIEW,
    Point,
    click,
    screen_point,
    shape_names,
    stream_options,
)
from tests.test_viewer_zones import COUNT_SAVES

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

SQUARE: list[Point] = [(0.1, 0.1), (0.4, 0.1), (0.4, 0.4), (0.1, 0.4)]
#: Two zones side by side, and a spot of the picture outside both.
ZA = {"name": "za", "points": [[0.05, 0.05], [0.3, 0.05], [0.3, 0.3], [0.05, 0.3]], "units": "fraction"}
ZB = {"name": "zb", "points": [[0.6, 0.05], [0.9, 0.05], [0.9, 0.3], [0.6, 0.3]], "units": "fraction"}
INSIDE_ZA: Point = (0.15, 0.15)
INSIDE_ZB: Point = (0.75, 0.15)
EMPTY_SPOT: Point = (0.5, 0.7)
#: What the page says when a save is refused because the zones, lines or ignore zones changed elsewhere.
CHANGED_ELSEWHERE = "The zones, lines or ignore zones were changed elsewhere meanwhile"
TRIANGLE: list[Point] = [(0.5, 0.5), (0.8, 0.5), (0.8, 0.8)]


async def _saved_zones(client: TestClient) -> list[str]:
    return shape_names((await (await client.get("/api/streams/cam")).json())["options"], "zones")


async def _open_with_two_zones(client: TestClient, browser: Any) -> tuple[Any, Console]:
    assert (await client.patch("/api/streams/cam", json={"zones": [ZA, ZB]})).status == 200
    page, console = await open_page(browser, client, STREAM_VIEW)
    await wait_for_new_frame(page, "#video")
    await page.wait_for_selector('#shape-list li[data-shape="zone:zb"]', timeout=WAIT_MS)
    await click(page, INSIDE_ZA)
    await page.wait_for_selector('#shape-list li.selected[data-shape="zone:za"]', timeout=WAIT_MS)
    return page, console


async def test_a_backspace_after_closing_a_zone_keeps_it_until_the_zone_is_selected(
    start_server: Start, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page = await browser.new_page(viewport=DESKTOP)  # Add zone and the picture's top both on screen
    console = Console(page)
    await page.add_init_script(COUNT_SAVES)
    await page.goto(str(client.make_url(STREAM_VIEW)))
    await wait_for_new_frame(page, "#video")
    await page.click("#add-zone")
    for point in SQUARE[:-1]:
        await click(page, point)
    await page.mouse.dblclick(*await screen_point(page, SQUARE[-1]))  # the fourth corner, and it closes
    await stream_options(client, lambda o: shape_names(o, "zones") == ["zone-1"])
    await page.wait_for_function("() => window.saves.open === 0", timeout=WAIT_MS)

    # Meant for the last corner, as a press before: the zone, selected by being closed, stays.
    await page.keyboard.press("Backspace")
    assert await page.locator('#shape-list li[data-shape="zone:zone-1"]').count() == 1
    assert await page.evaluate("() => window.saves.open") == 0, "no save went out"
    assert await _saved_zones(client) == ["zone-1"]
    assert "Delete removes it" in (await page.text_content("#shape-status") or "")

    # Selected by the person, it is deleted by Backspace (a Mac's delete key), and a screen reader hears it.
    await click(page, (0.25, 0.25))
    await page.wait_for_selector('#shape-list li.selected[data-shape="zone:zone-1"]', timeout=WAIT_MS)
    await page.keyboard.press("Backspace")
    await stream_options(client, lambda o: shape_names(o, "zones") == [])
    assert await page.text_content("#shape-status") == "Zone “zone-1” deleted."
    assert console.errors == []


async def test_a_backspace_typed_in_a_field_or_a_delete_with_the_zones_hidden_removes_no_shape(
    start_server: Start, browser: Any
) -> None:
    """Delete and Backspace remove the selected shape only where they are meant to: not as a key typed in
    the name or loiter field, and not once hiding the zones has let go of the selection."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console = await _open_with_two_zones(client, browser)
    await page.focus("#shape-name")
    await page.keyboard.press("End")
    await page.keyboard.press("Backspace")
    assert await page.input_value("#shape-name") == "z", "the key edited the name"
    await page.keyboard.type("a")  # the name as it was: leaving the field renames nothing
    await page.focus("#shape-loiter")
    await page.keyboard.type("5")
    await page.keyboard.press("Backspace")
    assert await page.input_value("#shape-loiter") == ""
    assert await page.locator('#shape-list li[data-shape="zone:za"]').count() == 1, "the zone stays"

    await page.uncheck("#overlays input[name=zones]")
    assert await page.locator("#shape-list li.selected").count() == 0, "a hidden zone is not selected"
    assert await page.is_disabled("#delete-shape")
    await page.evaluate("() => document.activeElement.blur()")  # the key goes to the page, not a field
    await page.keyboard.press("Delete")
    assert await page.locator('#shape-list li[data-shape="zone:za"]').count() == 1
    assert await _saved_zones(client) == ["za", "zb"]
    assert console.errors == []


async def test_a_name_typed_then_left_by_a_click_on_the_picture_renames_the_zone_it_was_typed_for(
    start_server: Start, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console = await _open_with_two_zones(client, browser)
    await page.fill("#shape-name", "entrance")  # no button: it is saved as the field is left
    await click(page, EMPTY_SPOT)
    await stream_options(client, lambda o: shape_names(o, "zones") == ["entrance", "zb"])

    # The name went to the zone it was typed for: the next zone drawn gets a name of its own.
    await page.click("#add-zone")
    assert await page.input_value("#shape-name") == "zone-1"
    triangle: list[Point] = [(0.4, 0.5), (0.5, 0.5), (0.5, 0.6)]
    for point in [*triangle, triangle[0]]:
        await click(page, point)
    await stream_options(client, lambda o: shape_names(o, "zones") == ["entrance", "zb", "zone-1"])
    assert console.errors == []


async def test_a_name_typed_for_the_selected_zone_then_add_zone_renames_it_and_the_new_one_gets_its_own(
    start_server: Start, browser: Any
) -> None:
    """The field shows the selected zone's name: editing it is a rename, whether the field is left by a
    click on the picture or on Add zone; only a name typed with nothing selected names the new zone."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console = await _open_with_two_zones(client, browser)
    await page.fill("#shape-name", "entrance")
    await page.click("#add-zone")  # a real press: the field loses the focus first
    await stream_options(client, lambda o: shape_names(o, "zones") == ["entrance", "zb"])
    assert await page.input_value("#shape-name") == "zone-1"
    for point in [*TRIANGLE, TRIANGLE[0]]:
        await click(page, point)
    await stream_options(client, lambda o: shape_names(o, "zones") == ["entrance", "zb", "zone-1"])
    assert console.errors == []


async def test_a_loiter_time_typed_then_left_by_a_click_on_another_zone_is_saved_for_the_first(
    start_server: Start, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console = await _open_with_two_zones(client, browser)
    await page.fill("#shape-loiter", "30")
    await click(page, INSIDE_ZB)
    await page.wait_for_selector('#shape-list li.selected[data-shape="zone:zb"]', timeout=WAIT_MS)
    options = await stream_options(client, lambda o: o["zones"][0].get("loiter_s") == 30)
    assert "loiter_s" not in options["zones"][1], "the zone clicked keeps its own (none)"
    assert await page.input_value("#shape-loiter") == ""
    assert console.errors == []


async def test_a_zone_drawn_while_a_line_was_added_elsewhere_is_saved_beside_it(
    start_server: Start, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console = await open_page(browser, client, STREAM_VIEW)
    await wait_for_new_frame(page, "#video")
    await page.click("#add-zone")
    triangle: list[Point] = [(0.5, 0.5), (0.8, 0.5), (0.8, 0.8)]
    for point in triangle:
        await click(page, point)
    door = {"name": "door", "points": [[0.1, 0.9], [0.9, 0.9]], "units": "fraction"}
    assert (await client.patch("/api/streams/cam", json={"lines": [door]})).status == 200
    await click(page, triangle[0])  # closes the zone: its save is refused (412), the stream changed

    options = await stream_options(client, lambda o: shape_names(o, "zones") == ["zone-1"])
    assert shape_names(options, "lines") == ["door"]
    assert options["lines"][0]["points"] == door["points"], "the line as it was added"
    for shape in ("zone:zone-1", "line:door"):
        await page.wait_for_selector(f'#shape-list li[data-shape="{shape}"]', timeout=WAIT_MS)
    assert await page.text_content("#shape-error") == ""
    assert console.errors == [PRECONDITION_FAILED]


def _drawn(zone: dict[str, Any]) -> tuple[str, list[list[float]]]:
    return zone["name"], zone["points"]


async def _saved_shapes(client: TestClient) -> list[tuple[str, list[list[float]]]]:
    """Stream ``cam``'s zones as names and points (the server adds its defaults to the rest)."""
    return [_drawn(zone) for zone in (await (await client.get("/api/streams/cam")).json())["options"]["zones"]]


async def _draw_while(client: TestClient, browser: Any, zones: list[dict[str, Any]], elsewhere: dict[str, Any]) -> Any:
    """The page, after a zone (``zone-1``) was drawn on ``zones`` while ``elsewhere`` was PATCHed through
    the API: its save is refused (412), the stream changed."""
    assert (await client.patch("/api/streams/cam", json={"zones": zones})).status == 200
    page, console = await open_page(browser, client, STREAM_VIEW)
    await wait_for_new_frame(page, "#video")
    for zone in zones:
        await page.wait_for_selector(f'#shape-list li[data-shape="zone:{zone["name"]}"]', timeout=WAIT_MS)
    await page.click("#add-zone")
    assert await page.input_value("#shape-name") == "zone-1"
    for point in TRIANGLE:
        await click(page, point)
    assert (await client.patch("/api/streams/cam", json=elsewhere)).status == 200
    await click(page, TRIANGLE[0])
    await page.wait_for_function(
        "(text) => document.querySelector('#shape-error').textContent.startsWith(text)",
        arg=CHANGED_ELSEWHERE,
        timeout=WAIT_MS,
    )
    assert console.errors == [PRECONDITION_FAILED]
    return page


async def test_a_zone_drawn_while_another_was_moved_elsewhere_is_not_saved_over_the_move(
    start_server: Start, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    moved = {**ZA, "points": [[0.05, 0.6], [0.3, 0.6], [0.3, 0.9], [0.05, 0.9]]}
    page = await _draw_while(client, browser, [ZA, ZB], {"zones": [moved, ZB]})

    assert await _saved_shapes(client) == [_drawn(moved), _drawn(ZB)], "the move stands, the zone drawn is not sent"
    await page.wait_for_selector('#shape-list li[data-shape="zone:za"]', timeout=WAIT_MS)
    assert await page.locator('#shape-list li[data-shape="zone:zone-1"]').count() == 0


async def test_a_zone_drawn_while_one_of_its_name_was_added_elsewhere_is_not_saved_beside_it(
    start_server: Start, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    theirs = {"name": "zone-1", "points": [[0.1, 0.1], [0.3, 0.1], [0.3, 0.3]], "units": "fraction"}
    page = await _draw_while(client, browser, [ZA], {"zones": [ZA, theirs]})

    assert await _saved_shapes(client) == [_drawn(ZA), _drawn(theirs)], "theirs stands, the zone drawn is not sent"
    await page.wait_for_selector('#shape-list li[data-shape="zone:zone-1"]', timeout=WAIT_MS)
    assert await page.locator('#shape-list li[data-shape^="zone:"]').count() == 2
