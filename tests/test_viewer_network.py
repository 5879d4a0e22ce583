"""The viewer when the network between it and segcast fails without a word, or the server comes back.

A dropped Wi-Fi or a NAT that forgot the connection closes nothing: packets just stop. The server
sends a keepalive whenever it has sent nothing else for `KEEPALIVE_S`, and the page gives up on a
socket silent for 2.5 of them; here the interval is 1 s, so a test takes seconds, not a minute. The
network is a real TCP proxy that goes silent (tests/support/silent_proxy.py) in front of the real
app, watched in a real headless Chromium. Every wait is on something the page shows, with a deadline;
how long the page waits before it gives up is read on Playwright's clock, which the test moves on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from server.app import create_app
from server.config import Settings, StreamConfig
from server.http import ws
from server.inference.models import BUNDLED_MODEL
from server.webrtc.routes import peers_key
from tests.support.browser import WAIT_MS, Console, open_url, require_browser, wait_for_new_frame, wait_for_text
from tests.support.silent_proxy import SilentProxy
from tests.test_viewer_background import paused_page
from tests.test_viewer_webrtc import fell_back_reasons

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

KEEPALIVE_TEST_S = 1.0
RECEIVE_TIMEOUT_S = 30.0
STALLED = "its video stalled: more than 2 s behind the WebSocket's frames"  # web/webrtc.js, heard()
#: Counts, in the page, the WebSockets opened and the keepalives they brought.
COUNT_SOCKETS = """
window.openedSockets = 0;
window.keepalives = 0;
window.WebSocket = class extends WebSocket {
  constructor(...args) {
    super(...args);
    this.addEventListener("open", () => (window.openedSockets += 1));
    this.addEventListener("message", (event) => {
      if (typeof event.data === "string" && JSON.parse(event.data).type === "keepalive") window.keepalives += 1;
    });
  }
};
"""
SEQ = "() => document.querySelector('#video').dataset.seq ?? null"
#: Keeps, in the page, when its WebSockets last brought anything (performance.now(), on the page's clock).
LAST_HEARD = """
window.lastHeardAt = null;
window.WebSocket = class extends WebSocket {
  constructor(...args) {
    super(...args);
    this.addEventListener("message", () => (window.lastHeardAt = performance.now()));
  }
};
"""
#: How long the page's sockets had been silent, on its clock, if the panel at the selector says the
#: connection is lost; null while it does not.
SILENT_FOR_MS = """(selector) => {
  const panel = document.querySelector(selector);
  const offline = panel?.checkVisibility() && panel.innerText.includes("No connection to segcast");
  return offline ? performance.now() - window.lastHeardAt : null;
}"""
CLOCK_STEP_MS = 250


@pytest.fixture
def keepalive(monkeypatch: pytest.MonkeyPatch) -> float:
    """The server's keepalive interval, short; the page learns it from ``hello``."""
    monkeypatch.setattr(ws, "KEEPALIVE_S", KEEPALIVE_TEST_S)
    return KEEPALIVE_TEST_S


@pytest.fixture
async def network(start_server: Start, keepalive: float) -> AsyncIterator[SilentProxy]:
    """A segcast with one live stream, reached through a network that can go silent."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    proxy = SilentProxy(client.make_url("/"))
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


def only_websocket_errors(console: Console) -> list[str]:
    """The console errors other than the browser's word on sockets given up on or refused meanwhile."""
    return [error for error in console.errors if "WebSocket" not in error]


async def test_the_server_sends_keepalives_when_it_has_nothing_else_to_send(
    start_server: Start, keepalive: float
) -> None:
    client = await start_server()
    socket = await client.ws_connect("/ws")
    hello = await socket.receive_json(timeout=RECEIVE_TIMEOUT_S)
    assert hello["keepalive_s"] == keepalive, "the page learns from hello how long the server stays silent"
    await socket.send_json({"type": "subscribe", "streams": []})
    assert await socket.receive_json(timeout=RECEIVE_TIMEOUT_S) == {
        "type": "subscribed",
        "v": 1,
        "streams": [],
        "unknown": [],
    }
    for _ in range(2):  # a deadline of its own: the server's pings would restart receive()'s
        assert await asyncio.wait_for(socket.receive_json(), RECEIVE_TIMEOUT_S) == {"type": "keepalive", "v": 1}
    await socket.close()


