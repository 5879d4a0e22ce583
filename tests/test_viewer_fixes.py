"""The stream view in a real headless Chromium: WebRTC for a stream that appears after its view was
opened, and zone names typed before a shape is drawn (kept when the server refuses the shape) or given
to one already saved; with none typed, the first number free; and Done, pressed only once the shape
drawn can be finished.

Every wait is on something the page or the API shows, with a deadline; none is a fixed sleep.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from tests.support.browser import WAIT_MS, Console, open_page, require_browser, wait_for_new_frame, wait_for_text
from tests.support.zone_page import STREAM_VIEW, Point, click, shape_names, stream_options
from tests.test_viewer_webrtc import wait_for_transport

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

MISSING = '#stream-view .status-panel[data-state="missing"]'
NO_RTC = "() => document.querySelectorAll('video.rtc-source').length === 0"
TRIANGLE: list[Point] = [(0.1, 0.1), (0.4, 0.1), (0.4, 0.4)]
BAD_REQUEST = "Failed to load resource: the server responded with a status of 400 (Bad Request)"


def _requests(page: Any, method: str, path: str) -> list[str]:
    """The URLs of the requests the page makes with ``method`` to a URL containing ``path``, as it makes them."""
    made: list[str] = []
    page.on("request", lambda request: request.method == method and path in request.url and made.append(request.url))
    return made


async def _draw_zone(page: Any, points: list[Point]) -> None:
    for point in [*points, points[0]]:  # the first corner again closes it
        await click(page, point)


async def test_a_stream_added_after_its_view_was_opened_plays_over_webrtc(start_server: Start, browser: Any) -> None:
    client = await start_server()
    page = await browser.new_page()
    console = Console(page)
    plays = _requests(page, "POST", "/api/webrtc/play/")
    await page.goto(str(client.make_url("/#/stream/late")))
    await page.wait_for_selector(MISSING, timeout=WAIT_MS)
    # Any WebRTC attempt the view made is over (refused) before the stream is added, as a person's would be.
    await page.wait_for_function(NO_RTC, timeout=WAIT_MS)
    assert plays == [], "no WebRTC is offered for a stream the server does not have"

    assert (await client.post("/api/streams", json={"id": "late", "uri": "scene:?seed=9"})).status == 201
    await wait_for_transport(page, "WebRTC")
    frame = await wait_for_new_frame(page, "#video")
    assert frame["std"] > 10, "frames are pictures, not blank"

    # Removed while it plays over WebRTC, and added again: WebRTC again, not the WebSocket for good.
    assert (await client.delete("/api/streams/late")).status == 204
    await page.wait_for_selector(MISSING, timeout=WAIT_MS)
    await wait_for_transport(page, "WebSocket")
    await page.wait_for_function(NO_RTC, timeout=WAIT_MS)
    assert (await client.post("/api/streams", json={"id": "late", "uri": "scene:?seed=9"})).status == 201
    await wait_for_transport(page, "WebRTC")
    await wait_for_new_frame(page, "#video", frame["seq"])
    assert len(plays) == 2, "one offer each time the stream appeared, none while it was missing"
    assert console.errors == []


async def test_a_name_typed_before_add_zone_names_the_zone(start_server: Start, browser: Any) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console = await open_page(browser, client, STREAM_VIEW)
    await wait_for_new_frame(page, "#video")

    await page.fill("#shape-name", "door")
    await page.click("#add-zone")
    assert await page.input_value("#shape-name") == "door"
    await _draw_zone(page, TRIANGLE)
    await stream_options(client, lambda o: shape_names(o, "zones") == ["door"])
    await page.wait_for_selector('#shape-list li.selected[data-shape="zone:door"]', timeout=WAIT_MS)

    # A name taken already is kept to be corrected, and the zone is not finished under it.
    await page.fill("#shape-name", "door")
    await page.click("#add-zone")
    await wait_for_text(page, "#shape-error", "There is a zone called “door” already")
    assert await page.input_value("#shape-name") == "door"
    await _draw_zone(page, [(0.6, 0.6), (0.9, 0.6), (0.9, 0.9)])
    assert await page.get_attribute("#add-zone", "aria-pressed") == "true", "still drawing the zone"
    await page.fill("#shape-name", "door-2")
    await page.click("#finish-shape")
    await stream_options(client, lambda o: shape_names(o, "zones") == ["door", "door-2"])

    # Nothing typed: the next free name, not the selected zone's.
    await page.click("#add-zone")
    assert await page.input_value("#shape-name") == "zone-1"
    assert console.errors == []


async def test_add_zone_offers_the_first_free_number_and_done_waits_until_the_shape_can_be_finished(
    start_server: Start, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    taken = [
        {"name": f"zone-{n}", "points": [[x, 0.1], [x + 0.2, 0.1], [x + 0.2, 0.4]], "units": "fraction"}
        for n, x in ((1, 0.1), (2, 0.5))
    ]
    assert (await client.patch("/api/streams/cam", json={"zones": taken})).status == 200
    page, console = await open_page(browser, client, STREAM_VIEW)
    await wait_for_new_frame(page, "#video")
    await page.wait_for_selector('#shape-list li[data-shape="zone:zone-2"]', timeout=WAIT_MS)

    # Each named with the first number free; a zone can be finished from its third corner on, a line
    # from its second point.
    drawn: dict[str, tuple[str, list[Point]]] = {
        "zone": ("zone-3", [(0.2, 0.6), (0.5, 0.6), (0.5, 0.9)]),
        "line": ("line-1", [(0.6, 0.6), (0.9, 0.8)]),
    }
    for kind, (name, points) in drawn.items():
        await page.click(f"#add-{kind}")
        assert await page.input_value("#shape-name") == name
        for count, point in enumerate(points, start=1):
            await click(page, point)
            await wait_for_text(page, "#shape-status", f"Point {count} added")
            assert await page.is_enabled("#finish-shape") == (count == len(points)), f"{kind}, {count} points"
        await page.click("#finish-shape")
    await stream_options(
        client,
        lambda o: shape_names(o, "zones") == ["zone-1", "zone-2", "zone-3"] and shape_names(o, "lines") == ["line-1"],
    )
    assert console.errors == []


async def test_a_name_typed_for_a_zone_the_server_refuses_is_kept_for_the_next_try(
    start_server: Start, browser: Any
) -> None:
    """The refused zone's name stayed in the field but as one filled in, so the next "Add zone"
    replaced it with zone-1: the user had to type it again."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console = await open_page(browser, client, STREAM_VIEW)
    await wait_for_new_frame(page, "#video")

    await page.fill("#shape-name", "door")
    await page.click("#add-zone")
    await _draw_zone(page, [(0.2, 0.2), (0.8, 0.8), (0.8, 0.2), (0.2, 0.8)])  # a bow tie: it crosses itself
    await wait_for_text(page, "#shape-error", "crosses itself")
    assert await page.input_value("#shape-name") == "door"

    await page.click("#add-zone")
    assert await page.input_value("#shape-name") == "door", "the typed name, not the next free one"
    await _draw_zone(page, TRIANGLE)
    await stream_options(client, lambda o: shape_names(o, "zones") == ["door"])
    assert console.errors == [BAD_REQUEST]


