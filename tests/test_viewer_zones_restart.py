"""Zones and lines drawn while the stream restarts or reconnects, in a real headless Chromium.

A change of a stream's source (a PATCH), a camera that reconnects or a file that is opened again
leaves the stream without pictures for a while, and the stream view says so over its last picture.
A person drawing or moving a shape meanwhile goes on working on that picture, in fractions of the
frame, so nothing they click is lost, and what they draw lands in the same place if the stream comes
back at another size. A camera whose port refuses every connection is a stream that stays without
pictures, reconnecting, until the test gives it a source again. Every wait is on something the page
or the API shows, with a deadline.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from server.options import StreamOptions
from tests.support.browser import CANVAS_STATS, WAIT_MS, open_page, require_browser, wait_for_new_frame
from tests.support.ports import free_port
from tests.support.zone_page import (
    PRECONDITION_FAILED,
    STREAM_VIEW,
    assert_points,
    click,
    screen_point,
    shape_names,
    stream_options,
)

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

#: The same scene at twice the size of the first (640x384).
LARGER_SCENE = "scene:?seed=3&width=1280&height=768"
#: Whether the stream view says, over its picture and in its state badge, that the stream has no pictures now.
NOT_LIVE = """() => {
  const panel = document.querySelector('#stream-view .status-panel');
  return document.querySelector('#stream-state').textContent === 'reconnecting'
    && panel.checkVisibility() && panel.innerText.includes('Reconnecting');
}"""


def _refusing_camera() -> str:
    """An RTSP address where nothing listens: the stream gets no picture, and reconnects until changed."""
    return f"rtsp://127.0.0.1:{free_port()}/stream"


async def _change_source(client: TestClient, uri: str) -> None:
    assert (await client.patch("/api/streams/cam", json={"uri": uri})).status == 200


async def _lose_pictures(client: TestClient, page: Any) -> None:
    """Restart the stream on a camera that never answers, once the page shows a picture."""
    await wait_for_new_frame(page, "#video")
    await _change_source(client, _refusing_camera())
    await page.wait_for_function(NOT_LIVE, timeout=WAIT_MS)


async def test_points_clicked_while_the_stream_restarts_are_kept_on_its_last_picture(
    start_server: Start, browser: Any, screenshots: Path
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console = await open_page(browser, client, STREAM_VIEW)
    door = [(0.2, 0.2), (0.7, 0.25), (0.5, 0.8)]
    await wait_for_new_frame(page, "#video")
    await page.click("#add-zone")
    await page.fill("#shape-name", "door")
    for point in door[:2]:
        await click(page, point)

    await _lose_pictures(client, page)
    kept = await page.evaluate(CANVAS_STATS, "#video")
    assert kept["seq"] is not None and kept["std"] > 0, "the last picture stays on the canvas, not a blank one"
    assert await page.evaluate("() => document.querySelector('#video').dataset.frame") == "640x384"
    await click(page, door[2])
    await page.screenshot(path=screenshots / "drawing-while-reconnecting.png")
    await click(page, door[0])  # the first corner again closes it

    options = await stream_options(client, lambda o: shape_names(o, "zones") == ["door"])
    assert_points(options["zones"][0], door)
    assert await page.evaluate(NOT_LIVE), "still marked as without pictures as the zone is saved"
    assert await page.evaluate(CANVAS_STATS, "#video") != kept, "the zone is drawn over the last picture"

    # Back at twice the size: the zone, in fractions, is where it was on the picture.
    await _change_source(client, LARGER_SCENE)
    await page.wait_for_function("() => document.querySelector('#video').width === 1280", timeout=WAIT_MS)
    await page.wait_for_selector("#stream-state.state-live", timeout=WAIT_MS)
    await click(page, (0.5, 0.4))  # inside the zone, away from its corners: selects it
    await page.wait_for_selector('#shape-list li.selected[data-shape="zone:door"]', timeout=WAIT_MS)
    assert console.errors == [PRECONDITION_FAILED], "the save was drawn before the restart: made again over it"


async def test_a_line_begun_without_pictures_is_ended_on_the_stream_back_at_another_size(
    start_server: Start, browser: Any
) -> None:
    """The line's points are fractions of the picture they were clicked on: the first, on the last
    picture of 640x384, and the second, on the first of 1280x768, are where the person put them."""
    px = {"name": "px", "points": [[100, 100], [300, 100], [300, 300]]}  # pixels, as a config file has them
    client = await start_server(
        StreamConfig("cam", "scene:?seed=3", options=StreamOptions.from_mapping({"zones": [px]}))
    )
    page, console = await open_page(browser, client, STREAM_VIEW)
    await page.wait_for_selector('#shape-list li[data-shape="zone:px"]', timeout=WAIT_MS)
    zones = (await (await client.get("/api/streams/cam")).json())["options"]["zones"]

    await _lose_pictures(client, page)
    await page.click("#add-line")
    await click(page, (0.1, 0.9))
    await _change_source(client, LARGER_SCENE)
    await page.wait_for_function("() => document.querySelector('#video').width === 1280", timeout=WAIT_MS)
    await page.mouse.dblclick(*await screen_point(page, (0.9, 0.8)))  # a double-click ends it

    options = await stream_options(client, lambda o: shape_names(o, "lines") == ["line-1"])
    assert_points(options["lines"][0], [(0.1, 0.9), (0.9, 0.8)])
    assert options["zones"] == zones, "the zone in pixels is sent back as the server gave it"
    # The zone in pixels follows the new size: (250, 120) is inside it on 1280x768 only.
    await click(page, (250 / 1280, 120 / 768))
    await page.wait_for_selector('#shape-list li.selected[data-shape="zone:px"]', timeout=WAIT_MS)
    assert set(console.errors) <= {PRECONDITION_FAILED}


async def test_a_stream_removed_while_a_zone_is_drawn_leaves_neither_its_picture_nor_the_drawing(
    start_server: Start, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console = await open_page(browser, client, STREAM_VIEW)
    await wait_for_new_frame(page, "#video")
    await page.click("#add-zone")
    await click(page, (0.2, 0.2))
    await click(page, (0.6, 0.2))

    assert (await client.delete("/api/streams/cam")).status == 204
    await page.wait_for_selector('#stream-view .status-panel[data-state="missing"]', timeout=WAIT_MS)
    blank = await page.evaluate(CANVAS_STATS, "#video")
    assert blank["seq"] is None and blank["std"] == 0, "nothing of the removed stream is shown"
    assert await page.get_attribute("#add-zone", "aria-pressed") == "false", "the drawing ended with the stream"
    assert await page.is_hidden("#finish-shape")
    assert console.errors == []
