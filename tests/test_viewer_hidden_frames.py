"""A page in the background is sent no pictures, in a real headless Chromium against the real app.

A dashboard left in a hidden tab kept every stream's JPEGs coming: encodings of a size nobody else
wanted, and bandwidth for pictures no one saw. Hidden, the viewer's grid and stream view, All cameras
and an embed keep their streams subscribed without pictures (docs/protocol.md, ``"image": "none"``),
so states and events still come and the stream view's event list stays complete, and a frame's
metadata, which draws nothing, at the protocol's slowest; shown again, each stream's newest picture
comes at once.

What reached the page is read off its WebSockets as Playwright sees them, in the order they came, and
what the server sends from its own count of each stream's viewers (``GET /api/streams``: a socket that
takes metadata only watches no pictures). Hidden is the page's own ``document.hidden``, overridden, as in
test_viewer_background.py: headless Chromium never hides a page by itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from tests.support.browser import Console, require_browser, wait_for_new_frame, wait_for_text
from tests.support.polling import eventually
from tests.support.zone_page import STREAM_VIEW
from tests.test_viewer_background import HIDE, HIDEABLE, paused_page

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

TILE = '.card[data-stream="cam"]'
#: Each page, and the canvas its picture of stream ``cam`` is drawn on.
PAGES = {
    "grid": ("/", f"{TILE} canvas"),
    "stream-view": (STREAM_VIEW, "#video"),
    "all-cameras": ("/static/fleet.html", f"{TILE} canvas"),
    "embed": ("/embed/cam", "#video"),
}
#: Frames the stream processes while the page is hidden: a page still subscribed to pictures would be
#: sent some of them (the grid takes 4 a second of the scene's 30).
FRAMES_WHILE_HIDDEN = 20
YARD = [[0.05, 0.05], [0.95, 0.05], [0.95, 0.95], [0.05, 0.95]]
#: Whether the tile of ``cam`` says nothing over its picture (no stale note).
TILE_CLEAR = f"() => document.querySelector('{TILE} .status-panel').hidden"
NONZERO_RATE = re.compile(r"[1-9][\d.]* fps")


class SocketTraffic:
    """Every message the page's WebSockets brought, in order: a text one as its JSON, a binary one (a JPEG)
    as None."""

    def __init__(self, page: Any) -> None:
        self.messages: list[dict[str, Any] | None] = []
        page.on("websocket", lambda socket: socket.on("framereceived", self._received))

    def _received(self, payload: str | bytes) -> None:
        self.messages.append(json.loads(payload) if isinstance(payload, str) else None)

    def pictures_since(self, start: int) -> int:
        return sum(message is None for message in self.messages[start:])

    def frames_since(self, start: int) -> list[dict[str, Any]]:
        return [m for m in self.messages[start:] if m is not None and m["type"] == "frame"]

    async def arrival(self, check: Callable[[dict[str, Any]], bool], what: str, start: int = 0) -> int:
        """Wait for a text message from ``start`` on that ``check`` holds for; its index."""

        async def found() -> int | None:
            later = enumerate(self.messages[start:], start)
            return next((index for index, m in later if m is not None and check(m)), None)

        return await eventually(found, what=what)


def status_of(state: str) -> Callable[[dict[str, Any]], bool]:
    return lambda message: message["type"] == "status" and message["state"] == state


async def stream_figure(client: TestClient, key: str) -> Any:
    response = await client.get("/api/streams/cam")
    assert response.status == 200
    return (await response.json())[key]


async def frames_processed_from_now(client: TestClient, count: int) -> None:
    """Wait until the stream has processed ``count`` more frames than it has now."""
    before = await stream_figure(client, "frames_processed")

    async def processed() -> bool:
        return bool(await stream_figure(client, "frames_processed") >= before + count)

    await eventually(processed, what=f"{count} more frames processed")


async def viewers_are(client: TestClient, count: int) -> None:
    """Wait until the server counts ``count`` viewers of the stream's pictures (a metadata-only socket is none)."""

    async def counted() -> bool:
        return bool(await stream_figure(client, "viewers") == count)

    await eventually(counted, what=f"the server counting {count} viewers of the stream's pictures")


async def seq_shown(page: Any, canvas: str) -> str:
    seq: str = await page.evaluate("(canvas) => document.querySelector(canvas).dataset.seq", canvas)
    return seq


