"""A stream view whose WebRTC peer cannot be reached falls back to the WebSocket without waiting it out.

That is the viewer behind ``docker run -p``: the answer names the container's own address, which the
browser cannot reach, so ICE never connects. Here the same is made on one machine by rewriting the
signalling in the browser: the server is told none of the browser's candidates, and the browser is
told only an address that is never routed (192.0.2.1, TEST-NET-1). No packet leaves the machine.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from tests.support.browser import require_browser

require_browser()

pytestmark = pytest.mark.timeout(120)

Start = Callable[..., Awaitable[TestClient]]
WAIT_MS = 30_000
UNROUTED = "192.0.2.1"
FELL_BACK = "segcast: video over the WebSocket, not WebRTC: "


async def _unreachable_peers(route: Any) -> None:
    offer = route.request.post_data_json
    offer["sdp"] = re.sub(r"^a=candidate:.*\r?\n", "", offer["sdp"], flags=re.MULTILINE)
    response = await route.fetch(post_data=json.dumps(offer))
    answer = await response.json()
    answer["sdp"] = re.sub(
        r"^(a=candidate:\S+ \d+ \S+ \d+ )\S+", rf"\g<1>{UNROUTED}", answer["sdp"], flags=re.MULTILINE
    )
    await route.fulfill(response=response, json=answer)


def _fell_back(message: Any) -> bool:
    return bool(message.text.startswith(FELL_BACK))


async def test_an_unreachable_webrtc_peer_falls_back_before_the_first_frame_timeout(
    start_server: Start, browser: Any
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page = await browser.new_page()
    await page.route("**/api/webrtc/play/**", _unreachable_peers)
    async with page.expect_console_message(_fell_back, timeout=WAIT_MS) as message:
        await page.goto(str(client.make_url("/#/stream/cam")))
    reason = (await message.value).text.removeprefix(FELL_BACK)
    assert reason == "no WebRTC connection within 3 s", "given up on once ICE did not connect, not after 5 s"
    await page.wait_for_function(
        "() => document.querySelector('#stream-transport')?.textContent === 'WebSocket'", timeout=WAIT_MS
    )
    await page.wait_for_function("() => document.querySelectorAll('video.rtc-source').length === 0", timeout=WAIT_MS)
