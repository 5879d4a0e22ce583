"""A line's entry in the stream view's shape list says since when its totals count ("since 16:07").

Its ``in`` and ``out`` start again at 0 when the stream restarts: without the time beside them a watcher
reads "in 12" fallen to "in 0". The time is the line's ``since`` from GET /api/streams/<id>/counts, in
a ``<time>`` inside the entry's button, so a screen reader reads it with the counts. A real headless
Chromium against the real server (``?transport=ws``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from server.options import StreamOptions
from tests.support.browser import WAIT_MS, open_page, require_browser, wait_for_new_frame
from tests.support.polling import eventually
from tests.support.zone_page import STREAM_VIEW

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

GATE = {"name": "gate", "points": [[0.5, 0], [0.5, 1]], "units": "fraction"}
SINCE = '#shape-list li[data-shape="line:gate"] time.shape-since'
#: Whether the gate's entry shows, readable, the time ``since`` (Unix s) as its ``datetime``.
SHOWS_SINCE = """(since) => {
  const time = document.querySelector('#shape-list li[data-shape="line:gate"] time.shape-since');
  return time !== null && time.dateTime === new Date(since * 1000).toISOString()
    && /^since \\S/.test(time.textContent) && time.closest("button").innerText.includes(time.textContent);
}"""


async def _since(client: TestClient, other_than: float | None = None) -> float:
    """The gate's ``since`` as the API tells it, once it has one other than ``other_than``."""

    async def told() -> float | None:
        gate = (await (await client.get("/api/streams/cam/counts")).json())["lines"]["gate"]
        since = gate.get("since")
        return since if since is not None and since != other_than else None

    return await eventually(told, WAIT_MS / 1000, f"the gate counted since a frame other than {other_than}")


async def test_a_lines_entry_says_since_when_it_counts_and_a_restart_renews_it(
    start_server: Start, browser: Any
) -> None:
    options = StreamOptions.from_mapping({"lines": [GATE]})
    client = await start_server(StreamConfig("cam", "scene:?seed=3", options=options))
    page, console = await open_page(browser, client, STREAM_VIEW)
    await wait_for_new_frame(page, "#video")
    since = await _since(client)
    await page.wait_for_function(SHOWS_SINCE, arg=since, timeout=WAIT_MS)

    response = await client.patch("/api/streams/cam", json={"conf": 0.3})  # a fresh tracker and analytics
    assert response.status == 200, await response.text()
    renewed = await _since(client, other_than=since)
    await page.wait_for_function(SHOWS_SINCE, arg=renewed, timeout=WAIT_MS)
    assert await page.locator(SINCE).count() == 1
    assert console.errors == []
