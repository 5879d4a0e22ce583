"""The viewer's controls and links in a real headless Chromium: Remove, the links between its pages,
the embed's word on a token it was refused, and the track table from the keyboard.

Every wait is on something the page shows or does, with a deadline; none is a fixed sleep.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from tests.support.browser import PAUSE_ON_TRACKS, WAIT_MS, open_page, require_browser, wait_for_text
from tests.test_viewer_background import paused_page

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

ADMIN = "admin-token-for-the-controls-test"
VIEWER = "viewer-token-for-the-controls-test"
CONFIRM_WINDOW_MS = 3000  # web/app.js: how long Remove waits for its second click
THUMBNAIL_DRAWN = "() => document.querySelector('.card canvas')?.dataset.seq !== undefined"
#: Counts, in the page, the WebSockets it made and those that have closed since.
COUNT_SOCKETS = """
window.madeSockets = 0;
window.closedSockets = 0;
window.WebSocket = class extends WebSocket {
  constructor(...args) {
    super(...args);
    window.madeSockets += 1;
    this.addEventListener("close", () => (window.closedSockets += 1));
  }
};
"""
ALL_CLOSED = "() => window.madeSockets > 0 && window.closedSockets === window.madeSockets"


async def test_a_remove_asked_for_on_one_stream_does_not_carry_over_to_another(
    start_server: Start, browser: Any
) -> None:
    """One click on Remove of stream a, then stream b within 3 s: b's button said "Press again to
    remove", and one click removed b."""
    client = await start_server(StreamConfig("a", "scene:?seed=3"), StreamConfig("b", "scene:?seed=5"))
    page, console = await open_page(browser, client, "/?transport=ws#/stream/a")
    await page.wait_for_function("() => document.querySelector('#stream-title').textContent === 'a'", timeout=WAIT_MS)
    await page.click("#remove-stream")
    assert await page.text_content("#remove-stream") == "Press again to remove"

    await page.evaluate("location.hash = '#/stream/b'")
    await page.wait_for_function("() => document.querySelector('#stream-title').textContent === 'b'", timeout=WAIT_MS)
    assert await page.text_content("#remove-stream") == "Remove"
    await page.click("#remove-stream")
    assert await page.text_content("#remove-stream") == "Press again to remove", "the first click on b only asks"
    streams = (await (await client.get("/api/streams")).json())["streams"]
    assert sorted(stream["id"] for stream in streams) == ["a", "b"]
    assert console.errors == []


async def _remove_then_open_b(page: Any) -> Any:
    """Remove stream a (both clicks), its DELETE held on its way, and open stream b meanwhile; the
    held request's route, to be answered by the test."""
    held: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def hold_delete(route: Any) -> None:
        if route.request.method == "DELETE":
            held.set_result(route)
        else:
            await route.continue_()

    await page.route("**/api/streams/a*", hold_delete)
    await page.wait_for_function("() => document.querySelector('#stream-title').textContent === 'a'", timeout=WAIT_MS)
    await page.click("#remove-stream")
    await page.click("#remove-stream")
    route = await asyncio.wait_for(held, WAIT_MS / 1000)
    await page.evaluate("location.hash = '#/stream/b'")
    await page.wait_for_function("() => document.querySelector('#stream-title').textContent === 'b'", timeout=WAIT_MS)
    return route