async def hideable_page(browser: Any) -> tuple[Any, Console, SocketTraffic]:
    page = await browser.new_page()
    console = Console(page)
    traffic = SocketTraffic(page)
    await page.add_init_script(HIDEABLE)
    return page, console, traffic


@pytest.mark.parametrize("shown", PAGES.values(), ids=PAGES.keys())
async def test_a_hidden_page_is_sent_no_pictures_yet_its_streams_states_and_the_newest_picture_once_shown(
    start_server: Start, browser: Any, shown: tuple[str, str]
) -> None:
    path, canvas = shown
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console, traffic = await hideable_page(browser)
    await page.goto(str(client.make_url(path)))
    await wait_for_new_frame(page, canvas)
    await viewers_are(client, 1)

    await page.evaluate(HIDE, True)
    await viewers_are(client, 0)
    # A restart while hidden (a new source: a change of options alone keeps the video): its states still
    # come, and its frames no picture. Anything the socket brings from its first status on was sent
    # after the server took the hidden page's subscription.
    assert (await client.patch("/api/streams/cam", json={"uri": "scene:?seed=4"})).status == 200
    restarted = await traffic.arrival(status_of("starting"), "the restart's status")
    await traffic.arrival(status_of("live"), "the stream live again", restarted)
    await frames_processed_from_now(client, FRAMES_WHILE_HIDDEN)
    assert traffic.pictures_since(restarted) == 0, "JPEGs sent to a hidden page"
    frames = traffic.frames_since(restarted)
    assert [frame for frame in frames if frame["image"] is not None] == []
    assert len(frames) <= 1, f"{len(frames)} frames' metadata over {FRAMES_WHILE_HIDDEN} frames processed"
    assert await stream_figure(client, "viewers") == 0, "still no viewer of pictures after the restart"
    seen = await seq_shown(page, canvas)

    await page.evaluate(HIDE, False)
    await wait_for_new_frame(page, canvas, seen)
    await viewers_are(client, 1)
    assert console.errors == []


async def test_zone_events_while_hidden_reach_the_event_list_and_the_picture_is_current_once_shown(
    start_server: Start, browser: Any
) -> None:
    """The event list has no history to read back here: what it shows came over the socket, live."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console, traffic = await hideable_page(browser)
    await page.goto(str(client.make_url(STREAM_VIEW)))
    await wait_for_new_frame(page, "#video")

    await page.evaluate(HIDE, True)
    await viewers_are(client, 0)
    yard = {"zones": [{"name": "yard", "points": YARD, "units": "fraction"}]}
    assert (await client.patch("/api/streams/cam", json=yard)).status == 200
    entered = await traffic.arrival(lambda m: m["type"] == "zone_enter", "a zone event while hidden")
    await wait_for_text(page, "#events", "entered yard")
    await frames_processed_from_now(client, FRAMES_WHILE_HIDDEN)
    assert traffic.pictures_since(entered) == 0, "JPEGs sent to a hidden page"
    seen = await seq_shown(page, "#video")

    await page.evaluate(HIDE, False)
    await wait_for_new_frame(page, "#video", seen)
    # The newest frame brings the zone's count with it, and the zone list shows it.
    await wait_for_text(page, '#shape-list li[data-shape="zone:yard"] .shape-count', "inside")
    assert console.errors == []


async def test_a_hidden_grid_calls_no_tile_stale_and_draws_the_newest_picture_once_shown(
    start_server: Start, browser: Any
) -> None:
    """On Playwright's clock: the tiles' once-a-second check runs only as the test moves the clock, so
    seconds hidden pass without waiting for them."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page = await paused_page(browser, HIDEABLE)
    console = Console(page)
    await page.goto(str(client.make_url("/")))
    canvas = f"{TILE} canvas"
    await wait_for_new_frame(page, canvas)

    async def rate_known() -> bool:
        """A tile is judged stale only once it knows its stream's rate, from a poll of the stats."""
        await page.clock.run_for(1000)
        return NONZERO_RATE.search(await page.inner_text(f"{TILE} small")) is not None

    await eventually(rate_known, what="the tile's rate")
    await page.evaluate(HIDE, True)
    await viewers_are(client, 0)
    seen = await seq_shown(page, canvas)
    await page.clock.run_for(10_000)
    assert await page.evaluate(TILE_CLEAR), "a hidden tile, sent no pictures, is called stale"

    await page.evaluate(HIDE, False)
    await wait_for_new_frame(page, canvas, seen)
    assert await page.evaluate(TILE_CLEAR)
    assert console.errors == []
