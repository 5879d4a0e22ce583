"""The stream view leaves a WebRTC player whose picture stalled while its connection still says connected.

With the network under WebRTC cut, Chromium calls the connection "disconnected" only after ~5 s, and the
view waited 3 s more: ~8 s of a frozen picture labelled WebRTC, while the page's WebSocket went on
bringing the metadata of newer frames. The view compares the frames' own media time now: a WebRTC
picture more than 2 s behind the WebSocket's falls back to the WebSocket, as a lost connection does, and
WebRTC is tried again later. One that plays, a little behind the metadata as it always is, stays; a
paused view compares nothing.

A real app and a real headless Chromium; the stall is the page's: its video's frame callbacks held
(`STALLABLE`), so the view is shown no WebRTC frame while the connection stays up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from tests.support.browser import WAIT_MS, Console, require_browser, wait_for_new_frame
from tests.test_viewer_webrtc import FELL_BACK, wait_for_transport

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(180)

STALLED_BEHIND_S = 2  # web/webrtc.js
#: The media time a playing view is watched over without falling back: many times the allowed lag.
PLAYING_FOR_S = 10
#: Holds the frame callbacks of the page's videos while ``window.stallWebRTC`` is set (the view is shown
#: no WebRTC frame, its connection untouched); keeps the media time of the newest frame the WebSocket told
#: of in ``window.wsMediaTime`` (and of the first in ``window.wsFirstMediaTime``), every text the transport
#: badge took in ``window.transports``, and counts the frames drawn over WebRTC in ``window.rtcDrawn``.
STALLABLE = """{
  window.stallWebRTC = false;
  const requestFrame = HTMLVideoElement.prototype.requestVideoFrameCallback;
  HTMLVideoElement.prototype.requestVideoFrameCallback = function (callback) {
    const held = (...args) => (window.stallWebRTC ? requestFrame.call(this, held) : callback(...args));
    return requestFrame.call(this, held);
  };
  window.wsMediaTime = null;
  window.wsFirstMediaTime = null;
  window.WebSocket = class extends WebSocket {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", ({ data }) => {
        if (typeof data !== "string") return;
        const message = JSON.parse(data);
        if (message.type !== "frame") return;
        window.wsFirstMediaTime ??= message.media_time;
        window.wsMediaTime = message.media_time;
      });
    }
  };
  window.transports = [];
  window.rtcDrawn = 0;
  addEventListener("DOMContentLoaded", () => {
    const badge = document.getElementById("stream-transport");
    new MutationObserver(() => window.transports.push(badge.textContent)).observe(badge, {
      childList: true, characterData: true, subtree: true,
    });
    const canvas = document.getElementById("video");
    new MutationObserver(() => canvas.dataset.transport === "webrtc" && (window.rtcDrawn += 1)).observe(canvas, {
      attributeFilter: ["data-seq"],
    });
  });
}"""
MEDIA_TIME = "() => window.wsMediaTime"


async def webrtc_page(browser: Any, client: TestClient) -> tuple[Any, Console, list[str]]:
    """The stream view of "cam", playing over WebRTC; its console, and the reasons it fell back, as said."""
    page = await browser.new_page()
    await page.add_init_script(STALLABLE)
    console = Console(page)
    fell_back: list[str] = []
    page.on("console", lambda m: m.text.startswith(FELL_BACK) and fell_back.append(m.text.removeprefix(FELL_BACK)))
    await page.goto(str(client.make_url("/#/stream/cam")))
    await wait_for_transport(page, "WebRTC")
    await wait_for_new_frame(page, "#video")
    return page, console, fell_back


async def wait_for_media_time_past(page: Any, media_time: float) -> None:
    """Wait until the WebSocket told of a frame later than ``media_time`` in the stream's own time."""
    await page.wait_for_function(
        "(after) => window.wsMediaTime !== null && window.wsMediaTime > after", arg=media_time, timeout=2 * WAIT_MS
    )


async def test_a_stalled_webrtc_picture_falls_back_to_the_websocket_and_webrtc_is_tried_again(
    start_server: Start, browser: Any
) -> None:
    """Given a view playing over WebRTC, when its picture stops while the connection stays up, then it
    falls back to the WebSocket's pictures, saying the video stalled, and plays WebRTC again later."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console, fell_back = await webrtc_page(browser, client)

    await page.evaluate("() => { window.stallWebRTC = true; }")
    await wait_for_transport(page, "WebSocket")
    assert len(fell_back) == 1 and "stalled" in fell_back[0], fell_back
    await wait_for_new_frame(page, "#video", await page.evaluate("() => document.querySelector('#video').dataset.seq"))

    await page.evaluate("() => { window.stallWebRTC = false; }")
    await wait_for_transport(page, "WebRTC")  # tried again as after a lost connection, 10 s on
    assert console.errors == []


async def test_a_playing_webrtc_view_does_not_fall_back(start_server: Start, browser: Any) -> None:
    """Its frames come a little behind the WebSocket's metadata all along: over many times the lag
    allowed, in the frames' own time, the view stays on WebRTC and draws its frames."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console, fell_back = await webrtc_page(browser, client)
    drawn = await page.evaluate("() => window.rtcDrawn")
    await wait_for_media_time_past(page, await page.evaluate(MEDIA_TIME) + PLAYING_FOR_S)
    assert fell_back == []
    assert await page.evaluate("() => window.transports.at(-1)") == "WebRTC"
    assert "WebSocket" not in await page.evaluate("() => window.transports.slice(window.transports.indexOf('WebRTC'))")
    assert await page.evaluate("() => window.rtcDrawn") - drawn >= PLAYING_FOR_S, "frames went on being drawn"
    assert console.errors == []


async def test_a_paused_view_does_not_fall_back_for_a_stall_until_it_resumes(start_server: Start, browser: Any) -> None:
    """Paused, its picture waits on purpose: a WebRTC picture stalled meanwhile is noticed once it resumes."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console, fell_back = await webrtc_page(browser, client)
    await page.click("#pause")
    await page.evaluate("() => { window.stallWebRTC = true; }")
    await wait_for_media_time_past(page, await page.evaluate(MEDIA_TIME) + 2 * STALLED_BEHIND_S)
    assert fell_back == []
    assert await page.text_content("#stream-transport") == "WebRTC"

    await page.click("#pause")
    await wait_for_transport(page, "WebSocket")
    assert len(fell_back) == 1 and "stalled" in fell_back[0], fell_back
    assert console.errors == []
