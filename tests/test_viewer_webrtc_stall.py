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

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import ClientWebSocketResponse
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from tests.support.browser import WAIT_MS, Console, require_browser, wait_for_new_frame
from tests.test_viewer_background import HIDE, HIDEABLE, paused_page
from tests.test_viewer_webrtc import fell_back_reasons, wait_for_transport

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(180)

STALLED_BEHIND_S = 2  # web/webrtc.js
RETRY_FIRST_MS = 10_000  # web/webrtc.js: a connection lost or stalled once it played is tried again this long on
#: The media time a playing view is watched over without falling back: many times the allowed lag.
PLAYING_FOR_S = 10
#: Holds the frame callbacks of the page's videos while ``window.stallWebRTC`` is set (the view is shown
#: no WebRTC frame, its connection untouched); keeps the media time of the newest frame the WebSocket told
#: of in ``window.wsMediaTime`` (and of the first in ``window.wsFirstMediaTime``, and of each by its seq in
#: ``window.wsMediaTimes``), every text the transport badge took in ``window.transports`` (with that newest
#: media time as it took it in ``window.transportMediaTimes``), counts the frames drawn over WebRTC in
#: ``window.rtcDrawn`` and keeps the seq of the last in ``window.rtcSeq``.
STALLABLE = """{
  window.stallWebRTC = false;
  const requestFrame = HTMLVideoElement.prototype.requestVideoFrameCallback;
  HTMLVideoElement.prototype.requestVideoFrameCallback = function (callback) {
    const held = (...args) => (window.stallWebRTC ? requestFrame.call(this, held) : callback(...args));
    return requestFrame.call(this, held);
  };
  window.wsMediaTime = null;
  window.wsFirstMediaTime = null;
  window.wsMediaTimes = new Map();
  window.WebSocket = class extends WebSocket {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", ({ data }) => {
        if (typeof data !== "string") return;
        const message = JSON.parse(data);
        if (message.type !== "frame") return;
        window.wsFirstMediaTime ??= message.media_time;
        window.wsMediaTime = message.media_time;
        window.wsMediaTimes.set(message.seq, message.media_time);
      });
    }
  };
  window.transports = [];
  window.transportMediaTimes = [];
  window.rtcDrawn = 0;
  window.rtcSeq = null;
  addEventListener("DOMContentLoaded", () => {
    const badge = document.getElementById("stream-transport");
    new MutationObserver(() => {
      window.transports.push(badge.textContent);
      window.transportMediaTimes.push(window.wsMediaTime);
    }).observe(badge, { childList: true, characterData: true, subtree: true });
    const canvas = document.getElementById("video");
    new MutationObserver(() => {
      if (canvas.dataset.transport !== "webrtc" || canvas.dataset.seq === undefined) return;
      window.rtcDrawn += 1;
      window.rtcSeq = Number(canvas.dataset.seq);
    }).observe(canvas, { attributeFilter: ["data-seq"] });
  });
}"""
MEDIA_TIME = "() => window.wsMediaTime"
#: Counts the frame messages the page's WebSockets brought in ``window.wsFrames`` and keeps the sockets in
#: ``window.pageSockets``, so that a test can hand the page a frame's metadata as its socket would.
COUNTED_SOCKETS = """{
  window.wsFrames = 0;
  window.pageSockets = [];
  window.WebSocket = class extends window.WebSocket {
    constructor(...args) {
      super(...args);
      window.pageSockets.push(this);
      this.addEventListener("message", ({ data }) => {
        if (typeof data === "string" && JSON.parse(data).type === "frame") window.wsFrames += 1;
      });
    }
  };
}"""
#: Hands the page's socket a frame message (its text), as the server's, through the page's own handlers.
TELL_THE_PAGE = "(data) => window.pageSockets.at(-1).dispatchEvent(new MessageEvent('message', { data }))"


async def webrtc_page(browser: Any, client: TestClient, paused_clock: bool = False) -> tuple[Any, Console, list[str]]:
    """The stream view of "cam", playing over WebRTC; its console, and the reasons it fell back, as said.
    With ``paused_clock``, on Playwright's clock, paused (`paused_page`): the page's timers wait for the test."""
    if paused_clock:
        page = await paused_page(browser, STALLABLE)
    else:
        page = await browser.new_page()
        await page.add_init_script(STALLABLE)
    console = Console(page)
    fell_back = fell_back_reasons(page)
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
    falls back to the WebSocket's pictures, saying the video stalled, and plays WebRTC again later (on the
    page's clock, run on by the test: a stall is told by the frames' media time, not by a timer)."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console, fell_back = await webrtc_page(browser, client, paused_clock=True)

    await page.evaluate("() => { window.stallWebRTC = true; }")
    await wait_for_transport(page, "WebSocket")
    assert len(fell_back) == 1 and "stalled" in fell_back[0], fell_back
    await wait_for_new_frame(page, "#video", await page.evaluate("() => document.querySelector('#video').dataset.seq"))

    await page.evaluate("() => { window.stallWebRTC = false; }")
    await page.clock.run_for(RETRY_FIRST_MS)  # tried again as after a lost connection, 10 s on
    await wait_for_transport(page, "WebRTC")
    assert console.errors == []


