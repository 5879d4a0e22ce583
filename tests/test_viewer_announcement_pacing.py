"""How often the stream view's event summary speaks to a screen reader, on Playwright's clock.

A summary comes at once for the first event, then at most once every ten seconds (web/announce.js), one
for all heard meanwhile; an event heard again (a server sends it once more, or a proxy repeats it) is no
news. The clock is stopped from the page's start and moved on by the test, so a slow machine changes
nothing of what is said when. The real app, a real headless Chromium; the events are handed to the
page's WebSocket as if the server had sent them (test_viewer_announcements.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from tests.support.browser import require_browser, wait_for_new_frame, wait_for_text
from tests.test_viewer_announcements import HEAR, KEEP_SOCKETS, QUIET, send_crossings
from tests.test_viewer_background import paused_page

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

SUMMARY_SPACING_MS = 10_000  # EVENT_SUMMARY_MS in web/stream.js
FIRST = "1 new event: #12 person crossed mid (in)"
SECOND = "1 new event: #13 person crossed mid (in)"


async def test_a_second_burst_waits_out_ten_seconds_and_an_event_heard_again_counts_once(
    start_server: Start, browser: Any
) -> None:
    client = await start_server(StreamConfig(QUIET, "scene:?seed=4&width=160&height=96"))
    page = await paused_page(browser, KEEP_SOCKETS)
    await page.goto(str(client.make_url(f"/?transport=ws#/stream/{QUIET}")))
    await wait_for_text(page, "#connection", "connected")
    await wait_for_new_frame(page, "#video")
    await page.evaluate(HEAR, "#events-summary")

    await send_crossings(page, [12])
    await page.clock.run_for(1)
    assert await page.evaluate("window.said") == [FIRST], "the first event is said at once"

    await page.clock.run_for(1000)
    await send_crossings(page, [13, 13, 13])  # one crossing thrice: the page's clock stands still meanwhile
    await page.clock.run_for(SUMMARY_SPACING_MS - 1000 - 2)
    assert await page.evaluate("window.said") == [FIRST], "nothing more within ten seconds of the first summary"
    await page.clock.run_for(2)
    assert await page.evaluate("window.said") == [FIRST, SECOND], "the crossing heard thrice is one new event"
