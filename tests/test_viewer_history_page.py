"""The event history page (web/history.html): the stored events of every camera, filtered, with their
snapshots, in a real headless Chromium.

Events go into the history the way the pipeline hands them over (a frame's events to the event outputs)
before the page opens, so the page can only know them from the history API. The cameras are files that
do not exist: listed by the API, sending no frames, so no track of a real scene adds events of its own.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from server.config import StreamConfig
from server.events.api import event_outputs_key
from server.events.config import EventsSettings, HistorySettings
from server.frames import PROTOCOL_VERSION
from tests.support.browser import WAIT_MS, open_page, open_url, require_browser
from tests.support.event_packets import with_events
from tests.support.polling import eventually
from tests.support.prefix_proxy import PrefixProxy
from tests.test_security_viewer import answer_token_dialog

require_browser()

Start = Callable[..., Awaitable[TestClient]]
pytestmark = pytest.mark.timeout(120)

HISTORY_PAGE = "/static/history.html"
PAGE = 50  # the page's page of events (web/history.js)
VIEWER = "viewer-token-for-the-history-page"
#: A phone in portrait, in CSS pixels: the narrowest the page must fit without scrolling sideways.
PHONE = {"width": 375, "height": 667}
#: How far the page scrolls sideways: how much wider its content is than its window, in CSS pixels.
SIDEWAYS = "document.documentElement.scrollWidth - document.documentElement.clientWidth"
#: What the list shows once an answer came: a count, or that there is nothing, or an error.
SETTLED = """() => {
  const status = document.querySelector('#history-status').textContent;
  const error = document.querySelector('#history-error').textContent;
  return / shown|No events/.test(status) || error !== '';
}"""
#: Each row's camera and what happened, top to bottom.
ROWS = """rows => rows.map(row => [row.querySelector('.history-camera').textContent,
                                 row.querySelector('.history-what').textContent])"""
#: What has the keyboard's focus: its tag and its event id where it is a row.
FOCUSED = "(() => { const e = document.activeElement; return e.tagName + (e.dataset.eventId ?? ''); })()"

Event = dict[str, Any]


def zone_enter(stream: str, track_id: int, when: float, zone: str = "yard") -> Event:
    return {
        **{"type": "zone_enter", "v": PROTOCOL_VERSION, "stream": stream, "id": track_id, "class_id": 0},
        **{"class": "person", "time": when, "media_time": float(track_id), "zone": zone},
    }


def line_cross(stream: str, track_id: int, when: float, line: str = "gate") -> Event:
    return {
        **{"type": "line_cross", "v": PROTOCOL_VERSION, "stream": stream, "id": track_id, "class_id": 0},
        **{"class": "car", "time": when, "media_time": float(track_id), "line": line, "direction": "in"},
    }


def history_on(tmp_path: Path, *, snapshots: bool = True) -> EventsSettings:
    return EventsSettings(HistorySettings(tmp_path / "events.db", snapshots=snapshots))


async def start_cameras(start_server: Start, events: EventsSettings, **overrides: object) -> TestClient:
    """Cameras cam and door, listed and sending nothing."""
    cameras = (StreamConfig("cam", "/no/such/cam.mp4"), StreamConfig("door", "/no/such/door.mp4"))
    return await start_server(*cameras, events=events, **overrides)


async def store(client: TestClient, events: list[Event]) -> None:
    """Hand each event to the app's event outputs in a frame of its own stream, in order, and wait until
    the history has them all. Each frame has the event's track, so each event is stored with a snapshot."""
    outputs = client.app[event_outputs_key]
    for seq, event in enumerate(events):
        outputs.on_packet(with_events(seq, [event], event["stream"], tracks=event["id"]))
    history = outputs.history
    assert history is not None

    async def all_stored() -> bool:
        return history.health().delivered == len(events)

    await eventually(all_stored, what=f"{len(events)} events stored")


async def open_history(browser: Any, client: TestClient, query: str = "", viewport: Any = None) -> tuple[Any, Any]:
    page, console = await open_page(browser, client, HISTORY_PAGE + query, viewport)
    await page.wait_for_function(SETTLED, timeout=WAIT_MS)
    return page, console


async def shown(page: Any) -> list[list[str]]:
    rows: list[list[str]] = await page.eval_on_selector_all("#history-table tbody tr", ROWS)
    return rows


