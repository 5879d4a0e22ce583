""" "Show older events" reaches every stored event exactly once, in a real headless Chromium.

The history's ids follow the order events are stored in, and its times need not: many events share
one frame's time, and a line crossing is dated when the crossing began, so it is stored after events
with later times. Events go into the history the way the pipeline hands them over (a frame's events
to the event outputs), before the page opens, so the page can only know them from the history API.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.analytics.events import AnalyticsEvent, AnalyticsEventKind
from server.config import StreamConfig
from server.delivery.encode import make_packet
from server.delivery.viewer import Event as LiveEvent
from server.events.api import event_outputs_key
from server.events.config import EventsSettings, HistorySettings
from server.frames import PROTOCOL_VERSION, Frame, FrameResult
from server.http.keys import hub_key
from tests.support.browser import WAIT_MS, open_page, require_browser, wait_for_new_frame
from tests.support.event_packets import picture, with_events
from tests.support.polling import eventually
from tests.support.zone_page import STREAM_VIEW

require_browser()

Start = Callable[..., Awaitable[TestClient]]
pytestmark = pytest.mark.timeout(120)

PAGE = 20  # the list's page (web/events.js)
#: More clicks than any history here needs: a list that still offers older events after them never ends.
CLICKS_MAX = 10
#: Each item's text starts with the event's track id, which each event here has its own of.
TRACK_ID = re.compile(r"#(\d+) ")

Event = dict[str, Any]


def zone_enter(track_id: int, when: float) -> Event:
    return {
        **{"type": "zone_enter", "v": PROTOCOL_VERSION, "stream": "cam", "id": track_id, "class_id": 0},
        **{"class": "person", "time": when, "media_time": float(track_id), "zone": "yard"},
    }


def line_cross(track_id: int, when: float) -> Event:
    return {
        **{"type": "line_cross", "v": PROTOCOL_VERSION, "stream": "cam", "id": track_id, "class_id": 0},
        **{"class": "person", "time": when, "media_time": float(track_id), "line": "gate", "direction": "in"},
    }


async def store(client: TestClient, frames: list[list[Event]]) -> None:
    """Hand each frame's events to the app's event outputs, in order, and wait until the history has them all."""
    outputs = client.app[event_outputs_key]
    for seq, events in enumerate(frames):
        outputs.on_packet(with_events(seq, events))
    history = outputs.history
    assert history is not None
    count = sum(len(events) for events in frames)

    async def all_stored() -> bool:
        return history.health().delivered == count

    await eventually(all_stored, what=f"{count} events stored")


async def shown_after_paging_to_the_end(page: Any) -> tuple[list[int], list[str]]:
    """Click "Show older events" until it goes away; the track ids and times (ISO) the list then shows."""
    await page.wait_for_function(f"() => document.querySelectorAll('#events li').length === {PAGE}", timeout=WAIT_MS)
    older = page.get_by_role("button", name="Show older events")
    for _ in range(CLICKS_MAX):
        if not await older.is_visible():
            break
        await older.click()  # aria-disabled until the page it asked for is shown
        await page.wait_for_function(
            "() => { const b = document.querySelector('.event-older');"
            " return b.hidden || b.getAttribute('aria-disabled') !== 'true'; }",
            timeout=WAIT_MS,
        )
    else:
        raise AssertionError(f"still older events to show after {CLICKS_MAX} clicks")
    texts: list[str] = await page.eval_on_selector_all("#events li", "items => items.map(i => i.textContent)")
    times: list[str] = await page.eval_on_selector_all("#events li time", "items => items.map(t => t.dateTime)")
    ids = [int(match[1]) for text in texts if (match := TRACK_ID.search(text)) is not None]
    assert len(ids) == len(texts), texts
    return ids, times


async def test_more_events_of_one_moment_than_a_page_hide_none_of_the_older_ones(
    start_server: Start, browser: Any, tmp_path: Path
) -> None:
    """Given 10 zone entries, then 30 in one frame (one time); when the list is paged back to its end;
    then all 40 are shown, each once (paging by time stopped at a page of that one moment)."""
    client = await start_server(
        StreamConfig("cam", "scene:?seed=3"), events=EventsSettings(HistorySettings(tmp_path / "events.db"))
    )
    start = time.time() - 600
    earlier = [[zone_enter(n, start + n)] for n in range(10)]
    await store(client, [*earlier, [zone_enter(n, start + 100) for n in range(10, 40)]])
    page, console = await open_page(browser, client, STREAM_VIEW)

    ids, times = await shown_after_paging_to_the_end(page)

    assert sorted(ids) == list(range(40)), f"each event once; shown: {ids}"
    assert times == sorted(times, reverse=True), "newest first"
    assert console.errors == []


async def test_a_crossing_stored_after_later_ones_hides_none_when_paging_back(
    start_server: Start, browser: Any, tmp_path: Path
) -> None:
    """Given 60 crossings 0.2 s apart, the 50th dated 3.1 s early (its crossing began then) and so stored
    after the 55th; when the list is paged back to its end; then all 60 are shown, each once (paging
    below the time of the oldest shown, that crossing's, skipped the four between), and in the order of
    their times: the late crossing among those of its moment, not above the ones it was stored after."""
    client = await start_server(
        StreamConfig("cam", "scene:?seed=3"), events=EventsSettings(HistorySettings(tmp_path / "events.db"))
    )
    start = time.time() - 600
    late = 50
    stored_order = [n for n in range(60) if n != late]
    stored_order.insert(stored_order.index(55) + 1, late)
    dated = {n: start + 0.2 * n for n in range(60)} | {late: start + 0.2 * late - 3.1}
    await store(client, [[line_cross(n, dated[n])] for n in stored_order])
    page, console = await open_page(browser, client, STREAM_VIEW)

    ids, _ = await shown_after_paging_to_the_end(page)

    assert ids == sorted(range(60), key=dated.__getitem__, reverse=True), "each event once, newest first"
    assert console.errors == []


#: Live events of stream cam, ``count`` of them a second apart, added to a new EventList of the page's
#: own module: what it then knows, newest first, how many it shows, and where zone_enter is read from.
ADD_LIVE_EVENTS = """async (count) => {
  const { EventList } = await import("./static/events.js");
  const [list, empty] = [document.createElement("ul"), document.createElement("p")];
  document.body.append(list, empty);
  const events = new EventList(list, empty);
  events.open("cam");
  for (let id = 1; id <= count; id += 1) {
    const event = { type: "zone_enter", v: 1, stream: "cam", id, class: "person", zone: "yard" };
    events.add({ ...event, time: 1e9 + id, media_time: id });
  }
  return { known: events.events.map((event) => event.id), shown: list.children.length,
           cursor: events.cursors.get("zone_enter") ?? null };
}"""


async def test_an_event_list_keeps_only_the_newest_live_events_beyond_what_it_shows(
    start_server: Start, browser: Any
) -> None:
    """A page left open on a busy stream must not keep every event it ever heard: beyond the page shown
    and the few it keeps for "Show older events" (web/events.js), the oldest go, to be read again from
    the history from its newest."""
    kept = PAGE + 2 * PAGE * 4  # shown, and two pages of each of the four kinds below them
    client = await start_server()
    page, console = await open_page(browser, client, "/")
    added = await page.evaluate(ADD_LIVE_EVENTS, kept + 70)
    assert added["shown"] == PAGE
    assert added["known"] == list(range(kept + 70, 70, -1)), "the newest, newest first"
    assert added["cursor"] == {}, "its kind read again from the newest"
    assert console.errors == []


async def test_without_a_history_events_cut_off_the_list_are_not_offered_again(
    start_server: Start, browser: Any
) -> None:
    """Given a server that keeps no event history; when one zone entry more than the list shows is heard
    live; then the newest page is shown and "Show older events" is not offered: the one cut off is kept
    nowhere the page could read it back from."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console = await open_page(browser, client, STREAM_VIEW)
    await wait_for_new_frame(page, "#video")  # subscribed: the stream's events now come to the page

    now = time.time()
    heard = tuple(
        AnalyticsEvent(AnalyticsEventKind.ZONE_ENTER, "cam", n, 0, "person", now, float(n), zone="yard")
        for n in range(1, PAGE + 2)
    )
    frame = Frame("cam", 1, now, 1.0, picture())
    client.app[hub_key].publish_threadsafe(make_packet(FrameResult(frame, (), 1.0, heard), {}))
    await page.wait_for_function(
        f"""() => {{ const items = document.querySelectorAll('#events li');
             return items.length === {PAGE} && items[0].textContent.includes('#{PAGE + 1} '); }}""",
        timeout=WAIT_MS,
    )  # the last one heard is on top: all of them have been added to the list

    assert await page.locator(".event-older").is_hidden(), "older events offered without a history to read them from"
    assert console.errors == []


async def test_an_event_repeating_one_from_before_a_restart_is_listed_beside_it(
    start_server: Start, browser: Any, tmp_path: Path
) -> None:
    """Given two crossings alike in all but their time, a minute apart (track ids and media time start
    from 0 again when the server restarts, so track 1 crossing the gate at 11.9 s happens again); when
    the list is paged back to its end; then both are shown."""
    client = await start_server(
        StreamConfig("cam", "scene:?seed=3"), events=EventsSettings(HistorySettings(tmp_path / "events.db"))
    )
    before_restart = time.time() - 600
    again = {**line_cross(1, before_restart + 60), "media_time": 11.9}
    others = [[line_cross(n, before_restart + n)] for n in range(2, 22)]  # more than a page between them
    await store(client, [[{**again, "time": before_restart}], *others, [again]])
    page, console = await open_page(browser, client, STREAM_VIEW)

    ids, times = await shown_after_paging_to_the_end(page)

    assert sorted(ids) == [1, 1, *range(2, 22)], f"each event once; shown: {ids}"
    assert times == sorted(times, reverse=True), "newest first"
    assert console.errors == []


#: A new EventList of stream cam that hears ``live`` on the WebSocket, then reads the history as a page
#: does on reconnecting: the texts of the list's items.
HEAR_LIVE_THEN_READ_HISTORY = """async (live) => {
  const { EventList } = await import("./static/events.js");
  const [list, empty] = [document.createElement("ul"), document.createElement("p")];
  document.body.append(list, empty);
  const events = new EventList(list, empty);
  events.open("cam");
  events.add(live);
  await events.loadHistory("cam");
  return [...list.children].map((item) => item.textContent);
}"""


async def test_a_live_event_and_its_stored_copy_are_listed_once(
    start_server: Start, browser: Any, tmp_path: Path
) -> None:
    """Given a crossing heard live and stored (its time with more digits than the JSON keeps), and a zone
    entry stored only; when the list then reads the history; then each is listed once: the live message
    and the stored copy carry the same time."""
    client = await start_server(events=EventsSettings(HistorySettings(tmp_path / "events.db")))
    when = time.time() - 600 + 0.123456789
    crossing = AnalyticsEvent(
        AnalyticsEventKind.LINE_CROSS, "cam", 1, 0, "person", when, 11.9, line="gate", direction="in"
    )
    await store(client, [[zone_enter(2, when - 1)], [crossing.to_json()]])
    page, console = await open_page(browser, client, "/")

    items = await page.evaluate(HEAR_LIVE_THEN_READ_HISTORY, json.loads(LiveEvent.of(crossing.to_json()).text))

    assert [item[item.index("#") :] for item in items] == ["#1 person crossed gate (in)", "#2 person entered yard"]
    assert console.errors == []
