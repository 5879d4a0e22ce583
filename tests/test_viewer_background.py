"""The viewer and All cameras in the background, and what they do while a question is on its way.

A hidden tab (a dashboard left in the background) asks no node for stats, and asks at once when shown
again; All cameras asks its nodes in turn, not all in the same instant. The token dialog that opened by
itself at page load, declined, leaves the keyboard on the page's heading, not on <body>. A socket
refused while the page is asking the API why the one before was still counts towards "live
connection refused".

A real app, a real headless Chromium, and where time matters Playwright's clock: the page's timers
fire only when the test moves that clock on, so that "none while hidden" and "at once" are exact,
not a matter of waiting long enough. Hidden is the page's own `document.hidden`, overridden: headless
Chromium never hides a page by itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from tests.support.browser import WAIT_MS, open_page, require_browser
from tests.support.polling import eventually
from tests.test_deploy import COMPOSE_NGINX, nginx_routes, require_nginx, running_nginx

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

STATS_INTERVAL_MS = 1000  # web/app.js and web/fleet.js
RECONNECT_FIRST_MAX_MS = 1000  # web/connection.js: the longest wait before the second attempt
VIEWER = "viewer-token-of-the-background-test"
#: Where each page says it is connected, and what its connection badge is.
VIEWER_PAGE = {"path": "/", "live": "#connection.state-live", "badge": "#connection"}
FLEET_PAGE = {"path": "/static/fleet.html", "live": "#fleet-nodes .badge.state-live", "badge": "#fleet-nodes .badge"}
PAGES = [VIEWER_PAGE, FLEET_PAGE]
PAGE_IDS = ["viewer", "all-cameras"]
#: Where a page scrolled to 3000 px still is, whatever the grid above it did meanwhile (the heading is at 0).
SCROLLED_DOWN_PX = 2000

#: Makes ``document.hidden`` (and ``visibilityState``) follow ``window.pageHidden``, which HIDE sets.
HIDEABLE = """{
  window.pageHidden = false;
  Object.defineProperty(document, "hidden", { configurable: true, get: () => window.pageHidden });
  Object.defineProperty(document, "visibilityState", {
    configurable: true,
    get: () => (window.pageHidden ? "hidden" : "visible"),
  });
}"""
#: Records in ``window.statsAsked`` every GET of a node's stream list ({path, at}: the page's
#: performance.now(), Playwright's clock), and how many are unanswered in ``window.statsUnanswered``;
#: and makes the page hideable (HIDEABLE).
RECORD_STATS_REQUESTS = (
    """{
  window.statsAsked = [];
  window.statsUnanswered = 0;
  const fetchOriginal = window.fetch;
  window.fetch = function (resource, options = {}) {
    const path = new URL(String(resource), location.href).pathname;
    if (!path.endsWith("/api/streams") || (options.method ?? "GET") !== "GET") {
      return fetchOriginal.call(this, resource, options);
    }
    window.statsAsked.push({ path, at: performance.now() });
    window.statsUnanswered += 1;
    return fetchOriginal.call(this, resource, options).finally(() => { window.statsUnanswered -= 1; });
  };
}
"""
    + HIDEABLE
)
#: Hides (true) or shows (false) the page, as a browser does when its tab goes to the background or back.
HIDE = """(hidden) => {
  window.pageHidden = hidden;
  document.dispatchEvent(new Event("visibilitychange"));
}"""
#: Sends every WebSocket of the page to a path segcast answers 404 (refused before any hello, as a
#: proxy that cannot upgrade them would), counting those made and those closed.
REFUSE_EVERY_SOCKET = """{
  window.socketsMade = 0;
  window.socketsClosed = 0;
  window.WebSocket = class extends WebSocket {
    constructor(url, protocols) {
      const target = new URL(url);
      target.pathname = target.pathname.replace(/ws$/, "no-such-socket");
      super(target, protocols);
      window.socketsMade += 1;
      this.addEventListener("close", () => { window.socketsClosed += 1; });
    }
  };
}"""


async def stats_asked(page: Any) -> list[dict[str, Any]]:
    return list(await page.evaluate("() => window.statsAsked"))


async def no_stats_unanswered(page: Any) -> None:
    """Wait until every stream list the page asked for is answered (a poll in flight skips the next)."""
    await eventually(lambda: page.evaluate("() => window.statsUnanswered === 0"), what="the stats answered")


async def paused_page(browser: Any, *init_scripts: str) -> Any:
    """A new page on Playwright's clock, stopped before the page's first timer: none fires until the
    test runs the clock on (`clock.run_for`)."""
    page = await browser.new_page()
    now = time.time()
    await page.clock.install(time=now - 60)
    await page.clock.pause_at(now)  # with no page loaded yet, no timer is passed on the way
    for script in init_scripts:
        await page.add_init_script(script)
    return page


@pytest.mark.parametrize("shown", PAGES, ids=PAGE_IDS)
async def test_a_hidden_page_asks_for_no_stats_and_asks_at_once_when_shown_again(
    start_server: Start, browser: Any, shown: dict[str, str]
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page = await paused_page(browser, RECORD_STATS_REQUESTS)
    await page.goto(str(client.make_url(shown["path"])))
    await page.wait_for_selector(shown["live"], timeout=WAIT_MS)
    await no_stats_unanswered(page)

    await page.evaluate(HIDE, True)
    before = len(await stats_asked(page))
    for _ in range(3):
        await page.clock.run_for(STATS_INTERVAL_MS)
        await no_stats_unanswered(page)
    assert len(await stats_asked(page)) == before, "asked for stats while hidden"

    await page.evaluate(HIDE, False)
    assert len(await stats_asked(page)) == before + 1, "asked at once when shown, before any timer fired"
    await no_stats_unanswered(page)
    await page.clock.run_for(STATS_INTERVAL_MS)
    assert len(await stats_asked(page)) == before + 2, "and once a second again"


async def test_all_cameras_asks_its_nodes_in_turn_not_all_at_once(
    start_server: Start, browser: Any, tmp_path: Path
) -> None:
    """Both of the Compose entrance's nodes are one segcast here: only the page's requests are counted."""
    require_nginx()
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    routes = nginx_routes(COMPOSE_NGINX)
    targets = {target: f"127.0.0.1:{client.port}" for target in routes.values()}
    nodes = [prefix.strip("/") for prefix in routes]
    async with running_nginx(COMPOSE_NGINX, tmp_path, targets) as entrance:
        url = f"{entrance}all/static/fleet.html?nodes={','.join(nodes)}"
        page = await paused_page(browser, RECORD_STATS_REQUESTS)
        await page.goto(url)
        for node in nodes:
            await page.wait_for_selector(f'#fleet-nodes a[data-node="{node}"] .badge.state-live', timeout=WAIT_MS)
        await no_stats_unanswered(page)

        before = len(await stats_asked(page))
        await page.clock.run_for(STATS_INTERVAL_MS)
        asked = (await stats_asked(page))[before:]
        assert sorted(request["path"].split("/")[1] for request in asked) == sorted(nodes), "each node once"
        times = sorted(request["at"] for request in asked)
        gaps = {later - earlier for earlier, later in pairwise(times)}
        assert gaps == {STATS_INTERVAL_MS / len(nodes)}, f"asked at {times}"


@pytest.mark.parametrize(
    ("path", "heading"),
    [("/", "All streams"), ("/#/stream/cam", "cam"), ("/static/fleet.html", "All cameras")],
    ids=["grid", "stream-view", "all-cameras"],
)
async def test_the_token_dialog_declined_at_page_load_leaves_the_keyboard_on_the_page_heading(
    start_server: Start, browser: Any, path: str, heading: str
) -> None:
    """It left the focus on <body>: the next Tab started over at the top of the page."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"), viewer_tokens=(VIEWER,))
    page, _ = await open_page(browser, client, path)
    dialog = page.locator("#token-dialog[open]")
    await dialog.wait_for(timeout=WAIT_MS)
    assert await page.evaluate("() => document.activeElement.name") == "token"
    await page.keyboard.press("Tab")
    assert await page.evaluate("() => document.activeElement.textContent") == "Not now"
    # Heard after the page's own listener, which the dialog's close event runs first.
    await page.evaluate(
        "() => document.getElementById('token-dialog')"
        ".addEventListener('close', () => { window.tokenDialogClosed = true; }, { once: true })"
    )
    await page.keyboard.press("Enter")
    await eventually(lambda: page.evaluate("() => window.tokenDialogClosed === true"), what="the dialog closed")

    focused = await page.evaluate("() => [document.activeElement.tagName, document.activeElement.textContent]")
    assert focused == ["H1", heading]


