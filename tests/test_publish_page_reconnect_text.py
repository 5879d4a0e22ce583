"""What the publish page says when segcast ends a camera whose connection did not come up in time.

A first connection that never comes up is a network that blocks UDP between the browser and segcast:
the page names TURN. A camera whose connection was up, lost with the network and published again while
the network is still out has its new connection time out the same way: TURN would not cure that, and
the page said it did. It says now that it could not reconnect yet and tries again.

The page's publishing is played (`PLAYED_PUBLISHING`, each connection reaching its plan's state) and so
is its WebSocket, on which the test says, when it chooses, that segcast ended "cam" and why.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.support.browser import WAIT_MS, require_browser
from tests.support.polling import eventually
from tests.test_publish_page_recovery import IDLE_S, PLAYED_PUBLISHING, RECORD_WHAT_IS_SAID, start
from tests.test_webrtc_publish_page import PUBLISHING

require_browser()

ClientFactory = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

NOT_CONNECTED = f"not connected within {IDLE_S:g} s"
NO_VIDEO = f"connection lost: no video for {IDLE_S:g} s"
ERROR = "document.getElementById('publish-error').textContent"


class PlayedSegcast:
    """The page's WebSockets, each greeted with a hello that lists "cam"; `ended` says on the newest that
    segcast ended "cam" for a reason."""

    def __init__(self) -> None:
        self.sockets: list[Any] = []

    def connect(self, ws: Any) -> None:
        ws.send(json.dumps({"type": "hello", "v": 1, "streams": [{"id": "cam"}]}))
        self.sockets.append(ws)

    async def ended(self, error: str, socket: int) -> None:
        """Once the page's ``socket``-th WebSocket (from 1) is open, say on it that "cam" ended with ``error``."""

        async def opened() -> bool:
            return len(self.sockets) >= socket

        await eventually(opened, WAIT_MS / 1000, f"the page's WebSocket number {socket}")
        message = {"type": "status", "v": 1, "stream": "cam", "state": "ended", "error": error}
        self.sockets[socket - 1].send(json.dumps(message))


async def publish_played(page: Any, client: TestClient, plan: list[str]) -> PlayedSegcast:
    """Press "Use my camera" for "cam", its publishing played by ``plan`` and its WebSockets by segcast's part."""
    await page.clock.install()  # time runs as usual until the test runs it forward
    await page.add_init_script(f"window.publishPlan = {plan!r}; window.publishes = [];" + RECORD_WHAT_IS_SAID)
    segcast = PlayedSegcast()

    async def played(route: Any) -> None:
        await route.fulfill(body=PLAYED_PUBLISHING, content_type="text/javascript")

    await page.route("**/static/*/webrtc.js", played)
    await page.route_web_socket("**/ws", segcast.connect)
    await page.goto(str(client.make_url("/static/publish.html")))
    await page.fill("input[name=stream]", "cam")
    await page.click("#use-camera")
    return segcast


async def wait_for_publishes(page: Any, count: int) -> None:
    await page.wait_for_function(f"window.publishes.length === {count}", timeout=WAIT_MS)


async def test_a_lost_camera_whose_new_connection_does_not_come_up_says_it_could_not_reconnect_yet(
    aiohttp_client: ClientFactory, browser: Any
) -> None:
    """Given a camera that was publishing, lost with the network, when the page's attempt to publish it
    again does not connect in time either, then the page says it could not reconnect yet and tries
    again, with no word of TURN: the network carried its video seconds ago."""
    client = await start(aiohttp_client)
    page = await browser.new_page()
    segcast = await publish_played(page, client, ["connected", "connecting"])
    await page.wait_for_function(PUBLISHING, timeout=WAIT_MS)
    await segcast.ended(NO_VIDEO, socket=1)
    await wait_for_publishes(page, 2)  # published again by itself, after a second

    await segcast.ended(NOT_CONNECTED, socket=2)
    await page.wait_for_function(f"{ERROR}.includes('(attempt 2 of')", timeout=WAIT_MS)
    said = await page.text_content("#publish-error") or ""
    assert "could not reconnect yet" in said and "Trying again as “cam”" in said, said
    assert "TURN" not in said, said
    assert not any("TURN" in text for text in await page.evaluate("window.said"))


async def test_a_camera_whose_connection_never_came_up_names_turn_also_when_published_again(
    aiohttp_client: ClientFactory, browser: Any
) -> None:
    """A camera never connected: its first connection timing out names TURN, and so does the attempt
    to publish it again timing out too (the page is recovering, but its network never carried video)."""
    client = await start(aiohttp_client)
    page = await browser.new_page()
    segcast = await publish_played(page, client, ["connecting"])
    await wait_for_publishes(page, 1)
    await segcast.ended(NOT_CONNECTED, socket=1)
    first = await page.wait_for_function(f"{ERROR}.includes('(attempt 1 of') && {ERROR}", timeout=WAIT_MS)
    said = await first.json_value()
    assert f"did not come up within {IDLE_S:g} s" in said and "TURN server" in said, said

    await wait_for_publishes(page, 2)
    await segcast.ended(NOT_CONNECTED, socket=2)
    again = await page.wait_for_function(f"{ERROR}.includes('(attempt 2 of') && {ERROR}", timeout=WAIT_MS)
    said = await again.json_value()
    assert "TURN server" in said and "could not reconnect yet" not in said, said