@pytest.mark.parametrize(
    ("path", "panel"),
    [("?transport=ws#/stream/cam", "#stream-view .status-panel"), ("embed/cam", ".status-panel")],
    ids=["stream-view", "embed"],
)
async def test_a_network_gone_silent_is_shown_as_such_and_the_page_comes_back_with_it(
    network: SilentProxy, keepalive: float, browser: Any, path: str, panel: str
) -> None:
    """On Playwright's clock, stopped from the page's start: the silence the page allows is counted on it,
    so a slow machine neither hurries nor delays the page's judgement."""
    page = await paused_page(browser, LAST_HEARD)
    console = Console(page)
    await page.goto(str(network.url) + path)
    await wait_for_new_frame(page, "#video")
    network.go_silent()
    silent_s = await silence_noticed_after_s(page, panel, limit_s=4 * keepalive)
    assert 2 * keepalive <= silent_s <= 2.5 * keepalive + CLOCK_STEP_MS / 1000, "given up after 2.5 keepalives"
    if path.startswith("?"):
        assert await page.text_content("#connection") == "reconnecting…"
    frozen = await page.evaluate(SEQ)

    network.speak()
    await page.clock.resume()  # its attempts to connect again wait on timers: time flows from here
    await page.wait_for_selector(panel, state="hidden", timeout=WAIT_MS)
    await wait_for_new_frame(page, "#video", frozen)
    if path.startswith("?"):
        assert await page.text_content("#connection") == "connected"
    assert only_websocket_errors(console) == []


async def silence_noticed_after_s(page: Any, panel: str, limit_s: float) -> float:
    """Move the page's clock on, a step at a time, until ``panel`` says the connection is lost: how long, in
    seconds on that clock, the page's sockets had then been silent. Fails if it is not said within ``limit_s``."""
    for _ in range(round(limit_s * 1000 / CLOCK_STEP_MS)):
        await page.clock.run_for(CLOCK_STEP_MS)
        silent_ms = await page.evaluate(SILENT_FOR_MS, panel)
        if silent_ms is not None:
            return float(silent_ms) / 1000
    raise AssertionError(f"{limit_s} s of silence on the page's clock, and it still says nothing of it")


async def test_a_quiet_feed_is_not_taken_for_a_silent_network(
    start_server: Start, browser: Any, keepalive: float
) -> None:
    client = await start_server()  # no streams: the server has nothing but keepalives to send
    page = await browser.new_page()
    console = Console(page)
    await page.add_init_script(COUNT_SOCKETS)
    await page.goto(str(client.make_url("/")))
    # Four intervals: more than the 2.5 of silence after which the page would give the socket up.
    await page.wait_for_function("() => window.keepalives >= 4", timeout=WAIT_MS)
    assert await page.evaluate("() => window.openedSockets") == 1
    assert await page.text_content("#connection") == "connected"
    assert console.errors == []


async def _serve(port: int, *streams: StreamConfig) -> TestServer:
    server = TestServer(create_app(Settings(model=str(BUNDLED_MODEL), streams=streams)), host="127.0.0.1", port=port)
    await server.start_server()
    return server


async def _on_webrtc_with_a_new_frame(page: Any, after: str | None) -> None:
    await page.wait_for_function(
        "(after) => { const video = document.querySelector('#video');"
        " return video.dataset.transport === 'webrtc' && (video.dataset.seq ?? null) !== after; }",
        arg=after,
        timeout=WAIT_MS,
    )


async def test_the_stream_view_plays_over_webrtc_again_once_the_server_is_back(
    browser: Any, unused_tcp_port: int
) -> None:
    """The view used to show its frozen WebRTC picture as live until Chrome called the peer failed,
    then stayed on the WebSocket for good."""
    cam = StreamConfig("cam", "scene:?seed=3")
    server = await _serve(unused_tcp_port, cam)
    try:
        page, console = await open_url(browser, str(server.make_url("/#/stream/cam")))
        await _on_webrtc_with_a_new_frame(page, None)
        await server.close()
        await page.wait_for_selector("#connection.state-failed", timeout=WAIT_MS)
        server = await _serve(unused_tcp_port, cam)
        await page.wait_for_selector("#connection.state-live", timeout=WAIT_MS)
        await _on_webrtc_with_a_new_frame(page, await page.evaluate(SEQ))
    finally:
        await server.close()
    refused = [e for e in console.errors if "WebSocket" not in e and "ERR_CONNECTION_REFUSED" not in e]
    assert refused == [], "while the server is away, the browser reports its failed attempts; nothing else"


