"""A stream whose inference cannot keep up, as the viewer shows it, in a real headless Chromium against
the real app on a slow model (tests/test_overload.py): its tile and its stream view say "behind" in
words, in a colour that keeps WCAG AA contrast, with what to do; and stop saying it once it keeps up.

Every wait is on something the page shows, with a deadline; none is a fixed sleep.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from tests import test_overload
from tests.conftest import CHROMIUM
from tests.support.browser import WAIT_MS, open_page, wait_for_text
from tests.support.components import require_component, require_module
from tests.test_overload import BUSY_SCENE, SlowModel
from tests.test_viewer_accessibility import AA_CONTRAST, CONTRAST

require_module("playwright.async_api", "needs Playwright: pip install -e '.[test]'")
require_component(shutil.which(CHROMIUM) is not None, f"needs Debian's chromium at {CHROMIUM}")

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

slow_model = test_overload.slow_model  # the app's model made slow, a fixture here too

CAPTION = '.card[data-stream="cam"] small'
PACE = "[data-stat=pace]"
#: Whether the tile's caption says nothing of falling behind, in words or colour.
CAPTION_CLEAR = """(caption) => { const e = document.querySelector(caption);
  return e !== null && e.innerText.includes("fps") && !e.innerText.includes("behind")
    && !e.classList.contains("behind") && e.title === ""; }"""


async def test_a_stream_behind_says_so_on_its_tile_and_in_its_view_with_what_to_do(
    start_server: Start, slow_model: SlowModel, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", BUSY_SCENE))
    page, console = await open_page(browser, client, "/")

    # The tile: its rate against the camera's, in words, in the warning colour, and what to do in its title
    caption = await wait_for_text(page, CAPTION, "behind")
    assert re.match(r"behind: \d+\.\d of 3\d fps", caption), caption
    title = await page.get_attribute(CAPTION, "title")
    assert title is not None and "imgsz" in title and "another node" in title
    assert await page.evaluate(CONTRAST, [CAPTION, ".card"]) >= AA_CONTRAST
    assert await page.evaluate("(c) => document.querySelector(c).classList.contains('behind')", CAPTION)

    # The stream view: the processed rate against the input's, and the pace in words with what to do beneath
    await page.click('.card[data-stream="cam"]')
    pace = await wait_for_text(page, PACE, "behind")
    assert re.match(r"behind: \d+% of frames processed", pace), pace
    assert "imgsz" in await page.inner_text(f"{PACE} .pace-advice"), "what to do is shown, not only in a tooltip"
    assert re.fullmatch(r"[\d.]+ of [\d.]+ fps", await page.inner_text("[data-stat=processed]"))
    assert await page.evaluate(CONTRAST, [PACE, ".panel"]) >= AA_CONTRAST
    assert await page.evaluate(CONTRAST, [f"{PACE} .pace-advice", ".panel"]) >= AA_CONTRAST

    # Once inference keeps up again, both stop saying it
    slow_model.fast.set()
    await wait_for_text(page, PACE, "keeps up")
    await page.go_back()
    await page.wait_for_function(CAPTION_CLEAR, arg=CAPTION, timeout=WAIT_MS)
    assert console.errors == []
