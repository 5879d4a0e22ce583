"""What the viewer asks segcast again at each hello, in a real headless Chromium against the real app.

The viewer's settings (what the add form accepts, saving to the config file, the model's classes) and
whether events are kept in a history were asked once, at page load: a page opened while segcast was
starting never had them, and one open across a restart kept the answer of the server before.

Every wait is on something the page shows or asks, with a deadline; none is a fixed sleep.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from server.events.config import EventsSettings, HistorySettings
from tests.support.browser import Console, require_browser, wait_for_text
from tests.support.polling import eventually
from tests.support.zone_page import STREAM_VIEW
from tests.test_viewer_event_history import PAGE, iso, shown_times, stored_events

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

STARTING = "Failed to load resource: the server responded with a status of 503 (Service Unavailable)"


async def test_viewer_settings_refused_at_page_load_are_asked_for_again_at_hello(
    start_server: Start, browser: Any
) -> None:
    """The first GET /api/viewer answered 503, as a server still starting does: no help under the add
    form, no "Save to config file", no class filters, for as long as the page stayed open."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page = await browser.new_page()
    console = Console(page)
    asked: list[str] = []

    async def first_refused(route: Any) -> None:
        asked.append(route.request.url)
        if len(asked) == 1:
            await route.fulfill(status=503, json={"error": "starting"})
        else:
            await route.continue_()

    await page.route("**/api/viewer", first_refused)
    await page.goto(str(client.make_url("/")))
    await wait_for_text(page, "#add-help", "This server accepts")
    assert len(asked) >= 2
    assert console.errors == [STARTING]


async def test_a_server_back_with_an_event_history_has_its_events_read(
    start_server: Start, browser: Any, tmp_path: Path
) -> None:
    """The page opened on a server without a history (its answer here: none) keeps the stream view's
    event list empty; the server that says hello after an outage has one, and the list shows it."""
    path = tmp_path / "events.db"
    times = stored_events(path)
    client = await start_server(StreamConfig("cam", "scene:?seed=3"), events=EventsSettings(HistorySettings(path)))
    page = await browser.new_page()
    console = Console(page)
    outputs_asked = 0

    async def none_at_first(route: Any) -> None:
        nonlocal outputs_asked
        outputs_asked += 1
        if outputs_asked == 1:
            await route.fulfill(status=200, json={"outputs": []})
        else:
            await route.continue_()

    sockets: list[Any] = []

    def through(socket: Any) -> None:
        socket.connect_to_server()
        sockets.append(socket)

    await page.route("**/api/events/outputs", none_at_first)
    await page.route_web_socket(re.compile(r"/ws(\?|$)"), through)
    await page.goto(str(client.make_url(STREAM_VIEW)))

    async def asked_once() -> bool:
        return outputs_asked == 1 and len(sockets) == 1

    await eventually(asked_once, what="the history asked about")
    assert await page.locator("#events li").count() == 0

    await sockets[0].close(code=1012, reason="restarting")  # the page's side: as a restart ends it
    assert await shown_times(page, PAGE) == [iso(t) for t in times[:PAGE]]
    assert outputs_asked == 2
    assert [error for error in console.errors if "WebSocket" not in error] == []
