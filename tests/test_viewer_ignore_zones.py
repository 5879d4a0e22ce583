"""Ignore zones in the stream view, in a real headless Chromium against the real server.

An ignore zone (the stream's ``ignore_zones`` option: where the stream sees nothing) is drawn as a zone
is, with "Add ignore zone", and saved through the API in fractions of the frame, in place, with the
stream's other ignore zones, zones and lines kept. One over the whole picture leaves the track table
empty. It is listed as an ignore zone, its classes and share inside are set in the panel, and it is
deleted as a zone is; one the stream already has is drawn, greyed and dashed, and listed. The stream
view stays on the WebSocket (``?transport=ws``); every wait is on something the page or the API shows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from tests.support.browser import (
    CANVAS_STATS,
    DESKTOP,
    PHONE,
    WAIT_MS,
    Console,
    hold_first_save,
    open_page,
    require_browser,
    wait_for_new_frame,
    wait_for_text,
)
from tests.support.polling import eventually
from tests.support.zone_page import (
    STREAM_VIEW,
    Point,
    assert_points,
    click,
    click_polygon,
    shape_names,
    stream_options,
)

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

BAY = {"name": "bay", "points": [[0.2, 0.2], [0.6, 0.2], [0.6, 0.7]], "units": "fraction"}
GATE = {"name": "gate", "points": [[0.1, 0.9], [0.9, 0.9]], "units": "fraction"}
POSTER = {"name": "poster", "points": [[0.7, 0.1], [0.9, 0.1], [0.9, 0.3], [0.7, 0.3]], "units": "fraction"}
STATUE = {
    "name": "statue",
    "points": [[0.1, 0.4], [0.4, 0.4], [0.4, 0.8], [0.1, 0.8]],
    "units": "fraction",
    "classes": ["square"],
    "min_share": 0.7,
}
#: The whole picture, but for a sliver along its edges that a click there could miss.
EVERYWHERE: list[Point] = [(0.005, 0.005), (0.995, 0.005), (0.995, 0.995), (0.005, 0.995)]
#: Frames that must come, one after another, with no track in the table, for it to count as empty.
QUIET_FRAMES = 10
#: Whether the track table has stayed empty for the last ``frames`` new pictures (polled by the page).
NO_TRACKS_FOR = """(frames) => {
  const seq = document.querySelector("#video").dataset.seq;
  const empty = document.querySelector("#tracks tbody tr") === null;
  window.quietSeqs = empty ? (window.quietSeqs ?? new Set()).add(seq) : new Set();
  return window.quietSeqs.size >= frames;
}"""
HAS_TRACKS = "() => document.querySelector('#tracks tbody tr') !== null"
#: Keeps, in the page, whether anything was stroked in dashes on the stream's picture.
RECORD_DASHES = """
window.dashed = false;
const setLineDash = CanvasRenderingContext2D.prototype.setLineDash;
CanvasRenderingContext2D.prototype.setLineDash = function (segments) {
  if (this.canvas.id === "video" && segments.length) window.dashed = true;
  return setLineDash.call(this, segments);
};
"""


async def _stream(client: TestClient) -> dict[str, Any]:
    response = await client.get("/api/streams/cam")
    assert response.status == 200
    body: dict[str, Any] = await response.json()
    return body


async def _with_shapes(start_server: Start, **shapes: list[dict[str, Any]]) -> TestClient:
    """A server with stream ``cam`` (seed 3's scene: a square always in it) given ``shapes`` by the API."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    response = await client.patch("/api/streams/cam", json=shapes)
    assert response.status == 200, await response.text()
    return client


async def test_an_ignore_zone_drawn_with_clicks_is_saved_in_place_beside_the_other_shapes(
    start_server: Start, browser: Any
) -> None:
    client = await _with_shapes(start_server, zones=[BAY], lines=[GATE], ignore_zones=[POSTER])
    page, console = await open_page(browser, client, STREAM_VIEW)
    await wait_for_new_frame(page, "#video")
    await page.wait_for_selector('#shape-list li[data-shape="ignore:poster"]', timeout=WAIT_MS)
    before = await _stream(client)

    await page.click("#add-ignore")
    assert await page.get_attribute("#add-ignore", "aria-pressed") == "true"
    assert await page.text_content("#add-ignore") == "Cancel ignore zone"
    assert await page.input_value("#shape-name") == "ignore-1", "a name no ignore zone has"
    corners: list[Point] = [(0.3, 0.3), (0.5, 0.3), (0.5, 0.6)]
    await click_polygon(page, corners)
    options = await stream_options(client, lambda o: shape_names(o, "ignore_zones") == ["poster", "ignore-1"])
    assert_points(options["ignore_zones"][1], corners)
    assert options["ignore_zones"][0] == before["options"]["ignore_zones"][0], "the other ignore zone as it was"
    assert options["zones"] == before["options"]["zones"] and options["lines"] == before["options"]["lines"]
    after = await _stream(client)
    # Not restarted: a restarted stream counts its processed frames from 0 again.
    assert after["frames_processed"] >= before["frames_processed"] > 0
    assert await page.get_attribute("#add-ignore", "aria-pressed") == "false"
    assert await page.text_content("#shape-status") == "Ignore zone “ignore-1” added."
    assert console.errors == []


async def test_an_ignore_zone_over_the_whole_picture_empties_the_track_table_until_it_is_deleted(
    start_server: Start, browser: Any
) -> None:
    client = await _with_shapes(start_server, zones=[BAY])
    page, console = await open_page(browser, client, STREAM_VIEW)
    await wait_for_new_frame(page, "#video")
    await page.wait_for_function(HAS_TRACKS, timeout=WAIT_MS)

    await page.click("#add-ignore")
    await page.fill("#shape-name", "blind")
    await click_polygon(page, EVERYWHERE)
    options = await stream_options(client, lambda o: shape_names(o, "ignore_zones") == ["blind"])
    assert_points(options["ignore_zones"][0], EVERYWHERE)
    await page.wait_for_function(NO_TRACKS_FOR, arg=QUIET_FRAMES, timeout=WAIT_MS)
    await page.wait_for_function(
        """() => document.querySelector('#shape-list li[data-shape="zone:bay"]').innerText.includes("0 inside")""",
        timeout=WAIT_MS,
    )

    # Deleted (picked in the list: a click inside it reaches what is under it), the stream sees again.
    await page.click('#shape-list li[data-shape="ignore:blind"] button')
    await page.wait_for_selector('#shape-list li.selected[data-shape="ignore:blind"]', timeout=WAIT_MS)
    await page.keyboard.press("Delete")
    await stream_options(client, lambda o: o["ignore_zones"] == [])
    await page.wait_for_function(HAS_TRACKS, timeout=WAIT_MS)
    assert console.errors == []


async def test_an_ignore_zone_is_listed_as_one_set_in_the_panel_and_deleted_without_the_others(
    start_server: Start, browser: Any, screenshots: Path
) -> None:
    client = await _with_shapes(start_server, lines=[GATE], ignore_zones=[POSTER, STATUE])
    page, console = await open_page(browser, client, STREAM_VIEW)
    sent: list[dict[str, Any]] = []
    page.on("request", lambda request: request.method == "PATCH" and sent.append(request.post_data_json))
    await wait_for_new_frame(page, "#video")
    statue = page.locator('#shape-list li[data-shape="ignore:statue"]')
    await statue.wait_for(timeout=WAIT_MS)
    assert " ".join((await statue.inner_text()).split()) == "ignore zone: statue ignored when ≥ 70 % inside · square"

    await statue.get_by_role("button").focus()
    await page.keyboard.press("Enter")
    await page.wait_for_selector('#shape-list li.selected[data-shape="ignore:statue"]', timeout=WAIT_MS)
    assert await statue.get_by_role("button").get_attribute("aria-pressed") == "true"
    classes = page.get_by_role("group", name="Classes ignored")
    assert await classes.get_by_role("checkbox", name="square").is_checked(), "the classes it ignores"
    assert await page.is_hidden("#shape-loiter-field"), "an ignore zone counts nothing: no loiter time"
    share = page.get_by_label("Share inside")
    assert await share.input_value() == "70"
    await page.screenshot(path=screenshots / "ignore-zone-selected.png", full_page=True)

    await share.fill("85")
    await share.press("Enter")
    options = await stream_options(client, lambda o: o["ignore_zones"][1]["min_share"] == 0.85)
    await classes.get_by_role("checkbox", name="disc").check()
    options = await stream_options(client, lambda o: o["ignore_zones"][1]["classes"] == ["disc", "square"])
    assert options["ignore_zones"][0] == POSTER | {"classes": [], "min_share": 0.5}, "the other one untouched"

    await page.click('#shape-list li[data-shape="ignore:statue"] button')  # its settings had the focus
    await page.keyboard.press("Delete")
    options = await stream_options(client, lambda o: shape_names(o, "ignore_zones") == ["poster"])
    assert shape_names(options, "lines") == ["gate"], "deleting the ignore zone keeps the line"

    async def deleted_last() -> bool:  # the page's request events may come after the server has the PATCH
        return bool(sent) and [zone["name"] for zone in sent[-1]["ignore_zones"]] == ["poster"]

    await eventually(deleted_last, WAIT_MS / 1000, "the page's last PATCH to keep the poster alone")
    assert await page.text_content("#shape-status") == "Ignore zone “statue” deleted."
    assert console.errors == []


async def test_an_ignore_zone_the_stream_has_is_drawn_greyed_in_dashes_and_listed(
    start_server: Start, browser: Any, screenshots: Path
) -> None:
    client = await _with_shapes(start_server, ignore_zones=[STATUE])
    page = await browser.new_page(viewport=DESKTOP)
    console = Console(page)
    await page.add_init_script(RECORD_DASHES)
    await page.goto(str(client.make_url(STREAM_VIEW)))
    await wait_for_new_frame(page, "#video")
    statue = page.locator('#shape-list li[data-shape="ignore:statue"]')
    await statue.wait_for(timeout=WAIT_MS)
    assert (await statue.inner_text()).startswith("ignore zone: statue")
    assert await page.is_hidden("#shape-empty")

    await page.wait_for_function("() => window.dashed", timeout=WAIT_MS)  # its outline: no zone has dashes
    await page.click("#pause")
    drawn = await page.evaluate(CANVAS_STATS, "#video")
    await page.screenshot(path=screenshots / "ignore-zone.png")
    await page.uncheck("#overlays input[name=zones]")
    hidden = await page.evaluate(CANVAS_STATS, "#video")
    assert hidden["seq"] == drawn["seq"], "paused: the same frame"
    assert hidden["hash"] != drawn["hash"], "the ignore zone is drawn over the picture"
    assert console.errors == []


async def _rename(page: Any, shape: str, name: str) -> None:
    """Select ``shape`` (``zone:bay``) in the list and give it ``name``."""
    await page.click(f'#shape-list li[data-shape="{shape}"] button')
    await page.wait_for_selector(f'#shape-list li.selected[data-shape="{shape}"]', timeout=WAIT_MS)
    await page.fill("#shape-name", name)
    await page.press("#shape-name", "Enter")


async def test_changes_made_while_a_save_is_out_are_sent_after_it_zones_and_ignore_zones_alike(
    start_server: Start, browser: Any
) -> None:
    client = await _with_shapes(start_server, zones=[BAY], ignore_zones=[POSTER, STATUE])
    page, console = await open_page(browser, client, STREAM_VIEW)
    sent: list[dict[str, Any]] = []
    page.on("request", lambda request: request.method == "PATCH" and sent.append(request.post_data_json))
    await wait_for_new_frame(page, "#video")
    await page.wait_for_selector('#shape-list li[data-shape="ignore:statue"]', timeout=WAIT_MS)

    # A zone's save held on its way: an ignore zone deleted meanwhile waits for it, then goes.
    held = await hold_first_save(page)
    await _rename(page, "zone:bay", "door")
    save = await asyncio.wait_for(held, WAIT_MS / 1000)
    await page.click('#shape-list li[data-shape="ignore:statue"] button')
    await page.keyboard.press("Delete")
    await page.wait_for_selector('#shape-list li[data-shape="ignore:statue"]', state="detached", timeout=WAIT_MS)
    assert len(sent) == 1 and "ignore_zones" not in sent[0], "one save at a time: the zones' alone"
    await save.continue_()
    options = await stream_options(
        client, lambda o: shape_names(o, "zones") == ["door"] and shape_names(o, "ignore_zones") == ["poster"]
    )

    # An ignore zone's save held: a zone renamed meanwhile goes after it, over its answer.
    held = await hold_first_save(page)
    saves = len(sent)
    await _rename(page, "ignore:poster", "sign")
    save = await asyncio.wait_for(held, WAIT_MS / 1000)
    await _rename(page, "zone:door", "gate")
    await page.wait_for_selector('#shape-list li[data-shape="zone:gate"]', timeout=WAIT_MS)
    assert len(sent) == saves + 1, "the rename waits for the save out"
    await save.continue_()
    options = await stream_options(
        client, lambda o: shape_names(o, "zones") == ["gate"] and shape_names(o, "ignore_zones") == ["sign"]
    )
    assert options["ignore_zones"][0]["points"] == POSTER["points"], "renamed, not moved"
    await page.wait_for_selector('#shape-list li[data-shape="ignore:sign"]', timeout=WAIT_MS)
    assert console.errors == []


class _Saves:
    """The page's PATCHes of stream ``cam``: each body kept as it leaves the page, before the server has it
    (so by the time the server shows a change, every save that led to it is here), and the next one held
    on its way once ``hold_next()`` asks, for the test to let through with ``continue_()``."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.held: asyncio.Future[Any] | None = None

    async def route(self, route: Any) -> None:
        if route.request.method != "PATCH":
            await route.continue_()
            return
        self.bodies.append(route.request.post_data_json)
        if self.held is not None and not self.held.done():
            self.held.set_result(route)
        else:
            await route.continue_()

    def hold_next(self) -> asyncio.Future[Any]:
        self.held = asyncio.get_running_loop().create_future()
        return self.held


async def test_a_change_queued_behind_a_save_is_one_patch_carrying_the_ignore_zones_only_where_they_changed(
    start_server: Start, browser: Any
) -> None:
    client = await _with_shapes(start_server, zones=[BAY], ignore_zones=[POSTER, STATUE])
    page, console = await open_page(browser, client, STREAM_VIEW)
    saves = _Saves()
    await page.route("**/api/streams/cam", saves.route)
    await wait_for_new_frame(page, "#video")
    await page.wait_for_selector('#shape-list li[data-shape="ignore:statue"]', timeout=WAIT_MS)

    # A zone's save held; an ignore zone deleted meanwhile: one more save, of both, and no repeat of the first.
    held = saves.hold_next()
    await _rename(page, "zone:bay", "door")
    save = await asyncio.wait_for(held, WAIT_MS / 1000)
    await page.click('#shape-list li[data-shape="ignore:statue"] button')
    await page.keyboard.press("Delete")
    await page.wait_for_selector('#shape-list li[data-shape="ignore:statue"]', state="detached", timeout=WAIT_MS)
    await save.continue_()
    await stream_options(
        client, lambda o: shape_names(o, "zones") == ["door"] and shape_names(o, "ignore_zones") == ["poster"]
    )
    assert [sorted(body) for body in saves.bodies] == [["lines", "zones"], ["ignore_zones", "lines", "zones"]]
    assert [zone["name"] for zone in saves.bodies[1]["ignore_zones"]] == ["poster"]
    assert [zone["name"] for zone in saves.bodies[1]["zones"]] == ["door"]

    # An ignore zone drawn, its save held; a zone renamed meanwhile: that save leaves the ignore zones
    # alone, though the server filled in what the drawn one left out (its share inside).
    held = saves.hold_next()
    await page.click("#add-ignore")
    await click_polygon(page, [(0.3, 0.3), (0.5, 0.3), (0.5, 0.6)])
    save = await asyncio.wait_for(held, WAIT_MS / 1000)
    await _rename(page, "zone:door", "gate")
    await page.wait_for_selector('#shape-list li[data-shape="zone:gate"]', timeout=WAIT_MS)
    await save.continue_()
    options = await stream_options(
        client,
        lambda o: shape_names(o, "zones") == ["gate"] and shape_names(o, "ignore_zones") == ["poster", "ignore-1"],
    )
    assert options["ignore_zones"][1]["min_share"] == 0.5
    assert [sorted(body) for body in saves.bodies[2:]] == [["ignore_zones", "lines", "zones"], ["lines", "zones"]]
    assert console.errors == []


async def test_keys_on_a_just_drawn_ignore_zone_are_told_of_an_ignore_zone_and_its_corners(
    start_server: Start, browser: Any
) -> None:
    client = await _with_shapes(start_server, zones=[BAY])
    page, console = await open_page(browser, client, STREAM_VIEW)
    await wait_for_new_frame(page, "#video")
    await page.wait_for_selector('#shape-list li[data-shape="zone:bay"]', timeout=WAIT_MS)
    status = page.locator("#shape-status[role=status]")

    await page.click("#add-ignore")
    await page.fill("#shape-name", "lamp")
    await click_polygon(page, [(0.2, 0.2), (0.4, 0.2), (0.4, 0.4), (0.2, 0.4)])
    await stream_options(client, lambda o: shape_names(o, "ignore_zones") == ["lamp"])
    await page.wait_for_selector('#shape-list li.selected[data-shape="ignore:lamp"]', timeout=WAIT_MS)

    # Meant for the last corner, as a press before: the ignore zone, selected by being closed, stays.
    await page.focus("#video")
    await page.keyboard.press("Backspace")
    assert await status.text_content() == "Ignore zone “lamp” kept: Delete removes it."

    await page.keyboard.press("]")
    assert (await status.text_content() or "").startswith("Corner 2 of 4 at 4"), "(0.4, 0.2): a corner"
    await page.keyboard.press("ArrowDown")
    assert (await status.text_content() or "").startswith("Corner 2 at 4")
    options = await stream_options(client, lambda o: o["ignore_zones"][0]["points"][1][1] > 0.205)
    assert_points(options["ignore_zones"][0], [(0.2, 0.2), (0.4, 0.21), (0.4, 0.4), (0.2, 0.4)])
    assert shape_names(options, "ignore_zones") == ["lamp"] and shape_names(options, "zones") == ["bay"]
    assert console.errors == []


#: Keeps, in the page, the texts written on the stream's picture (tags, track labels) since the last reset.
RECORD_TEXTS = """
window.texts = new Set();
const fillText = CanvasRenderingContext2D.prototype.fillText;
CanvasRenderingContext2D.prototype.fillText = function (text, ...rest) {
  if (this.canvas.id === "video") window.texts.add(String(text));
  return fillText.call(this, text, ...rest);
};
"""
IGNORED_LINE = "#shape-ignored"
#: The number the line under the list says, or -1 while it is hidden or says none.
IGNORED_SAID = """() => {
  const line = document.querySelector("#shape-ignored");
  const match = line.checkVisibility() && line.textContent.match(/^Ignored so far: ([\\d,]+) detections?$/);
  return match ? Number(match[1].replaceAll(",", "")) : -1;
}"""


async def test_the_panel_says_how_many_detections_the_streams_filters_ignored_so_far_without_announcing_each(
    start_server: Start, browser: Any
) -> None:
    client = await _with_shapes(start_server, zones=[BAY])
    page, console = await open_page(browser, client, STREAM_VIEW)
    await wait_for_new_frame(page, "#video")
    await page.wait_for_selector("#stats [data-stat=input]", timeout=WAIT_MS)  # the stream list came
    assert await page.is_hidden(IGNORED_LINE), "a stream that filters nothing says nothing of it"

    # An ignore zone over the whole picture: the line says what it kept, as the polls learn it.
    blind = {"name": "blind", "points": [list(point) for point in EVERYWHERE], "units": "fraction"}
    assert (await client.patch("/api/streams/cam", json={"ignore_zones": [blind]})).status == 200
    await page.wait_for_function(f"() => ({IGNORED_SAID})() > 0", timeout=WAIT_MS)
    first = await page.evaluate(IGNORED_SAID)
    assert first <= (await _stream(client))["detections_ignored"]
    await page.wait_for_function(f"(first) => ({IGNORED_SAID})() > first", arg=first, timeout=WAIT_MS)
    live = "[aria-live], [role=status], [role=alert], [role=log]"
    assert await page.evaluate(f"() => document.querySelector('{IGNORED_LINE}').closest('{live}') === null"), (
        "not read out on each poll"
    )

    # min_area alone keeps detections from the tracker too; with no filter left, the line goes.
    body = {"ignore_zones": [], "min_area": 0.5}
    assert (await client.patch("/api/streams/cam", json=body)).status == 200
    await page.wait_for_selector('#shape-list li[data-shape="ignore:blind"]', state="detached", timeout=WAIT_MS)
    assert await page.evaluate(IGNORED_SAID) >= first, "so far: it goes on through a change of the options"
    assert (await client.patch("/api/streams/cam", json={"min_area": 0.0})).status == 200
    await page.wait_for_selector(IGNORED_LINE, state="hidden", timeout=WAIT_MS)

    # So does a class filter's own area bound; one of a conf alone keeps nothing from the tracker.
    bounded = {"class_filters": {"square": {"min_area": 0.5}}}
    assert (await client.patch("/api/streams/cam", json=bounded)).status == 200
    await page.wait_for_selector(IGNORED_LINE, state="visible", timeout=WAIT_MS)
    stricter = {"class_filters": {"square": {"min_area": None, "conf": 0.5}}}  # merged over the square's filter
    assert (await client.patch("/api/streams/cam", json=stricter)).status == 200
    await page.wait_for_selector(IGNORED_LINE, state="hidden", timeout=WAIT_MS)
    assert console.errors == []


async def test_an_ignore_zones_name_tag_is_drawn_over_the_tracks_only_while_it_is_selected(
    start_server: Start, browser: Any
) -> None:
    client = await _with_shapes(start_server, ignore_zones=[STATUE])
    page = await browser.new_page(viewport=DESKTOP)
    console = Console(page)
    await page.add_init_script(RECORD_TEXTS)
    await page.goto(str(client.make_url(STREAM_VIEW)))
    statue = page.locator('#shape-list li[data-shape="ignore:statue"]')
    await statue.wait_for(timeout=WAIT_MS)
    await page.wait_for_function("() => window.texts.size > 0", timeout=WAIT_MS)  # the tracks' labels
    await wait_for_new_frame(page, "#video")
    await wait_for_new_frame(page, "#video")
    texts = await page.evaluate("() => [...window.texts]")
    assert not [text for text in texts if text.startswith("ignored:")], "the list names it: no tag over the tracks"

    await statue.get_by_role("button").click()
    await page.wait_for_function("() => window.texts.has('ignored: statue  square')", timeout=WAIT_MS)

    await click(page, (0.7, 0.2))  # off every shape: none selected
    await page.wait_for_selector("#shape-list li.selected", state="detached", timeout=WAIT_MS)
    await page.evaluate("() => window.texts.clear()")
    await wait_for_new_frame(page, "#video")
    await wait_for_new_frame(page, "#video")
    assert "ignored: statue  square" not in await page.evaluate("() => [...window.texts]")
    assert console.errors == []


#: The selected entry's button's border, and the colour forced colours give Highlight, in the page.
SELECTED_BORDER = """() => {
  const probe = document.body.appendChild(document.createElement("span"));
  probe.style.color = "Highlight";
  const highlight = getComputedStyle(probe).color;
  probe.remove();
  const style = (selector) => {
    const s = getComputedStyle(document.querySelector(selector));
    return {width: parseFloat(s.borderTopWidth), color: s.borderTopColor, style: s.borderTopStyle};
  };
  return {highlight, selected: style("#shape-list li.selected button"),
          other: style('#shape-list li:not(.selected).shape-ignore button')};
}"""


async def test_under_forced_colours_the_selected_entry_has_a_highlight_border_zone_and_ignore_zone_alike(
    start_server: Start, browser: Any, screenshots: Path
) -> None:
    client = await _with_shapes(start_server, zones=[BAY], ignore_zones=[POSTER, STATUE])
    page, console = await open_page(browser, client, STREAM_VIEW)
    await page.emulate_media(forced_colors="active")
    await wait_for_new_frame(page, "#video")
    for shape, style in [("zone:bay", "solid"), ("ignore:statue", "dashed")]:
        await page.click(f'#shape-list li[data-shape="{shape}"] button')
        await page.wait_for_selector(f'#shape-list li.selected[data-shape="{shape}"]', timeout=WAIT_MS)
        border = await page.evaluate(SELECTED_BORDER)
        selected, other = border["selected"], border["other"]
        assert selected["color"] == border["highlight"] and selected["style"] == style, (shape, border)
        assert selected["width"] >= other["width"] + 2, f"{shape}: as plain as an ignore zone not selected: {border}"
        await page.screenshot(path=screenshots / f"forced-colours-{shape.replace(':', '-')}.png")
    assert console.errors == []


async def test_a_share_inside_typed_as_a_fraction_is_refused_with_a_hint_that_it_is_in_percent(
    start_server: Start, browser: Any
) -> None:
    client = await _with_shapes(start_server, ignore_zones=[STATUE])
    page, console = await open_page(browser, client, STREAM_VIEW)
    sent: list[dict[str, Any]] = []
    page.on("request", lambda request: request.method == "PATCH" and sent.append(request.post_data_json))
    await wait_for_new_frame(page, "#video")
    await page.click('#shape-list li[data-shape="ignore:statue"] button')
    share = page.get_by_label("Share inside")
    await share.fill("0.5")
    await share.press("Enter")
    error = await wait_for_text(page, "#shape-error", "50 for half")
    assert "in %" in error
    assert await share.get_attribute("aria-invalid") == "true", "marked invalid, as a loiter time is"
    assert await share.input_value() == "70", "the saved share shown again"
    assert sent == [] and (await _stream(client))["options"]["ignore_zones"][0]["min_share"] == 0.7
    assert console.errors == [], console.errors


async def test_on_a_touch_screen_drawing_starts_with_what_to_tap_not_a_crosshair(
    start_server: Start, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page = await browser.new_page(viewport=PHONE, has_touch=True, is_mobile=True)
    console = Console(page)
    await page.goto(str(client.make_url(STREAM_VIEW)))
    await wait_for_new_frame(page, "#video")
    status = page.locator("#shape-status[role=status]")
    for button, said in [
        ("#add-ignore", "Drawing an ignore zone: tap its corners."),
        ("#add-zone", "Drawing a zone: tap its corners."),
        ("#add-line", "Drawing a line: tap its points."),
    ]:
        await page.tap(button)
        assert await status.text_content() == said
        await page.tap(button)  # Cancel
        assert await status.text_content() == "Cancelled."
    assert console.errors == []


#: Keeps, in the page, everything the shape panel's live region said, and counts the answers to the page's
#: saves (PATCH) once read: the editor's work on an answer follows in the same turn, before any test's look.
RECORD_SAID = """
window.said = [];
window.savesAnswered = 0;
addEventListener("DOMContentLoaded", () => {
  const status = document.querySelector("#shape-status");
  new MutationObserver(() => window.said.push(status.textContent)).observe(status, {childList: true});
});
const fetch = window.fetch;
window.fetch = async (resource, options) => {
  const response = await fetch(resource, options);
  if (options?.method === "PATCH") {
    const json = response.json.bind(response);
    response.json = () => json().finally(() => (window.savesAnswered += 1));
  }
  return response;
};
"""
NOT_IN_FILE = "not saved to the config file: gone at a restart (tick Save to config file to keep it)"


async def test_keys_moving_a_corner_say_its_place_each_press_and_that_it_is_not_in_the_file_once(
    start_server: Start, browser: Any, tmp_path: Path
) -> None:
    config_file = tmp_path / "segcast.toml"
    config_file.write_text('[[streams]]\nid = "cam"\nuri = "scene:?seed=3"\n')
    client = await start_server(StreamConfig("cam", "scene:?seed=3"), config_path=config_file)
    lamp = {"name": "lamp", "points": [[0.2, 0.2], [0.4, 0.2], [0.4, 0.4], [0.2, 0.4]], "units": "fraction"}
    assert (await client.patch("/api/streams/cam", json={"ignore_zones": [lamp]})).status == 200
    page = await browser.new_page(viewport=DESKTOP)
    console = Console(page)
    await page.add_init_script(RECORD_SAID)
    await page.goto(str(client.make_url(STREAM_VIEW)))
    await wait_for_new_frame(page, "#video")
    await page.locator("#shape-persist").wait_for(state="visible", timeout=WAIT_MS)
    await page.click('#shape-list li[data-shape="ignore:lamp"] button')
    await page.keyboard.press("Enter")  # on to its corners
    await page.wait_for_function("() => document.activeElement.id === 'video'", timeout=WAIT_MS)

    warning = f"Zones, lines and ignore zones changed, {NOT_IN_FILE}."
    await page.keyboard.press("ArrowDown")
    await page.wait_for_function("() => window.savesAnswered === 1", timeout=WAIT_MS)
    assert await page.evaluate("() => window.said.slice(-2)") == ["Corner 1 at 20 %, 21 %.", warning]
    for press in (2, 3):
        await page.keyboard.press("ArrowDown")
        await page.wait_for_function(f"() => window.savesAnswered === {press}", timeout=WAIT_MS)
        assert await page.text_content("#shape-status") == f"Corner 1 at 20 %, {20 + press} %."
    assert (await page.evaluate("() => window.said")).count(warning) == 1, "once for the burst"
    assert await page.is_visible("#shape-unfiled"), "the note beside the box stays"
    title = await page.get_attribute("#shape-unfiled", "title") or ""
    assert title.startswith("The zones, lines and ignore zones changed here are not in the config file")
    options = await stream_options(client, lambda o: o["ignore_zones"][0]["points"][0][1] > 0.225)
    assert_points(options["ignore_zones"][0], [(0.2, 0.23), (0.4, 0.2), (0.4, 0.4), (0.2, 0.4)])
    assert console.errors == []


async def test_escape_lets_a_selected_shape_go_before_it_leaves_the_stream_view(
    start_server: Start, browser: Any
) -> None:
    """A user who selected a shape and pressed Escape to let it go was taken back to the grid."""
    client = await _with_shapes(start_server, ignore_zones=[POSTER])
    page, console = await open_page(browser, client, STREAM_VIEW)
    poster = page.locator('#shape-list li[data-shape="ignore:poster"]')
    await poster.wait_for(timeout=WAIT_MS)
    await poster.get_by_role("button").click()
    await page.wait_for_selector('#shape-list li.selected[data-shape="ignore:poster"]', timeout=WAIT_MS)
    await page.keyboard.press("Escape")
    await page.wait_for_selector("#shape-list li.selected", state="detached", timeout=WAIT_MS)
    assert await page.evaluate("() => location.hash") == "#/stream/cam", "still in the stream view"
    await page.keyboard.press("Escape")
    await page.wait_for_function("() => location.hash === '#/'", timeout=WAIT_MS)
    assert console.errors == []
