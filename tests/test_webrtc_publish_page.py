"""The publish page never leaves the camera on for nothing: not after a publish that failed once the
camera was open, and not after the server ended the published stream, which the page says at once.
It publishes one camera at a time, however often "Use my camera" is pressed, and keeps no WebSocket
open once its camera is off.

The page's getUserMedia is wrapped to keep every stream it gave out, so the test can count the camera
tracks still live (a live track is the camera's light on).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.http.keys import hub_key
from tests import test_webrtc_browser
from tests.support.browser import WAIT_MS
from tests.support.polling import eventually
from tests.test_webrtc_browser import camera_browser

Start = Callable[..., Awaitable[TestClient]]

fake_camera = test_webrtc_browser.fake_camera  # the same generated camera file, a fixture here too

KEEP_CAMERA_STREAMS = """
window.cameraStreams = [];
const getUserMedia = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = async (constraints) => {
  const stream = await getUserMedia(constraints);
  window.cameraStreams.push(stream);
  return stream;
};
"""
KEEP_WEBSOCKETS = """
window.webSockets = [];
window.WebSocket = class extends WebSocket {
  constructor(...args) {
    super(...args);
    window.webSockets.push(this);
  }
};
"""
LIVE_CAMERA_TRACKS = "window.cameraStreams.flatMap((s) => s.getTracks()).filter((t) => t.readyState === 'live').length"

PUBLISHING = "document.getElementById('publish-status').dataset.state === 'connected'"
PLAYING_BACK = "document.getElementById('play-mode').textContent !== ''"

pytestmark = pytest.mark.timeout(90)


def websocket_clients(client: TestClient) -> int:
    """The server's WebSocket viewers now: the publish page's is its only one."""
    assert client.app is not None
    return sum(viewer.name == "ws" for viewer in client.app[hub_key].viewers)


async def wait_for_websocket_clients(client: TestClient, count: int, what: str) -> None:
    async def reached() -> bool:
        return websocket_clients(client) == count

    await eventually(reached, WAIT_MS / 1000, what)


async def test_a_publish_refused_after_the_camera_opened_turns_the_camera_off(
    start_server: Start, fake_camera: Path
) -> None:
    """A server with access tokens refuses the page without one (401) after it opened the camera."""
    client = await start_server(admin_tokens=("a" * 20,))
    async with camera_browser(fake_camera) as browser:
        page = await browser.new_page()
        await page.add_init_script(KEEP_CAMERA_STREAMS)
        await page.goto(str(client.make_url("/static/publish.html")))
        await page.click("#use-camera")
        await page.wait_for_function("document.getElementById('publish-error').textContent !== ''", timeout=WAIT_MS)
        assert await page.text_content("#publish-status") == "camera off"
        assert await page.evaluate("window.cameraStreams.length") == 1, "the camera was opened"
        assert await page.evaluate(LIVE_CAMERA_TRACKS) == 0, "the camera was turned off with the error"
        assert await page.is_enabled("#use-camera"), "the camera can be tried again"


async def test_a_camera_whose_stream_the_server_removed_is_turned_off_on_the_page_saying_why(
    start_server: Start, fake_camera: Path
) -> None:
    client = await start_server()
    async with camera_browser(fake_camera) as browser:
        page = await browser.new_page()
        await page.add_init_script(KEEP_CAMERA_STREAMS)
        await page.goto(str(client.make_url("/static/publish.html")))
        await page.fill("input[name=stream]", "browser")
        await page.click("#use-camera")
        await page.wait_for_function(PUBLISHING, timeout=WAIT_MS)
        await wait_for_websocket_clients(client, 1, "the page to listen for the server ending its stream")
        assert (await client.delete("/api/streams/browser")).status == 204
        # Said by the server over the WebSocket, not guessed from a connection that times out ~20 s later.
        await page.wait_for_function(
            "document.getElementById('publish-error').textContent.includes('The server ended this camera')",
            timeout=WAIT_MS,
        )
        assert "removed" in (await page.text_content("#publish-error") or "")
        assert await page.text_content("#publish-status") == "camera off"
        assert await page.is_hidden("#stop-camera")
        assert await page.evaluate(LIVE_CAMERA_TRACKS) == 0, "the camera was turned off"
        await wait_for_websocket_clients(client, 0, "the page's WebSocket to close")


@pytest.mark.parametrize("press", ["double click", "Enter twice"])
async def test_pressing_use_my_camera_twice_publishes_one_camera(
    start_server: Start, fake_camera: Path, press: str
) -> None:
    """A second press while the first is still asking for the camera or negotiating starts nothing."""
    client = await start_server()
    async with camera_browser(fake_camera) as browser:
        page = await browser.new_page()
        await page.add_init_script(KEEP_CAMERA_STREAMS)
        await page.goto(str(client.make_url("/static/publish.html")))
        if press == "double click":
            await page.dblclick("#use-camera")
        else:
            await page.press("input[name=stream]", "Enter")
            await page.press("input[name=stream]", "Enter")
        # Played back: a second publish, started with the first, would have had its answer by now.
        await page.wait_for_function(PLAYING_BACK, timeout=WAIT_MS)
        streams = (await (await client.get("/api/streams")).json())["streams"]
        assert len(streams) == 1, f"one camera, one stream: {[s['id'] for s in streams]}"
        assert await page.evaluate("window.cameraStreams.length") == 1, "the camera was asked for once"
        assert await page.text_content("#publish-error") == ""
        assert await page.is_disabled("#use-camera"), "one camera at a time"


async def test_stopping_the_camera_closes_the_pages_websocket_and_it_can_start_again(
    start_server: Start, fake_camera: Path
) -> None:
    client = await start_server()
    async with camera_browser(fake_camera) as browser:
        page = await browser.new_page()
        await page.add_init_script(KEEP_CAMERA_STREAMS)
        await page.goto(str(client.make_url("/static/publish.html")))
        await page.click("#use-camera")
        await page.wait_for_function(PUBLISHING, timeout=WAIT_MS)
        await wait_for_websocket_clients(client, 1, "the page's WebSocket")
        await page.click("#stop-camera")
        await wait_for_websocket_clients(client, 0, "the page's WebSocket to close")
        assert await page.evaluate(LIVE_CAMERA_TRACKS) == 0, "the camera was turned off"
        assert await page.is_enabled("#use-camera")
        await page.click("#use-camera")
        await page.wait_for_function(PUBLISHING, timeout=WAIT_MS)
        await wait_for_websocket_clients(client, 1, "the next publish's WebSocket")


async def test_a_camera_stopped_while_its_websocket_opens_leaves_no_websocket_open(
    start_server: Start, fake_camera: Path
) -> None:
    """With access tokens, the page's WebSocket first waits for a URL token to be minted: a camera
    stopped meanwhile must not leave a socket opened after it (one opened for the next camera is its own)."""
    token = "a" * 20
    client = await start_server(admin_tokens=(token,))
    async with camera_browser(fake_camera) as browser:
        page = await browser.new_page()
        await page.add_init_script(f"localStorage.setItem('segcast.token', '{token}');" + KEEP_WEBSOCKETS)
        minting = asyncio.Event()
        minted = asyncio.Event()

        async def hold_minting(route: Any) -> None:
            minting.set()
            await minted.wait()
            await route.continue_()

        await page.route("**/api/tokens*", hold_minting)
        await page.goto(str(client.make_url("/static/publish.html")))
        await page.click("#use-camera")
        await page.wait_for_function(PUBLISHING, timeout=WAIT_MS)
        async with asyncio.timeout(WAIT_MS / 1000):
            await minting.wait()
        await page.click("#stop-camera")
        async with page.expect_response("**/api/tokens*"):
            minted.set()
        # The camera on again: its socket comes after the stopped camera's token was handled.
        await page.click("#use-camera")
        await page.wait_for_function(PUBLISHING, timeout=WAIT_MS)
        await page.wait_for_function(
            "window.webSockets.filter((s) => s.readyState === WebSocket.OPEN).length === 1", timeout=WAIT_MS
        )
        await wait_for_websocket_clients(client, 1, "the second camera's WebSocket")
        assert await page.evaluate("window.webSockets.filter((s) => s.readyState !== WebSocket.CLOSED).length") == 1, (
            "the stopped camera's socket was opened after all"
        )
