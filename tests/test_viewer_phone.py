"""The viewer on a phone: a real headless Chromium emulating one (390x844 CSS px at 3 device pixels to one,
a touch screen and no mouse, so `pointer: coarse` and no `any-pointer: fine`), held upright and sideways
(844x390), against the real app. Every fix is checked by measuring what the page lays out:

- every control a finger aims at is at least TARGET_PX each way (the Add form, the stream view, the
  camera page, the event history), while a mouse's window keeps its compact controls;
- the wall's floating controls cover no tile, and stay opaque where nothing hovers to bring them up;
- a long camera id shows whole (both ends: "...-east" and "...-west" told apart) in the stream view's
  heading and on the tiles, where a tooltip never shows;
- held sideways, the picture (and the camera page's preview) ends above the fold;
- the drawing hint under the picture, on a touch screen alone, names no key.

Every wait is on something the page shows, with a deadline; none is a fixed sleep.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.config import Settings, StreamConfig
from server.events.api import event_outputs_key
from server.inference.models import BUNDLED_MODEL
from tests.conftest import CHROMIUM, ServedAsInProduction
from tests.support.browser import DESKTOP, WAIT_MS, Console, require_browser, wait_for_new_frame
from tests.support.event_packets import with_events
from tests.support.polling import eventually
from tests.test_viewer_history_page import history_on, zone_enter

playwright = require_browser()

pytestmark = [pytest.mark.timeout(180), pytest.mark.asyncio(loop_scope="module")]

#: A phone upright and sideways, in CSS px (an iPhone 12 to 15).
UPRIGHT = {"width": 390, "height": 844}
SIDEWAYS = {"width": 844, "height": 390}
#: The least size, in CSS px, of a control a finger aims at (WCAG 2.5.5, Apple's and Android's guidance).
TARGET_PX = 44
#: The least size of a checkbox's own box on a touch screen, in CSS px (the label around it is the target).
CHECKBOX_PX = 24
#: Two cameras whose ids differ only at their ends: a tile or heading that cuts either end loses which is which.
EAST = "parking-garage-level-2-entrance-east"
WEST = "parking-garage-level-2-entrance-west"
BAY = {"name": "bay", "points": [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]], "units": "fraction"}
CARD = '.card[data-stream="{}"]'
#: Every control on the page a finger aims at that is shown, and its size: [what, width, height].
TARGETS = """() => {
  const aimed = 'button, input, select, a, label.check, .toggles label, .shape-class-list label';
  return [...document.querySelectorAll(aimed)]
    .filter((e) => e.checkVisibility() && !e.closest('.visually-hidden'))
    .filter((e) => !(e.matches('input[type=checkbox]') && e.closest('label')))
    .map((e) => {
      const r = e.getBoundingClientRect();
      const name = e.id || e.getAttribute('name') || e.textContent.trim().slice(0, 30);
      return [`${e.tagName.toLowerCase()} ${name}`, Math.round(r.width * 10) / 10, Math.round(r.height * 10) / 10];
    });
}"""
#: The size of every checkbox shown: [name, width, height].
CHECKBOXES = """() => [...document.querySelectorAll('input[type=checkbox]')].filter((e) => e.checkVisibility())
  .map((e) => { const r = e.getBoundingClientRect(); return [e.name || e.value || e.id, r.width, r.height]; })"""
#: Whether the text of the element at the selector shows whole: nothing of it cut off either way.
SHOWN_WHOLE = """(element) => element.scrollWidth <= element.clientWidth && element.scrollHeight <= element.clientHeight
  && element.getBoundingClientRect().right <= document.documentElement.clientWidth"""
#: Each shown wall control that overlaps a tile: [control, tile's stream]; and each control's opacity.
WALL_COVERS = """() => {
  const controls = [...document.querySelectorAll('.topbar button')].filter((b) => b.checkVisibility());
  const tiles = [...document.querySelectorAll('#grid .card')];
  const covers = [];
  for (const control of controls) {
    const c = control.getBoundingClientRect();
    for (const tile of tiles) {
      const t = tile.getBoundingClientRect();
      if (c.left < t.right && t.left < c.right && c.top < t.bottom && t.top < c.bottom) {
        covers.push([control.id, tile.dataset.stream]);
      }
    }
  }
  const opacity = (element) => {
    let seen = 1;
    for (let e = element; e; e = e.parentElement) seen *= Number(getComputedStyle(e).opacity);
    return seen;
  };
  return { shown: controls.length, covers, opacity: controls.map(opacity) };
}"""
#: The bottom and height of the element at the selector, the window's height and how far the page is scrolled.
BOTTOM = """(selector) => ({ scrolled: scrollY, bottom: document.querySelector(selector).getBoundingClientRect().bottom,
  height: document.querySelector(selector).getBoundingClientRect().height, window: innerHeight })"""
#: A key's name in the drawing hint (zones.js HINTS): a finger has none of them.
KEY_NAMES = re.compile(r"\b(Keys?|Enter|Space|Escape|Backspace|Shift|arrows?|F)\b|“\[”")
PICTURES_IN = """(count) => {
  const canvases = [...document.querySelectorAll('#grid .card canvas')];
  return canvases.length === count && canvases.every((canvas) => canvas.dataset.seq !== undefined);
}"""


def scene(stream: str, seed: int) -> StreamConfig:
    return StreamConfig(stream, f"scene:?seed={seed}&fps=4&width=320&height=192")


@asynccontextmanager
async def served(*streams: StreamConfig, **overrides: Any) -> AsyncIterator[TestClient]:
    settings = Settings(model=str(BUNDLED_MODEL), streams=streams, **overrides)
    async with TestClient(ServedAsInProduction(create_app(settings))) as client:
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def two(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TestClient]:
    """Cameras EAST (with a zone) and WEST, and an event history holding an entry of EAST's."""
    history = history_on(tmp_path_factory.mktemp("history"), snapshots=False)
    async with served(scene(EAST, 1), scene(WEST, 2), events=history) as client:
        assert (await client.patch(f"/api/streams/{EAST}", json={"zones": [BAY]})).status == 200
        outputs = client.app[event_outputs_key]
        outputs.on_packet(with_events(0, [zone_enter(EAST, 7, time.time())], EAST, tracks=7))
        stored = outputs.history
        assert stored is not None

        async def kept() -> bool:
            return stored.health().delivered >= 1

        await eventually(kept, what="an event stored")
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def one() -> AsyncIterator[TestClient]:
    async with served(scene(EAST, 1)) as client:
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def chromium() -> AsyncIterator[Any]:
    """One Chromium for the module, its webcam a generated one (640x480) that it may open unasked."""
    async with playwright.async_playwright() as driver:
        flags = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
        instance = await driver.chromium.launch(executable_path=CHROMIUM, args=flags)
        try:
            yield instance
        finally:
            await instance.close()


