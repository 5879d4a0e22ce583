"""Remove on a phone, in a real headless Chromium with touch: a reflex double-tap on the button does not
remove the camera. The second press counts only once CONFIRM_ARMING_MS have passed since the first;
one sooner leaves "Press again to remove" as it was.

Timed on Playwright's page clock, paused: no wait is a sleep, and the taps are exactly as far apart as
the test says.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from tests.support.browser import PHONE, WAIT_MS, Console, require_browser
from tests.support.polling import eventually

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

CONFIRM_ARMING_MS = 600  # web/app.js: how long after the first press a second one counts
DOUBLE_TAP_MS = 100  # a reflex double-tap: the second tap this soon after the first
#: Counts, in the page, the clicks that reached Remove and the DELETE requests it sent: both are
#: counted as they happen, so the test reads them without waiting on the network.
COUNT_REMOVALS = """
window.removeClicks = 0;
window.deletesSent = 0;
document.addEventListener("click", (event) => {
  if (event.target.id === "remove-stream") window.removeClicks += 1;
}, true);
const sendRequest = window.fetch;
window.fetch = (resource, options = {}) => {
  if (options.method === "DELETE") window.deletesSent += 1;
  return sendRequest(resource, options);
};
"""
TITLE_IS_CAM = "() => document.querySelector('#stream-title').textContent === 'cam'"


async def paused_phone_page(browser: Any) -> tuple[Any, Console]:
    """A phone-sized touch page on Playwright's clock, paused before the page's first timer."""
    page = await browser.new_page(viewport=PHONE, has_touch=True, is_mobile=True)
    now = time.time()
    await page.clock.install(time=now - 60)
    await page.clock.pause_at(now)
    await page.add_init_script(COUNT_REMOVALS)
    return page, Console(page)


async def tap_remove(page: Any, clicks: int, *, force: bool = False) -> None:
    """Tap Remove and wait until the page has handled the tap as its ``clicks``-th click. ``force``: tap
    at once, as a finger does, where Playwright would wait for the button to look enabled."""
    await page.tap("#remove-stream", force=force)
    await page.wait_for_function("(clicks) => window.removeClicks === clicks", arg=clicks, timeout=WAIT_MS)


async def listed(client: TestClient) -> list[str]:
    return [stream["id"] for stream in (await (await client.get("/api/streams")).json())["streams"]]


async def test_a_double_tap_on_remove_only_asks_and_a_later_tap_removes(start_server: Start, browser: Any) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console = await paused_phone_page(browser)
    await page.goto(str(client.make_url("/?transport=ws#/stream/cam")))
    await page.wait_for_function(TITLE_IS_CAM, timeout=WAIT_MS)

    # Given a reflex double-tap: two taps 100 ms apart
    await tap_remove(page, 1)
    await page.clock.run_for(DOUBLE_TAP_MS)
    await tap_remove(page, 2, force=True)
    # Then the second tap was too soon to count: nothing was sent, and the question stands
    assert await page.evaluate("window.deletesSent") == 0, "a double-tap removed the camera"
    assert await page.text_content("#remove-stream") == "Press again to remove"
    assert await listed(client) == ["cam"]

    # When the person taps again once the button takes a second press
    await page.clock.run_for(CONFIRM_ARMING_MS - DOUBLE_TAP_MS)
    await tap_remove(page, 3)

    # Then that tap removes the camera
    assert await page.evaluate("window.deletesSent") == 1

    async def removed() -> bool:
        return await listed(client) == []

    await eventually(removed, WAIT_MS / 1000, "the stream to be removed")
    assert console.errors == []
