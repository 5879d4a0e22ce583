"""The stream view tries WebRTC again after its connection was lost while the WebSocket stayed up.

A connection the browser calls failed (or closed) fell back to the WebSocket's JPEGs for good, though
README said it is tried again after 10 s, then 20, 40, 60; and a retry that could not connect was not
tried again either. Each is tried again now, the wait doubling while none plays, up to 60 s and no
further, and back to 10 s once one has played.

A real app and a real headless Chromium on Playwright's clock, paused: the page's timers fire only as
the test runs that clock on, so "not before 10 s" and "at 10 s" are exact. The browser's word that a
connection failed is given by the test (the page's RTCPeerConnection says "failed"): a real one says it
only ~30 s after the network went.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from tests.support.browser import Console, require_browser, wait_for_new_frame
from tests.support.polling import eventually
from tests.test_viewer_background import paused_page
from tests.test_viewer_webrtc import fell_back_reasons, wait_for_transport

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

RTC_RETRY_FIRST_MS = 10_000  # web/webrtc.js
RTC_RETRY_MAX_MS = 60_000
#: How far the page's clock is run on at a time, each time until the WebSocket has brought a new picture:
#: well inside the 12.5 s of silence after which the page gives its socket up (web/connection.js).
CLOCK_STEP_MS = 5000
SEQ = "() => document.querySelector('#video').dataset.seq ?? null"
PLAY_OFFERS = "**/api/webrtc/play/**"
BUSY_REASON = "busy for the test"
BUSY = "Failed to load resource: the server responded with a status of 503 (Service Unavailable)"
#: Counts the page's WebRTC attempts (each asks for the ICE servers first, as it starts) in
#: ``window.rtcAttempts``, and keeps its peer connections, whose state ``failPeer()`` makes "failed".
FAILABLE_PEERS = """{
  window.rtcAttempts = 0;
  const fetchOriginal = window.fetch;
  window.fetch = function (resource, options) {
    if (new URL(String(resource), location.href).pathname.endsWith("/api/webrtc/config")) window.rtcAttempts += 1;
    return fetchOriginal.call(this, resource, options);
  };
  window.peers = [];
  window.RTCPeerConnection = class extends RTCPeerConnection {
    constructor(...args) {
      super(...args);
      window.peers.push(this);
    }
    get connectionState() {
      return this.failed ? "failed" : super.connectionState;
    }
  };
  window.failPeer = () => {
    const peer = window.peers.at(-1);
    peer.failed = true;
    peer.dispatchEvent(new Event("connectionstatechange"));
  };
}"""


async def attempts(page: Any) -> int:
    return int(await page.evaluate("() => window.rtcAttempts"))


async def next_attempt_after(page: Any, wait_ms: int) -> None:
    """The page's next WebRTC attempt comes ``wait_ms`` (a multiple of `CLOCK_STEP_MS`) from now on its
    clock: not a millisecond sooner.

    The clock is run on `CLOCK_STEP_MS` at a time, each time until the WebSocket has brought a new picture:
    a socket that heard nothing for 12.5 s of the page's clock would be given up on (connection.js)."""
    assert wait_ms % CLOCK_STEP_MS == 0, f"{wait_ms} ms is not a whole number of clock steps"
    made = await attempts(page)
    steps = wait_ms // CLOCK_STEP_MS
    for step in range(steps):
        seq = await page.evaluate(SEQ)
        await page.clock.run_for(CLOCK_STEP_MS - 1 if step == steps - 1 else CLOCK_STEP_MS)
        await wait_for_new_frame(page, "#video", seq)
    assert await attempts(page) == made, f"an attempt before {wait_ms} ms"
    await page.clock.run_for(1)
    assert await attempts(page) == made + 1, f"no attempt at {wait_ms} ms"


async def playing_over_webrtc(start_server: Start, browser: Any) -> tuple[Any, Console, list[str]]:
    """A stream view on a paused clock playing a scene over WebRTC, its peers failable (`FAILABLE_PEERS`):
    the page, its console and the reasons it fell back to the WebSocket, as they come."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page = await paused_page(browser, FAILABLE_PEERS)
    console = Console(page)
    fell_back = fell_back_reasons(page)
    await page.goto(str(client.make_url("/#/stream/cam")))
    await wait_for_transport(page, "WebRTC")
    await wait_for_new_frame(page, "#video")
    return page, console, fell_back


async def test_webrtc_lost_is_tried_again_later_and_later_until_it_plays(start_server: Start, browser: Any) -> None:
    page, console, fell_back = await playing_over_webrtc(start_server, browser)

    async def fall_back_for(reason: str) -> None:
        await eventually(lambda: _last_is(fell_back, reason), what=f"a fall back for {reason!r}")
        await wait_for_transport(page, "WebSocket")

    async def busy(route: Any) -> None:
        await route.fulfill(status=503, json={"error": BUSY_REASON})

    # The connection fails: the WebSocket's pictures, and WebRTC again after 10 s, which is refused.
    await page.evaluate("() => window.failPeer()")
    await fall_back_for("the connection failed")
    await page.route(PLAY_OFFERS, busy)
    await next_attempt_after(page, RTC_RETRY_FIRST_MS)

    # Refused: tried again after twice as long.
    await fall_back_for(BUSY_REASON)
    await page.unroute(PLAY_OFFERS, busy)
    await next_attempt_after(page, 2 * RTC_RETRY_FIRST_MS)

    # That one plays: a connection lost later is tried again after 10 s again.
    await wait_for_transport(page, "WebRTC")
    await page.evaluate("() => window.failPeer()")
    await fall_back_for("the connection failed")
    await next_attempt_after(page, RTC_RETRY_FIRST_MS)
    await wait_for_transport(page, "WebRTC")
    assert [error for error in console.errors if error != BUSY] == []


async def _last_is(items: list[str], item: str) -> bool:
    return bool(items) and items[-1] == item


async def test_webrtc_refused_while_recovering_is_tried_again_every_60_s_at_most(
    start_server: Start, browser: Any
) -> None:
    """Lost, then refused at every attempt: the waits double from 10 s up to 60 s, and stay at 60 s."""
    page, console, fell_back = await playing_over_webrtc(start_server, browser)

    async def busy(route: Any) -> None:
        await route.fulfill(status=503, json={"error": BUSY_REASON})

    await page.route(PLAY_OFFERS, busy)
    await page.evaluate("() => window.failPeer()")
    await eventually(partial(_last_is, fell_back, "the connection failed"), what="a fall back for the lost connection")
    await wait_for_transport(page, "WebSocket")
    waits_ms = [RTC_RETRY_FIRST_MS, 2 * RTC_RETRY_FIRST_MS, 4 * RTC_RETRY_FIRST_MS, RTC_RETRY_MAX_MS, RTC_RETRY_MAX_MS]
    for refused, wait_ms in enumerate(waits_ms, start=1):
        await next_attempt_after(page, wait_ms)
        await eventually(partial(_counted, fell_back, BUSY_REASON, refused), what=f"attempt {refused} refused")
    assert [error for error in console.errors if error != BUSY] == []


async def _counted(items: list[str], item: str, count: int) -> bool:
    return items.count(item) == count
