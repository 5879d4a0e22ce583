"""The viewer and All cameras say what keeps their pictures away, as the embed does (web/status.js).

A page whose live connection (the WebSocket) keeps being refused before segcast's hello while its
HTTP API answers says so and what to fix: behind README's reverse proxy without its Host line every
WebSocket is refused as cross-site. One refusal alone is not blamed on it (a server restarting as the
page tried), nor is a server gone altogether, its API too. And a page that lost its connection never
calls a picture it never had the last one. A real nginx, the real app and a real headless Chromium;
every wait is on something the page shows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from tests.support.browser import WAIT_MS, open_page, require_browser, wait_for_new_frame, wait_for_text
from tests.test_embed_dashboards import HOST_LINE, nginx_conf, open_embed, readme_proxy_block, running_nginx
from tests.test_viewer_states import closed_port_camera

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

TILE_PANEL = '.card[data-stream="{}"] .status-panel'
VIEW_PANEL = "#stream-view .status-panel"
REFUSED = "live connection does not open"  # LIVE_REFUSED_NOTICE's title
NO_PICTURE = "No picture has been received yet"
#: Records in ``window.badges`` every text the viewer's connection badge shows (part of a script below).
RECORD_BADGES = """
  window.badges = [];
  document.addEventListener("DOMContentLoaded", () => {
    const badge = document.getElementById("connection");
    new MutationObserver(() => window.badges.push(badge.textContent))
      .observe(badge, { childList: true, characterData: true, subtree: true });
  });
