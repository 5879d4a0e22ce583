"""The viewer, the embed page and the publish page behind a reverse proxy that serves segcast at a path.

One entrance in front of several nodes gives each a path: ``http://entrance/node-1/`` is a node's
``/``, the prefix stripped on the way in. A page that builds any URL from ``/`` (a script, a fetch,
the WebSocket, a WebRTC offer, an image) misses the node; the proxy answers those 404 and keeps them
in ``strays``, so each test ends by checking there were none. A real headless Chromium, the real app,
and a real proxy (tests/support/prefix_proxy.py) forwarding HTTP and WebSockets between them.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from tests.conftest import CHROMIUM
from tests.support.browser import (
    WAIT_MS,
    Console,
    open_url,
    require_browser,
    wait_for_changed_picture,
    wait_for_new_frame,
)
from tests.support.prefix_proxy import PrefixProxy

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

#: The publish page's own playback offer fails, so it shows its stream over MJPEG instead.
NO_WEBRTC_PLAYBACK = """{
  const fetch = window.fetch;
  window.fetch = (resource, options) => String(resource).includes("/api/webrtc/play/")
    ? Promise.reject(new TypeError("blocked by the test"))
    : fetch(resource, options);
}"""


@pytest.fixture
async def node(start_server: Start) -> AsyncIterator[tuple[TestClient, PrefixProxy]]:
    """A segcast with one live stream, and the proxy that serves it at ``/node-1/``."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    proxy = PrefixProxy(client.make_url("/"), "/node-1")
    await proxy.start()
    try:
        yield client, proxy
    finally:
        await proxy.close()


async def test_viewer_and_embed_work_at_a_path_prefix(
    node: tuple[TestClient, PrefixProxy], browser: Any, screenshots: Path
) -> None:
    _, proxy = node
    entrance = str(proxy.url)
    page, console = await open_url(browser, entrance)
    thumbnail = await wait_for_new_frame(page, '.card[data-stream="cam"] canvas')
    assert thumbnail["std"] > 10, "the grid shows live pictures"
    await page.screenshot(path=screenshots / "grid.png")

    await page.click('.card[data-stream="cam"]')
    first = await wait_for_new_frame(page, "#video")
    await wait_for_changed_picture(page, "#video", first)  # the stream view plays
    assert first["std"] > 10
    await page.wait_for_function("() => document.querySelectorAll('#tracks tbody tr').length > 0", timeout=WAIT_MS)
    await page.wait_for_function(
        "() => document.querySelector('[data-stat=processed]')?.textContent.includes('fps')", timeout=WAIT_MS
    )
    snippet = await page.input_value("#embed-code")
    assert f'src="{entrance}embed/cam"' in snippet, "the embed snippet points at the node behind the entrance"
    await page.screenshot(path=screenshots / "stream.png")

    await page.goto(f"{entrance}embed/cam")
    assert (await wait_for_new_frame(page, "#video"))["std"] > 10, "the embed page plays"
    await page.goto(f"{entrance}static/publish.html")
    background = await page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(15, 18, 22)", "the publish page has its stylesheet"
    await page.click("a.brand")
    await page.wait_for_selector('.card[data-stream="cam"]', timeout=WAIT_MS)

    assert proxy.strays == [], "every request stayed under the prefix"
    used = {re.sub(r"^/static/[0-9a-f]{12}/", "/static/", path) for path in proxy.forwarded}  # scripts' tag
    assert {"/", "/static/app.js", "/ws", "/api/streams", "/api/viewer", "/embed/cam", "/static/embed.js"} <= used
    assert "/api/webrtc/play/cam" in used, "the stream view's WebRTC offer went through the prefix too"
    assert console.errors == []


async def test_publishing_a_camera_works_at_a_path_prefix(
    node: tuple[TestClient, PrefixProxy], screenshots: Path
) -> None:
    _, proxy = node
    from playwright import async_api as playwright

    async with playwright.async_playwright() as driver:
        browser = await driver.chromium.launch(
            executable_path=CHROMIUM, args=["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
        )
        try:
            page = await browser.new_page()
            console = Console(page)
            await page.add_init_script(NO_WEBRTC_PLAYBACK)
            await page.goto(str(proxy.url))
            await page.click("#nav-camera")
            await page.fill("input[name=stream]", "phone")
            await page.click("#use-camera")
            await page.wait_for_function("() => document.getElementById('play-mode').textContent === '(MJPEG)'")
            await page.wait_for_function(
                "() => document.getElementById('annotated-fallback').naturalWidth > 0", timeout=WAIT_MS
            )
            await page.screenshot(path=screenshots / "publish.png")
            link = await page.get_attribute("#open-viewer", "href")
            assert link == f"{proxy.url}#/stream/phone"
        finally:
            await browser.close()
    assert proxy.strays == []
    assert {"/api/webrtc/publish", "/api/streams/phone/mjpeg"} <= set(proxy.forwarded)
    assert console.errors == []