async def test_a_stalled_webrtc_picture_falls_back_as_soon_as_it_is_more_than_2_s_behind(
    start_server: Start, browser: Any
) -> None:
    """By the stream's own media time, as the page has it: the view falls back at the first frame the
    WebSocket tells of more than `STALLED_BEHIND_S` past the last frame it drew over WebRTC, one frame
    interval later at most (the scene's frames are a fraction of a second apart; 1 s allows for a few
    skipped), not at one several seconds further on."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console, fell_back = await webrtc_page(browser, client)
    await page.evaluate("() => { window.stallWebRTC = true; }")
    await wait_for_transport(page, "WebSocket")
    assert len(fell_back) == 1 and "stalled" in fell_back[0], fell_back
    shown_at, fell_at = await page.evaluate(
        "() => [window.wsMediaTimes.get(window.rtcSeq) ?? null, window.transportMediaTimes.at(-1)]"
    )
    assert shown_at is not None, "the WebSocket told of the last frame drawn over WebRTC"
    assert STALLED_BEHIND_S < fell_at - shown_at <= STALLED_BEHIND_S + 1, (shown_at, fell_at)
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


@asynccontextmanager
async def media_time_probe(client: TestClient) -> AsyncIterator[ClientWebSocketResponse]:
    """A metadata-only WebSocket of the test's own on "cam", its first frame the newest: it knows the stream's
    media time while the page, hidden, is told next to nothing (a frame's metadata in 100 s, docs/protocol.md)."""
    async with client.ws_connect("/ws") as probe:
        assert (await probe.receive_json())["type"] == "hello"
        await probe.send_json({"type": "subscribe", "streams": ["cam"], "image": "none"})
        yield probe


async def frame_past(probe: ClientWebSocketResponse, after_s: float | None = None) -> tuple[float, str]:
    """The next frame message (media time, text) of the probe, or the first later than ``after_s`` in media time."""
    while True:
        text = await probe.receive_str()
        message = json.loads(text)
        if message["type"] == "frame" and (after_s is None or message["media_time"] > after_s):
            return float(message["media_time"]), text


async def shown_while_hidden_then_stalled(page: Any, client: TestClient) -> str:
    """A frame shown over WebRTC while the page is hidden (headless Chromium presents them; a browser may
    show one or two after it hides a page), then none: once the stream is more than `STALLED_BEHIND_S` past
    it, the text of a frame message that far on."""
    drawn = await page.evaluate("() => window.rtcDrawn")
    await page.wait_for_function("(drawn) => window.rtcDrawn > drawn", arg=drawn, timeout=WAIT_MS)
    await page.evaluate("() => { window.stallWebRTC = true; }")
    async with media_time_probe(client) as probe:
        stalled_at, _ = await frame_past(probe)  # the newest frame now: none later was shown
        _, late = await frame_past(probe, stalled_at + 2 * STALLED_BEHIND_S)
    return late


async def test_a_hidden_view_counts_no_stall_and_counts_again_once_shown(start_server: Start, browser: Any) -> None:
    """A page in the background counts no stall: its video shows nothing while the metadata of newer frames
    still comes (one every 100 s, and one as it is hidden), and neither that metadata nor the first after it
    is shown again makes it fall back, however far its last frame shown is behind. Shown again, it plays
    on over WebRTC, and a picture that stalls then is a stall again, and falls back.

    On Playwright's clock, not run: the player that a page hidden for 10 s closes stays
    (tests/test_viewer_webrtc_hidden.py)."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page = await paused_page(browser, HIDEABLE, STALLABLE, COUNTED_SOCKETS)
    console = Console(page)
    fell_back = fell_back_reasons(page)
    await page.goto(str(client.make_url("/#/stream/cam")))
    await wait_for_transport(page, "WebRTC")
    await wait_for_new_frame(page, "#video")

    # Given a view playing over WebRTC, hidden: told the stream's newest frame as it hides
    told = await page.evaluate("() => window.wsFrames")
    await page.evaluate(HIDE, True)
    await page.wait_for_function("(told) => window.wsFrames > told", arg=told, timeout=WAIT_MS)
    # when its video shows nothing more while hidden, and the metadata of a frame far past it comes
    late = await shown_while_hidden_then_stalled(page, client)
    await page.evaluate(TELL_THE_PAGE, late)
    # then it counts no stall
    assert await page.evaluate("() => window.transports.at(-1)") == "WebRTC"
    assert fell_back == []

    # when it is shown again, its last frame shown far behind the stream, and the newest frame is told
    await page.evaluate("() => { window.stallWebRTC = false; }")
    late = await shown_while_hidden_then_stalled(page, client)
    told = await page.evaluate("() => window.wsFrames")
    await page.evaluate(HIDE, False)
    await page.wait_for_function("(told) => window.wsFrames > told", arg=told, timeout=WAIT_MS)
    await page.evaluate("() => { window.stallWebRTC = false; }")  # its video shows frames again
    # then it plays on over WebRTC, drawing its frames, over more than the lag allowed
    drawn = await page.evaluate("() => window.rtcDrawn")
    await wait_for_media_time_past(page, json.loads(late)["media_time"] + 2 * STALLED_BEHIND_S)
    assert fell_back == []
    assert "WebSocket" not in await page.evaluate("() => window.transports.slice(window.transports.indexOf('WebRTC'))")
    assert await page.evaluate("() => window.rtcDrawn") > drawn

    # and a picture that stalls now, shown, falls back as a stall
    await page.evaluate("() => { window.stallWebRTC = true; }")
    await wait_for_transport(page, "WebSocket")
    assert len(fell_back) == 1 and "stalled" in fell_back[0], fell_back
    assert console.errors == []
