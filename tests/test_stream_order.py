"""The order streams are listed and shown in: natural and case-folded (``cam2`` before ``cam10``, ``Yard``
among the y's), the same in `GET /api/streams`, the WebSocket's hello and the viewer's grid, whatever the
source of a stream and whenever it was added; a tile added while the page is open goes where a reload
puts it, and no tile already there is moved or made again.

Every wait is on something the page shows, with a deadline; none is a fixed sleep.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from server.stream_info import stream_order
from tests.support.browser import WAIT_MS, open_page, require_browser, wait_for_new_frame

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

#: What a person expects to read, whatever order the streams came in.
NATURAL = ["back", "cam", "cam2", "cam3", "cam10", "door", "new", "Yard"]
#: Ids whose order is easy to get wrong: case, digit runs long and short, leading zeros, separators.
TRICKY = [
    "cam10", "Cam", "cam", "cam01", "cam1", "cam2", "a_b", "a-b", "ab", "10x", "9x", "x0", "x",
    "z2y10", "z2y9", "Z2y9", "n" + "9" * 30, "n1" + "0" * 30, "n0" + "9" * 30, "_a", "-a", "0", "00",
]  # fmt: skip
CARD = '.card[data-stream="{}"]'
#: The stream ids of the grid's tiles, top to bottom.
TILE_ORDER = "() => [...document.querySelectorAll('#grid .card')].map((tile) => tile.dataset.stream)"


async def _listed(client: TestClient) -> list[str]:
    response = await client.get("/api/streams")
    assert response.status == 200
    return [stream["id"] for stream in (await response.json())["streams"]]


def test_stream_ids_sort_naturally_and_case_folded() -> None:
    shuffled = ["new", "cam10", "Yard", "cam3", "door", "cam", "back", "cam2"]
    assert sorted(shuffled, key=stream_order) == NATURAL
    assert sorted(["cam1", "cam01", "Cam", "cam"], key=stream_order) == ["Cam", "cam", "cam01", "cam1"], (
        "ids equal but for case or leading zeros still have one order"
    )


async def test_the_api_and_hello_list_streams_naturally_whatever_their_source(start_server: Start) -> None:
    # From the config file in another order, then through the API, as the add-camera form does.
    client = await start_server(*(StreamConfig(id, "/no/such/file.mp4") for id in ("new", "door", "cam")))
    for stream_id in ("cam2", "cam10", "Yard", "back", "cam3"):
        added = await client.post("/api/streams", json={"id": stream_id, "uri": "scene:?seed=3"})
        assert added.status == 201, await added.text()

    assert await _listed(client) == NATURAL
    ws = await client.ws_connect("/ws")
    try:
        hello = await ws.receive_json(timeout=WAIT_MS / 1000)
    finally:
        await ws.close()
    assert hello["type"] == "hello" and [s["id"] for s in hello["streams"]] == NATURAL


async def test_the_viewer_orders_stream_ids_as_the_server_does(start_server: Start, browser: Any) -> None:
    require_browser()
    client = await start_server()
    page, console = await open_page(browser, client, "/")
    in_page = await page.evaluate(
        """async (ids) => {
             const { compareStreamIds } = await import("./static/grid.js");
             return [...ids].sort(compareStreamIds);
           }""",
        TRICKY,
    )
    assert in_page == sorted(TRICKY, key=stream_order)
    assert console.errors == []


async def test_a_tile_added_while_the_page_is_open_goes_where_a_reload_puts_it(
    start_server: Start, browser: Any
) -> None:
    require_browser()
    client = await start_server(StreamConfig("door", "scene:?seed=3"), StreamConfig("cam", "scene:?seed=4"))
    page, console = await open_page(browser, client, "/")
    door = CARD.format("door") + " canvas"
    seen = (await wait_for_new_frame(page, door))["seq"]
    # The tiles there, playing, and every tile taken out of the grid from now on (a move is one too).
    await page.evaluate(
        """() => {
             window.playing = [...document.querySelectorAll('#grid .card')];
             window.canvases = window.playing.map((tile) => tile.querySelector('canvas'));
             window.taken = [];
             new MutationObserver((changes) => {
               for (const { removedNodes } of changes) {
                 window.taken.push(...[...removedNodes].map((node) => node.dataset?.stream));
               }
             }).observe(document.querySelector('#grid'), { childList: true });
           }"""
    )

    for stream_id in ("cam10", "cam2", "Yard", "back"):
        added = await client.post("/api/streams", json={"id": stream_id, "uri": "scene:?seed=5"})
        assert added.status == 201, await added.text()
        await page.wait_for_selector(CARD.format(stream_id), state="attached", timeout=WAIT_MS)

    shown = await page.evaluate(TILE_ORDER)
    assert shown == ["back", "cam", "cam2", "cam10", "door", "Yard"], "not appended last, not by character code"
    assert await page.evaluate("() => window.taken") == [], "no tile already there was moved or removed"
    assert await page.evaluate(
        """() => window.playing.every((tile, i) =>
             document.querySelector(`#grid .card[data-stream="${tile.dataset.stream}"]`) === tile
             && tile.querySelector('canvas') === window.canvases[i])"""
    ), "the playing tiles are the same elements, not made again"
    await wait_for_new_frame(page, door, seen)  # and it carries on drawing

    await page.reload()
    await page.wait_for_selector(CARD.format("Yard"), state="attached", timeout=WAIT_MS)
    assert await page.evaluate(TILE_ORDER) == shown == await _listed(client)
    assert console.errors == []
