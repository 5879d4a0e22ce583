"""The viewer in a real headless Chromium when what it shows stops being true: a stream that is gone,
a stream list that is out of date, a token in the address that is refused, a signed token that
stopped being good.

The page says so and comes right by itself, or with the token the person gives; it never goes on
showing what no longer exists. Every wait is on something the page or the API shows, with a deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from server.app import create_app
from server.config import Settings, StreamConfig
from server.inference.models import BUNDLED_MODEL
from tests.support.browser import (
    CANVAS_STATS,
    WAIT_MS,
    Console,
    open_page,
    open_url,
    require_browser,
    wait_for_new_frame,
    wait_for_text,
)

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

VIEW_PANEL = "#stream-view .status-panel"
TRACKS_SHOWN = "() => document.querySelectorAll('#tracks tbody tr').length > 0"
VIEWER = "viewer-token-for-the-recovery-test"
THUMBNAIL_DRAWN = "() => document.querySelector('.card canvas')?.dataset.seq !== undefined"
#: Marks, in the page, that it has read a stream list the test held back (its answer carries x-held).
#: What the app does with the list follows in the same run of microtasks, before any later check.
NOTE_HELD_ANSWER_READ = """
const json = Response.prototype.json;
Response.prototype.json = async function () {
  const data = await json.call(this);
  if (this.headers.has("x-held")) window.heldAnswerRead = true;
  return data;
};
"""

#: Counts, in the page, the WebSockets that opened, and notes each class the connection badge takes.
NOTE_CONNECTION = """
window.openedSockets = 0;
window.badgeStates = [];
window.WebSocket = class extends WebSocket {
  constructor(...args) {
    super(...args);
    this.addEventListener("open", () => (window.openedSockets += 1));
  }
};
new MutationObserver((changes) => {
  for (const { target } of changes) if (target.id === "connection") window.badgeStates.push(target.className);
}).observe(document, { subtree: true, attributes: true, attributeFilter: ["class"] });
"""


async def _serve(port: int, *streams: StreamConfig, viewer_tokens: tuple[str, ...] = ()) -> TestServer:
    settings = Settings(model=str(BUNDLED_MODEL), streams=streams, viewer_tokens=viewer_tokens)
    server = TestServer(create_app(settings), host="127.0.0.1", port=port)
    await server.start_server()
    return server


async def _assert_nothing_of_it_is_shown(page: Any) -> None:
    """The stream view keeps no picture, track, count, stat or state of a stream that is gone."""
    picture = await page.evaluate(CANVAS_STATS, "#video")
    assert picture["seq"] is None and picture["mean"] == 0 and picture["std"] == 0, "the picture is cleared"
    assert await page.locator("#tracks tbody tr").count() == 0
    assert await page.inner_text("#track-count") == ""
    assert await page.inner_text("#stats") == ""
    assert not await page.is_visible("#stream-state"), "no state badge, live or other"


async def test_a_stream_the_restarted_server_no_longer_has_is_shown_as_missing(
    browser: Any, unused_tcp_port: int, screenshots: Path
) -> None:
    cam, gone = StreamConfig("cam", "scene:?seed=3"), StreamConfig("gone", "scene:?seed=4")
    server = await _serve(unused_tcp_port, cam, gone)
    try:
        page, console = await open_url(browser, str(server.make_url("/?transport=ws#/stream/gone")))
        await page.wait_for_function(TRACKS_SHOWN, timeout=WAIT_MS)
        await page.wait_for_selector("#stream-state.state-live", timeout=WAIT_MS)
        await page.wait_for_selector("[data-stat=source]", timeout=WAIT_MS)
        await server.close()
        await page.wait_for_selector("#connection.state-failed", timeout=WAIT_MS)
        server = await _serve(unused_tcp_port, cam)  # it comes back without "gone"
        await page.wait_for_selector("#connection.state-live", timeout=WAIT_MS)
        text = await wait_for_text(page, VIEW_PANEL, "No such stream")
        assert "gone" in text
        await _assert_nothing_of_it_is_shown(page)
        await page.screenshot(path=screenshots / "gone.png")
    finally:
        await server.close()
    # While the server is away, the browser reports its failed reconnection attempts; nothing else.
    assert [e for e in console.errors if "WebSocket" not in e and "ERR_CONNECTION_REFUSED" not in e] == []


async def test_the_grid_names_a_camera_the_restarted_server_no_longer_has(
    browser: Any, unused_tcp_port: int, screenshots: Path
) -> None:
    """A camera added through the API and not saved is gone once segcast restarts: its tile went without a
    word, and a wall screen lost a camera nobody was told of."""
    cam = StreamConfig("cam", "scene:?seed=3")
    server = await _serve(unused_tcp_port, cam)
    try:
        page, console = await open_url(browser, str(server.make_url("/?transport=ws")))
        async with aiohttp.ClientSession() as session:
            added = await session.post(server.make_url("/api/streams"), json={"id": "yard", "uri": "scene:?seed=5"})
            assert added.status == 201, await added.text()
        await wait_for_new_frame(page, '.card[data-stream="yard"] canvas')
        await server.close()
        await page.wait_for_selector("#connection.state-failed", timeout=WAIT_MS)
        server = await _serve(unused_tcp_port, cam)  # restarted from its settings: without "yard"
        await page.wait_for_selector("#connection.state-live", timeout=WAIT_MS)

        note = await wait_for_text(page, "#grid-note", "Gone while the connection was down")
        assert "“yard”" in note and "“cam”" not in note, note
        assert "Save to config file" in note, "it says how a camera outlives a restart"
        await page.wait_for_selector('.card[data-stream="yard"]', state="detached", timeout=WAIT_MS)
        await page.screenshot(path=screenshots / "gone-from-grid.png")
    finally:
        await server.close()
    assert [e for e in console.errors if "WebSocket" not in e and "ERR_CONNECTION_REFUSED" not in e] == []


async def test_an_unknown_stream_id_says_so_until_a_stream_is_added_by_it(
    start_server: Start, browser: Any, screenshots: Path
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console = await open_page(browser, client, "/?transport=ws#/stream/yard")
    text = await wait_for_text(page, VIEW_PANEL, "No such stream")
    assert "yard" in text, "the panel names the id it has no stream by"
    await page.screenshot(path=screenshots / "unknown.png")

    added = await client.post("/api/streams", json={"id": "yard", "uri": "scene:?seed=5"})
    assert added.status == 201, await added.text()
    await wait_for_new_frame(page, "#video")
    await page.wait_for_selector("#stream-state.state-live", timeout=WAIT_MS)
    await page.wait_for_selector(VIEW_PANEL, state="hidden", timeout=WAIT_MS)
    assert console.errors == []


async def test_an_address_that_is_not_percent_encoded_shows_the_grid(start_server: Start, browser: Any) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console = await open_page(browser, client, "/?transport=ws#/stream/%E0")
    await page.wait_for_function(THUMBNAIL_DRAWN, timeout=WAIT_MS)
    await wait_for_text(page, "#add-help", "This server accepts")
    assert await page.is_hidden("#stream-view")
    assert console.errors == []


async def test_a_stream_removed_while_it_is_watched_says_so_and_nothing_of_it_stays(
    start_server: Start, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"), StreamConfig("yard", "scene:?seed=5"))
    page, console = await open_page(browser, client, "/?transport=ws#/stream/yard")
    await page.wait_for_function(TRACKS_SHOWN, timeout=WAIT_MS)
    await page.wait_for_selector("[data-stat=source]", timeout=WAIT_MS)
    assert (await client.delete("/api/streams/yard")).status == 204
    assert "yard" in await wait_for_text(page, VIEW_PANEL, "No such stream")
    await _assert_nothing_of_it_is_shown(page)
    assert console.errors == []


async def test_a_removed_stream_stays_off_the_grid_when_an_older_stream_list_comes_in(
    start_server: Start, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"), StreamConfig("yard", "scene:?seed=5"))
    page = await browser.new_page()
    console = Console(page)
    await page.add_init_script(NOTE_HELD_ANSWER_READ)
    await page.goto(str(client.make_url("/")))
    await page.wait_for_selector('.card[data-stream="yard"]', timeout=WAIT_MS)

    # The server answers one poll while "yard" still exists; the page gets that answer only after
    # "yard" is removed. Later polls go unanswered, so no other stream list comes in meanwhile.
    polls: list[Any] = []
    answered: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def hold(route: Any) -> None:
        polls.append(route)
        if len(polls) == 1:
            answered.set_result(await route.fetch())

    await page.route("**/api/streams", hold)
    answer = await asyncio.wait_for(answered, WAIT_MS / 1000)
    assert "yard" in [stream["id"] for stream in (await answer.json())["streams"]]
    assert (await client.delete("/api/streams/yard")).status == 204
    await page.wait_for_selector('.card[data-stream="yard"]', state="detached", timeout=WAIT_MS)

    await polls[0].fulfill(response=answer, headers={**answer.headers, "x-held": "1"})
    await page.wait_for_function("() => window.heldAnswerRead === true", timeout=WAIT_MS)
    assert await page.locator('.card[data-stream="yard"]').count() == 0, "the older list does not bring it back"
    assert await page.locator('.card[data-stream="cam"]').count() == 1
    assert console.errors == []


async def test_a_refused_token_in_the_address_gives_way_to_the_one_the_person_gives(
    start_server: Start, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=1"), viewer_tokens=(VIEWER,))
    page, console = await open_page(browser, client, "/?token=s1.expired.or.forged")
    dialog = page.locator("#token-dialog[open]")
    await dialog.wait_for(timeout=WAIT_MS)
    assert "was not accepted" in await dialog.inner_text()
    await dialog.locator("input[name=token]").fill(VIEWER)
    await dialog.locator("button[type=submit]").click()
    # The grid's list and its live thumbnails (the WebSocket's token is minted with the one given).
    await page.wait_for_function(THUMBNAIL_DRAWN, timeout=WAIT_MS)
    assert "token=" not in page.url, "the refused token left the address"

    await page.reload()
    await page.wait_for_function(THUMBNAIL_DRAWN, timeout=WAIT_MS)
    assert await page.locator("#token-dialog").count() == 0, "after a reload the given token is used at once"
    # The browser reports the refused requests themselves; nothing else went wrong.
    assert [e for e in console.errors if "401" not in e and "WebSocket" not in e] == []


async def test_a_server_restarted_with_a_new_signing_key_is_reconnected_to(browser: Any, unused_tcp_port: int) -> None:
    """With viewer tokens only, signed tokens are signed with a key of the process: after a restart,
    the WebSocket token the page minted before is refused, and the page mints a new one."""
    cam = StreamConfig("cam", "scene:?seed=3")
    server = await _serve(unused_tcp_port, cam, viewer_tokens=(VIEWER,))
    try:
        page = await browser.new_page()
        await page.add_init_script(f"localStorage.setItem('segcast.token', '{VIEWER}')")
        await page.goto(str(server.make_url("/?transport=ws")))
        await page.wait_for_selector("#connection.state-live", timeout=WAIT_MS)
        await server.close()
        await page.wait_for_selector("#connection.state-failed", timeout=WAIT_MS)
        server = await _serve(unused_tcp_port, cam, viewer_tokens=(VIEWER,))
        await page.wait_for_selector("#connection.state-live", timeout=WAIT_MS)
    finally:
        await server.close()


async def test_a_websocket_closed_as_its_token_expires_is_reopened_without_a_break_shown(
    start_server: Start, browser: Any
) -> None:
    """The server ends a WebSocket when the signed token it was opened with expires; the viewer mints
    another with the person's token and reconnects at once, its badge staying "connected"."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"), viewer_tokens=(VIEWER,))
    page = await browser.new_page()
    console = Console(page)
    await page.add_init_script(f"localStorage.setItem('segcast.token', '{VIEWER}')")
    await page.add_init_script(NOTE_CONNECTION)

    async def short_lived(route: Any) -> None:  # 4 to 5 s: one expires within the test, none before its socket opens
        await route.continue_(post_data='{"role": "viewer", "ttl_s": 5}')

    await page.route("**/api/tokens", short_lived)
    await page.goto(str(client.make_url("/")))
    await page.wait_for_function("() => window.openedSockets >= 2", timeout=WAIT_MS)
    states = await page.evaluate("window.badgeStates")
    assert "badge state-live" in states and "badge state-failed" not in states, "no break was shown"
    assert console.errors == []