async def test_a_remove_not_pressed_again_within_3_s_asks_afresh(start_server: Start, browser: Any) -> None:
    """On the page's clock, paused: "Press again to remove" holds until the window's last millisecond, and
    then the button says "Remove" again, so that a click long after the first only asks again."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page = await paused_page(browser)
    await page.goto(str(client.make_url("/?transport=ws#/stream/cam")))
    await page.wait_for_function("() => document.querySelector('#stream-title').textContent === 'cam'", timeout=WAIT_MS)
    await page.click("#remove-stream")
    assert await page.text_content("#remove-stream") == "Press again to remove"

    await page.clock.run_for(CONFIRM_WINDOW_MS - 1)
    assert await page.text_content("#remove-stream") == "Press again to remove"
    await page.clock.run_for(1)
    assert await page.text_content("#remove-stream") == "Remove"
    await page.click("#remove-stream")
    assert await page.text_content("#remove-stream") == "Press again to remove", "a late click only asks"
    assert (await client.get("/api/streams/cam")).status == 200


async def test_a_removal_answered_after_another_stream_was_opened_leaves_that_stream_open(
    start_server: Start, browser: Any
) -> None:
    """The answer took the page to the grid, whichever stream the person had gone on to."""
    client = await start_server(StreamConfig("a", "scene:?seed=3"), StreamConfig("b", "scene:?seed=5"))
    page, console = await open_page(browser, client, "/?transport=ws#/stream/a")
    route = await _remove_then_open_b(page)
    await route.continue_()

    await page.wait_for_function(
        "() => document.querySelector('#grid-note').textContent.startsWith('Removed “a”')", timeout=WAIT_MS
    )
    assert await page.evaluate("() => location.hash") == "#/stream/b"
    assert await page.is_visible("#stream-view")
    assert console.errors == []


async def test_a_removal_refused_after_another_stream_was_opened_is_not_said_in_that_streams_view(
    start_server: Start, browser: Any
) -> None:
    """The refusal of a's removal showed in b's view, as if b could not be removed."""
    client = await start_server(StreamConfig("a", "scene:?seed=3"), StreamConfig("b", "scene:?seed=5"))
    page, _ = await open_page(browser, client, "/?transport=ws#/stream/a")
    route = await _remove_then_open_b(page)
    await route.fulfill(status=500, json={"error": "refused for the test"})

    await page.wait_for_function(
        "() => document.querySelector('#grid-note').textContent === 'Not removed “a”: refused for the test'",
        timeout=WAIT_MS,
    )
    assert await page.text_content("#stream-error") == ""
    assert await page.evaluate("() => location.hash") == "#/stream/b"


async def _signed_viewer_token(client: TestClient) -> str:
    minted = await client.post(
        "/api/tokens", json={"role": "viewer", "ttl_s": 600}, headers={"Authorization": f"Bearer {ADMIN}"}
    )
    assert minted.status == 200, await minted.text()
    token: str = (await minted.json())["token"]
    return token


async def test_the_links_between_the_viewer_pages_keep_the_token_of_the_address(
    start_server: Start, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"), admin_tokens=(ADMIN,), viewer_tokens=(VIEWER,))
    token = await _signed_viewer_token(client)
    page, console = await open_page(browser, client, f"/?token={token}")
    await page.wait_for_function(THUMBNAIL_DRAWN, timeout=WAIT_MS)

    await page.click("#nav-camera")
    await page.wait_for_selector("#publish-form", timeout=WAIT_MS)
    # The form is there as the page is parsed; its links get the token as its script runs, before this.
    await page.wait_for_load_state("domcontentloaded", timeout=WAIT_MS)
    assert f"token={token}" in page.url
    for href in await page.eval_on_selector_all(".topbar a", "(links) => links.map((link) => link.href)"):
        assert f"token={token}" in href, href

    await page.click("nav a")  # All streams
    await page.wait_for_function(THUMBNAIL_DRAWN, timeout=WAIT_MS)
    assert await page.locator("#token-dialog[open]").count() == 0, "nobody is asked for a token"
    assert console.errors == []

    await page.click("#nav-history")  # this server keeps no history: the page says so (its API answers 404)
    await page.wait_for_selector("#history-filters", timeout=WAIT_MS)
    assert f"token={token}" in page.url
    assert await page.locator("#token-dialog[open]").count() == 0, "nobody is asked for a token"


@pytest.mark.parametrize(
    ("token", "title"),
    [
        ("s1.viewer.9999999999.forged", "The access token in this address was refused"),
        (VIEWER, "The token in this address is not a signed token"),
    ],
    ids=["signed-refused", "plain"],
)
async def test_an_embed_says_why_its_token_was_refused(
    start_server: Start, browser: Any, token: str, title: str
) -> None:
    """A plain access token in an embed's address was taken for an expired one."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"), admin_tokens=(ADMIN,), viewer_tokens=(VIEWER,))
    page, _ = await open_page(browser, client, f"/embed/cam?token={token}")
    assert title in await wait_for_text(page, ".status-panel", title)


async def test_an_embed_whose_token_is_refused_tries_again_once_a_minute(start_server: Start, browser: Any) -> None:
    """It tried every 5 s at most (a WebSocket and a request each time), for as long as it was open.

    The page's clock is Playwright's: two minutes of it pass in 10 s steps, each step's attempts
    seen to their end before the next.
    """
    client = await start_server(StreamConfig("cam", "scene:?seed=3"), admin_tokens=(ADMIN,), viewer_tokens=(VIEWER,))
    page = await browser.new_page()
    await page.clock.install()
    await page.add_init_script(COUNT_SOCKETS)
    await page.goto(str(client.make_url("/embed/cam?token=s1.viewer.9999999999.forged")))
    await wait_for_text(page, ".status-panel", "was refused")
    await page.wait_for_function(ALL_CLOSED, timeout=WAIT_MS)
    before = await page.evaluate("() => window.madeSockets")
    for _ in range(12):
        await page.clock.run_for(10_000)
        await page.wait_for_function(ALL_CLOSED, timeout=WAIT_MS)
    attempts = await page.evaluate("() => window.madeSockets") - before
    assert 1 <= attempts <= 3, f"{attempts} attempts in two minutes"


async def test_a_track_row_is_pinned_from_the_keyboard(start_server: Start, browser: Any) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console = await open_page(browser, client, "/?transport=ws#/stream/cam")
    await page.wait_for_function(PAUSE_ON_TRACKS, timeout=WAIT_MS)  # its rows stay while it is paused
    row = page.locator("#tracks tbody tr").first
    track = await row.get_attribute("data-track")
    await row.focus()
    assert await page.evaluate("() => document.activeElement.dataset.track") == track, "a row takes the focus"
    await page.keyboard.press("Enter")
    pinned = f'#tracks tbody tr.highlight[data-track="{track}"]'
    await page.wait_for_selector(pinned, timeout=WAIT_MS)
    await page.keyboard.press(" ")
    await page.wait_for_selector(pinned, state="detached", timeout=WAIT_MS)
    assert console.errors == []