async def show_filtered(page: Any) -> None:
    """Press the form's button and wait for the list of what it asked for."""
    await page.evaluate("document.querySelector('#history-status').textContent = ''")
    await page.get_by_role("button", name="Show events").click()
    await page.wait_for_function(SETTLED, timeout=WAIT_MS)


async def test_the_page_lists_the_events_of_every_camera_newest_first(
    start_server: Start, browser: Any, tmp_path: Path
) -> None:
    """Given a zone entry on cam and a line crossing on door, stored in that order; when the page opens
    with no filter; then both are listed, newest first, each saying what happened, and counted."""
    client = await start_cameras(start_server, history_on(tmp_path))
    now = time.time()
    await store(client, [zone_enter("cam", 12, now - 60), line_cross("door", 3, now - 30)])

    page, console = await open_history(browser, client)

    assert await shown(page) == [["door", "#3 car crossed gate (in)"], ["cam", "#12 person entered yard"]]
    assert await page.text_content("#history-status") == "2 events shown"
    assert await page.locator("#history-more").is_hidden(), "nothing more to show"
    assert console.errors == []


async def test_a_camera_link_opens_that_cameras_stream_view(start_server: Start, browser: Any, tmp_path: Path) -> None:
    client = await start_cameras(start_server, history_on(tmp_path))
    await store(client, [line_cross("door", 3, time.time())])
    page, console = await open_history(browser, client)

    await page.get_by_role("link", name="door", exact=True).click()

    await page.wait_for_url(str(client.make_url("/#/stream/door")), timeout=WAIT_MS)
    await page.wait_for_function("document.querySelector('#stream-title').textContent === 'door'", timeout=WAIT_MS)
    assert console.errors == []


async def test_choosing_a_camera_lists_only_its_events_and_the_address_keeps_the_choice(
    start_server: Start, browser: Any, tmp_path: Path
) -> None:
    """Given events of cam and door; when cam is chosen; then only cam's are listed, the address names
    cam, and the page reloaded (or opened from a bookmark of it) shows the same."""
    client = await start_cameras(start_server, history_on(tmp_path))
    now = time.time()
    await store(client, [zone_enter("cam", 1, now - 90), line_cross("door", 2, now - 60), zone_enter("cam", 3, now)])
    page, console = await open_history(browser, client)
    offered = await page.eval_on_selector_all("#history-stream option", "options => options.map(o => o.value)")
    assert offered == ["", "cam", "door"]

    await page.get_by_label("Camera").select_option("cam")
    await show_filtered(page)

    only_cam = [["cam", "#3 person entered yard"], ["cam", "#1 person entered yard"]]
    assert await shown(page) == only_cam
    assert "stream=cam" in page.url
    await page.reload()
    await page.wait_for_function(SETTLED, timeout=WAIT_MS)
    assert await shown(page) == only_cam
    assert await page.get_by_label("Camera").input_value() == "cam"
    assert console.errors == []


async def test_a_type_and_a_zone_or_line_name_filter_the_list(
    start_server: Start, browser: Any, tmp_path: Path
) -> None:
    """A name of any type matches a zone or a line of that name; with a type, only that type's events."""
    client = await start_cameras(start_server, history_on(tmp_path))
    now = time.time()
    stored = [
        zone_enter("cam", 1, now - 40, zone="gate"),
        line_cross("door", 2, now - 30, line="gate"),
        zone_enter("cam", 3, now - 20, zone="lobby"),
    ]
    await store(client, stored)
    page, console = await open_history(browser, client, "?name=gate")
    assert await page.get_by_label("Zone or line").input_value() == "gate"
    assert await shown(page) == [["door", "#2 car crossed gate (in)"], ["cam", "#1 person entered gate"]]

    await page.get_by_label("What happened").select_option("line_cross")
    await show_filtered(page)

    assert await shown(page) == [["door", "#2 car crossed gate (in)"]]
    assert "type=line_cross" in page.url and "name=gate" in page.url
    assert console.errors == []


