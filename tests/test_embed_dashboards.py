"""The embed page as a dashboard uses it: behind README's reverse proxy, thinned, framed by a local file.

A real nginx runs README's own proxy example (its TLS, its headers), a real headless Chromium opens
the embed through it, and the real app serves it. What keeps the picture from showing must be said in
the frame, since a dashboard's visitor has no other place to look.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from server.deploy.entrance import TEMPORARY_FILES
from server.http.pages import frame_ancestors
from tests.support.browser import (
    DESKTOP,
    Console,
    require_browser,
    wait_for_changed_picture,
    wait_for_new_frame,
    wait_for_text,
)
from tests.support.certificates import self_signed
from tests.support.components import require_component
from tests.support.nginx import NGINX, nginx_serving
from tests.support.polling import eventually
from tests.support.ports import free_port

require_browser()

Start = Callable[..., Awaitable[TestClient]]

pytestmark = pytest.mark.timeout(120)

README = Path(__file__).resolve().parents[1] / "README.md"
PANEL = ".status-panel"
HOST_LINE = re.compile(r"^\s*proxy_set_header Host .*\n", re.MULTILINE)
#: Every message the page's WebSockets send, in ``window.sent``, and how many hellos they received.
RECORD_SENT = """{
  window.sent = [];
  window.hellos = 0;
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) { window.sent.push(data); return send.call(this, data); };
  window.WebSocket = class extends WebSocket {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", ({ data }) => {
        if (typeof data === "string" && JSON.parse(data).type === "hello") window.hellos += 1;
      });
    }
  };
}"""


def readme_proxy_block() -> str:
    """README's nginx example (section "A phone on the same Wi-Fi"), as a user copies it."""
    [block] = re.findall(r"^```nginx\n(.*?)^```", README.read_text(), re.MULTILINE | re.DOTALL)
    return block


def nginx_conf(block: str, folder: Path, upstream: str) -> tuple[Path, int]:
    """``block`` (a ``server {}``) as it runs here, written to ``folder`` with its port: on 127.0.0.1,
    with a certificate made for the test, proxying to ``upstream``. Nothing else of it changes."""
    require_component(NGINX.is_file(), "needs Debian's nginx (see .ci/run)")
    cert, key = self_signed(folder)
    port = free_port()
    swaps = {
        "listen 8443 ssl;": f"listen 127.0.0.1:{port} ssl;",
        "/path/to/segcast.pem": str(cert),
        "/path/to/segcast-key.pem": str(key),
        "http://127.0.0.1:8080": f"http://{upstream}",
    }
    for example, here in swaps.items():
        assert example in block, f"README's nginx example no longer has {example!r}: update this test"
        block = block.replace(example, here)
    temporary = "".join(f"  {kind}_temp_path {folder / kind};\n" for kind in TEMPORARY_FILES)
    config = folder / "nginx.conf"
    config.write_text(
        ("user root;\n" if os.geteuid() == 0 else "")  # its workers write in folder
        + f"pid {folder / 'nginx.pid'};\nerror_log {folder / 'error.log'};\nevents {{}}\n"
        + f"http {{\n  access_log {folder / 'access.log'};\n{temporary}{block}}}\n"
    )
    return config, port


@asynccontextmanager
async def running_nginx(config: Path, port: int) -> AsyncIterator[str]:
    """A real nginx on ``config`` (from `nginx_conf`); its base URL (https, self-signed)."""
    async with nginx_serving(config, f"https://127.0.0.1:{port}/") as base:
        yield base


async def open_embed(
    browser: Any, url: str, init_script: str | None = None, viewport: dict[str, int] | None = None
) -> tuple[Any, Console]:
    """``url`` in a new page that trusts the test's self-signed certificate."""
    context = await browser.new_context(ignore_https_errors=True, viewport=viewport or DESKTOP)
    page = await context.new_page()
    console = Console(page)
    if init_script is not None:
        await page.add_init_script(init_script)
    await page.goto(url)
    return page, console


