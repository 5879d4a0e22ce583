"""A zone's and a line's class filter and a zone's loiter time, set in the stream view's shape panel.

The panel offers the model's class names, which ``GET /api/viewer`` gives; what is ticked there is
saved through the API like any other change of the shapes, and the zone then counts only those
classes. The browser is a real headless Chromium against the real server (``?transport=ws``), driven
by role and label as a keyboard or screen reader user reaches the controls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import Settings, StreamConfig
from server.http.pages import viewer_settings
from server.scene import CLASS_NAMES
from tests.support.browser import WAIT_MS, open_page, require_browser, wait_for_new_frame
from tests.support.zone_page import STREAM_VIEW, stream_options

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

WHOLE_FRAME = {"name": "yard", "points": [[0, 0], [1, 0], [1, 1], [0, 1]], "units": "fraction"}
GATE = {"name": "gate", "points": [[0.1, 0.5], [0.9, 0.5]], "units": "fraction"}
#: The class ticked: in seed 3's scene a square is in the frame with a triangle from its 10th second on.
TICKED = "square"


async def _counts_once(client: TestClient, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Zone ``yard``'s counts once ``check`` holds for them (objects come and go in the scene)."""
    deadline = asyncio.get_running_loop().time() + WAIT_MS / 1000
    while True:
        yard: dict[str, Any] = (await (await client.get("/api/streams/cam/counts")).json())["zones"]["yard"]
        if check(yard):
            return yard
        assert asyncio.get_running_loop().time() < deadline, f"zone yard's counts stayed {yard}"
        await asyncio.sleep(0.1)


async def _select(page: Any, shape: str) -> Any:
    """Select ``shape`` (``zone:yard``) from the keyboard, in the list; the panel's class group."""
    await page.focus(f'#shape-list li[data-shape="{shape}"] button')
    await page.keyboard.press("Enter")
    await page.wait_for_selector(f'#shape-list li.selected[data-shape="{shape}"]', timeout=WAIT_MS)
    return page.get_by_role("group", name="Classes counted")


async def test_the_viewer_settings_name_the_models_classes(start_server: Start) -> None:
    client = await start_server()
    body = await (await client.get("/api/viewer")).json()
    assert body["classes"] == list(CLASS_NAMES), "the bundled model's classes, in class-id order"


def test_the_viewer_settings_name_no_class_while_the_model_has_not_described_them() -> None:
    settings = Settings(model="triton://127.0.0.1:8001/segcast")
    assert viewer_settings(settings, {}, config_writable=True)["classes"] == []
    assert viewer_settings(settings, {1: "b", 0: "a"}, config_writable=True)["classes"] == ["a", "b"]


async def test_a_class_ticked_for_a_zone_is_saved_and_the_zone_counts_only_it(
    start_server: Start, browser: Any
) -> None:
    require_browser()
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    assert (await client.patch("/api/streams/cam", json={"zones": [WHOLE_FRAME]})).status == 200
    page, console = await open_page(browser, client, STREAM_VIEW)
    await wait_for_new_frame(page, "#video")
    await page.wait_for_selector('#shape-list li[data-shape="zone:yard"]', timeout=WAIT_MS)
    assert await page.is_hidden("#shape-settings"), "no shape selected: nothing to set"

    classes = await _select(page, "zone:yard")
    boxes = classes.get_by_role("checkbox")
    assert await boxes.evaluate_all("(boxes) => boxes.map((b) => b.labels[0].textContent.trim())") == list(CLASS_NAMES)
    assert not any([await box.is_checked() for box in await boxes.all()]), "none ticked: every class"
    await classes.get_by_role("checkbox", name=TICKED).check()
    options = await stream_options(client, lambda o: o["zones"][0]["classes"] == [TICKED])
    assert "loiter_s" not in options["zones"][0]
    await page.wait_for_function(
        "(ticked) => document.querySelector('#shape-list li[data-shape=\"zone:yard\"]').innerText.includes(ticked)",
        arg=TICKED,
        timeout=WAIT_MS,
    )

    # Only the ticked class is counted in the zone, though it covers the whole frame.
    def only_ticked(yard: dict[str, Any]) -> bool:
        counted = {name for name, objects in yard["by_class"].items() if objects}
        return yard["objects"] > 0 and counted == {TICKED}

    yard = await _counts_once(client, only_ticked)
    assert yard["objects"] == yard["by_class"][TICKED]

    loiter = page.get_by_label("Loiter after")
    await loiter.fill("2.5")
    await loiter.press("Enter")
    options = await stream_options(client, lambda o: o["zones"][0].get("loiter_s") == 2.5)
    assert options["zones"][0]["classes"] == [TICKED], "the class filter stays"
    await loiter.fill("")
    await loiter.press("Enter")
    await stream_options(client, lambda o: "loiter_s" not in o["zones"][0])
    assert console.errors == []


async def test_a_lines_classes_are_ticked_and_unticked_from_the_keyboard(start_server: Start, browser: Any) -> None:
    require_browser()
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    assert (await client.patch("/api/streams/cam", json={"lines": [{**GATE, "classes": ["disc"]}]})).status == 200
    page, console = await open_page(browser, client, STREAM_VIEW)
    await wait_for_new_frame(page, "#video")
    await page.wait_for_selector('#shape-list li[data-shape="line:gate"]', timeout=WAIT_MS)

    classes = await _select(page, "line:gate")
    assert await classes.get_by_role("checkbox", name="disc").is_checked(), "the saved filter is shown"
    assert await page.is_hidden("#shape-loiter-field"), "a line has no loiter time"
    await classes.get_by_role("checkbox", name="triangle").focus()
    await page.keyboard.press("Space")
    await stream_options(client, lambda o: o["lines"][0]["classes"] == ["disc", "triangle"])
    await classes.get_by_role("checkbox", name="disc").focus()
    await page.keyboard.press("Space")
    await page.keyboard.press("Delete")  # on a checkbox, not a removal of the line
    await stream_options(client, lambda o: o["lines"][0]["classes"] == ["triangle"])
    await classes.get_by_role("checkbox", name="triangle").focus()
    await page.keyboard.press("Space")
    options = await stream_options(client, lambda o: o["lines"][0]["classes"] == [])
    assert [line["name"] for line in options["lines"]] == ["gate"]
    assert console.errors == []
