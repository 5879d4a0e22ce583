"""The stream view's event list pages back through the event history, in a real headless Chromium.

The history is written before the server starts (as a previous run of it would have left it), so
the page can only know those events from the history API; the stream itself makes none.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.analytics.events import AnalyticsEventKind
from server.config import StreamConfig
from server.events.config import EventsSettings, HistorySettings
from server.events.history.writer import INSERT, SCHEMA
from server.frames import PROTOCOL_VERSION
from tests.support.browser import WAIT_MS, open_page, require_browser
from tests.support.zone_page import STREAM_VIEW

require_browser()

Start = Callable[..., Awaitable[TestClient]]
pytestmark = pytest.mark.timeout(120)

STORED = 50  # two and a half pages of the list
PAGE = 20  # the list's page (web/events.js)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def stored_events(path: Path) -> list[float]:
    """Write `STORED` zone and line events of stream ``cam`` to a history at ``path``, 5 s apart, the last
    a minute ago; their times, newest first."""
    times = [time.time() - 60 - 5 * (STORED - 1 - i) for i in range(STORED)]
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)
    for i, when in enumerate(times):
        kind = (AnalyticsEventKind.ZONE_ENTER, AnalyticsEventKind.LINE_CROSS)[i % 2]
        data: dict[str, object] = {"type": kind.value, "v": PROTOCOL_VERSION, "stream": "cam", "id": i + 1}
        data |= {"class_id": 0, "class": "disc", "time": when, "media_time": float(i)}
        data |= {"zone": "yard"} if kind is AnalyticsEventKind.ZONE_ENTER else {"line": "gate", "direction": "in"}
        row = (when, "cam", kind.value, "disc", data.get("zone"), data.get("line"), json.dumps(data), None)
        db.execute(INSERT, row)
    db.commit()
    db.close()
    return sorted(times, reverse=True)


async def shown_times(page: Any, count: int) -> list[str]:
    """The times of the list's items once it shows ``count`` of them (ISO, as each item's <time> says)."""
    await page.wait_for_function(f"() => document.querySelectorAll('#events li').length === {count}", timeout=WAIT_MS)
    times: list[str] = await page.eval_on_selector_all("#events li time", "items => items.map(t => t.dateTime)")
    return times


def iso(when: float) -> str:
    """``when`` as the page's ``new Date(time * 1000).toISOString()`` writes it (milliseconds, Z).

    JavaScript cuts the product to whole milliseconds; `datetime.fromtimestamp` rounds to microseconds
    first, so a time a fraction of a microsecond short of a millisecond came out a millisecond later
    (a test failed on it once in a few dozen runs)."""
    milliseconds = math.floor(when * 1000)
    at = EPOCH + timedelta(milliseconds=milliseconds)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def test_the_event_list_shows_older_events_from_the_history_a_page_at_a_time(
    start_server: Start, browser: Any, tmp_path: Path
) -> None:
    path = tmp_path / "events.db"
    times = stored_events(path)
    client = await start_server(StreamConfig("cam", "scene:?seed=3"), events=EventsSettings(HistorySettings(path)))
    page, console = await open_page(browser, client, STREAM_VIEW)
    older = page.get_by_role("button", name="Show older events")

    assert await shown_times(page, PAGE) == [iso(t) for t in times[:PAGE]], "the newest page, newest first"
    await older.click()
    assert await shown_times(page, 2 * PAGE) == [iso(t) for t in times[: 2 * PAGE]], "the next page below it"
    await older.click()
    assert await shown_times(page, STORED) == [iso(t) for t in times]
    await older.wait_for(state="hidden", timeout=WAIT_MS)  # all of the history is shown: nothing older
    assert console.errors == []
