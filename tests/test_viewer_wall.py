"""The grid's wall view (web/wall.js): the tiles alone, laid out to fill the window with no scrolling, for a
screen that shows the cameras all day. In a real headless Chromium against the real app, at a wall screen's
1920x1080 and a laptop's 1366x768, with nine cameras and with two.

The scenes' pictures are 5:3 (320x192): the layout follows the pictures' own shape, not the tiles' 16:9.
Every wait is on something the page shows, with a deadline; none is a fixed sleep.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.config import Settings, StreamConfig
from server.inference.models import BUNDLED_MODEL
from tests.conftest import ServedAsInProduction, launched_chromium
from tests.support.browser import WAIT_MS, open_page, require_browser

require_browser()

pytestmark = [pytest.mark.timeout(180), pytest.mark.asyncio(loop_scope="module")]

WALL_SCREEN = {"width": 1920, "height": 1080}
LAPTOP = {"width": 1366, "height": 768}
SIZES = {"1920x1080": WALL_SCREEN, "1366x768": LAPTOP}
#: The least width of a tile on the wall (web/wall.js MIN_TILE_PX): narrower, its caption and picture are
#: not legible, so more tiles than fit the window at this width scroll rather than shrink.
MIN_TILE_PX = 240
#: The least share of the window the wall view's pictures cover, by window and number of cameras: a little
#: under what its layout reaches with 5:3 pictures (measured: 70.4 %, 51.8 %, 62.0 % and 51.2 %). The
#: ordinary grid, which these bounds fail, covers 20.5 % and 4.6 % at 1920x1080; at 1366x768 it cuts off
#: the 9th tile below the fold (and 2 tiles cover 10.3 %).
COVERS_AT_LEAST = {
    ("1920x1080", 9): 0.68,
    ("1920x1080", 2): 0.50,
    ("1366x768", 9): 0.60,
    ("1366x768", 2): 0.49,
}
CARD = '.card[data-stream="{}"]'
#: What the wall shows of the window: how many tiles, whether each is wholly inside the window, whether each
#: picture is whole in its tile (not cut by a tile squeezed into too short a row), whether anything scrolls,
#: and the share of the window that the pictures (as drawn, letterboxed in their canvases, and only where
#: inside their tile and the window) cover.
WALL_FIT = """() => {
  const [width, height] = [document.documentElement.clientWidth, document.documentElement.clientHeight];
  const grid = document.querySelector('#grid');
  const tiles = [...grid.querySelectorAll('.card')];
  let inside = true, whole = true, covered = 0;
  for (const tile of tiles) {
    const r = tile.getBoundingClientRect();
    inside &&= r.left >= 0 && r.top >= 0 && r.right <= width && r.bottom <= height;
    const canvas = tile.querySelector('canvas'), box = canvas.getBoundingClientRect();
    const scale = Math.min(box.width / canvas.width, box.height / canvas.height);
    const [w, h] = [canvas.width * scale, canvas.height * scale];
    const [left, top] = [box.left + (box.width - w) / 2, box.top + (box.height - h) / 2];
    whole &&= left >= r.left && top >= r.top && left + w <= r.right && top + h <= r.bottom;
    const seenW = Math.max(0, Math.min(left + w, r.right, width) - Math.max(left, r.left, 0));
    const seenH = Math.max(0, Math.min(top + h, r.bottom, height) - Math.max(top, r.top, 0));
    covered += seenW * seenH;
  }
  const page = document.scrollingElement;
  const scrolls = page.scrollHeight > page.clientHeight || page.scrollWidth > page.clientWidth
    || grid.scrollHeight > grid.clientHeight;
  return { tiles: tiles.length, inside, whole, scrolls, share: covered / (width * height) };
}"""
#: For `page.wait_for_function`: whether every one of ``count`` tiles has drawn a picture.
PICTURES_IN = """(count) => {
  const canvases = [...document.querySelectorAll('#grid .card canvas')];
  return canvases.length === count && canvases.every((canvas) => canvas.dataset.seq !== undefined);
}"""
#: For `page.wait_for_function`: whether the wall fits [count, least share] as WALL_FIT measures it.
FITS = f"""([count, least]) => {{
  const fit = ({WALL_FIT})();
  return fit.tiles === count && fit.inside && fit.whole && !fit.scrolls && fit.share >= least;
}}"""
#: What the wall view hides of the page, and shows again once left.
AROUND_THE_TILES = (".topbar nav", "#connection", "#add-form")


def scene(index: int) -> StreamConfig:
    return StreamConfig(f"cam{index}", f"scene:?seed={index}&fps=4&width=320&height=192")


@asynccontextmanager
async def served(count: int) -> AsyncIterator[TestClient]:
    """The app on 127.0.0.1 with ``count`` generated cameras, cam1 to cam<count>."""
    settings = Settings(model=str(BUNDLED_MODEL), streams=tuple(scene(i) for i in range(1, count + 1)))
    async with TestClient(ServedAsInProduction(create_app(settings))) as client:
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def nine() -> AsyncIterator[TestClient]:
    async with served(9) as client:
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def two() -> AsyncIterator[TestClient]:
    async with served(2) as client:
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def chromium() -> AsyncIterator[Any]:
    async with launched_chromium() as instance:  # one for the module's tests
        yield instance


async def fit_of(page: Any, count: int) -> dict[str, Any]:
    """WALL_FIT once all ``count`` tiles have drawn a picture (the layout then has the pictures' shape)."""
    await page.wait_for_function(PICTURES_IN, arg=count, timeout=WAIT_MS)
    return await page.evaluate(WALL_FIT)


async def wait_until_it_fits(page: Any, count: int, size: str) -> dict[str, Any]:
    """Until the wall lays out ``count`` tiles within the window at ``size``; what WALL_FIT then says."""
    least = COVERS_AT_LEAST[(size, count)]
    await page.wait_for_function(FITS, arg=[count, least], timeout=WAIT_MS)
    return await page.evaluate(WALL_FIT)


def assert_fills(fit: dict[str, Any], count: int, size: str) -> None:
    """Every one of ``count`` tiles whole in the window at ``size``, its picture whole in it, nothing to scroll,
    and the pictures covering at least COVERS_AT_LEAST of the window."""
    assert fit["tiles"] == count and fit["inside"] and fit["whole"] and not fit["scrolls"], fit
    assert fit["share"] >= COVERS_AT_LEAST[(size, count)], fit


def in_the_address(page: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query, keep_blank_values=True)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("count", [9, 2])
async def test_the_wall_address_fills_the_window_with_the_tiles_alone(
    size: str, count: int, nine: TestClient, two: TestClient, chromium: Any
) -> None:
    """A wall screen's kiosk browser opens ``/?wall=1``: every tile whole in the window, nothing to scroll,
    the pictures as large as the window allows, and of the page only the tiles (each still naming its
    camera and saying whether it is live)."""
    client = nine if count == 9 else two
    page, console = await open_page(chromium, client, "/?wall=1", viewport=SIZES[size])
    assert_fills(await fit_of(page, count), count, size)
    for hidden in AROUND_THE_TILES:
        assert await page.is_hidden(hidden), f"{hidden} is hidden on the wall"
    for index in range(1, count + 1):
        for part in (" .stream-id", " .badge"):
            assert await page.is_visible(CARD.format(f"cam{index}") + part), f"cam{index}{part} stays"
    await page.close()
    assert console.errors == []


async def test_the_wall_button_leaves_by_escape_and_a_tile_opened_from_the_wall_comes_back_to_it(
    two: TestClient, chromium: Any
) -> None:
    page, console = await open_page(chromium, two, "/", viewport=LAPTOP)
    await page.wait_for_function(PICTURES_IN, arg=2, timeout=WAIT_MS)
    for shown in AROUND_THE_TILES:
        assert await page.is_visible(shown)

    # Given the keyboard on the Wall view button: Enter turns the wall on, in the address too.
    await page.focus("#wall-toggle")
    await page.keyboard.press("Enter")
    await wait_until_it_fits(page, 2, "1366x768")
    assert await page.get_attribute("#wall-toggle", "aria-pressed") == "true"
    assert await page.is_visible("#wall-toggle"), "the way out stays on the wall"
    assert in_the_address(page).get("wall") == ["1"], "a reload, or a kiosk given the address, opens the wall"
    for hidden in AROUND_THE_TILES:
        assert await page.is_hidden(hidden)

    # When a tile is opened from the wall by its number, the stream view shows the page's header; Escape
    # goes back to the wall.
    await page.keyboard.press("2")
    await page.wait_for_selector("#stream-view:not([hidden])", timeout=WAIT_MS)
    assert await page.is_visible(".topbar nav") and await page.is_hidden("#wall-toggle")
    await page.keyboard.press("Escape")
    await page.wait_for_selector("#grid-view:not([hidden])", timeout=WAIT_MS)
    await wait_until_it_fits(page, 2, "1366x768")

    # Then Escape on the wall leaves it: the header and the add form come back, and the address forgets it.
    await page.keyboard.press("Escape")
    await page.wait_for_selector("#add-form", state="visible", timeout=WAIT_MS)
    for shown in AROUND_THE_TILES:
        assert await page.is_visible(shown), f"{shown} is back"
    assert await page.get_attribute("#wall-toggle", "aria-pressed") == "false"
    assert "wall" not in in_the_address(page)
    await page.close()
    assert console.errors == []


async def test_full_screen_on_the_wall_keeps_the_wall_and_leaving_the_wall_leaves_it(
    two: TestClient, chromium: Any
) -> None:
    page, console = await open_page(chromium, two, "/?wall=1", viewport=LAPTOP)
    await fit_of(page, 2)
    await page.click("#wall-full-screen")
    await page.wait_for_function("() => document.fullscreenElement === document.documentElement", timeout=WAIT_MS)
    assert await page.get_attribute("#wall-full-screen", "aria-pressed") == "true"
    await wait_until_it_fits(page, 2, "1366x768")

    await page.click("#wall-toggle")
    await page.wait_for_function("() => document.fullscreenElement === null", timeout=WAIT_MS)
    assert await page.is_visible("#add-form")
    await page.close()
    assert console.errors == []


async def test_the_wall_lays_out_again_as_cameras_come_and_go_and_the_window_resizes(chromium: Any) -> None:
    async with served(2) as client:
        page, console = await open_page(chromium, client, "/?wall=1", viewport=WALL_SCREEN)
        await fit_of(page, 2)
        await wait_until_it_fits(page, 2, "1920x1080")

        # When a camera is added, its tile is not put under the others, out of sight: all three fit.
        added = await client.post("/api/streams", json={"id": "cam3", "uri": scene(3).uri})
        assert added.status == 201, await added.text()
        three = await fit_of(page, 3)
        assert three["inside"] and three["whole"] and not three["scrolls"], three

        # When the window shrinks to a laptop's, the tiles shrink with it.
        await page.set_viewport_size(LAPTOP)
        await page.wait_for_function(FITS, arg=[3, 0.0], timeout=WAIT_MS)

        # When a camera goes, the two left grow to fill the window again.
        assert (await client.delete("/api/streams/cam3")).status == 204
        await page.wait_for_selector(CARD.format("cam3"), state="detached", timeout=WAIT_MS)
        await wait_until_it_fits(page, 2, "1366x768")
        await page.close()
        assert console.errors == []


async def test_a_wall_of_more_tiles_than_fit_legibly_scrolls_rather_than_shrink_them(
    nine: TestClient, chromium: Any
) -> None:
    """Nine tiles in an 800x450 window would each be under MIN_TILE_PX wide: they keep that width, and the
    grid scrolls within the window, the page not."""
    page, console = await open_page(chromium, nine, "/?wall=1", viewport={"width": 800, "height": 450})
    await page.wait_for_function(PICTURES_IN, arg=9, timeout=WAIT_MS)
    widths = await page.eval_on_selector_all("#grid .card", "(cards) => cards.map((c) => c.offsetWidth)")
    assert min(widths) >= MIN_TILE_PX, widths
    scrolls = await page.evaluate(
        "() => [document.querySelector('#grid'), document.scrollingElement]"
        ".map((box) => box.scrollHeight > box.clientHeight)"
    )
    assert scrolls == [True, False], "the grid scrolls, not the page"
    await page.locator(CARD.format("cam9")).scroll_into_view_if_needed()
    assert await page.evaluate(
        "(card) => { const r = document.querySelector(card).getBoundingClientRect();"
        " return r.top >= 0 && r.bottom <= document.documentElement.clientHeight; }",
        CARD.format("cam9"),
    ), "the last tile is reached by scrolling"
    await page.close()
    assert console.errors == []


async def test_all_cameras_has_the_same_wall_view(nine: TestClient, chromium: Any) -> None:
    """The All cameras page (fleet.html) shares the grid's tiles: the same control and the same layout."""
    page, console = await open_page(chromium, nine, "/static/fleet.html?wall=1", viewport=LAPTOP)
    assert_fills(await fit_of(page, 9), 9, "1366x768")
    assert await page.is_hidden("#fleet-nodes")
    assert await page.is_visible(".card .card-node"), "each tile still names its node"

    await page.click("#wall-toggle")
    await page.wait_for_selector("#fleet-nodes", state="visible", timeout=WAIT_MS)
    assert "wall" not in in_the_address(page)
    await page.close()
    assert console.errors == []
