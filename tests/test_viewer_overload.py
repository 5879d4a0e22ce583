"""A stream whose inference cannot keep up, as the viewer shows it, in a real headless Chromium against
the real app on a slow model (tests/test_overload.py): its tile and its stream view say "behind" in
words, in a colour that keeps WCAG AA contrast, with what to do, for a screen reader and the keyboard
too; a capped stream against the rate it wants; and stop saying it once it keeps up.

Every wait is on something the page shows, with a deadline; none is a fixed sleep.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from server.options import StreamOptions
from tests import test_overload
from tests.support.browser import WAIT_MS, open_page, require_browser, wait_for_text
from tests.test_overload import BUSY_SCENE, SlowModel
from tests.test_viewer_accessibility import AA_CONTRAST, CONTRAST

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

slow_model = test_overload.slow_model  # the app's model made slow, a fixture here too
quick_pace = test_overload.quick_pace  # its pace judged quickly, which slow_model asks for

CARD = '.card[data-stream="cam"]'
CAPTION = f"{CARD} small"
ADVICE = f"{CARD} .card-advice"
PACE = "[data-stat=pace]"
#: Whether the tile says nothing of falling behind: in its caption's words, colour or title, nor in its description.
CAPTION_CLEAR = """([card, caption]) => { const e = document.querySelector(caption);
  return e !== null && e.innerText.includes("fps") && !e.innerText.includes("behind")
    && !e.classList.contains("behind") && e.title === ""
    && !document.querySelector(card).hasAttribute("aria-describedby"); }"""
#: The most Tab presses from the top of the page to the tile (the top bar and the add form come first).
TAB_STOPS_BEFORE_TILE = 40


async def test_a_stream_behind_says_so_on_its_tile_and_in_its_view_with_what_to_do(
    start_server: Start, slow_model: SlowModel, browser: Any
) -> None:
    from playwright.async_api import expect

    client = await start_server(StreamConfig("cam", BUSY_SCENE))
    page, console = await open_page(browser, client, "/")

    # The tile: its rate against the camera's, in words, in the warning colour
    caption = await wait_for_text(page, CAPTION, "behind")
    # The camera's 30 fps as measured: a fresh-clone run read 28 while the machine was busy.
    assert re.match(r"behind: \d+\.\d of [23]\d fps(?: ·|$)", caption), caption
    assert await page.evaluate(CONTRAST, [CAPTION, ".card"]) >= AA_CONTRAST
    assert await page.evaluate("(c) => document.querySelector(c).classList.contains('behind')", CAPTION)

    # What to do is the tile link's description, a process_fps first, as the server's log says it
    await expect(page.locator(CARD)).to_have_accessible_description(re.compile(r"process_fps.*imgsz.*another node"))
    # (said once: the caption's "behind" is in its name, what to do only in its description)
    await expect(page.locator(CARD)).to_have_accessible_name(re.compile(r"behind"))
    await expect(page.locator(CARD)).not_to_have_accessible_name(re.compile(r"imgsz"))

    # ...and shown on the tile once the keyboard reaches it, in AA contrast; not before
    assert not await page.is_visible(ADVICE)
    await tab_to(page, CARD)
    assert "process_fps" in await page.inner_text(ADVICE)
    assert await page.is_visible(ADVICE)
    assert await page.evaluate(CONTRAST, [ADVICE, ".card-advice"]) >= AA_CONTRAST

    # The stream view: the processed rate against the input's, and the pace in words with what to do beneath
    await page.click(CARD)
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
    await page.wait_for_function(CAPTION_CLEAR, arg=[CARD, CAPTION], timeout=WAIT_MS)
    assert console.errors == []


async def test_a_capped_stream_behind_is_told_against_the_rate_its_cap_wants(
    start_server: Start, slow_model: SlowModel, browser: Any
) -> None:
    from playwright.async_api import expect

    # Given a camera of 30 fps capped at 20, on a model of about 4 batches a second: a fifth of what it wants
    capped = StreamConfig("cam", BUSY_SCENE, options=StreamOptions(process_fps=20.0))
    client = await start_server(capped)
    page, console = await open_page(browser, client, "/")

    # Then its tile tells its processed rate against its cap's, not its input's
    caption = await wait_for_text(page, CAPTION, "behind")
    assert re.match(r"behind: \d+\.\d of 20 fps \(capped\)(?: ·|$)", caption), caption
    await expect(page.locator(CARD)).to_have_accessible_description(re.compile(r"frames this camera's process_fps"))

    # And its stream view the processed rate against the input's and the cap, and the share of what it wants
    await page.click(CARD)
    pace = await wait_for_text(page, PACE, "behind")
    assert re.match(r"behind: \d+% of the frames its cap wants processed", pace), pace
    processed = await page.inner_text("[data-stat=processed]")
    assert re.fullmatch(r"[\d.]+ of [\d.]+ fps, capped at 20", processed), processed
    assert console.errors == []


async def tab_to(page: Any, selector: str) -> None:
    """Press Tab from the top of the page until the element at ``selector`` has the keyboard focus."""
    for _ in range(TAB_STOPS_BEFORE_TILE):
        await page.keyboard.press("Tab")
        if await page.evaluate("(s) => document.activeElement === document.querySelector(s)", selector):
            return
    raise AssertionError(f"{selector} not reached in {TAB_STOPS_BEFORE_TILE} presses of Tab")
