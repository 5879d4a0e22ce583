"""A stream view's WebRTC player that was stopped stays stopped, and its metadata channel survives junk.

The stream view stops its WebRTC transport as it switches streams (or reconnects): nothing of it may
come back as the page is hidden and shown again, or the view would have two players, one of a stream
no longer shown. A message on the "meta" data channel that is not the protocol's JSON is skipped and
said, as the WebSocket's are, not thrown on every frame.

A real app, real WebRTC in a real headless Chromium on Playwright's clock (test_viewer_webrtc_hidden).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from tests.support.browser import Console, require_browser, wait_for_new_frame
from tests.test_viewer_background import HIDEABLE, paused_page
from tests.test_viewer_webrtc import wait_for_transport
from tests.test_viewer_webrtc_hidden import RTC_VIDEOS, peers, wait_for_players

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

#: Hides (true) or shows (false) the page (test_viewer_background.HIDE), then waits one task of its own
#: (not a timer: the page's clock is paused), so that whatever that set going in promises has run; the
#: page's rtc-source videos then.
HIDE_AND_SETTLE = """async (hidden) => {
  window.pageHidden = hidden;
  document.dispatchEvent(new Event("visibilitychange"));
  await new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = resolve;
    channel.port2.postMessage(null);
  });
  return document.querySelectorAll("video.rtc-source").length;
}"""
#: Keeps each data channel the page makes in ``window.channels``.
KEEP_CHANNELS = """{
  window.channels = [];
  const create = RTCPeerConnection.prototype.createDataChannel;
  RTCPeerConnection.prototype.createDataChannel = function (...args) {
    const channel = create.apply(this, args);
    window.channels.push(channel);
    return channel;
  };
}"""
NOT_THE_PROTOCOLS = "segcast: frame metadata that is not the protocol's was skipped:"


async def test_a_webrtc_player_stopped_as_the_view_switched_streams_stays_stopped_when_the_page_is_shown_again(
    start_server: Start, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"), StreamConfig("other", "scene:?seed=4"))
    page = await paused_page(browser, HIDEABLE)
    console = Console(page)
    await page.goto(str(client.make_url("/#/stream/cam")))
    await wait_for_transport(page, "WebRTC")
    await wait_for_players(client, "cam", 1, "cam's player on the server")

    await page.evaluate("() => { location.hash = '#/stream/other'; }")
    await wait_for_players(client, "other", 1, "other's player, and cam's closed")
    await wait_for_transport(page, "WebRTC")
    assert await page.evaluate(RTC_VIDEOS) == 1

    shown = await wait_for_new_frame(page, "#video")

    # A glance at another tab and back: only the view's own player is there, and none is started.
    assert await page.evaluate(HIDE_AND_SETTLE, True) == 1
    assert await page.evaluate(HIDE_AND_SETTLE, False) == 1
    await wait_for_new_frame(page, "#video", shown["seq"])
    assert (await peers(client))["player"] == 1
    assert console.errors == []


async def test_metadata_on_the_data_channel_that_is_not_the_protocols_is_skipped_and_said(
    start_server: Start, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page = await paused_page(browser, HIDEABLE, KEEP_CHANNELS)
    console = Console(page)
    warnings: list[str] = []
    page.on("console", lambda message: message.type == "warning" and warnings.append(message.text))
    await page.goto(str(client.make_url("/#/stream/cam")))
    await wait_for_transport(page, "WebRTC")
    shown = await wait_for_new_frame(page, "#video")

    junk = ["{not json", '["a list"]', '{"type": "frame"}']
    await page.evaluate(
        """(junk) => {
          const meta = window.channels.at(-1);
          for (const data of junk) meta.dispatchEvent(new MessageEvent("message", { data }));
        }""",
        junk,
    )
    await wait_for_new_frame(page, "#video", shown["seq"])  # the next frames still drawn with their metadata
    assert [text for text in warnings if text.startswith(NOT_THE_PROTOCOLS)] == [
        f"{NOT_THE_PROTOCOLS} {data}" for data in junk
    ]
    assert await page.text_content("#stream-transport") == "WebRTC"
    assert console.errors == []