async def test_the_token_dialog_declined_mid_session_leaves_a_scrolled_page_where_it_was(
    start_server: Start, browser: Any
) -> None:
    """Opened on a 401 while the person has scrolled down a tall grid (a token that expired), then
    declined: the focus goes to the heading without scrolling the page back to its top."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, _ = await open_page(browser, client, "/")
    # Scrolled far down; the grid above may still grow as its tile gets a picture (the browser then
    # keeps the view where it was by moving scrollY a little): far from the top is what counts.
    await page.evaluate(
        "() => { const tall = document.createElement('div'); tall.style.height = '5000px';"
        " document.getElementById('grid').after(tall); window.scrollTo(0, 3000); }"
    )
    assert await page.evaluate("() => window.scrollY") > SCROLLED_DOWN_PX
    await page.evaluate(
        "() => import('./static/token.js').then((m) => { m.askForToken('refused').then(() => {"
        " window.tokenDialogClosed = true; }); })"
    )
    await page.locator("#token-dialog[open]").wait_for(timeout=WAIT_MS)
    await page.keyboard.press("Escape")
    await eventually(lambda: page.evaluate("() => window.tokenDialogClosed === true"), what="the dialog closed")

    assert await page.evaluate("() => document.activeElement.tagName") == "H1"
    assert await page.evaluate("() => window.scrollY") > SCROLLED_DOWN_PX, "not back at the heading, at the top"


@pytest.mark.parametrize("shown", PAGES, ids=PAGE_IDS)
async def test_a_socket_refused_while_the_api_is_asked_why_counts_towards_a_refused_live_connection(
    start_server: Start, browser: Any, shown: dict[str, str]
) -> None:
    """Two sockets refused in a row while the API answers: "live connection refused". The second was
    refused while the question about the first was on its way, and was not counted: the page said
    "reconnecting…" until a third."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    answer = asyncio.Event()
    held: list[Any] = []

    async def hold_until_answered(route: Any) -> None:
        # The question about the first refusal is held. All Cameras asks a node's API before each of its
        # sockets too (a node that does not answer must not hold back the others' sockets): those go on.
        if not held and await page.evaluate("() => window.socketsClosed") == 1:
            held.append(route)
            await answer.wait()
        await route.continue_()

    page = await paused_page(browser, REFUSE_EVERY_SOCKET)
    await page.route(lambda url: urlsplit(url).path.endswith("/api/streams"), hold_until_answered)
    await page.goto(str(client.make_url(shown["path"])))
    # The first socket refused: the question about it goes out as it closes, and is held. The second
    # socket, refused while it is.
    await eventually(lambda: page.evaluate("() => window.socketsClosed === 1"), what="the first refusal")
    await page.clock.run_for(RECONNECT_FIRST_MAX_MS)
    await eventually(lambda: page.evaluate("() => window.socketsClosed === 2"), what="the second refusal")
    assert held, "the second socket was refused while the question about the first was held"

    answer.set()
    await eventually(
        lambda: page.evaluate(
            "(badge) => document.querySelector(badge).textContent === 'live connection refused'", shown["badge"]
        ),
        what="live connection refused",
    )
    assert await page.evaluate("() => [window.socketsMade, window.socketsClosed]") == [2, 2], "no third socket"
