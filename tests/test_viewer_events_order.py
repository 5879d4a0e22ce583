"""The stream view's event list keeps its order and its dates through a clock that was wrong, in a real
headless Chromium.

Events stored while the box's clock ran ahead (a year, or a day's skew) kept the top of a list sorted
by time: twenty of them froze it and live events never showed. The list goes in the history's order
(ids follow the order events were stored in), live events above it in the order heard, except that an
event that came late (a line crossing is dated when its stay across began, confirm_s before it counts)
goes among those of its moment by its time; and an event of another day than today shows its date, not
its time alone as one of today's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.analytics.events import AnalyticsEvent, AnalyticsEventKind
from server.config import StreamConfig
from server.delivery.viewer import Event as LiveEvent
from server.events.config import EventsSettings, HistorySettings
from server.frames import PROTOCOL_VERSION
from tests.support.browser import WAIT_MS, open_page, require_browser, wait_for_new_frame
from tests.support.zone_page import STREAM_VIEW
from tests.test_viewer_event_paging import HEAR_LIVE_THEN_READ_HISTORY, line_cross, store

require_browser()

Start = Callable[..., Awaitable[TestClient]]
pytestmark = pytest.mark.timeout(120)

PAGE = 20  # the list's page (web/events.js)
YEAR_S = 365 * 24 * 3600
YARD = [(0.05, 0.05), (0.95, 0.05), (0.95, 0.95), (0.05, 0.95)]  # all of the scene's picture

Event = dict[str, Any]


def zone_enter(track_id: int, when: float, zone: str) -> Event:
    return {
        **{"type": "zone_enter", "v": PROTOCOL_VERSION, "stream": "cam", "id": track_id, "class_id": 0},
        **{"class": "person", "time": when, "media_time": float(track_id), "zone": zone},
    }


#: The <time> of each item of the list at the selector, and the page's own reading of the time it stands
#: for: its date and its time of day, as the page's locale and time zone write them.
TIMES_SHOWN = """(list) => [...document.querySelectorAll(`${list} li time`)].map((time) => {
  const at = new Date(time.dateTime);
  return { text: time.textContent, date: at.toLocaleDateString(), clock: at.toLocaleTimeString(),
           item: time.parentElement.textContent };
})"""


async def test_a_live_event_is_listed_above_a_page_of_events_dated_a_year_ahead(
    start_server: Start, browser: Any, tmp_path: Path
) -> None:
    """Given more than a page of zone entries stored while the clock was a year ahead; when a zone entry
    happens live; then it is at the top of the list, and the events of a year ahead show their date."""
    client = await start_server(
        StreamConfig("cam", "scene:?seed=3"), events=EventsSettings(HistorySettings(tmp_path / "events.db"))
    )
    ahead = time.time() + YEAR_S
    await store(client, [[zone_enter(n, ahead + n, "porch")] for n in range(PAGE + 5)])
    page, console = await open_page(browser, client, STREAM_VIEW)
    await page.wait_for_function(f"() => document.querySelectorAll('#events li').length === {PAGE}", timeout=WAIT_MS)
    await wait_for_new_frame(page, "#video")

    yard = {"zones": [{"name": "yard", "points": YARD, "units": "fraction"}]}
    assert (await client.patch("/api/streams/cam", json=yard)).status == 200
    await page.wait_for_function(
        "() => document.querySelector('#events li')?.textContent.includes('entered yard')", timeout=WAIT_MS
    )

    shown = await page.evaluate(TIMES_SHOWN, "#events")
    live = shown[0]
    assert live["text"] == live["clock"], f"today's event shows its time alone: {live}"
    ahead_shown = [item for item in shown if "entered porch" in item["item"]]
    assert ahead_shown, shown
    assert all(item["date"] in item["text"] and item["clock"] in item["text"] for item in ahead_shown), ahead_shown
    assert console.errors == []


#: Live zone entries of stream cam added to a new EventList of the page's own module, one dated
#: yesterday (by the page's calendar), then one now, listed at #added-events.
ADD_YESTERDAY_AND_NOW = """async () => {
  const { EventList } = await import("./static/events.js");
  const [list, empty] = [document.createElement("ul"), document.createElement("p")];
  list.id = "added-events";
  document.body.append(list, empty);
  const events = new EventList(list, empty);
  events.open("cam");
  const yesterday = new Date();
  yesterday.setDate(yesterday.getDate() - 1);
  const event = { type: "zone_enter", v: 1, stream: "cam", class: "person", zone: "yard" };
  events.add({ ...event, id: 1, time: yesterday.getTime() / 1000, media_time: 1 });
  events.add({ ...event, id: 2, time: Date.now() / 1000, media_time: 2 });
}"""


async def test_an_event_of_another_day_shows_its_date_and_one_of_today_its_time_alone(
    start_server: Start, browser: Any
) -> None:
    client = await start_server()
    page, console = await open_page(browser, client, "/")

    await page.evaluate(ADD_YESTERDAY_AND_NOW)

    today, yesterday = await page.evaluate(TIMES_SHOWN, "#added-events")
    assert "#2 " in today["item"] and today["text"] == today["clock"], today
    assert "#1 " in yesterday["item"], yesterday
    assert yesterday["date"] in yesterday["text"] and yesterday["clock"] in yesterday["text"], yesterday
    assert console.errors == []


async def test_an_event_stored_after_one_heard_live_goes_above_it_whatever_its_time(
    start_server: Start, browser: Any, tmp_path: Path
) -> None:
    """Given a zone entry heard live while the clock was an hour ahead, then (the socket down, the clock
    set right) another stored after it; when the list reads the history on reconnecting; then the one
    stored later is above: the live one's stored copy gives it its place in the history."""
    client = await start_server(events=EventsSettings(HistorySettings(tmp_path / "events.db")))
    now = time.time()
    heard = AnalyticsEvent(AnalyticsEventKind.ZONE_ENTER, "cam", 1, 0, "person", now + 3600, 1.0, zone="yard")
    await store(client, [[heard.to_json()], [zone_enter(2, now, "yard")]])
    page, console = await open_page(browser, client, "/")

    items = await page.evaluate(HEAR_LIVE_THEN_READ_HISTORY, json.loads(LiveEvent.of(heard.to_json()).text))

    assert [item[item.index("#") :] for item in items] == ["#2 person entered yard", "#1 person entered yard"]
    assert console.errors == []