async def test_the_period_leaves_out_older_events(start_server: Start, browser: Any, tmp_path: Path) -> None:
    client = await start_cameras(start_server, history_on(tmp_path))
    now = time.time()
    await store(
        client,
        [zone_enter("cam", 1, now - 3 * 86400), zone_enter("cam", 2, now - 2 * 3600), zone_enter("cam", 3, now - 60)],
    )
    page, console = await open_history(browser, client, "?period=all")
    assert [row[1] for row in await shown(page)] == [f"#{n} person entered yard" for n in (3, 2, 1)]

    for period, ids in (("7d", (3, 2, 1)), ("24h", (3, 2)), ("1h", (3,))):
        await page.get_by_label("Period").select_option(period)
        await show_filtered(page)
        assert [row[1] for row in await shown(page)] == [f"#{n} person entered yard" for n in ids], period
        assert f"period={period}" in page.url
    assert console.errors == []


async def test_an_empty_period_says_so(start_server: Start, browser: Any, tmp_path: Path) -> None:
    client = await start_cameras(start_server, history_on(tmp_path))
    await store(client, [zone_enter("cam", 1, time.time() - 2 * 3600)])

    page, console = await open_history(browser, client, "?period=1h")

    assert await page.text_content("#history-status") == "No events in this period"
    assert await page.locator("#history-table tbody tr").count() == 0
    assert console.errors == []


@pytest.mark.parametrize(
    ("address", "said"),
    [
        # a name typed wrong over everything kept: no period to widen, the name to check
        ("?name=Porch&period=all", 'No events of a zone or line named "Porch" (its name exactly, case included)'),
        (
            "?name=porh&period=1h",
            'No events of a zone or line named "porh" (its name exactly, case included) in this period',
        ),
        ("?type=track&name=porch&period=all", "No events: track events name no zone or line; clear Zone or line"),
    ],
)
async def test_an_empty_list_names_the_filter_that_may_be_why(
    start_server: Start, browser: Any, tmp_path: Path, address: str, said: str
) -> None:
    client = await start_cameras(start_server, history_on(tmp_path))
    await store(client, [zone_enter("cam", 1, time.time() - 60, zone="porch")])

    page, console = await open_history(browser, client, address)

    assert (await page.text_content("#history-status") or "").startswith(said)
    assert await page.locator("#history-table tbody tr").count() == 0
    assert console.errors == []


async def test_show_more_pages_on_to_the_oldest_event_and_keeps_the_keyboard_in_the_list(
    start_server: Start, browser: Any, tmp_path: Path
) -> None:
    """Given a page and a half of events; when "Show more" is pressed from the keyboard; then the rest
    are added below, each event listed once, and the focus goes on to the first of them (the button,
    gone with the last page, would leave it to the page's top)."""
    client = await start_cameras(start_server, history_on(tmp_path, snapshots=False))
    start = time.time() - 600
    await store(client, [zone_enter("cam", n, start + n) for n in range(1, PAGE + 11)])
    page, console = await open_history(browser, client)
    assert await page.locator("#history-table tbody tr").count() == PAGE

    more = page.get_by_role("button", name="Show more")
    await more.focus()
    await page.keyboard.press("Enter")
    await page.wait_for_function(f"() => document.querySelectorAll('#history-table tbody tr').length > {PAGE}")

    whats = [row[1] for row in await shown(page)]
    assert whats == [f"#{n} person entered yard" for n in range(PAGE + 10, 0, -1)], "each once, newest first"
    assert await more.is_hidden()
    assert await page.text_content("#history-status") == f"{PAGE + 10} events shown"
    first_added = await page.get_attribute(f"#history-table tbody tr:nth-child({PAGE + 1})", "data-event-id")
    assert await page.evaluate(FOCUSED) == f"TR{first_added}"
    assert console.errors == []


async def test_a_row_with_a_snapshot_shows_it_small_and_links_to_it_full_size(
    start_server: Start, browser: Any, tmp_path: Path
) -> None:
    """Given a server that asks for a token and a person who gave the viewer one; then each event's
    snapshot is shown, loaded lazily with its size set, through a signed token in its address (an
    <img> sends no Authorization header), and its link answers the JPEG."""
    client = await start_cameras(start_server, history_on(tmp_path), viewer_tokens=(VIEWER,))
    await store(client, [zone_enter("cam", 1, time.time())])
    page = await browser.new_page()
    await page.add_init_script(f"localStorage.setItem('segcast.token', {VIEWER!r})")
    await page.goto(str(client.make_url(HISTORY_PAGE)))
    await page.wait_for_function(SETTLED, timeout=WAIT_MS)

    picture = page.locator("#history-table tbody tr img")
    await page.wait_for_function(
        "() => document.querySelector('#history-table tbody tr img')?.naturalWidth > 0", timeout=WAIT_MS
    )
    assert await picture.get_attribute("loading") == "lazy"
    assert await picture.get_attribute("width") and await picture.get_attribute("height")
    assert await picture.get_attribute("alt") == "Snapshot of #1 person entered yard"
    link = await page.eval_on_selector("#history-table tbody tr a:has(img)", "a => a.href")
    assert "/api/events/1/snapshot.jpg?token=" in link
    full_size = await client.get(URL(link).path_qs)
    assert full_size.status == 200 and full_size.content_type == "image/jpeg"
    assert await page.locator("#token-dialog").count() == 0, "the stored token served"