async def on_phone(
    browser: Any, client: TestClient, path: str, viewport: dict[str, int] = UPRIGHT
) -> tuple[Any, Console]:
    """``path`` of ``client``'s server in a new page of a phone: a touch screen, no mouse."""
    page = await browser.new_page(viewport=viewport, device_scale_factor=3, is_mobile=True, has_touch=True)
    console = Console(page)
    await page.goto(str(client.make_url(path)))
    return page, console


async def small_targets(page: Any) -> list[list[Any]]:
    targets: list[list[Any]] = await page.evaluate(TARGETS)
    assert targets, "the page shows controls"
    return [target for target in targets if min(target[1], target[2]) < TARGET_PX]


async def test_every_control_on_a_touch_screen_is_at_least_44_px_each_way(two: TestClient, chromium: Any) -> None:
    # Given a phone: the grid with its Add form.
    page, console = await on_phone(chromium, two, "/")
    await page.wait_for_function(PICTURES_IN, arg=2, timeout=WAIT_MS)
    assert await small_targets(page) == [], "the grid's"
    assert [box for box in await page.evaluate(CHECKBOXES) if min(box[1:]) < CHECKBOX_PX] == []

    # The stream view, a zone selected (its class filter and loiter time shown).
    await page.goto(str(two.make_url(f"/?transport=ws#/stream/{EAST}")))
    await wait_for_new_frame(page, "#video")
    await page.tap('#shape-list li[data-shape="zone:bay"] button')
    await page.wait_for_selector("#shape-settings:not([hidden]) .shape-class-list label", timeout=WAIT_MS)
    assert await small_targets(page) == [], "the stream view's"
    assert [box for box in await page.evaluate(CHECKBOXES) if min(box[1:]) < CHECKBOX_PX] == []

    # The event history, listing the camera's event.
    await page.goto(str(two.make_url("/static/history.html")))
    await page.wait_for_selector(".history-camera", timeout=WAIT_MS)
    assert await small_targets(page) == [], "the history's"
    await page.close()
    assert console.errors == []

    # While a mouse's window keeps its compact controls.
    desktop = await chromium.new_page(viewport=DESKTOP)
    await desktop.goto(str(two.make_url("/")))
    await desktop.wait_for_function(PICTURES_IN, arg=2, timeout=WAIT_MS)
    heights = await desktop.evaluate(
        "() => ['#add-form button', '#nav-grid', '#add-form input[name=id]']"
        ".map((s) => document.querySelector(s).getBoundingClientRect().height)"
    )
    assert max(heights) < TARGET_PX, heights
    await desktop.close()