"""
#: Sends the page's WebSockets, while ``window.socketsToRefuse`` is above 0, to a path segcast answers
#: 404 (refused before any hello, as a proxy that cannot upgrade them would), one fewer each time; and
#: records every text of the connection badge (`RECORD_BADGES`). Called with the count.
REFUSE_SOCKETS = (
    """(refused) => {
  window.socketsToRefuse = refused;
  window.WebSocket = class extends WebSocket {
    constructor(url, protocols) {
      const target = new URL(url);
      if (window.socketsToRefuse > 0) {
        window.socketsToRefuse -= 1;
        target.pathname = target.pathname.replace(/ws$/, "no-such-socket");
      }
      super(target, protocols);
    }
  };"""
    + RECORD_BADGES
    + "}"
)


@pytest.mark.parametrize(
    ("path", "panel"),
    [("", TILE_PANEL.format("cam")), ("#/stream/cam", VIEW_PANEL), ("static/fleet.html", ".fleet-placeholder")],
    ids=["grid", "stream-view", "all-cameras"],
)
async def test_behind_a_proxy_that_drops_host_the_viewer_says_its_live_connection_is_refused(
    start_server: Start, browser: Any, tmp_path: Path, screenshots: Path, path: str, panel: str
) -> None:
    """README's block without its Host line: every WebSocket is refused, the HTTP API answers."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    block = HOST_LINE.sub("", readme_proxy_block(), count=1)
    async with running_nginx(*nginx_conf(block, tmp_path, f"127.0.0.1:{client.port}")) as base:
        page, _ = await open_embed(browser, base + path)
        text = await wait_for_text(page, panel, "live connection")
        assert "Host header" in text and "WebSocket" in text
        assert "last picture" not in text and "last received" not in text
        await page.screenshot(path=screenshots / "refused.png")
        badge = "#fleet-nodes .badge" if "fleet" in path else "#connection"
        assert await page.inner_text(badge) == "live connection refused"


async def test_one_refused_socket_is_not_blamed_on_the_live_connection(start_server: Start, browser: Any) -> None:
    """The first socket refused, as by a server that was restarting: the next one plays, and the page
    never blamed the live connection meanwhile."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page = await browser.new_page()
    await page.add_init_script(f"({REFUSE_SOCKETS})(1)")
    await page.goto(str(client.make_url("/")))
    await wait_for_new_frame(page, '.card[data-stream="cam"] canvas')
    badges = await page.evaluate("() => window.badges")
    assert "reconnecting…" in badges, "the refused socket was noticed"
    assert "live connection refused" not in badges
    assert await page.inner_text("#connection") == "connected"


async def test_a_live_connection_refused_twice_says_so_until_a_socket_opens(start_server: Start, browser: Any) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page = await browser.new_page()
    await page.add_init_script(f"({REFUSE_SOCKETS})(Infinity)")
    await page.goto(str(client.make_url("/")))
    text = await wait_for_text(page, TILE_PANEL.format("cam"), REFUSED)
    assert "last picture" not in text
    assert await page.inner_text("#connection") == "live connection refused"

    await page.evaluate("() => { window.socketsToRefuse = 0; }")
    await wait_for_new_frame(page, '.card[data-stream="cam"] canvas')
    await page.wait_for_selector(TILE_PANEL.format("cam"), state="hidden", timeout=WAIT_MS)
    assert await page.inner_text("#connection") == "connected"


#: Counts the page's WebSockets made (``window.socketsMade``) and its requests for the stream list, the
#: question each lost socket is put to (``window.listsAsked``, ``window.listsSettled``); records
#: every text of the connection badge (`RECORD_BADGES`).
COUNT_SOCKETS_AND_QUESTIONS = (
    """{
  window.socketsMade = 0;
  window.WebSocket = class extends WebSocket {
    constructor(...args) {
      super(...args);
      window.socketsMade += 1;
    }
  };
  window.listsAsked = 0;
  window.listsSettled = 0;
  const fetchAsPage = window.fetch;
  window.fetch = (resource, ...rest) => {
    if (!new URL(resource, location.href).pathname.endsWith("/api/streams")) return fetchAsPage(resource, ...rest);
    window.listsAsked += 1;
    return fetchAsPage(resource, ...rest).finally(() => (window.listsSettled += 1));
  };"""
    + RECORD_BADGES
    + "}"
)
#: Three sockets lost (the one that said hello, then two that never opened) and each loss put to the API:
#: the next socket is only made after a wait, and a loss's question goes out as the socket is lost.
THREE_LOSSES_JUDGED = "() => window.socketsMade >= 4 && window.listsAsked === window.listsSettled"


async def test_a_server_gone_with_its_api_is_an_outage_however_many_sockets_fail(
    start_server: Start, browser: Any
) -> None:
    """Sockets that fail before their hello are blamed on the live connection only while the API answers:
    a server that is stopped refuses both, and that is no connection at all."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page = await browser.new_page()
    await page.add_init_script(COUNT_SOCKETS_AND_QUESTIONS)
    await page.goto(str(client.make_url("/")))
    await wait_for_new_frame(page, '.card[data-stream="cam"] canvas')
    await client.close()
    await page.wait_for_function(THREE_LOSSES_JUDGED, timeout=WAIT_MS)
    assert "live connection refused" not in await page.evaluate("() => window.badges")
    assert await page.inner_text("#connection") == "reconnecting…"
    assert "No connection to segcast" in await page.inner_text(TILE_PANEL.format("cam"))


@pytest.mark.parametrize(
    ("path", "last_picture"),
    [("/", "This is the last picture received"), ("/static/fleet.html", "Its pictures are the last received")],
    ids=["grid", "all-cameras"],
)
async def test_a_tile_without_a_picture_does_not_call_one_the_last_when_the_server_goes_away(
    start_server: Start, browser: Any, path: str, last_picture: str
) -> None:
    """``cam`` has drawn pictures, ``door`` (a camera nobody answers for) none: only cam's is the last."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"), StreamConfig("door", closed_port_camera()))
    page, _ = await open_page(browser, client, path)
    await wait_for_new_frame(page, '.card[data-stream="cam"] canvas')
    await wait_for_text(page, TILE_PANEL.format("door"), "Reconnecting")
    await client.close()
    door = await wait_for_text(page, TILE_PANEL.format("door"), NO_PICTURE)
    assert last_picture not in door
    cam = await wait_for_text(page, TILE_PANEL.format("cam"), last_picture)
    assert NO_PICTURE not in cam


async def test_the_stream_view_calls_only_a_picture_it_had_the_last_when_the_server_goes_away(
    start_server: Start, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"), StreamConfig("door", closed_port_camera()))
    page, _ = await open_page(browser, client, "/?transport=ws#/stream/cam")
    await wait_for_new_frame(page, "#video")
    await client.close()
    await wait_for_text(page, VIEW_PANEL, "This is the last picture received")

    await page.evaluate("() => { location.hash = '#/stream/door'; }")  # the page stays: the server is away
    text = await wait_for_text(page, VIEW_PANEL, NO_PICTURE)
    assert "last picture" not in text


#: Sockets lost one after another, the API answering each time, with an outage (no HTTP answer, no socket
#: tried: All cameras' node not answering) between the first and the second: whether the live
#: connection is blamed after each loss.
REFUSALS_ACROSS_AN_OUTAGE = """async () => {
  const { LiveRefusals } = await import("./static/status.js");
  let judged = () => {};
  const refusals = new LiveRefusals(async () => ({ streams: [] }), () => judged());
  const lose = () => new Promise((resolve) => { judged = resolve; refusals.lost(); });
  await lose();
  const first = refusals.blamed;
  refusals.outage();
  await lose();
  const afterOutage = refusals.blamed;
  await lose();
  return [first, afterOutage, refusals.blamed];
}"""


async def test_a_refusal_before_an_outage_and_one_after_are_not_two_in_a_row(
    start_server: Callable[..., Awaitable[TestClient]], browser: Any
) -> None:
    """All cameras tries no socket while a node does not answer over HTTP, so its losses stopped being
    heard: one refusal before the outage and one after said "live connection refused"."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console = await open_page(browser, client, "/")
    assert await page.evaluate(REFUSALS_ACROSS_AN_OUTAGE) == [False, False, True]
    assert console.errors == []
