"""The grid's tiles are sent pictures as wide as they are shown, not a fixed size (web/grid.js).

The viewer asks for the server's width step at or above a tile's width in device pixels, so the
server's round-down (server/delivery/encode.py) lands on a picture at least as wide as the tile and
not much wider; a resize that changes the step subscribes once more. Read from the WebSocket frames
the page sends, in a real Chromium against the real server.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from server.config import StreamConfig
from server.delivery.encode import WIDTH_STEPS_PX
from tests.support.browser import DESKTOP, WAIT_MS, Console, require_browser

GRID_JS = Path(__file__).parent.parent / "web" / "grid.js"

pytestmark = pytest.mark.timeout(120)


def test_the_viewers_width_steps_are_the_servers() -> None:
    found = re.search(r"SERVER_WIDTH_STEPS_PX = \[([^\]]*)\]", GRID_JS.read_text())
    assert found is not None, "web/grid.js names the server's width steps in SERVER_WIDTH_STEPS_PX"
    assert tuple(int(step) for step in found.group(1).replace(",", " ").split()) == WIDTH_STEPS_PX


@pytest.fixture
def chromium() -> None:
    """Skips (fails in CI) a browser test where Chromium cannot run; named before ``browser``, it comes first."""
    require_browser()


class Subscriptions:
    """Every subscribe message a page sends on its WebSockets, in order, as they are sent."""

    def __init__(self, page: Any) -> None:
        self.sent: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()
        page.on("websocket", lambda socket: socket.on("framesent", self._record))

    def _record(self, payload: str | bytes) -> None:
        message = json.loads(payload) if isinstance(payload, str) else {}
        if message.get("type") == "subscribe":
            self.sent.append(message)
            self._arrived.set()

    async def wait_for(self, count: int) -> list[dict[str, Any]]:
        """Every subscribe message sent, once there are at least ``count``."""
        async with asyncio.timeout(WAIT_MS / 1000):
            while len(self.sent) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return list(self.sent)


async def open_recorded(browser: Any, url: str, scale: float = 1) -> tuple[Any, Console, Subscriptions]:
    page = await browser.new_page(viewport=DESKTOP, device_scale_factor=scale)
    console = Console(page)
    subscriptions = Subscriptions(page)
    await page.goto(url)
    return page, console, subscriptions


async def tile_step(page: Any) -> int:
    """The server's width step at or above the widest tile's width in device pixels, as the page lays it out."""
    await page.wait_for_selector(".card", timeout=WAIT_MS)
    widest = await page.evaluate(
        "() => Math.max(...[...document.querySelectorAll('.card')].map((c) => c.getBoundingClientRect().width))"
        " * devicePixelRatio"
    )
    return min(step for step in WIDTH_STEPS_PX if step >= round(widest))


async def test_the_grid_asks_for_its_tiles_width_and_again_only_when_a_resize_changes_its_step(
    chromium: None, start_server: Any, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"), StreamConfig("other", "scene:?seed=4"))
    page, console, subscriptions = await open_recorded(browser, str(client.make_url("/")))
    await page.wait_for_selector('.card[data-stream="other"] canvas[data-seq]', timeout=WAIT_MS)  # after hello
    at_1280 = await tile_step(page)
    before = await subscriptions.wait_for(1)
    assert {message["max_width"] for message in before} == {at_1280}, "every subscribe so far is for the tiles' width"
    assert at_1280 < 480, "a 1280 px window's tile is under 320 px: the 320 step, not the 480 of before"

    # Tiles are at least 18rem wide: at 640 px two columns of them are as wide as four at 1280 (same step).
    await page.set_viewport_size({"width": 640, "height": 800})
    assert await tile_step(page) == at_1280
    await wait_for_a_new_picture(page)
    await page.set_viewport_size({"width": 900, "height": 800})  # two columns of ~420 px
    at_900 = await tile_step(page)
    widened = (await subscriptions.wait_for(len(before) + 1))[len(before)]
    assert widened == {**before[-1], "max_width": at_900} and at_900 > at_1280
    await page.set_viewport_size({"width": 1280, "height": 800})
    narrowed = (await subscriptions.wait_for(len(before) + 2))[len(before) + 1]
    assert narrowed == {**before[-1], "max_width": at_1280}, "a smaller step once the tiles shrink"

    # The stream view's subscription comes after every one the grid sent for the resizes.
    await page.click('.card[data-stream="cam"]')
    await page.wait_for_selector("#stream-view:not([hidden])", timeout=WAIT_MS)
    await page.wait_for_function("() => document.querySelector('#video').dataset.seq !== undefined", timeout=WAIT_MS)
    resized = subscriptions.sent[len(before) :]
    widths = [message.get("max_width") for message in resized if message["streams"] == ["*"]]
    assert widths == [at_900, at_1280], f"one subscribe per new step, none for a size of the same step: {resized}"
    assert console.errors == []


async def wait_for_a_new_picture(page: Any) -> None:
    """Until a tile draws a picture later than the one it shows now (a resize has been laid out by then)."""
    seq = await page.get_attribute('.card[data-stream="cam"] canvas', "data-seq")
    await page.wait_for_function(
        "(seq) => document.querySelector('.card[data-stream=\"cam\"] canvas').dataset.seq !== seq",
        arg=seq,
        timeout=WAIT_MS,
    )


#: A tile's width in device pixels, and the step asked for it: a width at a step is that step, even a
#: fraction of a pixel over it (layout's sub-pixel widths), not the next one up with twice the pixels.
STEP_FOR_WIDTH = {320: 320, 320.4: 320, 320.6: 384, 640: 640, 1280: 1280, 20: 32, 9000: 7680}


async def test_a_tile_as_wide_as_a_step_asks_for_that_step(chromium: None, start_server: Any, browser: Any) -> None:
    client = await start_server()
    page, console, _ = await open_recorded(browser, str(client.make_url("/")))
    steps = await page.evaluate(
        """async (widths) => {
             const { widthStepPx } = await import("./static/grid.js");
             return widths.map(widthStepPx);
           }""",
        list(STEP_FOR_WIDTH),
    )
    assert dict(zip(STEP_FOR_WIDTH, steps, strict=True)) == STEP_FOR_WIDTH
    assert console.errors == []


async def test_the_fleet_page_asks_for_its_tiles_width_in_device_pixels(
    chromium: None, start_server: Any, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console, subscriptions = await open_recorded(browser, str(client.make_url("/static/fleet.html")), scale=2)
    [first] = await subscriptions.wait_for(1)
    assert first["max_width"] == await tile_step(page) > 320, "a tile of ~300 CSS px at 2x is ~600 device px"
    assert console.errors == []