async def test_the_camera_page_on_a_touch_screen_spaces_its_form_and_fits_sideways(chromium: Any) -> None:
    async with served() as client:
        page, console = await on_phone(chromium, client, "/static/publish.html", SIDEWAYS)
        field = await page.locator("input[name=stream]").bounding_box()
        button = await page.locator("#use-camera").bounding_box()
        assert field is not None and button is not None
        beside = button["x"] >= field["x"] + field["width"] + 8 and button["y"] < field["y"] + field["height"]
        below = button["y"] >= field["y"] + field["height"] + 8
        assert beside or below, f"Use my camera is a finger's width from the field: {field}, {button}"

        # When the camera is on, published and played back: the link to the viewer is a finger's target,
        # and the preview ends above the fold, Stop too (the page is not scrolled to it as it takes the focus).
        await page.tap("#use-camera")
        await page.wait_for_selector("#open-viewer:not([hidden])", timeout=WAIT_MS)
        await page.wait_for_function("() => document.querySelector('#preview').videoWidth > 0", timeout=WAIT_MS)
        assert await small_targets(page) == [], "the camera page's"
        for shown in ("#preview", "#stop-camera"):
            box = await page.evaluate(BOTTOM, shown)
            assert box["scrolled"] == 0 and box["bottom"] <= box["window"], (shown, box)
        await page.tap("#stop-camera")
        await page.close()
        assert console.errors == []


@pytest.mark.parametrize("viewport", [UPRIGHT, SIDEWAYS], ids=["upright", "sideways"])
@pytest.mark.parametrize("count", [1, 2])
async def test_the_wall_controls_cover_no_tile_and_stay_opaque_on_a_touch_screen(
    count: int, viewport: dict[str, int], one: TestClient, two: TestClient, chromium: Any
) -> None:
    page, console = await on_phone(chromium, one if count == 1 else two, "/?wall=1", viewport)
    await page.wait_for_function(PICTURES_IN, arg=count, timeout=WAIT_MS)
    await page.wait_for_function(
        "() => document.querySelector('#grid').style.getPropertyValue('--wall-columns') !== ''", timeout=WAIT_MS
    )
    walled = await page.evaluate(WALL_COVERS)
    assert walled["shown"] >= 1 and walled["covers"] == [], walled
    assert min(walled["opacity"]) == 1, walled
    # And the tiles still fit the window (the room the controls take comes out of the layout).
    inside = await page.evaluate(
        "() => [...document.querySelectorAll('#grid .card')].every((t) => { const r = t.getBoundingClientRect();"
        " return r.top >= 0 && r.bottom <= innerHeight && r.left >= 0 && r.right <= innerWidth; })"
    )
    assert inside
    for stream in (EAST, WEST)[:count]:
        assert await page.eval_on_selector(f"{CARD.format(stream)} .stream-id", SHOWN_WHOLE), f"{stream} whole"
    await page.close()
    assert console.errors == []


async def test_a_long_camera_id_shows_whole_on_its_tile(two: TestClient, chromium: Any) -> None:
    page, console = await on_phone(chromium, two, "/")
    await page.wait_for_function(PICTURES_IN, arg=2, timeout=WAIT_MS)
    for stream in (EAST, WEST):
        name = f"{CARD.format(stream)} .stream-id"
        assert await page.eval_on_selector(name, SHOWN_WHOLE), f"{stream}'s tile cuts its id"
        assert await page.inner_text(name) == stream
    await page.close()
    assert console.errors == []


async def test_a_long_camera_id_shows_whole_in_the_stream_views_heading(two: TestClient, chromium: Any) -> None:
    page, console = await on_phone(chromium, two, f"/?transport=ws#/stream/{EAST}")
    await wait_for_new_frame(page, "#video")
    assert await page.eval_on_selector("#stream-title", SHOWN_WHOLE), "the heading cuts the id"
    assert await page.inner_text("#stream-title") == EAST
    await page.close()
    assert console.errors == []


async def test_held_sideways_the_picture_ends_above_the_fold(two: TestClient, chromium: Any) -> None:
    page, console = await on_phone(chromium, two, f"/?transport=ws#/stream/{WEST}", SIDEWAYS)
    await wait_for_new_frame(page, "#video")
    picture = await page.evaluate(BOTTOM, "#video")
    assert picture["scrolled"] == 0 and picture["bottom"] <= picture["window"], picture
    assert picture["height"] >= picture["window"] / 2, f"the picture is not shrunk to a thumbnail: {picture}"
    await page.close()
    assert console.errors == []


async def test_on_a_touch_screen_alone_the_drawing_hint_names_no_key(two: TestClient, chromium: Any) -> None:
    page, console = await on_phone(chromium, two, f"/?transport=ws#/stream/{EAST}")
    await wait_for_new_frame(page, "#video")
    hints = [await page.inner_text("#shape-hint")]
    for tool in ("#add-zone", "#add-line"):
        await page.tap(tool)
        await page.wait_for_selector(f'{tool}[aria-pressed="true"]', timeout=WAIT_MS)
        hints.append(await page.inner_text("#shape-hint"))
    for hint in hints:
        assert hint and not KEY_NAMES.search(hint), hints
        assert "tap" in hint.lower(), hints
    await page.close()
    assert console.errors == []

    # Where there is a mouse (and so, most likely, a keyboard), the keys are still told.
    desktop = await chromium.new_page(viewport=DESKTOP)
    await desktop.goto(str(two.make_url(f"/?transport=ws#/stream/{EAST}")))
    await wait_for_new_frame(desktop, "#video")
    await desktop.click("#add-zone")
    assert KEY_NAMES.search(await desktop.inner_text("#shape-hint"))
    await desktop.close()