async def test_behind_a_path_prefix_every_request_stays_under_it(
    start_server: Start, browser: Any, tmp_path: Path
) -> None:
    """Behind a proxy that serves segcast at /node-1/: the events, their next pages (whose links the server
    writes from its own root), the snapshots and the camera links all go through the prefix."""
    client = await start_cameras(start_server, history_on(tmp_path))
    start = time.time() - 600
    await store(client, [zone_enter("cam", n, start + n) for n in range(1, PAGE + 3)])
    proxy = PrefixProxy(client.make_url("/"), "/node-1")
    await proxy.start()
    try:
        entrance = str(proxy.url)
        page, console = await open_url(browser, f"{entrance}static/history.html")
        await page.wait_for_function(SETTLED, timeout=WAIT_MS)
        await page.get_by_role("button", name="Show more").click()
        await page.wait_for_function(f"() => document.querySelectorAll('#history-table tbody tr').length > {PAGE}")
        await page.wait_for_function(
            "() => document.querySelector('#history-table tbody tr img')?.naturalWidth > 0", timeout=WAIT_MS
        )
        assert await page.text_content("#history-status") == f"{PAGE + 2} events shown"
        assert await page.get_attribute("#history-table tbody tr .history-camera", "href") == f"{entrance}#/stream/cam"
        assert proxy.strays == [], "every request stayed under the prefix"
        assert console.errors == []
    finally:
        await proxy.close()


async def test_a_token_given_in_the_dialog_serves_the_snapshots_too(
    start_server: Start, browser: Any, tmp_path: Path
) -> None:
    """Given a person with no token yet; when the page asks for one and is given it; then the events are
    listed and their snapshots load: their signed token is minted with the token given, not before it."""
    client = await start_cameras(start_server, history_on(tmp_path), viewer_tokens=(VIEWER,))
    await store(client, [zone_enter("cam", 1, time.time())])
    page = await browser.new_page()
    await page.goto(str(client.make_url(HISTORY_PAGE)))

    await answer_token_dialog(page, VIEWER)

    await page.wait_for_function(SETTLED, timeout=WAIT_MS)
    await page.wait_for_function(
        "() => document.querySelector('#history-table tbody tr img')?.naturalWidth > 0", timeout=WAIT_MS
    )


async def test_a_row_without_a_snapshot_shows_no_picture(start_server: Start, browser: Any, tmp_path: Path) -> None:
    client = await start_cameras(start_server, history_on(tmp_path, snapshots=False))
    await store(client, [zone_enter("cam", 1, time.time())])

    page, console = await open_history(browser, client)

    assert await page.locator("#history-table tbody tr").count() == 1
    assert await page.locator("#history-table tbody tr img").count() == 0
    assert console.errors == []


async def test_without_a_history_the_page_says_how_to_keep_one(start_server: Start, browser: Any) -> None:
    client = await start_cameras(start_server, EventsSettings())

    page, _ = await open_history(browser, client)

    said = await page.text_content("#history-error")
    assert said is not None and "history is off" in said and "[events.history]" in said
    assert await page.locator("#history-table").is_hidden()


async def test_the_page_fits_a_phone_without_scrolling_sideways(
    start_server: Start, browser: Any, tmp_path: Path
) -> None:
    client = await start_cameras(start_server, history_on(tmp_path))
    await store(client, [line_cross("door", 3, time.time() - 3 * 86400, line="a-long-line-name-" + "x" * 40)])

    page, console = await open_history(browser, client, "?period=all", PHONE)

    assert await page.locator("#history-table tbody tr").count() == 1
    assert await page.evaluate(SIDEWAYS) <= 0
    assert console.errors == []
