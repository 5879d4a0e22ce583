"""What the viewer makes of answers that are not segcast's, in a real headless Chromium.

A Wi-Fi's sign-in page answers any HTTP request with 200 and its own HTML: the API's client took that
for an empty answer, and the grid's stats then failed inside a catch that took it for a server
restarting. A message on the WebSocket that is not the protocol's JSON, or a picture that cannot be
decoded, threw out of the page's handlers at every such message. Each is now told apart: an answer
that is not segcast's is an error that says so, a bad message or picture is skipped and said once.

The page's WebSocket is Playwright's stand-in where a test sends its own messages; every wait is on
something the page shows or says, with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from PIL import Image

from server.config import StreamConfig
from tests.support.browser import WAIT_MS, Console, open_page, require_browser, wait_for_new_frame
from tests.support.polling import eventually

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

SIGN_IN_PAGE = "<html><body>Sign in to the guest Wi-Fi</body></html>"
HELLO = {"type": "hello", "v": 1, "keepalive_s": 5, "socket": "s1", "streams": [{"id": "cam", "state": "live"}]}
NOT_JSON = "segcast: a message that is not the protocol's JSON was skipped"
NOT_DECODED = "segcast: a picture that could not be decoded was skipped"
DAMAGED = b"\x00not-a-jpeg\x00"
PICTURE_INTERVAL_S = 0.2  # a good picture sent this often until one is drawn, at most GOOD_PICTURES
GOOD_PICTURES = 50
DRAWN_AFTER_DAMAGED = "() => document.querySelector('.card[data-stream=\"cam\"] canvas')?.dataset.seq > 2"
#: The page's API client asked for the stream list: what it resolved to, or what it threw.
LIST_STREAMS = """async () => {
  const api = await import("./static/api.js");
  try {
    return { resolved: JSON.stringify(await api.listStreams()) };
  } catch (error) {
    return { apiError: error instanceof api.ApiError, status: error.status, message: error.message };
  }
}"""


def frame(seq: int, size: int) -> str:
    """A frame message of stream cam announcing a JPEG of ``size`` bytes."""
    meta = {"type": "frame", "v": 1, "stream": "cam", "seq": seq, "width": 64, "height": 36, "tracks": []}
    return json.dumps({**meta, "image": {"bytes": size}})


async def said(warnings: list[str], start: str) -> bool:
    return any(text.startswith(start) for text in warnings)


def jpeg() -> bytes:
    picture = io.BytesIO()
    Image.new("RGB", (64, 36), (200, 40, 40)).save(picture, "JPEG")
    return picture.getvalue()


async def test_an_ok_answer_that_is_not_segcasts_is_an_error_that_says_so(start_server: Start, browser: Any) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console = await open_page(browser, client, "/")
    await wait_for_new_frame(page, '.card[data-stream="cam"] canvas')

    async def sign_in_page(route: Any) -> None:
        await route.fulfill(status=200, content_type="text/html", body=SIGN_IN_PAGE)

    await page.route(re.compile(r"/api/streams$"), sign_in_page)
    answer = await page.evaluate(LIST_STREAMS)
    assert answer.get("apiError") is True and answer["status"] == 200, answer
    assert "not segcast's answer (text/html)" in answer["message"]
    assert console.errors == []


async def test_a_message_or_a_picture_the_page_cannot_use_is_skipped_and_said_once(
    start_server: Start, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))  # for the API: its pictures are the test's
    page = await browser.new_page()
    console = Console(page)
    warnings: list[str] = []
    page.on("console", lambda message: message.type == "warning" and warnings.append(message.text))
    opened: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    # The page's first socket is the test's to speak on; any later one is left unanswered.
    await page.route_web_socket(re.compile(r"/ws(\?|$)"), lambda socket: opened.done() or opened.set_result(socket))
    await page.goto(str(client.make_url("/")))
    socket = await asyncio.wait_for(opened, WAIT_MS / 1000)

    socket.send(json.dumps(HELLO))
    socket.send("{not json")
    socket.send(json.dumps(["a list, not a message"]))
    socket.send(frame(1, len(DAMAGED)))
    socket.send(DAMAGED)
    await eventually(lambda: said(warnings, NOT_DECODED), what="the damaged picture said")
    socket.send(frame(2, len(DAMAGED)))  # decoded too, the first one's decoding over: not said again
    socket.send(DAMAGED)
    good = jpeg()
    for seq in range(3, 3 + GOOD_PICTURES):  # until one is drawn: one that comes while another decodes is skipped
        socket.send(frame(seq, len(good)))
        socket.send(good)
        with contextlib.suppress(AssertionError):
            await eventually(lambda: page.evaluate(DRAWN_AFTER_DAMAGED), PICTURE_INTERVAL_S, "a picture drawn")
            break
    assert await page.evaluate(DRAWN_AFTER_DAMAGED), "a good picture after the damaged ones is drawn"
    assert [text for text in warnings if text.startswith(NOT_JSON)] == [
        f"{NOT_JSON}: {{not json",
        f'{NOT_JSON}: ["a list, not a message"]',
    ]
    assert len([text for text in warnings if text.startswith(NOT_DECODED)]) == 1
    assert console.errors == []


#: The page's WebRTC player asked to play stream cam: the reason it gave for falling back, if it did.
PLAY_OVER_WEBRTC = """async () => {
  const webrtc = await import("./static/webrtc.js");
  const reasons = [];
  const info = console.info;
  console.info = (...parts) => reasons.push(parts.map((part) => String(part)).join(" "));
  try {
    const video = document.body.appendChild(document.createElement("video"));
    const played = await webrtc.playWithFallback("cam", { video, fallback: () => {} });
    played.stop();
    return { mode: played.mode, reasons };
  } finally {
    console.info = info;
  }
}"""


async def test_a_webrtc_answer_that_is_not_segcasts_falls_back_saying_so(start_server: Start, browser: Any) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console = await open_page(browser, client, "/")

    async def sign_in_page(route: Any) -> None:
        await route.fulfill(status=200, content_type="text/html", body=SIGN_IN_PAGE)

    await page.route(re.compile(r"/api/webrtc/play/cam$"), sign_in_page)
    played = await page.evaluate(PLAY_OVER_WEBRTC)
    assert played["mode"] == "fallback", played
    assert any("not segcast's answer (text/html)" in reason for reason in played["reasons"]), played
    assert console.errors == []