async def test_the_embed_plays_behind_the_readmes_reverse_proxy_without_tokens(
    start_server: Start, browser: Any, tmp_path: Path
) -> None:
    """README's proxy block as written: the page's Origin and the Host segcast is asked for agree."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    upstream = f"127.0.0.1:{client.port}"
    async with running_nginx(*nginx_conf(readme_proxy_block(), tmp_path, upstream)) as base:
        page, console = await open_embed(browser, f"{base}embed/cam")
        first = await wait_for_new_frame(page, "#video")
        await wait_for_changed_picture(page, "#video", first)
        assert not await page.is_visible(PANEL)
        assert console.errors == []


async def test_behind_a_proxy_that_drops_host_the_embed_says_its_live_connection_is_refused(
    start_server: Start, browser: Any, tmp_path: Path, screenshots: Path
) -> None:
    """The README's block without its Host line (as it was): every WebSocket is refused as cross-site while
    the HTTP API answers. The frame says so and what to fix, never that a picture it never had is the last."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    upstream = f"127.0.0.1:{client.port}"
    block = HOST_LINE.sub("", readme_proxy_block(), count=1)
    assert "proxy_set_header Host" not in block
    async with running_nginx(*nginx_conf(block, tmp_path, upstream)) as base:
        origin = base.rstrip("/")
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(f"{base}ws", headers={"Origin": origin}, ssl=False)
            assert refused.value.status == 403
            async with session.get(f"{base}ws", headers={"Origin": origin, "Upgrade": "websocket"}, ssl=False) as ws:
                message = (await ws.json())["error"]
        assert f"the page is {origin}, this server was asked for as {upstream}" in message
        assert "Host header" in message

        page, _ = await open_embed(browser, f"{base}embed/cam", viewport={"width": 480, "height": 270})
        text = await wait_for_text(page, PANEL, "live connection does not open")
        assert "Host header" in text and "WebSocket" in text
        assert "last picture" not in text
        await page.screenshot(path=screenshots / "live-connection-refused.png")
        assert await page.evaluate("() => document.querySelector('#video').dataset.seq") is None


async def test_the_embed_passes_max_fps_from_its_address_to_its_subscription(start_server: Start, browser: Any) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console = await open_embed(browser, str(client.make_url("/embed/cam?max_fps=2.5&max_width=320")), RECORD_SENT)
    await wait_for_new_frame(page, "#video")
    sent = [json.loads(m) for m in await page.evaluate("() => window.sent")]
    subscriptions = [m for m in sent if m["type"] == "subscribe"]
    assert subscriptions and all(m["max_fps"] == 2.5 and m["max_width"] == 320 for m in subscriptions)
    assert console.errors == []


@pytest.mark.parametrize("asked", ["0.01", "60"])
async def test_an_embed_asking_the_protocols_least_or_most_max_fps_subscribes_with_it(
    start_server: Start, browser: Any, asked: str
) -> None:
    """docs/protocol.md takes max_fps from 0.01 to 60, both included: the embed asks for either as given."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console = await open_embed(browser, str(client.make_url(f"/embed/cam?max_fps={asked}")), RECORD_SENT)
    await page.wait_for_function("() => window.hellos > 0")  # its subscription went out as its socket opened
    sent = [json.loads(m) for m in await page.evaluate("() => window.sent")]
    assert [m["max_fps"] for m in sent if m["type"] == "subscribe"] == [float(asked)], sent
    assert "cannot show this embed" not in await page.inner_text("body")
    assert console.errors == []


@pytest.mark.parametrize("asked", ["0", "61", "fast", ""])
async def test_an_embed_asking_a_max_fps_no_subscription_takes_says_so_in_its_frame(
    start_server: Start, browser: Any, asked: str
) -> None:
    client = await start_server(StreamConfig("cam", "scene:?seed=3"))
    page, console = await open_embed(browser, str(client.make_url(f"/embed/cam?max_fps={asked}")), RECORD_SENT)
    text = await wait_for_text(page, PANEL, "cannot show this embed as its address asks")
    assert "max_fps" in text and "from 0.01 to 60" in text and f"“{asked}”" in text
    await page.wait_for_function("() => window.hellos > 0")  # a subscription would go out as its socket opens
    assert [m for m in await page.evaluate("() => window.sent") if '"subscribe"' in m] == []
    assert console.errors == []


async def test_a_dashboard_opened_from_a_file_may_frame_the_embed_when_file_is_listed(
    start_server: Start, browser: Any, tmp_path: Path
) -> None:
    """``embed_origins = ["file:"]``, as README says: ``"*"`` matches only http(s) pages, not a file."""
    client = await start_server(StreamConfig("cam", "scene:?seed=3"), embed_origins=("file:",))
    dashboard = tmp_path / "dashboard.html"
    dashboard.write_text(
        f'<iframe id="tile" src="{client.make_url("/embed/cam")}" width="320" height="192"'
        ' sandbox="allow-scripts allow-same-origin"></iframe>'
    )
    page = await browser.new_page()
    await page.goto(dashboard.as_uri())
    frame = await eventually(lambda: _embed_frame(page), what="the embed to load in the file's frame")
    await wait_for_new_frame(frame, "#video")


async def _embed_frame(page: Any) -> Any:
    frame = next((f for f in page.frames if f.url.endswith("/embed/cam")), None)
    if frame is None:
        return None
    return frame if await frame.evaluate("() => document.readyState === 'complete'") else None


def test_a_file_listed_beside_any_origin_may_still_frame_the_pages() -> None:
    """``"*"`` left out every other entry, and a browser matches it to network schemes only: a
    ``"file:"`` beside it was dropped, so a dashboard opened from a file could not frame the embed."""
    assert frame_ancestors(("*", "file:")) == "frame-ancestors * file:"
    assert frame_ancestors(("*",)) == "frame-ancestors *"
