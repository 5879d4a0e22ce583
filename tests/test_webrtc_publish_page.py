"""The publish page never leaves the camera on for nothing: not after a publish that failed once the
camera was open, and not after the server ended the published stream, which the page says at once.

The page's getUserMedia is wrapped to keep every stream it gave out, so the test can count the camera
tracks still live (a live track is the camera's light on).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from tests import test_webrtc_browser
from tests.support.browser import WAIT_MS
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
LIVE_CAMERA_TRACKS = "window.cameraStreams.flatMap((s) => s.getTracks()).filter((t) => t.readyState === 'live').length"

pytestmark = pytest.mark.timeout(90)


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
        await page.wait_for_function(
            "document.getElementById('publish-status').dataset.state === 'connected'", timeout=WAIT_MS
        )
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