async def test_a_name_the_server_would_refuse_is_not_sent_and_the_saved_name_stays(
    start_server: Start, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    zones = [
        {"name": name, "points": [[x, 0.1], [x + 0.2, 0.1], [x + 0.2, 0.4]], "units": "fraction"}
        for name, x in (("door", 0.1), ("gate", 0.5))
    ]
    assert (await client.patch("/api/streams/cam", json={"zones": zones})).status == 200
    page, console = await open_page(browser, client, STREAM_VIEW)
    saves = _requests(page, "PATCH", "/api/streams/cam")
    await wait_for_new_frame(page, "#video")
    await page.click('#shape-list li[data-shape="zone:gate"] button')

    for refused, reason in (("bad name!", "cannot be a name"), ("door", "There is a zone called “door” already")):
        await page.fill("#shape-name", refused)
        await page.press("#shape-name", "Enter")
        await wait_for_text(page, "#shape-error", reason)
        assert await page.input_value("#shape-name") == "gate", "the field shows the saved name again"
        assert await page.locator('#shape-list li.selected[data-shape="zone:gate"]').count() == 1

    # One the server refuses all the same (here for the test's sake) leaves the same: name and selection.
    async def refuse(route: Any) -> None:
        await route.fulfill(status=400, json={"error": "refused for the test"})

    await page.route("**/api/streams/cam", refuse)
    await page.fill("#shape-name", "porch")
    await page.press("#shape-name", "Enter")
    await wait_for_text(page, "#shape-error", "refused for the test")
    await page.wait_for_selector('#shape-list li.selected[data-shape="zone:gate"]', timeout=WAIT_MS)
    assert await page.input_value("#shape-name") == "gate"
    await page.unroute("**/api/streams/cam", refuse)

    await page.fill("#shape-name", "porch")
    await page.press("#shape-name", "Enter")
    await stream_options(client, lambda o: shape_names(o, "zones") == ["door", "porch"])
    assert len(saves) == 2, "only the names the server could take were sent"
    assert console.errors == [BAD_REQUEST]


async def test_the_focus_moves_to_the_view_a_keyboard_opens(start_server: Start, browser: Any) -> None:
    """A card or button that had the focus is hidden with its view: without a new focus, the next Tab
    starts again at the top of the page and a screen reader says nothing of the new view."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console = await open_page(browser, client, "/")
    card = page.locator("#grid a.card").first
    await card.focus()
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#stream-view:not([hidden])", timeout=WAIT_MS)
    assert await page.evaluate("() => document.activeElement.id") == "stream-title"
    await page.locator("#nav-grid").focus()
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#grid-view:not([hidden])", timeout=WAIT_MS)
    assert await page.evaluate("() => document.activeElement.id") == "grid"
    assert console.errors == []