def _silence_webrtc(app: web.Application) -> None:
    """Every WebRTC peer of ``app`` stops sending and hears nothing more, as over a network that
    dropped: its ICE sockets (aioice's, reached through aiortc's private attributes) go quiet."""
    for peer in app[peers_key]._peers:
        for transceiver in peer.pc.getTransceivers():
            for protocol in transceiver.sender.transport.transport._connection._protocols:
                protocol.datagram_received = lambda data, addr: None  # type: ignore[method-assign]
                protocol.transport.sendto = lambda data, addr=None: None  # type: ignore[method-assign]


async def test_a_webrtc_connection_lost_for_seconds_falls_back_to_the_websocket(
    start_server: Start, browser: Any
) -> None:
    """Chrome calls a lost peer `disconnected` within seconds but `failed` only ~15 s later: the frozen
    picture stayed meanwhile. The WebSocket is still up, so its frames are shown instead."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page = await browser.new_page()
    console = Console(page)
    fell_back = fell_back_reasons(page)
    await page.goto(str(client.make_url("/#/stream/cam")))
    await _on_webrtc_with_a_new_frame(page, None)
    assert client.app is not None
    _silence_webrtc(client.app)
    await page.wait_for_function(
        "() => document.querySelector('#video').dataset.transport === 'websocket'", timeout=WAIT_MS
    )
    await wait_for_new_frame(page, "#video", await page.evaluate(SEQ))
    # Its picture stalls behind the WebSocket's frames within 2 s, before the browser calls it disconnected.
    assert len(fell_back) == 1 and fell_back[0] in (STALLED, "the connection was lost for 3 s"), fell_back
    # A blip the WebSocket rode out left the view on JPEGs for good: WebRTC is tried again (after 10 s).
    await _on_webrtc_with_a_new_frame(page, await page.evaluate(SEQ))
    assert console.errors == []


async def test_a_picture_on_its_way_lengthens_the_silence_allowed(start_server: Start, browser: Any) -> None:
    """A JPEG's message arrives whole: a 250 kB frame over a slow link was taken for a dead network, and
    the page reconnected for ever without drawing one. While one is announced, more silence is allowed."""
    client = await start_server()
    page = await browser.new_page()
    await page.goto(str(client.make_url("/")))
    allowed = await page.evaluate(
        """async () => {
          const { Connection } = await import("./static/connection.js");
          const connection = new Connection({});
          connection.silenceMs = 2500;
          const quiet = connection.allowedSilenceMs();
          connection.pending = { type: "frame", image: { bytes: 40000 } };
          const picture = connection.allowedSilenceMs();
          connection.pending = { type: "frame", image: { bytes: 40e6 } };
          return [quiet, picture, connection.allowedSilenceMs()];
        }"""
    )
    assert allowed == [2500, 12500, 62500], "4 kB/s for the picture on its way, at most a minute more"


async def test_a_browser_without_abort_signal_timeout_still_connects(start_server: Start, browser: Any) -> None:
    """Safari before 16 has no AbortSignal.timeout: with a token stored, the viewer never connected."""
    admin = "admin-token-for-the-viewer-test"
    client = await start_server(StreamConfig("cam", "scene:?seed=3"), admin_tokens=(admin,))
    page = await browser.new_page()
    console = Console(page)
    await page.add_init_script(f"delete AbortSignal.timeout; localStorage.setItem('segcast.token', '{admin}');")
    await page.goto(str(client.make_url("/")))
    await page.wait_for_function(
        "() => document.querySelector('#connection').textContent === 'connected'", timeout=WAIT_MS
    )
    await wait_for_text(page, "#grid", "cam")
    assert console.errors == []


async def test_every_viewer_file_is_asked_for_again_so_an_upgrade_takes_at_once(start_server: Start) -> None:
    """Scripts were cached by heuristics (no Cache-Control): after an upgrade, the new index.html ran
    with the old scripts. Each is revalidated instead, which costs a 304 while it is unchanged."""
    client = await start_server()
    for name in ("app.js", "connection.js", "style.css", "publish.html"):
        first = await client.get(f"/static/{name}")
        assert first.status == 200 and first.headers["Cache-Control"] == "no-cache", name
        again = await client.get(f"/static/{name}", headers={"If-None-Match": first.headers["ETag"]})
        assert again.status == 304, name