#: Live events of stream cam (a list of them, in the order heard, then the first again) added to a new
#: EventList of the page's own module: the texts of the list's items, top first, and of the item each
#: add() said lists its event (null: none new).
HEAR_LIVE = """async (heard) => {
  const { EventList } = await import("./static/events.js");
  const [list, empty] = [document.createElement("ul"), document.createElement("p")];
  document.body.append(list, empty);
  const events = new EventList(list, empty);
  events.open("cam");
  const listed = [...heard, heard[0]].map((event) => events.add(event)?.textContent ?? null);
  return { items: [...list.children].map((item) => item.textContent), listed };
}"""


def tracks_listed(items: list[str]) -> list[str]:
    """The items' texts without their times: what the list says happened, top first."""
    return [item[item.index("#") :] for item in items]


async def test_a_crossing_heard_after_later_events_is_listed_by_its_time(start_server: Start, browser: Any) -> None:
    """Given a zone entry, then a crossing dated a second before it (its stay across began then) heard after
    it, then another zone entry; then the list reads newest first by the events' own times."""
    client = await start_server()
    page, console = await open_page(browser, client, "/")
    now = time.time()
    heard = [zone_enter(1, now + 1, "yard"), line_cross(2, now), zone_enter(3, now + 1.5, "yard")]

    said = await page.evaluate(HEAR_LIVE, heard)

    items = said["items"]
    assert tracks_listed(items) == ["#3 person entered yard", "#1 person entered yard", "#2 person crossed gate (in)"]
    assert said["listed"] == [items[1], items[2], items[0], None], "each new one's own item, wherever it went"
    assert console.errors == []


async def test_a_live_event_goes_among_the_stored_ones_by_its_time(
    start_server: Start, browser: Any, tmp_path: Path
) -> None:
    """Given a zone entry stored, then a crossing dated a second before it stored after it, and a zone
    entry heard live dated between them; when the list reads the history; then all three are in time
    order, the live one and the late crossing included."""
    client = await start_server(events=EventsSettings(HistorySettings(tmp_path / "events.db")))
    now = time.time()
    await store(client, [[zone_enter(1, now + 1, "yard")], [line_cross(2, now)]])
    page, console = await open_page(browser, client, "/")

    items = await page.evaluate(
        HEAR_LIVE_THEN_READ_HISTORY, json.loads(LiveEvent.of(zone_enter(3, now + 0.5, "yard")).text)
    )

    assert tracks_listed(items) == ["#1 person entered yard", "#3 person entered yard", "#2 person crossed gate (in)"]
    assert console.errors == []
